"""The local image store: images by name and digest, their layers unpacked once, shared.

    store = ImageStore()                      # $PODVISOR_IMAGE_STORE, else /var/lib/podvisor/images
    image = store.ensure("busybox:1.36", PullPolicy.IF_NOT_PRESENT)
    image.config.entrypoint, image.config.env  # what the image says about running it
    image.layer_dirs()                        # lowest first: overlayfs lowerdirs, reversed

How this works. Everything is content-addressed and enters through a
temporary directory on the same file system, checked, then renamed into
place, so a failure (a bad digest, a refused layer, a pull cut short, a
kill) leaves nothing half-made; `prune` clears what a killed podvisor left
in tmp/.

    ROOT/                          mode 0700: layers hold set-id programs
      blobs/sha256/HEX             manifests and configs (the config's digest is the image ID)
      layers/sha256/HEX/root/      a layer unpacked, by its uncompressed digest (diff_id)
      layers/sha256/HEX/layer.json its size and entry count
      images.json                  each image: names, digests, manifest, layers
      leases/HEX                   an image in use: a running pod holds a shared flock
      tmp/                         downloads and unpacking in progress
      lock                         flock: shared to add, exclusive to remove

Layer blobs are not kept once unpacked: the unpacked tree is what runs, and
its digest was checked as it was unpacked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from podvisor.supervisor.errors import (
    ImageError,
    ImageFormatError,
    ImageInUseError,
    ImageNotFoundError,
    ImageReferenceError,
    LayerError,
)
from podvisor.supervisor.flocks import flock_held
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.images import oci
from podvisor.supervisor.images.reference import PullPolicy, parse

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from podvisor.supervisor.images.oci import ImageConfig, Platform
    from podvisor.supervisor.images.registry import AuthEntries
    from podvisor.supervisor.images.sources import Files, Found, LayerBlob

DEFAULT_ROOT = "/var/lib/podvisor/images"
ROOT_ENV = "PODVISOR_IMAGE_STORE"


def default_root() -> str:
    """Where the store is: `$PODVISOR_IMAGE_STORE`, else /var/lib/podvisor/images."""
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT


@frozen
class Image:
    """An image in the store, as a container's root is made from it."""

    id: str  # sha256:HEX of its config
    names: tuple[str, ...]  # full references: docker.io/library/busybox:1.36
    digests: tuple[str, ...]  # repository@sha256:... (the registry's index and manifest)
    manifest: str | None  # the manifest's digest; None from a Docker archive
    layers: tuple[str, ...]  # diff_ids, lowest first
    config: ImageConfig
    platform: str
    size: int  # bytes of its layers' files, unpacked
    created: str | None
    root: str  # the store's

    def layer_dirs(self) -> tuple[str, ...]:
        """The unpacked layers, lowest first, each ready to be an overlayfs lowerdir.

        overlayfs' `lowerdir=` lists the top layer first: join them reversed.
        A layer listed twice is given once, at its highest place (the lower
        one adds nothing the higher does not). Each directory stays until
        the image is removed; hold `ImageStore.lease` while a container uses it.
        """
        seen: set[str] = set()
        top_down = []
        for diff_id in reversed(self.layers):
            if diff_id not in seen:
                seen.add(diff_id)
                top_down.append(_layer_dir(self.root, diff_id) + "/root")
        return tuple(reversed(top_down))


class ImageState(StrEnum):
    """What `ensure` would do for a container's image (`ImageStore.state`)."""

    PRESENT = "present"
    WOULD_PULL = "would be pulled"
    MISSING = "missing"


PRESENT, WOULD_PULL, MISSING = ImageState.PRESENT, ImageState.WOULD_PULL, ImageState.MISSING


@frozen
class Availability:
    """`ImageStore.state`'s answer: present, would be pulled, or missing, and why."""

    state: ImageState
    policy: PullPolicy
    image: Image | None
    reason: str


def _layer_dir(root: str, diff_id: str) -> str:
    return f"{root}/layers/sha256/{diff_id.removeprefix('sha256:')}"


class ImageStore:
    """The images on this machine, under *root*. Made on first write; reads need none."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self._tmp = os.path.join(self.root, "tmp")

    # --- Finding images --------------------------------------------------------------

    def images(self) -> list[Image]:
        """Every image, oldest first."""
        records = self._records()
        return [self._image(i, r) for i, r in records.items()]

    def find(self, text: str) -> Image | None:
        """The image *text* names (a reference, an ID or its first 12+ digits), or None."""
        records = self._records()
        found = self._match(records, text)
        return self._image(found, records[found]) if found else None

    def resolve(self, text: str) -> Image:
        """The image *text* names; ImageNotFoundError saying how to get it."""
        image = self.find(text)
        if image is None:
            raise ImageNotFoundError(
                f"no image {text} in the store ({self.root}): podvisor image pull {text}, "
                "or podvisor image load a saved copy"
            )
        return image

    def _match(self, records: dict[str, dict[str, Any]], text: str) -> str | None:
        hexes = text.removeprefix("sha256:")
        if 12 <= len(hexes) <= 64 and all(c in "0123456789abcdef" for c in hexes):
            ids = [i for i in records if i.removeprefix("sha256:").startswith(hexes)]
            if len(ids) == 1:
                return ids[0]
        if text.startswith("sha256:"):
            return None
        ref = parse(text)
        for image_id, record in records.items():
            if ref.digest:
                if ref.pinned in record["digests"]:
                    return image_id
            elif str(ref) in record["names"]:
                return image_id
        return None

    def state(self, text: str, policy: PullPolicy | None = None) -> Availability:
        """Whether a container with `image: text` would find it, have it pulled, or fail."""
        ref = parse(text)
        policy = policy or PullPolicy.default_for(ref)
        try:
            image = self.find(text)
        except (ImageError, OSError) as error:
            image = None
            if policy is PullPolicy.NEVER:
                return Availability(MISSING, policy, None, f"the store cannot be read: {error}")
        if policy is PullPolicy.ALWAYS:
            why = f"imagePullPolicy Always: {ref.domain} is asked for it at each start"
            held = f" (the store holds {image.id[:19]})" if image is not None else ""
            return Availability(WOULD_PULL, policy, image, why + held)
        if image is not None:
            return Availability(PRESENT, policy, image, f"in the store as {image.id[:19]}")
        if policy is PullPolicy.NEVER:
            why = "imagePullPolicy Never and not in the store: load it with podvisor image load"
            return Availability(MISSING, policy, None, why)
        return Availability(WOULD_PULL, policy, None, f"not in the store; pulled from {ref.domain}")

    def ensure(
        self,
        text: str,
        policy: PullPolicy | None = None,
        secrets: Iterable[tuple[str, AuthEntries]] = (),
    ) -> Image:
        """The image for `image: text` under *policy* (Kubernetes' default when None).

        Loads nothing and pulls as imagePullPolicy says: Never takes the store's
        or fails, IfNotPresent pulls what is missing, Always asks the registry
        what the tag is now and fetches it if the store does not hold it.
        *secrets* are the pod's imagePullSecrets: (name, auths) pairs.
        """
        ref = parse(text)
        policy = policy or PullPolicy.default_for(ref)
        if policy is not PullPolicy.ALWAYS:
            image = self.find(text)
            if image is not None:
                return image
            if policy is PullPolicy.NEVER:
                raise ImageNotFoundError(
                    f"no image {text} in the store ({self.root}) and imagePullPolicy is Never: "
                    "load it with podvisor image load, or allow a pull (IfNotPresent)"
                )
        return self.pull(text, secrets=secrets)

    # --- Adding images ---------------------------------------------------------------

    def load(self, path: str, name: str | None = None) -> list[Image]:
        """Every image in the OCI layout or archive, or Docker archive, at *path*.

        *name* names the image (the source must hold exactly one).
        """
        from podvisor.supervisor.images import sources

        extra = (str(parse(name)),) if name else ()
        files = sources.open_files(path)
        try:
            found = sources.read_images(files, oci.this_platform())
            if not found:
                raise ImageFormatError(f"{path} holds no image for {oci.this_platform()}")
            if name and len(found) > 1:
                raise ImageError(
                    f"{path} holds {len(found)} images: --name names one; load without it"
                )
            with self._lock(fcntl.LOCK_SH):
                return [self._add(files, f, extra, ()) for f in found]
        finally:
            files.close()

    def pull(
        self,
        text: str,
        secrets: Iterable[tuple[str, AuthEntries]] = (),
        platform: Platform | None = None,
        insecure: Iterable[str] = (),
    ) -> Image:
        """Pull *text* from its registry for this machine's platform (or *platform*)."""
        from podvisor.supervisor.images import registry, sources

        ref = parse(text)
        platform = platform or oci.this_platform()
        credential = registry.find_credential(ref, secrets)
        with self._lock(fcntl.LOCK_SH), self._temporary("pull-") as work:
            remote = registry.Registry(ref, work, credential, insecure)
            resolved = remote.resolve(platform)
            names = (str(ref),) if ref.tag and not ref.digest else ()
            held = self._with_manifest(resolved.manifest_digest)
            if held is not None:
                return self._name(held, names, resolved.digests)
            download = os.path.join(work, "image")
            remote.download(resolved.manifest_digest, download)
            files = sources.Directory(download)
            found = sources.from_download(files, resolved.manifest_digest, names)
            return self._add(files, found, (), resolved.digests)

    def _with_manifest(self, digest: str) -> str | None:
        records = self._records()
        return next((i for i, r in records.items() if r.get("manifest") == digest), None)

    def _add(
        self, files: Files, found: Found, names: tuple[str, ...], digests: tuple[str, ...]
    ) -> Image:
        config = oci.config(found.config, f"{files.where}: config {found.config_digest}")
        self._put_blob(found.config, found.config_digest)
        if found.manifest is not None and found.manifest_digest is not None:
            self._put_blob(found.manifest, found.manifest_digest)
        sizes = [self._unpack(files, layer) for layer in found.layers]
        all_names = tuple(dict.fromkeys((*found.names, *names)))
        if found.manifest_digest:
            repositories = (parse(n).repository for n in all_names)
            digests = (*digests, *(f"{r}@{found.manifest_digest}" for r in repositories))
        record = {
            "names": [],
            "digests": [],
            "manifest": found.manifest_digest,
            "layers": list(config.diff_ids),
            "platform": str(config.platform),
            "size": sum(dict(zip(config.diff_ids, sizes, strict=True)).values()),
            "created": config.created,
            "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with self._editing() as records:
            records.setdefault(found.config_digest, record)
        return self._name(found.config_digest, all_names, digests)

    def _name(self, image_id: str, names: Iterable[str], digests: Iterable[str]) -> Image:
        """Give *image_id* these names (taken from any other image) and digests."""
        names = list(names)
        with self._editing() as records:
            for other_id, other in records.items():
                if other_id != image_id:
                    other["names"] = [n for n in other["names"] if n not in names]
            record = records[image_id]
            record["names"] = list(dict.fromkeys([*record["names"], *names]))
            record["digests"] = list(dict.fromkeys([*record["digests"], *digests]))
            return self._image(image_id, record)

    def _put_blob(self, data: bytes, digest: str) -> None:
        final = f"{self.root}/blobs/sha256/{digest.removeprefix('sha256:')}"
        if os.path.exists(final):
            return
        temporary = self._fresh("blob-")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.rename(temporary, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def _unpack(self, files: Files, layer: LayerBlob) -> int:
        """Unpack *layer* unless the store has it; its size in bytes."""
        from podvisor.supervisor.images.layers import LayerReader, unpack

        final = _layer_dir(self.root, layer.diff_id)
        if not os.path.exists(final):
            with self._temporary("layer-") as work:
                os.mkdir(f"{work}/root", 0o755)
                with files.open(layer.path) as raw:
                    reader = LayerReader(raw)
                    stats = unpack(reader, f"{work}/root", layer.diff_id)
                    reader.finish()
                for expected, actual, what in (
                    (layer.digest, reader.digest, "blob"),
                    (layer.diff_id, reader.diff_id, "content"),
                ):
                    if expected is not None and expected != actual:
                        raise LayerError(
                            f"layer {layer.diff_id}: its {what} is {actual}, not {expected}: "
                            "the image is damaged; copy, save or pull it again"
                        )
                info = {"size": stats.size, "entries": stats.entries, "digest": reader.digest}
                with open(f"{work}/layer.json", "w", encoding="utf-8") as file:
                    json.dump(info, file)
                try:
                    os.rename(work, final)
                except OSError:  # another load unpacked it meanwhile: keep theirs
                    if not os.path.exists(final):
                        raise
        return self._layer_size(layer.diff_id)

    def _layer_size(self, diff_id: str) -> int:
        try:
            with open(f"{_layer_dir(self.root, diff_id)}/layer.json", encoding="utf-8") as file:
                return int(json.load(file)["size"])
        except (OSError, ValueError, KeyError):
            return 0

    # --- Removing images -------------------------------------------------------------

    def remove(self, text: str) -> list[str]:
        """Remove the name *text*; the image goes too with its last name, or by ID or digest.

        Says what went: `untagged NAME`, and `deleted ID` when the image did.
        ImageInUseError when a running pod holds the image.
        """
        with self._lock(fcntl.LOCK_EX):
            records = self._records()
            image_id = self._match(records, text)
            if image_id is None:
                raise ImageNotFoundError(f"no image {text} in the store ({self.root})")
            names = records[image_id]["names"]
            name = _name_in(text, names)
            if name is not None and len(names) > 1:
                with self._editing() as edited:
                    edited[image_id]["names"].remove(name)
                return [f"untagged {name}"]
            self._check_unused(image_id)
            with self._editing() as edited:
                del edited[image_id]
            self._collect()
            return [*(f"untagged {n}" for n in names), f"deleted {image_id}"]

    def prune(self) -> list[str]:
        """Remove images without a name, the data no image uses, and leftover temporaries."""
        removed = []
        with self._lock(fcntl.LOCK_EX):
            for image_id, record in self._records().items():
                if not record["names"] and not self._in_use(image_id):
                    with self._editing() as edited:
                        del edited[image_id]
                    removed.append(f"deleted {image_id}")
            removed += self._collect()
            for entry in os.listdir(self._tmp):
                from podvisor.supervisor.trees import remove_tree

                remove_tree(os.path.join(self._tmp, entry))
        return removed

    def _collect(self) -> list[str]:
        """Remove the blobs and layers no image uses (under the exclusive lock)."""
        from podvisor.supervisor.trees import remove_tree

        records = self._records()
        used_layers = {d.removeprefix("sha256:") for r in records.values() for d in r["layers"]}
        used_blobs = {i.removeprefix("sha256:") for i in records} | {
            r["manifest"].removeprefix("sha256:") for r in records.values() if r["manifest"]
        }
        removed = []
        for kind, used in (("layers", used_layers), ("blobs", used_blobs)):
            folder = f"{self.root}/{kind}/sha256"
            for name in os.listdir(folder):
                if name not in used:
                    # Out of sight first (rename is atomic), then removed.
                    gone = self._fresh("removing-")
                    os.mkdir(gone, 0o700)
                    os.rename(f"{folder}/{name}", f"{gone}/{name}")
                    remove_tree(gone)
                    removed.append(f"removed {kind[:-1]} sha256:{name}")
        for name in os.listdir(f"{self.root}/leases"):
            if f"sha256:{name}" not in records:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.root}/leases/{name}")
        return removed

    # --- Leases: an image in use --------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, image: Image) -> Iterator[Image]:
        """Hold *image* while a container runs on it: `image rm` and `prune` keep it."""
        self._setup()
        path = f"{self.root}/leases/{image.id.removeprefix('sha256:')}"
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if self.find(image.id) is None:
                raise ImageNotFoundError(f"image {image.id} was removed from the store")
            yield image
        finally:
            os.close(fd)

    def _in_use(self, image_id: str) -> bool:
        path = f"{self.root}/leases/{image_id.removeprefix('sha256:')}"
        return flock_held(path, missing=False)

    def _check_unused(self, image_id: str) -> None:
        if self._in_use(image_id):
            raise ImageInUseError(
                f"image {image_id} is in use by a running pod: stop the pod first"
            )

    # --- Files and locks ---------------------------------------------------------------

    def _setup(self) -> None:
        if os.path.isdir(self._tmp):
            return
        if os.geteuid() != 0:
            raise ImageError(
                f"the image store {self.root} is made and written by root (layers keep their "
                f"files' owners): run as root, or set ${ROOT_ENV} to a store of your own as root"
            )
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for sub in ("blobs/sha256", "layers/sha256", "leases", "tmp"):
            os.makedirs(f"{self.root}/{sub}", mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def _lock(self, how: int) -> Iterator[None]:
        self._setup()
        fd = os.open(f"{self.root}/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    def _fresh(self, prefix: str) -> str:
        """A new name in tmp/ (tempfile's randomness, without its imports)."""
        return os.path.join(self._tmp, f"{prefix}{os.getpid()}-{os.urandom(6).hex()}")

    @contextlib.contextmanager
    def _temporary(self, prefix: str) -> Iterator[str]:
        from podvisor.supervisor.trees import remove_tree

        work = self._fresh(prefix)
        os.mkdir(work, 0o700)
        try:
            yield work
        finally:
            remove_tree(work)

    def _records(self) -> dict[str, dict[str, Any]]:
        try:
            with open(f"{self.root}/images.json", encoding="utf-8") as file:
                data = json.load(file)
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise ImageError(f"{self.root}/images.json is damaged: {error}") from None
        images: dict[str, dict[str, Any]] = data.get("images", {})
        return images

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The records, written back atomically when the block ends without an error."""
        fd = os.open(f"{self.root}/images.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self._records()
            yield records
            temporary = os.path.join(self._tmp, f"images.json.{os.getpid()}")
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump({"version": 1, "images": records}, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.rename(temporary, f"{self.root}/images.json")
        finally:
            os.close(fd)

    def _image(self, image_id: str, record: dict[str, Any]) -> Image:
        path = f"{self.root}/blobs/sha256/{image_id.removeprefix('sha256:')}"
        try:
            with open(path, "rb") as file:
                config = oci.config(file.read(), f"image {image_id}'s config")
        except FileNotFoundError:
            raise ImageError(
                f"image {image_id}'s config is missing from the store: podvisor image rm it "
                "and load or pull it again"
            ) from None
        return Image(
            id=image_id,
            names=tuple(record["names"]),
            digests=tuple(record["digests"]),
            manifest=record.get("manifest"),
            layers=tuple(record["layers"]),
            config=config.run,
            platform=record.get("platform", str(config.platform)),
            size=int(record.get("size", 0)),
            created=record.get("created"),
            root=self.root,
        )


def _name_in(text: str, names: list[str]) -> str | None:
    """The name *text* is among *names* (None: it names the image by ID or digest)."""
    with contextlib.suppress(ImageReferenceError):
        ref = parse(text)
        if not ref.digest and str(ref) in names:
            return str(ref)
    return None
