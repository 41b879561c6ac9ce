"""A container's confinement, applied in its process between fork and exec.

How this works
--------------
The supervisor says what a container may do (`protocol.Confinement`); the
child applies it in the order a container runtime does, namespaces first and
identity last:

1. `enter`: a mount namespace of its own, private, so that nothing it mounts
   reaches the host and nothing of the host's later mounts reaches it; and a
   cgroup namespace rooted at the cgroup the child has just joined, so that it
   sees its own cgroup as / and cannot name one outside it. /sys becomes a
   fresh read-only sysfs, and each cgroup file system is mounted afresh under
   it, read-only, showing the namespace's root. Once the container's
   volumes are bound, `hide_state` covers podvisor's own state (``hidden``:
   its control sockets, the pods' network namespace files, the image store,
   the claims, the logs) by empty read-only directories.
2. `apply_masks`: once /proc shows the right PID namespace (a container init
   mounts its own, after this process's fork), the masked paths are covered
   and the read-only ones bound read-only, as the OCI runtimes' defaults do.
3. `drop_privileges`, right before the exec: the bounding set cut to the
   container's capabilities, then supplementary groups, gid and uid, then the
   capability sets, no_new_privs, and the seccomp filter last. Without
   no_new_privs the filter goes first instead, while CAP_SYS_ADMIN (which
   seccomp(2) then asks for) is still held; it allows every call that follows.
4. `drop_init_privileges`, in a container's own init once its program is
   forked: the init only waits, reaps and forwards signals from then on, so
   it keeps the container's bounding set and at most CAP_KILL (`init_keeps`),
   and sets no_new_privs. Its program waits for that before it execs
   (`InitDrop`), so nothing in the container ever sees a privileged PID 1.

A step that fails raises: the program never runs unconfined.

Standard library only: the init imports this on its first confined spawn.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os

from podvisor.init import protocol, syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

_PSEUDO = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
#: Per-mount options a bind remount must keep (the kernel refuses to clear
#: them on a mount that came from a more privileged user namespace).
_KEPT = {
    "nosuid": syscalls.MS_NOSUID,
    "nodev": syscalls.MS_NODEV,
    "noexec": syscalls.MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
}
#: Left writable under readOnlyRootFilesystem: devices and shared memory, as runtimes leave them.
_WRITABLE_UNDER_READONLY_ROOT = ("/proc", "/sys", "/dev")


class Mount:
    """One line of /proc/self/mountinfo (proc(5)): where, what, with which options."""

    __slots__ = ("flags", "fstype", "point", "super_options")

    def __init__(self, point: str, flags: int, fstype: str, super_options: str) -> None:
        self.point = point
        self.flags = flags
        self.fstype = fstype
        self.super_options = super_options


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mounts() -> list[Mount]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, super_options = [*right.split(), "", "", ""][:3]
            flags = 0
            for option in fields[5].split(","):
                flags |= _KEPT.get(option, 0)
            found.append(Mount(_unescape(fields[4]), flags, fstype, super_options))
    return found


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


# =============================================================================
# 1. Namespaces and the file system's view
# =============================================================================


def enter(c: protocol.Confinement) -> None:
    """A mount and cgroup namespace of the child's own, with /sys and the cgroups read-only."""
    if not c.mounts:
        return
    syscalls.unshare(syscalls.CLONE_NEWNS | (syscalls.CLONE_NEWCGROUP if c.cgroupns else 0))
    syscalls.make_mounts_private()
    before = mounts()
    cgroups = [m for m in before if m.fstype in ("cgroup", "cgroup2")]
    fresh_sys = c.sys_readonly and _fresh_sysfs(before)
    _cgroup_mounts(cgroups, readonly=c.sys_readonly, on_fresh_sys=fresh_sys)
    if c.readonly_root:
        _readonly_everywhere_but(_WRITABLE_UNDER_READONLY_ROOT)


def hide_state(c: protocol.Confinement) -> None:
    """Cover podvisor's state (``hidden``), keeping only ``exposed`` within it.

    After `enter` and after the container's volumes are bound: an emptyDir or
    a claim comes from a folder that is covered here.
    """
    if not c.mounts:
        return
    for path in c.hidden:
        _hide(path, [e for e in c.exposed if _under(e, path)])


def _fresh_sysfs(before: list[Mount]) -> bool:
    """A read-only sysfs over /sys (hiding debugfs, bpffs, securityfs and the rest beneath).

    A sysfs can only be mounted by the owner of the network namespace's user
    namespace; in a pod made by an unprivileged podvisor each mount under
    /sys is made read-only instead. Returns whether the sysfs is fresh.
    """
    try:
        syscalls.mount("sysfs", "/sys", "sysfs", syscalls.MS_RDONLY | _PSEUDO)
    except OSError:
        pass
    else:
        return True
    for m in before:
        if _under(m.point, "/sys") and m.fstype not in ("cgroup", "cgroup2"):
            _bind_readonly(m.point, m.flags, bind_first=False)
    return False


def _cgroup_mounts(cgroups: list[Mount], *, readonly: bool, on_fresh_sys: bool) -> None:
    """Each cgroup hierarchy mounted again where it was, now showing the namespace's root.

    On a fresh sysfs the hierarchies of a v1 or hybrid layout need the tmpfs
    they sit in (/sys/fs/cgroup); it is made, filled, and made read-only. A
    hierarchy that cannot be mounted again is hidden instead, never left
    writable.
    """
    points = {m.point for m in cgroups}
    parents = sorted({os.path.dirname(p) for p in points} - points)
    made = []
    for parent in parents:
        children = [p for p in points if os.path.dirname(p) == parent]
        if on_fresh_sys and _under(parent, "/sys") and not all(map(os.path.isdir, children)):
            syscalls.mount("tmpfs", parent, "tmpfs", _PSEUDO, "mode=755,size=64k")
            for p in children:
                os.mkdir(p, 0o555)
            made.append(parent)
    flags = _PSEUDO | (syscalls.MS_RDONLY if readonly else 0)
    for m in cgroups:
        options = ",".join(o for o in m.super_options.split(",") if o not in ("rw", "ro"))
        try:
            syscalls.mount(m.fstype, m.point, m.fstype, flags, options or None)
        except OSError:
            _cover(m.point)
    for parent in made:
        syscalls.mount("tmpfs", parent, None, syscalls.MS_REMOUNT | syscalls.MS_RDONLY | _PSEUDO)


def _hide(path: str, exposed: list[str]) -> None:
    """Cover *path* with an empty read-only directory in which only *exposed* are bound back."""
    if not exposed or not os.path.isdir(path):
        _cover(path)
        return
    kept = []
    for target in exposed:
        try:  # held by descriptor: the path is gone once the tmpfs covers it
            kept.append((target, os.open(target, os.O_PATH | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
    syscalls.mount("tmpfs", path, "tmpfs", _PSEUDO, "size=4k,mode=755")
    for target, fd in kept:
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        syscalls.mount(f"/proc/self/fd/{fd}", target, None, syscalls.MS_BIND)
        os.close(fd)
    syscalls.mount("tmpfs", path, None, syscalls.MS_REMOUNT | syscalls.MS_RDONLY | _PSEUDO)


def _cover(path: str) -> None:
    """Hide *path*: an empty read-only directory over a directory, /dev/null over a file."""
    try:
        is_dir = os.path.isdir(path)
        if not is_dir and not os.path.exists(path):
            return
    except OSError:
        return
    if is_dir:
        syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY | _PSEUDO, "size=4k,mode=755")
    else:
        syscalls.mount("/dev/null", path, None, syscalls.MS_BIND)


def _bind_readonly(path: str, flags: int, *, bind_first: bool = True) -> None:
    """Make *path* read-only in this mount namespace only (a bind mount's own flag)."""
    if bind_first:
        try:
            syscalls.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
    remount = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    syscalls.mount("none", path, None, remount | flags)


def _readonly_everywhere_but(writable: Iterable[str]) -> None:
    kept = tuple(writable)
    for m in mounts():
        if not any(_under(m.point, top) for top in kept):
            try:
                _bind_readonly(m.point, m.flags, bind_first=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EACCES):
                    raise


# =============================================================================
# 2. Masks, once /proc is the container's
# =============================================================================


def apply_masks(c: protocol.Confinement) -> None:
    if not c.mounts:
        return
    for path in c.masked:
        _cover(path)
    for path in c.readonly:
        _bind_readonly(path, _PSEUDO)


# =============================================================================
# 3. Identity, capabilities, no_new_privs, seccomp: right before the exec
# =============================================================================


def drop_privileges(c: protocol.Confinement, uid: int | None, gid: int | None) -> None:
    program = base64.b64decode(c.seccomp) if c.seccomp else b""
    if program and not c.no_new_privs:
        syscalls.load_seccomp_filter(program)
    privileged = os.geteuid() == 0
    no_new_privs = c.no_new_privs
    try:
        syscalls.limit_bounding_set(c.capabilities)
    except OSError as exc:
        # Only a pod without namespaces (podvisor itself unprivileged) lacks
        # CAP_SETPCAP here: its processes hold no capability to lose, and
        # no_new_privs keeps setuid programs from giving them any.
        if exc.errno != errno.EPERM or privileged:
            raise
        no_new_privs = True
    set_identity(c, uid, gid)
    # What the machine withholds from podvisor itself (a bounding set of its
    # own container) is not the container's either.
    caps = c.capabilities & syscalls.permitted_capabilities() if os.geteuid() == 0 else 0
    if privileged:
        syscalls.set_capabilities(caps, caps, 0)
    if no_new_privs:
        syscalls.set_no_new_privs()
    if program and c.no_new_privs:
        syscalls.load_seccomp_filter(program)


def set_identity(c: protocol.Confinement | None, uid: int | None, gid: int | None) -> None:
    """Supplementary groups, gid and uid, in that order (each needs the one after it undone)."""
    import pwd  # here: only a child that changes its identity needs it

    entry = None
    if uid is not None:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    target_uid = os.getuid() if uid is None else uid
    target_gid = gid if gid is not None else (entry.pw_gid if entry else os.getgid())
    groups = [target_gid]
    if c is None or c.merge_groups:
        name = entry.pw_name if entry else _name_of(target_uid)
        if name is not None:
            groups += os.getgrouplist(name, target_gid)
    if c is not None:
        groups += c.groups
    wanted = sorted(set(groups))
    if os.geteuid() != 0 and (target_uid, target_gid) == (os.getuid(), os.getgid()):
        return  # unprivileged and already who we should be: setgroups would fail
    try:
        if _setgroups_allowed():
            os.setgroups(wanted)
        os.setgid(target_gid)
        os.setuid(target_uid)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot become uid {target_uid}, gid {target_gid}, groups {wanted}: {exc.strerror}",
        ) from None


def _setgroups_allowed() -> bool:
    """False in a user namespace whose gid map was written by an unprivileged writer.

    Such a namespace denies setgroups(2) for good (user_namespaces(7)): its
    processes keep the groups they have, which map to nothing outside.
    """
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _name_of(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


# =============================================================================
# 4. A container's own init, once its program is forked
# =============================================================================

CAP_KILL = 5
CAP_SETUID = 7


def init_keeps(c: protocol.Confinement | None, uid: int | None) -> int:
    """The capabilities a container's init needs once its program runs, as a mask.

    Only CAP_KILL, to forward signals to a program that runs as another user
    than the init (kill(2) compares uids), or that may become one (it holds
    CAP_SETUID: ``su``, gosu); else nothing.
    """
    other_user = uid is not None and uid != os.getuid()
    may_change_user = c is None or bool(c.capabilities >> CAP_SETUID & 1)
    return 1 << CAP_KILL if other_user or may_change_user else 0


def drop_init_privileges(c: protocol.Confinement | None, uid: int | None) -> None:
    """The container's bounding set, `init_keeps` in the other sets, no_new_privs.

    The ambient set is cleared with them (`syscalls.set_capabilities`).
    no_new_privs stops an exec by the init from gaining what it gave up:
    a uid 0 that execs otherwise regains its whole bounding set.
    """
    privileged = os.geteuid() == 0
    if c is not None:
        try:
            syscalls.limit_bounding_set(c.capabilities)
        except OSError as exc:
            # Without CAP_SETPCAP (podvisor itself unprivileged) this init holds
            # nothing to lose, and no_new_privs below still applies.
            if exc.errno != errno.EPERM or privileged:
                raise
    keep = init_keeps(c, uid) & syscalls.permitted_capabilities()
    syscalls.set_capabilities(keep, keep, 0)
    syscalls.set_no_new_privs()


class InitDrop:
    """A container's init giving up its privileges, and its program waiting for it.

    `child_waits` runs in the program's child before its confinement (a
    seccomp filter might refuse the read afterwards); `init_drops` runs in
    the init once the child is forked (`process.spawn`'s *after_fork*). The
    pipe is close-on-exec: the program never holds it.
    """

    def __init__(self, c: protocol.Confinement | None, uid: int | None) -> None:
        self.confinement = c
        self.uid = uid
        self.read_end, self.write_end = os.pipe()

    def child_waits(self) -> None:
        os.close(self.write_end)
        os.read(self.read_end, 1)  # end of file: the init has dropped, or has failed to
        os.close(self.read_end)

    def init_drops(self) -> None:
        try:
            drop_init_privileges(self.confinement, self.uid)
        except OSError as exc:
            # The program runs already: the init goes on as it is, and says so.
            said = f"podvisor-init: the container's init keeps its privileges: {exc}\n"
            with contextlib.suppress(OSError):
                os.write(2, said.encode(errors="replace"))
        finally:
            os.close(self.write_end)
            os.close(self.read_end)
