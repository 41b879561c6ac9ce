"""A container's root from its image: an overlay, entered with pivot_root.

How this works
--------------
The supervisor makes, per container instance, an empty ``upper`` and
``work`` directory beside a ``root`` mount point (`protocol.Rootfs`). The
container's process, after `confine.enter` gave it a private mount namespace
with a read-only /sys, calls `enter`:

1. an overlay of the image's layers (``lower``, top first) and the fresh
   upper is mounted on ``root``;
2. pivot_root makes it the namespace's root, the old root parked on a
   directory inside it, so that what the container needs from the old root
   can still be reached by path: /sys (bound, read-only as `confine` made
   it), the pod's shared memory, the pod's /etc files and the termination
   message file (``binds``), and the volumes' sources, opened before the
   pivot (`podvisor.init.volumes`);
3. /dev is made: a small tmpfs with the standard devices, a devpts of its
   own for /dev/ptmx, /dev/shm; for a privileged container, as containerd
   and CRI-O give one, also a node of each device of the old root's /dev
   (`_host_devices`), but for those the container has its own of;
4. the volumes are bound at their paths, which resolve inside the new root;
5. the old root is unmounted (lazily: nothing of it is reachable from here
   on, not by path and not through /proc, whose PID 1 is the container's
   own init) and its directory removed;
6. the working directory is entered, made if missing, and with
   readOnlyRootFilesystem the root is then remounted read-only: that mount
   alone, so the volumes, /dev, /dev/shm, /proc and /sys keep their own flags.

Every mount is made after the pivot, so a symbolic link in the image
(``/dev -> /tmp``, ``/etc/hosts -> /host/etc/shadow``) resolves inside the
container's root, never on the host. The mounts live in the container's mount
namespace only: they go with its last process, also when the init or the
supervisor is killed, and the host never sees them.

A probe, hook or exec enters the container instead, in two steps, because
a process cannot move itself into a PID namespace, only its children
(setns(2)): `join_pid` in the process the pod's init forks (the cgroup and PID
namespaces of the container's PID 1), then, in its child, which is born in the
container's PID namespace, `join_mounts` (the mount namespace: setns(2) also
moves the root and working directory to that namespace's root). So the
command sees exactly the container's files, /proc and masks, and itself in
that /proc; the parent stays on the host's root and relays signals to it.

Standard library only: the pod's init imports this on its first container
with an image.
"""

from __future__ import annotations

import errno
import os

from podvisor.init import protocol, syscalls, volumes

_PSEUDO = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
_MS_STRICTATIME = 1 << 24
#: The standard devices (name, major, minor), as OCI runtimes make them, mode 0666.
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_SHM = "/dev/shm"  # noqa: S108 (inside the container's own /dev)
#: What of the host's /dev a privileged container does not get: its own devpts,
#: shared memory and message queues, its own console (its terminal, if it has
#: one), and the standard devices and links it has already.
_OWN = frozenset(
    ("pts", "shm", "mqueue", "console", *(d[0] for d in DEVICES), *(k[0] for k in _LINKS))
)
#: Where the old root waits between the pivot and its unmounting.
_OLD_ROOT = "/.podvisor-old-root"


def mount_point(r: protocol.Rootfs) -> str:
    """The directory the overlay is mounted on: ``root`` beside the upper directory."""
    return os.path.join(os.path.dirname(r.upper), "root")


# =============================================================================
# A container's program: the overlay, the pivot, the mounts
# =============================================================================


def enter(
    r: protocol.Rootfs,
    mounts: tuple[protocol.Mount, ...] = (),
    copies: list[int | None] | None = None,
    *,
    console: bool = False,
) -> None:
    """Mount the container's root and pivot into it, its volumes (*mounts*) in place;
    *copies*: the detached copies of those with mountPropagation. With
    *console*, the terminal on fd 0 is also the container's /dev/console."""
    _preload()
    # The terminal is a pty of the host's /dev/pts, which the container's own
    # does not show: bound at /dev/console, as runtimes give a container's
    # terminal, it has a name there (ttyname finds the device under /dev).
    terminal = os.ttyname(0) if console else None
    # Opened while the pod's paths still mean what they say; bound once in the new root.
    held = volumes.open_sources(mounts, copies)
    new_root = mount_point(r)
    lower = ":".join(r.lower)
    options = f"lowerdir={lower},upperdir={r.upper},workdir={r.work}"
    # No device node the container makes opens, as a device cgroup would
    # refuse it (runc's allows only the standard devices): every place it can
    # write is nodev, its root, its volumes and its /dev alike (`_make_dev`).
    # A privileged container is given the host's devices and may make more.
    nodev = 0 if r.host_devices else syscalls.MS_NODEV
    syscalls.mount("overlay", new_root, "overlay", nodev, options)
    os.chdir(new_root)
    os.mkdir("." + _OLD_ROOT, 0o700)
    syscalls.pivot_root(".", "." + _OLD_ROOT)
    os.chdir("/")
    old = _OLD_ROOT
    _make_dev(old + r.shm if r.shm else "", host_devices=r.host_devices)
    if terminal is not None:
        _bind(old + terminal, "/dev/console", directory=False)
    _bind(old + "/sys", "/sys", directory=True, recursive=True)
    for source, target in r.binds:
        _bind(old + os.path.realpath(source), target, directory=False)
    # A /proc of the pod's PID namespace: the container's own init, if it
    # has one, mounts its own over it (`tini._inner_init`) before anything of
    # the container runs, so only that init's relay to it sees this one.
    _mkdirs("/proc")
    syscalls.mount("proc", "/proc", "proc", _PSEUDO)
    volumes.attach(mounts, held, make_targets=True, nodev=not r.host_devices)
    syscalls.umount(old, syscalls.MNT_DETACH)
    os.rmdir(old)
    _change_dir(r.cwd)  # made, if the image lacks it, while the root is writable
    if r.readonly:
        remount = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | nodev
        syscalls.mount("none", "/", None, remount)


def _preload() -> None:
    """Import, before the pivot, what this process imports after it: the host's
    Python library is out of reach from the container's root."""
    import fcntl  # noqa: F401 (process._close_on_exec_descriptors)
    import stat  # noqa: F401 (_device, _host_devices)

    from podvisor.init import entry, tini  # noqa: F401 (podinit._container_init)


def _make_dev(shm: str, *, host_devices: bool) -> None:
    _mkdirs("/dev")
    syscalls.mount(
        "tmpfs", "/dev", "tmpfs", syscalls.MS_NOSUID | _MS_STRICTATIME, "mode=755,size=65536k"
    )
    old_mask = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            _device(f"/dev/{name}", major, minor)
        for name, target in _LINKS:
            os.symlink(target, f"/dev/{name}")
        os.mkdir("/dev/pts", 0o755)
        os.mkdir(_SHM, 0o1777)
        if host_devices:
            _host_devices(_OLD_ROOT + "/dev", "/dev")
    finally:
        os.umask(old_mask)
    if not host_devices:
        # Each standard device is a mount of its own, which keeps the devices
        # working once /dev itself is nodev: a node made there later (the
        # container keeps CAP_MKNOD, as under runc) never opens.
        for name, _, _ in DEVICES:
            path = f"/dev/{name}"
            if not os.path.ismount(path):  # bound from the host already (`_device`)
                syscalls.mount(path, path, None, syscalls.MS_BIND)
        remount = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_NOSUID | syscalls.MS_NODEV
        syscalls.mount("none", "/dev", None, remount | _MS_STRICTATIME)
    syscalls.mount(
        "devpts",
        "/dev/pts",
        "devpts",
        syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    if shm:
        syscalls.mount(shm, _SHM, None, syscalls.MS_BIND)
    else:
        syscalls.mount("shm", _SHM, "tmpfs", _PSEUDO, "mode=1777,size=65536k")


def _device(path: str, major: int, minor: int) -> None:
    """A character device, made; in a user namespace, which may not, the host's bound."""
    import stat

    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        _bind_host_node(path)


def _host_devices(host: str, inside: str) -> None:
    """A node for each character and block device under *host* (a directory of the old
    root's /dev) at the same path under *inside*, with the host's mode and owner.

    Links are not followed and are not copied (/dev/disk/by-id and the like
    name devices given here by their own names); a device that goes while
    the walk runs is left out."""
    import stat

    try:
        entries = list(os.scandir(host))
    except FileNotFoundError:
        return
    for entry in entries:
        if inside == "/dev" and entry.name in _OWN:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        path = f"{inside}/{entry.name}"
        if stat.S_ISDIR(st.st_mode):
            _host_devices(entry.path, path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            _mkdirs(inside)
            try:
                os.mknod(path, st.st_mode, st.st_rdev)
            except PermissionError:
                _bind_host_node(path)
            else:
                os.chown(path, st.st_uid, st.st_gid)


def _bind_host_node(path: str) -> None:
    """The old root's node at *path* bound over an empty file: where mknod(2) is
    not allowed (a user namespace), the device is still the host's."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
    syscalls.mount(_OLD_ROOT + path, path, None, syscalls.MS_BIND)


def _bind(source: str, target: str, *, directory: bool, recursive: bool = False) -> None:
    if directory:
        _mkdirs(target)
    else:
        _mkdirs(os.path.dirname(target))
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    flags = syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0)
    syscalls.mount(source, target, None, flags)


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except FileExistsError:  # a file or a dangling link where a directory should be
        raise OSError(errno.ENOTDIR, f"the image has no directory at {path}") from None


def _change_dir(cwd: str) -> None:
    """The working directory, made if the image lacks it (as runc does)."""
    path = cwd or "/"
    if not os.path.isdir(path):
        _mkdirs(path)
    os.chdir(path)


# =============================================================================
# Probes, hooks, exec: into a running container's root
# =============================================================================


def join_pid(r: protocol.Rootfs) -> None:
    """Enter the cgroup namespace of process ``join``, and its PID namespace for the children."""
    kinds = ["cgroup"]
    if os.stat(f"/proc/{r.join}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino:
        kinds.append("pid")
    syscalls.enter_namespaces(r.join, tuple(kinds))


def join_mounts(r: protocol.Rootfs) -> None:
    """Enter the mount namespace of process ``join``: its root, its /proc, its masks."""
    syscalls.enter_namespaces(r.join, ("mnt",))
    _change_dir(r.cwd)
