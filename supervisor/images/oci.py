"""The OCI image format's documents, read strictly: indexes, manifests, configs.

Docker's schema 2 manifests and manifest lists are the same shapes under
other media types, and read the same way. Every document comes from outside
(a registry, an archive someone sent), so each field is checked for its type
and a wrong one is named; digests are checked by whoever read the bytes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from podvisor.supervisor.errors import ImageFormatError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.images.reference import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: Layer media types podvisor unpacks; the compression is told from the blob's
#: first bytes, which the media type only repeats.
LAYERS = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_DOCUMENT = 4 * 1024 * 1024  # what registries accept for a manifest


@frozen
class Platform:
    """os/architecture[/variant], as in an index's `platform`."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageFormatError(f"platform {text!r} is not OS/ARCH[/VARIANT] (linux/arm64)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def accepts(self, other: Platform) -> bool:
        """Whether an image built for *other* runs here (a missing variant is taken)."""
        if (other.os, other.architecture) != (self.os, self.architecture):
            return False
        return other.variant in (None, self.variant) or (
            self.architecture == "arm64" and other.variant == "v8"
        )


#: uname's machine names, as the OCI spec names architectures (Go's GOARCH).
_ARCHITECTURES = {
    "x86_64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "i386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def this_platform() -> Platform:
    """This machine's platform; `PODVISOR_PLATFORM` (linux/arm64) overrides it."""
    forced = os.environ.get("PODVISOR_PLATFORM")
    if forced:
        return Platform.parse(forced)
    machine = os.uname().machine
    arch, variant = _ARCHITECTURES.get(machine, (machine, None))
    return Platform("linux", arch, variant)


@frozen
class Descriptor:
    """A pointer to a blob: its media type, digest and size, and what an index says of it."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


@frozen
class Manifest:
    """An image manifest: its config and its layers, lowest first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]


@frozen
class ImageConfig:
    """What an image says about running it (its config's `config`), as Kubernetes applies it.

    `entrypoint` and `cmd` are None when the image leaves them unset (not the
    same as an empty list, for Kubernetes' rules on command and args).
    """

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # NAME=value, in order
    working_dir: str | None = None
    user: str | None = None  # "uid", "name", "uid:gid", "name:group"
    stop_signal: str | None = None  # as written: "SIGQUIT", "3"
    labels: tuple[tuple[str, str], ...] = ()


@frozen
class Config:
    """An image config: the run settings, the layers' uncompressed digests, the platform."""

    run: ImageConfig
    diff_ids: tuple[str, ...]
    platform: Platform
    created: str | None = None


def document(data: bytes, what: str) -> dict[str, Any]:
    """*data* as a JSON object; ImageFormatError naming *what* it should have been."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ImageFormatError(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return value


def _field(obj: dict[str, Any], key: str, kind: type, what: str, required: bool = True) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise ImageFormatError(f"{what} has no {key!r}")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImageFormatError(f"{what}: {key!r} is not a {kind.__name__}")
    return value


def _strings(obj: dict[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    value = _field(obj, key, list, what, required=False)
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise ImageFormatError(f"{what}: {key!r} is not a list of strings")
    return tuple(value)


def _string_map(obj: dict[str, Any], key: str, what: str) -> tuple[tuple[str, str], ...]:
    value = _field(obj, key, dict, what, required=False) or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise ImageFormatError(f"{what}: {key!r} is not a map of strings")
    return tuple(sorted(value.items()))


def descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    digest = check_digest(_field(obj, "digest", str, what), f"{what}'s")
    size = _field(obj, "size", int, what)
    if size < 0:
        raise ImageFormatError(f"{what}: a negative size")
    platform = _field(obj, "platform", dict, what, required=False)
    return Descriptor(
        media_type=_field(obj, "mediaType", str, what, required=False) or "",
        digest=digest,
        size=size,
        platform=(
            Platform(
                _field(platform, "os", str, f"{what}'s platform"),
                _field(platform, "architecture", str, f"{what}'s platform"),
                _field(platform, "variant", str, f"{what}'s platform", required=False),
            )
            if platform is not None
            else None
        ),
        annotations=_string_map(obj, "annotations", what),
    )


def media_type(doc: dict[str, Any], what: str) -> str:
    """The document's media type: its own field, else told from its shape."""
    kind = _field(doc, "mediaType", str, what, required=False)
    if kind:
        return str(kind)
    if doc.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def index_entries(doc: dict[str, Any], what: str) -> tuple[Descriptor, ...]:
    """The manifests an index lists."""
    entries = _field(doc, "manifests", list, what)
    return tuple(descriptor(e, f"{what}'s manifests[{i}]") for i, e in enumerate(entries))


def manifest(doc: dict[str, Any], what: str) -> Manifest:
    """An image manifest (OCI, or Docker's schema 2)."""
    kind = media_type(doc, what)
    if kind not in MANIFESTS:
        hint = ""
        if "v1+" in kind and "docker" in kind:
            hint = ": Docker's schema 1, which registries stopped serving; push the image again"
        raise ImageFormatError(f"{what} is a {kind!r}, not an image manifest{hint}")
    config = descriptor(_field(doc, "config", dict, what), f"{what}'s config")
    layers = tuple(
        descriptor(layer, f"{what}'s layers[{i}]")
        for i, layer in enumerate(_field(doc, "layers", list, what))
    )
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYERS:
            raise ImageFormatError(
                f"{what}'s layers[{i}] is a {layer.media_type!r}: podvisor unpacks tar layers, "
                "plain, gzip or zstd (not encrypted ones, nor artifacts that are no image)"
            )
    return Manifest(config, layers)


def config(data: bytes, what: str) -> Config:
    """An image config (OCI, or Docker's, which is the same)."""
    doc = document(data, what)
    rootfs = _field(doc, "rootfs", dict, what)
    if rootfs.get("type") != "layers":
        raise ImageFormatError(f"{what}: rootfs.type is not 'layers'")
    diff_ids = _strings(rootfs, "diff_ids", f"{what}'s rootfs") or ()
    for d in diff_ids:
        check_digest(d, f"{what}: the layer digest")
    run = _field(doc, "config", dict, what, required=False) or {}
    where = f"{what}'s config"
    return Config(
        run=ImageConfig(
            entrypoint=_strings(run, "Entrypoint", where),
            cmd=_strings(run, "Cmd", where),
            env=_strings(run, "Env", where) or (),
            working_dir=_field(run, "WorkingDir", str, where, required=False) or None,
            user=_field(run, "User", str, where, required=False) or None,
            stop_signal=_field(run, "StopSignal", str, where, required=False) or None,
            labels=_string_map(run, "Labels", where),
        ),
        diff_ids=diff_ids,
        platform=Platform(
            _field(doc, "os", str, what, required=False) or "linux",
            _field(doc, "architecture", str, what, required=False) or "unknown",
            _field(doc, "variant", str, what, required=False),
        ),
        created=_field(doc, "created", str, what, required=False),
    )


def choose(entries: tuple[Descriptor, ...], platform: Platform, what: str) -> Descriptor:
    """The index entry for *platform*: an exact variant first, then one without a variant."""
    fits = [e for e in entries if e.platform is not None and platform.accepts(e.platform)]
    fits.sort(key=lambda e: e.platform is None or e.platform.variant != platform.variant)
    if fits:
        return fits[0]
    offered = sorted({str(e.platform) for e in entries if e.platform is not None})
    raise ImageFormatError(
        f"{what} has no image for this machine ({platform}); it has "
        f"{', '.join(offered) or 'none with a platform'}. Pull or build one for {platform}, "
        "or set PODVISOR_PLATFORM to take another"
    )
