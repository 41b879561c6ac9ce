"""Where images come from: an OCI layout, an OCI or Docker archive, a pull's download.

Each source is read as a set of files (a directory, or the members of a tar
archive) and yields the images it holds (`Found`): names, the manifest and
config as verified bytes, and where each layer's blob is. Nothing is
written here; the store verifies the layers as it unpacks them.

* An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`), as
  `skopeo copy ... oci:DIR` and `umoci` write it; an OCI archive is the same
  in a tar (`oci-archive:`, `podman save --format oci-archive`). Names come
  from the `io.containerd.image.name` annotation, or from
  `org.opencontainers.image.ref.name` when it is a reference (a bare tag,
  `latest`, names nothing: `--name` gives one).
* A Docker archive (`docker save`, `podman save`, `docker-archive:`): a tar
  with `manifest.json` listing each image's config, tags and layer files.
* A pull's download: `skopeo copy ... dir:DIR` (`manifest.json` and blobs
  named by their hex digest).

Every path inside a source is made from a digest or checked to stay inside.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from typing import IO, TYPE_CHECKING, Any

from podvisor.supervisor.errors import ImageFormatError, ImageReferenceError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.images import oci
from podvisor.supervisor.images.reference import parse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from podvisor.supervisor.images.oci import Platform


@frozen
class LayerBlob:
    """Where one layer's blob is in its source, and what it must hash to."""

    path: str
    diff_id: str  # sha256 of the layer as tar (the config's rootfs.diff_ids)
    digest: str | None  # sha256 of the blob as stored; None in a Docker archive


@frozen
class Found:
    """One image a source holds, its manifest and config verified."""

    config: bytes
    config_digest: str
    layers: tuple[LayerBlob, ...]
    names: tuple[str, ...] = ()  # full references
    manifest_digest: str | None = None
    manifest: bytes | None = None
    tag_only: str | None = None  # a layout's ref.name that is a bare tag


# --- Files: a directory or an archive ----------------------------------------------


class Files:
    """The files of a source, by relative path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, path: str, limit: int = oci.MAX_DOCUMENT) -> bytes:
        with self.open(path) as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise ImageFormatError(f"{self.where}: {path} is larger than {limit} bytes")
        return data


class Directory(Files):
    def exists(self, path: str) -> bool:
        return os.path.isfile(os.path.join(self.where, path))

    def open(self, path: str) -> IO[bytes]:
        try:
            return open(os.path.join(self.where, path), "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"{self.where}: {path} is missing") from None


class Archive(Files):
    def __init__(self, where: str) -> None:
        super().__init__(where)
        try:
            self._tar = tarfile.open(where, "r:*")  # noqa: SIM115 (closed by close())
        except tarfile.ReadError as error:
            raise ImageFormatError(
                f"{where} is not an image: neither an OCI layout directory nor a tar "
                f"archive (OCI or Docker) ({error})"
            ) from None
        self._members = {
            _clean(m.name): m for m in self._tar.getmembers() if m.isreg() or m.islnk()
        }

    def exists(self, path: str) -> bool:
        return path in self._members

    def open(self, path: str) -> IO[bytes]:
        member = self._members.get(path)
        file = self._tar.extractfile(member) if member is not None else None
        if file is None:
            raise ImageFormatError(f"{self.where}: {path} is missing from the archive")
        return file

    def close(self) -> None:
        self._tar.close()


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def open_files(path: str) -> Files:
    """*path* as a directory or an archive; ImageFormatError when it is neither."""
    if os.path.isdir(path):
        return Directory(path)
    if not os.path.exists(path):
        raise ImageFormatError(f"{path}: no such file or directory")
    return Archive(path)


# --- Reading what a source holds ----------------------------------------------------


def blob(files: Files, path: str, digest: str, size: int | None, what: str) -> bytes:
    """The blob at *path*, checked against its digest (and size when known)."""
    data = files.read(path)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest or (size is not None and size != len(data)):
        raise ImageFormatError(
            f"{files.where}: {what} {digest} does not match its content ({actual}, "
            f"{len(data)} bytes): the image is damaged; copy or save it again"
        )
    return data


def read_images(files: Files, platform: Platform) -> list[Found]:
    """Every image in an OCI layout or archive, or a Docker archive."""
    if files.exists("oci-layout") and files.exists("index.json"):
        return list(_layout(files, platform))
    if files.exists("manifest.json"):
        return list(_docker(files))
    raise ImageFormatError(
        f"{files.where} holds no image: an OCI layout has oci-layout and index.json, "
        "a Docker archive manifest.json"
    )


def _layout_blob(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def _layout(files: Files, platform: Platform) -> Iterator[Found]:
    layout = oci.document(files.read("oci-layout"), f"{files.where}: oci-layout")
    version = layout.get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise ImageFormatError(f"{files.where}: image layout version {version!r}, not 1.x")
    index = oci.document(files.read("index.json"), f"{files.where}: index.json")
    entries = oci.index_entries(index, f"{files.where}: index.json")
    # An index.json may list one image per platform at its top level.
    chosen = [e for e in entries if e.platform is None or platform.accepts(e.platform)] or list(
        entries
    )
    for entry in chosen:
        yield _layout_image(files, entry, platform)


def _layout_image(files: Files, entry: oci.Descriptor, platform: Platform) -> Found:
    where = f"{files.where}: {entry.digest}"
    data = blob(files, _layout_blob(entry.digest), entry.digest, entry.size, "manifest")
    digest = entry.digest
    for _ in range(4):  # an index of indexes, at most this deep
        doc = oci.document(data, where)
        if oci.media_type(doc, where) not in oci.INDEXES:
            break
        child = oci.choose(oci.index_entries(doc, where), platform, where)
        data = blob(files, _layout_blob(child.digest), child.digest, child.size, "manifest")
        digest, where = child.digest, f"{files.where}: {child.digest}"
    else:
        raise ImageFormatError(f"{where}: indexes nested too deep")
    names, tag = _layout_names(entry)
    return _from_manifest(files, data, digest, _layout_blob, names, tag=tag)


def _layout_names(entry: oci.Descriptor) -> tuple[tuple[str, ...], str | None]:
    full = entry.annotation(oci.CONTAINERD_NAME)
    ref = entry.annotation(oci.REF_NAME)
    if full is None and ref is not None and ("/" in ref or ":" in ref):
        full = ref
    if full is not None:
        try:
            return (str(parse(full)),), None
        except ImageReferenceError:
            pass  # a name that is no reference names nothing
    return (), ref


def from_download(files: Files, digest: str, names: tuple[str, ...]) -> Found:
    """The image a pull wrote with `skopeo copy ... dir:`, its manifest *digest*."""
    data = files.read("manifest.json")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ImageFormatError(
            f"the registry sent a manifest {actual} for {digest}: try again, or ask the "
            "registry's owner"
        )
    return _from_manifest(files, data, digest, lambda d: d.removeprefix("sha256:"), names, tag=None)


def _from_manifest(
    files: Files,
    data: bytes,
    digest: str,
    path_of: Any,
    names: tuple[str, ...],
    *,
    tag: str | None,
) -> Found:
    where = f"{files.where}: manifest {digest}"
    manifest = oci.manifest(oci.document(data, where), where)
    desc = manifest.config
    config = blob(files, path_of(desc.digest), desc.digest, desc.size, "config")
    diff_ids = oci.config(config, f"{where}'s config").diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise ImageFormatError(
            f"{where}: {len(manifest.layers)} layers, and its config lists {len(diff_ids)}"
        )
    layers = tuple(
        LayerBlob(path_of(layer.digest), diff_id, layer.digest)
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True)
    )
    return Found(config, desc.digest, layers, names, digest, data, tag)


def _docker(files: Files) -> Iterator[Found]:
    try:
        listed = json.loads(files.read("manifest.json"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ImageFormatError(f"{files.where}: manifest.json is not JSON: {error}") from None
    if not isinstance(listed, list):
        raise ImageFormatError(f"{files.where}: manifest.json is not a list of images")
    for i, item in enumerate(listed):
        where = f"{files.where}: manifest.json[{i}]"
        if not isinstance(item, dict):
            raise ImageFormatError(f"{where} is not a JSON object")
        config_path = _inside(item.get("Config"), f"{where}.Config")
        config = files.read(config_path)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        stem = config_path.rsplit("/", 1)[-1].removesuffix(".json")
        if len(stem) == 64 and stem != config_digest.removeprefix("sha256:"):
            raise ImageFormatError(
                f"{where}: the config {config_path} does not match its name "
                f"({config_digest}): the archive is damaged; save it again"
            )
        diff_ids = oci.config(config, f"{where}'s config").diff_ids
        paths = item.get("Layers")
        if not isinstance(paths, list) or len(paths) != len(diff_ids):
            raise ImageFormatError(f"{where}: Layers does not list the config's {len(diff_ids)}")
        tags = item.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageFormatError(f"{where}: RepoTags is not a list of names")
        yield Found(
            config=config,
            config_digest=config_digest,
            layers=tuple(
                LayerBlob(_inside(p, f"{where}.Layers[{n}]"), d, None)
                for n, (p, d) in enumerate(zip(paths, diff_ids, strict=True))
            ),
            names=tuple(str(parse(t)) for t in tags),
        )


def _inside(path: object, what: str) -> str:
    """*path*, a file named by the archive itself, if it stays inside the archive."""
    if not isinstance(path, str) or not path:
        raise ImageFormatError(f"{what} is not a path")
    if path.startswith("/") or ".." in path.split("/"):
        raise ImageFormatError(f"{what}: {path!r} points outside the archive")
    return _clean(path)
