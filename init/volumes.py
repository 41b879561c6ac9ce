"""A pod's volumes in a container: bound where its volumeMounts say, in its own mount namespace.

How this works
--------------
The supervisor says, per container, which directory or file (an emptyDir in
the pod's state, a host path, a claim's folder) appears where
(`protocol.Mount`). The container's process does it in its own mount
namespace, once `confine.enter` has made that namespace, in two steps:

1. `open_sources`, while the paths still mean what they mean to the pod's
   init: each source opened as an O_PATH descriptor, and its subPath resolved
   beneath it with openat2(2) (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS). A
   ".." or a symbolic link that a container planted in a shared volume (to
   "/" or to "../../..") cannot lead out of the volume: the kernel refuses
   the walk (EXDEV), whoever planted the link and whenever. Missing
   directories of a subPath are made beneath the volume, as the kubelet
   makes them.
2. `attach`, once the container's root is in place (after pivot_root on an
   image; at once on the host's files): each descriptor is bound at its
   target through /proc/self/fd/N, so what is mounted is the very file that
   was checked, not a path that could have been swapped since. Binds are
   recursive, as the kubelet's runtimes make them; read-only is the bind
   mount's own flag (every mount beneath too with recursiveReadOnly), so a
   write fails with EROFS whoever the writer is.

The mounts exist in the container's mount namespace only: the host never
sees them, and they go with the container's last process however it ends.

mountPropagation needs a mount that was never made private: a container's
namespace (and the pod's) makes every mount private as it starts. So such a
volume's source is a staging mount that the pod's init copied from the host
before it made its own mounts private (a peer of the host's), and the
container copies it in turn (`propagated_copies`: open_tree(2), a detached
copy that keeps its peers) before `confine.enter`, then attaches the copy at
its target (move_mount(2)) and makes it a slave (HostToContainer: it sees
what the host mounts beneath it) or keeps it a peer (Bidirectional: the host
sees what it mounts there too).

Standard library only: the init imports this on the first spawn with volumes.
"""

from __future__ import annotations

import errno
import os
import stat

from podvisor.init import protocol, syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_BENEATH = syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_MAGICLINKS
_PATH = os.O_PATH | os.O_CLOEXEC
#: statvfs(3)'s flags that a bind remount must keep, as mount(2) flags.
_KEPT = ((os.ST_NOSUID, syscalls.MS_NOSUID), (os.ST_NODEV, syscalls.MS_NODEV),
         (os.ST_NOEXEC, syscalls.MS_NOEXEC), (os.ST_NOATIME, 1024),
         (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))  # fmt: skip


class VolumeError(OSError):
    """Raised when a container's volume cannot be mounted; it does not start.

    ``stage`` tells the supervisor which rule: "subpath" (a subPath that
    escapes its volume or cannot be made: CreateContainerConfigError, as the
    kubelet says it) or "volume" (anything else).
    """

    def __init__(self, stage: str, err: int, message: str) -> None:
        super().__init__(err, message)
        self.stage = stage

    def __str__(self) -> str:
        return str(self.strerror)


# =============================================================================
# 1. The sources, resolved and held
# =============================================================================


def open_sources(
    mounts: Sequence[protocol.Mount], copies: Sequence[int | None] | None = None
) -> list[int]:
    """An O_PATH descriptor of each mount's source (its subPath resolved beneath it), or
    its detached copy from *copies* (`propagated_copies`)."""
    fds: list[int] = []
    given = list(copies) if copies is not None else [None] * len(mounts)
    try:
        fds.extend(_open_source(m) if c is None else c for m, c in zip(mounts, given, strict=True))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def make_sub_paths(mounts: Sequence[protocol.Mount]) -> None:
    """Each subPath's missing directories, made beneath its volume while the pod's mounts
    are still writable: the container's own may all be read-only by the time it binds
    (readOnlyRootFilesystem), and a subPath is made before the container starts, as the
    kubelet makes it. The binding resolves each one again."""
    for m in mounts:
        if m.sub_path:
            os.close(_open_source(m))


def propagated_copies(mounts: Sequence[protocol.Mount]) -> list[int | None]:
    """For each mount with mountPropagation, a detached copy of its source (subPath
    resolved beneath it), made before this process's mounts are made private: the copy
    stays a peer of the pod's staging mount, and so of the host's (None for the others)."""
    copies: list[int | None] = []
    try:
        for m in mounts:
            if m.propagation == "None":
                copies.append(None)
                continue
            fd = _open_source(m)
            try:
                copies.append(syscalls.clone_tree(fd))
            finally:
                os.close(fd)
    except BaseException:
        for c in copies:
            if c is not None:
                os.close(c)
        raise
    return copies


def _open_source(m: protocol.Mount) -> int:
    try:
        root = os.open(m.source, _PATH)
    except OSError as exc:
        raise VolumeError(
            "volume", exc.errno or errno.EIO, f"volume {m.name}: {m.source}: {exc.strerror}"
        ) from None
    if not m.sub_path:
        return root
    try:
        return _beneath(root, m.sub_path)
    except OSError as exc:
        why = "it leads out of the volume" if exc.errno == errno.EXDEV else exc.strerror
        raise VolumeError(
            "subpath", exc.errno or errno.EIO, f"volume {m.name}: subPath {m.sub_path!r}: {why}"
        ) from None
    finally:
        os.close(root)


def _beneath(root: int, sub_path: str) -> int:
    """*sub_path* opened beneath *root*; its missing directories made, each beneath *root*."""
    try:
        return syscalls.openat2(root, sub_path, _PATH, _BENEATH)
    except FileNotFoundError:
        pass
    parts = [p for p in sub_path.split("/") if p and p != "."]
    for i, part in enumerate(parts):
        parent = syscalls.openat2(
            root, "/".join(parts[:i]) or ".", _PATH | os.O_DIRECTORY, _BENEATH
        )
        try:
            os.mkdir(part, 0o755, dir_fd=parent)
        except FileExistsError:
            pass  # there already, or a link: the walk below judges where it leads
        finally:
            os.close(parent)
    return syscalls.openat2(root, sub_path, _PATH, _BENEATH)


# =============================================================================
# 2. The binds, in the container's root
# =============================================================================


def attach(
    mounts: Sequence[protocol.Mount], fds: Sequence[int], *, make_targets: bool, nodev: bool = False
) -> None:
    """Bind each source at its target, then set its read-only flag; the descriptors are closed.

    *make_targets*: make a missing target (inside a container's own root);
    else (the host's files) a missing target is refused, never made.
    *nodev*: no device node on the volume opens, there or beneath it (a
    container on its image whose devices are confined, `rootfs.enter`).
    """
    try:
        for m, fd in zip(mounts, fds, strict=True):
            _attach(m, fd, make_targets=make_targets)
            if nodev:
                _set_nodev(m)
    finally:
        for fd in fds:
            os.close(fd)


def _set_nodev(m: protocol.Mount) -> None:
    flag = syscalls.MOUNT_ATTR_NODEV
    try:
        syscalls.mount_setattr(m.target, set_flags=flag, clear_flags=0, recursive=True)
    except OSError:  # before Linux 5.12: the volume's own mount, as a remount sets it
        kept = os.statvfs(m.target).f_flag
        flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_NODEV
        flags |= syscalls.MS_RDONLY if kept & os.ST_RDONLY else 0
        for st_flag, ms_flag in _KEPT:
            if kept & st_flag:
                flags |= ms_flag
        syscalls.mount("none", m.target, None, flags)


def _attach(m: protocol.Mount, fd: int, *, make_targets: bool) -> None:
    directory = stat.S_ISDIR(os.fstat(fd).st_mode)
    if make_targets:
        _make_target(m, directory)
    elif not os.path.lexists(m.target):
        raise VolumeError(
            "volume",
            errno.ENOENT,
            f"volume {m.name}: {m.target} does not exist on this machine, and a container on "
            "the host's files gets its volumes over paths that exist: make it, or run the "
            "container on an image",
        )
    try:
        if m.propagation == "None":
            flags = syscalls.MS_BIND | syscalls.MS_REC
            syscalls.mount(f"/proc/self/fd/{fd}", m.target, None, flags)
        else:
            syscalls.attach_tree(fd, m.target)
            _set_propagation(m)
    except OSError as exc:
        raise VolumeError(
            "volume", exc.errno or errno.EIO, f"volume {m.name}: {m.target}: {exc.strerror}"
        ) from None
    _set_readonly(m)


def _set_propagation(m: protocol.Mount) -> None:
    """HostToContainer: a slave, which sees what is mounted on the host (or by a
    Bidirectional container) beneath the volume; Bidirectional: a peer, whose own mounts
    are seen there too."""
    kind = syscalls.MS_SHARED if m.propagation == "Bidirectional" else syscalls.MS_SLAVE
    syscalls.mount_setattr(m.target, set_flags=0, clear_flags=0, recursive=True, propagation=kind)


def _make_target(m: protocol.Mount, directory: bool) -> None:
    try:
        if directory:
            os.makedirs(m.target, 0o755, exist_ok=True)
            return
        os.makedirs(os.path.dirname(m.target), 0o755, exist_ok=True)
        if not os.path.lexists(m.target):
            os.close(os.open(m.target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        raise VolumeError(
            "volume",
            exc.errno or errno.EIO,
            f"volume {m.name}: cannot make {m.target}: {exc.strerror}",
        ) from None


def _set_readonly(m: protocol.Mount) -> None:
    """readOnly: the bind read-only (and every mount beneath it with recursiveReadOnly).

    A writable volume is made writable too: its source's mount may have been
    made read-only in this namespace (readOnlyRootFilesystem on the host's files).
    """
    recursive = m.readonly and m.recursive_readonly in ("Enabled", "IfPossible")
    flag = syscalls.MOUNT_ATTR_RDONLY
    try:
        if m.readonly:
            syscalls.mount_setattr(m.target, set_flags=flag, clear_flags=0, recursive=recursive)
        elif os.statvfs(m.target).f_flag & os.ST_RDONLY:
            syscalls.mount_setattr(m.target, set_flags=0, clear_flags=flag, recursive=False)
    except OSError as exc:
        failed = exc
    else:
        return
    if not m.readonly:
        return  # the source's own file system is read-only: so is the volume, as anywhere
    if m.recursive_readonly == "Enabled":
        raise VolumeError(
            "volume",
            failed.errno or errno.EIO,
            f"volume {m.name}: recursiveReadOnly Enabled: {failed.strerror} (a kernel of 5.12 "
            "or later makes it); use IfPossible to fall back to a read-only bind",
        )
    kept = os.statvfs(m.target).f_flag
    flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    for st_flag, ms_flag in _KEPT:
        if kept & st_flag:
            flags |= ms_flag
    syscalls.mount("none", m.target, None, flags)


# =============================================================================
# 3. Files a volume holds (configMap, secret, downwardAPI, projected)
# =============================================================================


def settle(fd: int, data: bytes, mode: int, group: int | None) -> None:
    """Write *data* whole into the new file or directory at *fd*, then its group and mode.

    The mode comes after the group: chown(2) clears the set-group-ID bit.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if group is not None:
        os.fchown(fd, -1, group)
    os.fchmod(fd, mode)
