"""Unpack one layer (a tar stream) into a directory that overlayfs stacks as a lower layer.

How this works. A layer is a tar of the changes to the layers below it. It
is unpacked on its own, into a fresh directory, so that the layer
directories of an image, stacked as overlayfs lowerdirs, make its root:

* a whiteout `.wh.NAME` (NAME was deleted) becomes what overlayfs reads as
  one: a character device 0/0 named NAME;
* an opaque directory (its `.wh..wh..opq` entry: the directory's contents in
  the layers below are gone) gets the `trusted.overlay.opaque` attribute
  `y`; and a directory made where the same layer whited out NAME is opaque
  too, since NAME's old contents are gone;
* as the OCI spec says, a whiteout never hides what its own layer holds.

Nothing is ever written outside the directory. Every entry's path is
checked as text first: an absolute path or a `..` is refused. Then against
a map of what this unpacking has made (every name in the directory was made
here, so the map is the truth): a path that goes through a symbolic link is
refused, and a hard link must point at a file this layer already holds. The
final name is made with calls that never follow a link (O_NOFOLLOW|O_EXCL,
mkdir, symlink, mknod, lchown). Symbolic links themselves are kept as they
are, whatever they point at: inside the container they resolve within its
root, where / and a `..` at the top stay in the root. The caller unpacks into
a temporary directory and removes it on any error, so a refused layer
leaves nothing behind.

Owners, modes (set-id bits too), times and extended attributes are kept,
except attributes under trusted.overlay. and user.overlay., which would let a
layer forge whiteouts or redirects. Unpacking needs root: it makes devices,
sets owners and trusted attributes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from typing import IO, TYPE_CHECKING, BinaryIO

from podvisor.supervisor.errors import LayerError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.trees import remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_FORGED_XATTRS = ("trusted.overlay.", "user.overlay.")
_CHUNK = 1 << 20

_DIR, _FILE, _LINK, _OTHER, _WHITEOUT = "dir", "file", "symlink", "other", "whiteout"


# --- The blob: decompressed and hashed on the way ------------------------------------


class LayerReader:
    """A layer blob read as a tar stream: gzip, zstd or plain, told from its first bytes.

    Hashes the blob as stored (`digest`) and as tar (`diff_id`); `finish`
    reads to the end, so both cover the whole blob.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._blob = hashlib.sha256()
        self._tar = hashlib.sha256()
        self.size = 0  # of the blob, as stored
        self._chunks = self._decompressed()
        self._current = memoryview(b"")
        self._done = False

    @property
    def digest(self) -> str:
        return f"sha256:{self._blob.hexdigest()}"

    @property
    def diff_id(self) -> str:
        return f"sha256:{self._tar.hexdigest()}"

    def _raw_read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self._blob.update(data)
        self.size += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if not self._current:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._tar.update(chunk)
                self._current = memoryview(chunk)
            part = self._current if size < 0 else self._current[:size]
            self._current = self._current[len(part) :]
            parts.append(part)
            if size > 0:
                size -= len(part)
        return b"".join(parts)

    def finish(self) -> None:
        """Read what the tar reader left (its end blocks, padding), for the digests."""
        while self.read(_CHUNK):
            pass

    def _decompressed(self) -> Iterator[bytes]:
        first = self._raw_read(_CHUNK)
        if first.startswith(b"\x1f\x8b"):
            yield from self._gunzip(first)
        elif first.startswith(b"\x28\xb5\x2f\xfd"):
            yield from self._unzstd(first)
        elif first[:3] == b"BZh" or first.startswith(b"\xfd7zXZ\x00"):
            raise LayerError(
                "a layer compressed with bzip2 or xz: podvisor reads plain, gzip and zstd "
                "layers; save or push the image again with a current tool"
            )
        else:
            data = first
            while data:
                yield data
                data = self._raw_read(_CHUNK)

    def _gunzip(self, data: bytes) -> Iterator[bytes]:
        # A gzip file may be several members one after the other (pigz, or
        # files put together with cat): each gets a new decompressor.
        inflate = zlib.decompressobj(wbits=31)
        while True:
            if not data:
                data = self._raw_read(_CHUNK)
                if not data:
                    break
            if inflate.eof:
                if not data.strip(b"\0"):
                    data = b""  # zeros after the last member, as gzip(1) allows
                    continue
                inflate = zlib.decompressobj(wbits=31)
            try:
                out = inflate.decompress(data, _CHUNK)
            except zlib.error as error:
                raise LayerError(f"the layer's gzip data is damaged: {error}") from None
            data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            if out:
                yield out
        if not inflate.eof:
            raise LayerError("the layer's gzip data ends too soon: the blob is cut short")

    def _unzstd(self, first: bytes) -> Iterator[bytes]:
        try:
            import zstandard
        except ImportError:
            raise LayerError(
                "a zstd layer, and the Python package zstandard is missing: "
                "pip install zstandard (make setup installs it)"
            ) from None
        source = _Prepended(first, self._raw_read)
        decompressor = zstandard.ZstdDecompressor()
        reader = decompressor.stream_reader(source, read_across_frames=True)  # type: ignore[arg-type]
        try:
            while out := reader.read(_CHUNK):
                yield out
        except zstandard.ZstdError as error:
            raise LayerError(f"the layer's zstd data is damaged: {error}") from None


class _Prepended:
    """A reader that gives *first*, then what *read* gives."""

    def __init__(self, first: bytes, read: Callable[[int], bytes]) -> None:
        self._first: bytes | None = first
        self._read = read

    def read(self, size: int = -1) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._read(size)


# --- The tar: entries checked, then made ------------------------------------------------


@frozen
class LayerStats:
    """What one unpacked layer holds."""

    entries: int
    size: int  # bytes of regular files


def unpack(stream: BinaryIO | LayerReader, root: str, layer: str) -> LayerStats:
    """Unpack the tar *stream* into the empty directory *root*; LayerError names the entry.

    *layer* names the layer in messages. On an error the caller removes *root*.
    """
    unpacker = _Unpacker(root, layer)
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=stream,
            mode="r|",
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            for member in tar:
                unpacker.entry(tar, member)
    except tarfile.TarError as error:
        raise LayerError(f"layer {layer} is not a valid tar stream: {error}") from None
    except OSError as error:
        if isinstance(error, LayerError):
            raise
        raise LayerError(f"layer {layer}: cannot unpack: {error}") from None
    unpacker.finish()
    return LayerStats(unpacker.entries, unpacker.size)


class _Unpacker:
    def __init__(self, root: str, layer: str) -> None:
        self.root = root
        self.layer = layer
        self.kinds: dict[str, str] = {"": _DIR}  # what this unpacking made, by relative path
        self.dir_times: dict[str, int] = {}
        self.entries = 0
        self.size = 0

    def refuse(self, name: str, why: str) -> LayerError:
        return LayerError(
            f"layer {self.layer}: entry {name!r} {why}; nothing of the layer was kept. "
            "The image is damaged or made to escape its root: rebuild it with a standard tool"
        )

    def path(self, name: str, what: str = "") -> str:
        """*name* as a clean path relative to the root; refused if it could leave it."""
        if name.startswith("/"):
            raise self.refuse(name, f"has an absolute {what}path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(name, f"climbs out of the layer with '..' in its {what}path")
        return "/".join(parts)

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def parents(self, name: str, rel: str) -> None:
        """Make sure every directory above *rel* is one this layer made (never a link)."""
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            above = "/".join(parts[:i])
            kind = self.kinds.get(above)
            if kind == _DIR:
                continue
            if kind == _LINK:
                raise self.refuse(name, f"goes through the symbolic link {above!r}")
            if kind is None or kind == _WHITEOUT:
                self.remove(above)
                os.mkdir(self.full(above), 0o755)
                if kind == _WHITEOUT:
                    self.opaque(above)
                self.kinds[above] = _DIR
            else:
                raise self.refuse(name, f"is beneath {above!r}, which is not a directory")

    def remove(self, rel: str) -> None:
        """Remove what this layer holds at *rel* (to replace it)."""
        kind = self.kinds.pop(rel, None)
        if kind is None:
            return
        if kind == _DIR:
            prefix = rel + "/"
            for below in [k for k in self.kinds if k.startswith(prefix)]:
                del self.kinds[below]
            remove_tree(self.full(rel))
        else:
            os.unlink(self.full(rel))

    def opaque(self, rel: str) -> None:
        os.setxattr(self.full(rel), OPAQUE_XATTR, b"y", follow_symlinks=False)

    # --- One entry ---------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.entries += 1
        rel = self.path(member.name)
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT):
            self.whiteout(member.name, rel, base)
            return
        if not rel:
            if not member.isdir():
                raise self.refuse(member.name, "is the layer's root, and not a directory")
            self.metadata(rel, member)
            return
        self.parents(member.name, rel)
        existing = self.kinds.get(rel)
        if member.isdir() and existing == _DIR:
            self.metadata(rel, member)
            return
        if member.islnk():
            self.hard_link(member, rel)
            return
        self.remove(rel)
        self.make(tar, member, rel)
        if member.isdir() and existing == _WHITEOUT:
            self.opaque(rel)
        self.metadata(rel, member)

    def whiteout(self, name: str, rel: str, base: str) -> None:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        self.parents(name, rel)
        if base == OPAQUE:
            self.opaque(parent)
            return
        if base.startswith(OPAQUE[:8]):
            return  # aufs' own bookkeeping (.wh..wh.plnk, ...), not a deletion
        target = f"{parent}/{base[len(WHITEOUT) :]}" if parent else base[len(WHITEOUT) :]
        if target in self.kinds:
            return  # what this layer holds stays: a whiteout hides the layers below only
        os.mknod(self.full(target), stat.S_IFCHR, os.makedev(0, 0))
        self.kinds[target] = _WHITEOUT

    def make(self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        path = self.full(rel)
        if member.isreg():
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                self.size += _copy(tar, member, fd)
            finally:
                os.close(fd)
            kind = _FILE
        elif member.isdir():
            os.mkdir(path, 0o700)
            kind = _DIR
        elif member.issym():
            os.symlink(member.linkname, path)
            kind = _LINK
        elif member.ischr() or member.isblk():
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(path, (stat.S_IFCHR if member.ischr() else stat.S_IFBLK), device)
            kind = _OTHER
        elif member.isfifo():
            os.mkfifo(path, 0o600)
            kind = _OTHER
        else:
            kind_name = member.type.decode(errors="replace")
            raise self.refuse(member.name, f"is of a tar type podvisor does not know ({kind_name})")
        self.kinds[rel] = kind

    def hard_link(self, member: tarfile.TarInfo, rel: str) -> None:
        target = self.path(member.linkname, "link ")
        kind = self.kinds.get(target)
        if kind is None or kind in (_DIR, _WHITEOUT):
            raise self.refuse(
                member.name,
                f"is a hard link to {member.linkname!r}, which is not a file this layer holds",
            )
        self.parents(member.linkname, target)
        if target == rel:
            return
        self.remove(rel)
        os.link(self.full(target), self.full(rel), follow_symlinks=False)
        self.kinds[rel] = kind

    def metadata(self, rel: str, member: tarfile.TarInfo) -> None:
        path = self.full(rel)
        link = member.issym()
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        if not link:  # after chown, which clears set-id bits
            os.chmod(path, stat.S_IMODE(member.mode))
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                self.xattr(member.name, path, key[len("SCHILY.xattr.") :], value)
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times[rel] = mtime  # set last: what is made inside changes it
        else:
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def xattr(self, name: str, path: str, key: str, value: str) -> None:
        if key.startswith(_FORGED_XATTRS):
            return
        try:
            os.setxattr(path, key, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as error:
            # An SELinux label or the like that this file system or kernel
            # does not keep: the image runs the same without it.
            if key.startswith("security.") and key != "security.capability":
                return
            if error.errno in (errno.EOPNOTSUPP, errno.EPERM) and key.startswith("user."):
                return
            why = f"has the attribute {key}, which cannot be set: {error.strerror}"
            raise self.refuse(name, why) from None

    def finish(self) -> None:
        for rel in sorted(self.dir_times, key=lambda r: -r.count("/") - bool(r)):
            mtime = self.dir_times[rel]
            os.utime(self.full(rel), ns=(mtime, mtime), follow_symlinks=False)


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> int:
    source = tar.extractfile(member)
    assert source is not None
    written = 0
    while data := source.read(_CHUNK):
        view = memoryview(data)
        while view:
            count = os.write(fd, view)
            view = view[count:]
        written += len(data)
    return written
