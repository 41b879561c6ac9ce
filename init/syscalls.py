"""The one seam between podvisor and the Linux kernel's process calls.

Everything that is not a plain `os` call (prctl, unshare, setns, mount) goes
through this module, so that a test can switch a capability off with
``mock.patch("podvisor.init.syscalls.HAVE_...", new=False)`` and exercise the
fallback on a real Linux machine.

Standard library only: the init imports this on its start-up path, so
importing it loads nothing more. ``ctypes`` comes with the first call that
needs it; prctl(2), which is all tini mode calls (and only when it is not
PID 1), needs only ctypes' C core (``_prctl``).
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # mypy takes it as typing.TYPE_CHECKING; importing typing slows every start
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable
    from typing import Final

# --- Constants from <linux/sched.h>, <sys/prctl.h>, <sys/mount.h> ----------

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

PR_SET_PDEATHSIG: Final = 1
PR_GET_PDEATHSIG: Final = 2
PR_SET_DUMPABLE: Final = 4
PR_SET_NAME: Final = 15
PR_SET_CHILD_SUBREAPER: Final = 36
PR_GET_CHILD_SUBREAPER: Final = 37
PR_SET_SECCOMP: Final = 22
PR_CAPBSET_READ: Final = 23
PR_CAPBSET_DROP: Final = 24
PR_SET_NO_NEW_PRIVS: Final = 38
PR_GET_NO_NEW_PRIVS: Final = 39
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
SECCOMP_MODE_FILTER: Final = 2

MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MS_SLAVE: Final = 1 << 19
MS_SHARED: Final = 1 << 20
MNT_DETACH: Final = 2

#: The namespace kinds by their /proc/PID/ns/ names, with their clone flag.
NAMESPACE_FLAGS: Final[dict[str, int]] = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
}


#: Whether each call is available. Tests patch these to reach the fallbacks.
HAVE_PRCTL: bool = True
HAVE_UNSHARE: bool = True
HAVE_SETNS: bool = True
HAVE_MOUNT: bool = True

#: libc through ctypes, loaded by the first call that needs it (None: not yet).
_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    """Import ctypes (as this module's ``ctypes``) and load libc through it."""
    global ctypes  # the functions below use the module, once this has run
    import ctypes

    # The usual name first: ctypes.util.find_library imports subprocess and
    # runs ldconfig, which would double the init's start-up time.
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        pass
    from ctypes import util

    name = util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _libc_or_raise(available: bool, what: str) -> ctypes.CDLL:
    """libc, ctypes imported; OSError(ENOSYS) when the call is switched off or libc is missing."""
    global _libc  # loaded once, by the first call that needs it
    if available and _libc is None:
        _libc = _load_libc()
    if not available or _libc is None:
        raise OSError(errno.ENOSYS, f"{what} is not available on this system")
    return _libc


_prctl_function: Callable[[int, int | bytes, int, int, int], int] | None = None


def _prctl(option: int, arg2: int | bytes) -> int:
    """prctl(2) through ctypes' C core, as ``CDLL(..., use_errno=True).prctl`` calls it.

    Importing the ``ctypes`` package costs a start-up of tini mode about as
    much as the rest of it; a call with plain arguments needs none of its
    classes. Arguments are ints (C ints) or bytes (a char pointer).
    """
    global _prctl_function
    if not HAVE_PRCTL:
        raise OSError(errno.ENOSYS, "prctl is not available on this system")
    import _ctypes

    if _prctl_function is None:

        class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
            _type_ = "i"

        class LibcFunction(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = CInt

        try:
            # The symbols the interpreter itself sees, libc's among them.
            handle = _ctypes.dlopen(None)  # type: ignore[arg-type]
            _prctl_function = LibcFunction(_ctypes.dlsym(handle, "prctl"))
        except OSError as exc:
            raise OSError(errno.ENOSYS, f"prctl is not available on this system ({exc})") from exc
    result = _prctl_function(option, arg2, 0, 0, 0)
    if result == -1:
        err = _ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result


# --- prctl -------------------------------------------------------------------


def prctl(option: int, arg2: int = 0) -> int:
    return _prctl(option, arg2)


def set_child_subreaper() -> None:
    """Adopt orphaned descendants, as PID 1 does (prctl(2) PR_SET_CHILD_SUBREAPER)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_child_subreaper() -> bool:
    libc = _libc_or_raise(HAVE_PRCTL, "prctl")
    value = ctypes.c_int(0)
    _check(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0), "prctl")
    return value.value != 0


def set_parent_death_signal(signum: int) -> None:
    """Receive *signum* when the thread that forked us exits (prctl(2) PR_SET_PDEATHSIG)."""
    prctl(PR_SET_PDEATHSIG, signum)


def set_process_name(name: str) -> None:
    """Set the name `ps -o comm` shows (15 bytes at most).

    Through /proc/self/comm, which needs no prctl (and so nothing of ctypes'
    in an init that is PID 1); with prctl(2) PR_SET_NAME where /proc is missing.
    """
    data = name.encode()[:15]
    try:
        with open("/proc/self/comm", "wb", buffering=0) as comm:
            comm.write(data)
    except OSError:
        _prctl(PR_SET_NAME, data)


def set_command_line(args: list[str]) -> None:
    """Rewrite what /proc/self/cmdline (and so `ps`) shows, within the space the original had.

    The kernel reads the command line from this process's own memory, between
    the addresses /proc/self/stat gives as arg_start and arg_end: overwriting
    them (as setproctitle does) renames a forked child that did not exec.
    Longer text is cut to fit.
    """
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
    if not 0 < start < end:
        raise OSError(errno.EINVAL, "no command line area")
    text = "\0".join(args).encode(errors="replace")[: end - start - 1]
    _libc_or_raise(True, "memmove")
    ctypes.memmove(start, text, len(text))
    ctypes.memset(start + len(text), 0, end - start - len(text))


# --- Capabilities, no_new_privs, seccomp ------------------------------------

_CAPABILITY_VERSION_3: Final = 0x20080522  # <linux/capability.h>: two 32-bit words per set


def last_capability() -> int:
    """The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one of Linux 5.9 to 6.x


def in_bounding_set(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def limit_bounding_set(keep: int) -> None:
    """Drop from the bounding set every capability whose bit is not set in *keep*.

    Nothing this process execs can hold a capability outside that set again,
    a setuid-root program and file capabilities included (capabilities(7)).
    """
    for cap in range(last_capability() + 1):
        if not keep >> cap & 1 and in_bounding_set(cap):
            prctl(PR_CAPBSET_DROP, cap)


def permitted_capabilities() -> int:
    """This process's permitted set (CapPrm of /proc/self/status): no capset can go beyond it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return 0


def set_capabilities(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) on this thread, each set as a bit mask; the ambient set is cleared first."""
    libc = _libc_or_raise(HAVE_PRCTL, "capset")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    for word in range(2):
        shift = 32 * word
        data[3 * word] = effective >> shift & 0xFFFFFFFF
        data[3 * word + 1] = permitted >> shift & 0xFFFFFFFF
        data[3 * word + 2] = inheritable >> shift & 0xFFFFFFFF
    _check(libc.capset(header, data), "capset")


def set_no_new_privs() -> None:
    """No exec can grant privileges again: setuid bits and file capabilities are ignored."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def load_seccomp_filter(program: bytes) -> None:
    """Install a classic BPF seccomp filter (an array of 8-byte struct sock_filter).

    Needs no_new_privs or CAP_SYS_ADMIN (seccomp(2)); the filter applies to
    this thread and everything it execs or forks from now on.
    """
    libc = _libc_or_raise(HAVE_PRCTL, "prctl")
    if not program or len(program) % 8:
        raise OSError(errno.EINVAL, "a seccomp filter is a whole number of 8-byte instructions")

    class _Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    prog = _Program(len(program) // 8, program)
    _check(
        libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "seccomp",
    )


# --- Namespaces --------------------------------------------------------------


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (unshare(2))."""
    libc = _libc_or_raise(HAVE_UNSHARE, "unshare")
    _check(libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that *fd* (an open /proc/PID/ns/KIND) refers to (setns(2))."""
    libc = _libc_or_raise(HAVE_SETNS, "setns")
    _check(libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def enter_namespaces(pid: int, kinds: tuple[str, ...]) -> None:
    """Join the namespaces of *pid*, in the given order (user first, mnt last)."""
    for kind in kinds:
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, NAMESPACE_FLAGS[kind])
        finally:
            os.close(fd)


# --- Mounts ------------------------------------------------------------------


def mount(
    source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None
) -> None:
    libc = _libc_or_raise(HAVE_MOUNT, "mount")
    _check(
        libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        f"mount {source} on {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    libc = _libc_or_raise(HAVE_MOUNT, "umount")
    _check(libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


#: pivot_root(2) has no glibc wrapper: its number, per architecture.
_SYS_PIVOT_ROOT: Final = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203}


def pivot_root(new_root: str, put_old: str) -> None:
    """Make *new_root* this mount namespace's root, the old one at *put_old* (pivot_root(2))."""
    libc = _libc_or_raise(HAVE_MOUNT, "pivot_root")
    machine = os.uname().machine
    number = _SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown on {machine}")
    _check(libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


#: Calls that came after pivot_root: one number on every architecture (Linux 5.6, 5.12).
_SYS_OPEN_TREE: Final = 428
_SYS_MOVE_MOUNT: Final = 429
_SYS_OPENAT2: Final = 437
_SYS_MOUNT_SETATTR: Final = 442
OPEN_TREE_CLONE: Final = 1
AT_EMPTY_PATH: Final = 0x1000
MOVE_MOUNT_F_EMPTY_PATH: Final = 0x4
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_BENEATH: Final = 0x08
AT_FDCWD: Final = -100
AT_RECURSIVE: Final = 0x8000
MOUNT_ATTR_RDONLY: Final = 0x1
MOUNT_ATTR_NODEV: Final = 0x4


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """openat(2) with a *resolve* rule (openat2(2)): a descriptor, or OSError (EXDEV: escaped)."""
    libc = _libc_or_raise(HAVE_MOUNT, "openat2")
    how = (ctypes.c_uint64 * 3)(flags, 0, resolve)
    return _check(
        libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            os.fsencode(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        ),
        f"openat2 {path}",
    )


def mount_setattr(
    path: str, *, set_flags: int, clear_flags: int, recursive: bool, propagation: int = 0
) -> None:
    """Set and clear MOUNT_ATTR_* flags of the mount at *path* (and all beneath, *recursive*);
    *propagation*: MS_SHARED, MS_SLAVE or MS_PRIVATE as well (0: left as it is)."""
    libc = _libc_or_raise(HAVE_MOUNT, "mount_setattr")
    attr = (ctypes.c_uint64 * 4)(set_flags, clear_flags, propagation, 0)
    _check(
        libc.syscall(
            ctypes.c_long(_SYS_MOUNT_SETATTR),
            ctypes.c_int(AT_FDCWD),
            os.fsencode(path),
            ctypes.c_uint(AT_RECURSIVE if recursive else 0),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"mount_setattr {path}",
    )


def clone_tree(fd: int) -> int:
    """A detached copy of the mounts at and beneath *fd* (an O_PATH descriptor), for
    `attach_tree`: open_tree(2) with OPEN_TREE_CLONE, which keeps their propagation
    (a copy of a shared mount is its peer), whatever this namespace later makes private."""
    libc = _libc_or_raise(HAVE_MOUNT, "open_tree")
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH
    return _check(
        libc.syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(fd), b"", ctypes.c_uint(flags)),
        "open_tree",
    )


def attach_tree(fd: int, target: str) -> None:
    """Attach the detached mounts of *fd* (`clone_tree`) at *target* (move_mount(2))."""
    libc = _libc_or_raise(HAVE_MOUNT, "move_mount")
    _check(
        libc.syscall(
            ctypes.c_long(_SYS_MOVE_MOUNT),
            ctypes.c_int(fd),
            b"",
            ctypes.c_int(AT_FDCWD),
            os.fsencode(target),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        ),
        f"move_mount {target}",
    )


def make_mounts_private() -> None:
    """Stop mount events from propagating back to the parent namespace."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def mount_proc() -> None:
    """Mount a fresh /proc that shows the calling process's PID namespace."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


# --- signalfd ----------------------------------------------------------------

SFD_NONBLOCK: Final = os.O_NONBLOCK
SFD_CLOEXEC: Final = os.O_CLOEXEC
_SIGSET_BYTES: Final = 128  # sizeof(sigset_t) in glibc
_SIGINFO_BYTES: Final = 128  # sizeof(struct signalfd_siginfo)

HAVE_SIGNALFD: bool = True


def signalfd(signals: frozenset[int] | set[int]) -> int:
    """A descriptor that reads the blocked *signals* (signalfd(2)), non-blocking.

    The signals must already be blocked in every thread, or they are delivered
    normally instead of queued for the descriptor.
    """
    libc = _libc_or_raise(HAVE_SIGNALFD, "signalfd")
    mask = bytearray(_SIGSET_BYTES)
    for signum in signals:
        bit = signum - 1  # the kernel's sigset_t: bit N-1 for signal N
        mask[bit // 8] |= 1 << (bit % 8)
    buffer = (ctypes.c_char * _SIGSET_BYTES).from_buffer(mask)
    return _check(libc.signalfd(-1, buffer, SFD_NONBLOCK | SFD_CLOEXEC), "signalfd")


def read_signalfd(fd: int) -> list[int]:
    """Every signal number queued on *fd*, oldest first; [] when none."""
    signals: list[int] = []
    while True:
        try:
            data = os.read(fd, _SIGINFO_BYTES * 64)
        except BlockingIOError:
            return signals
        signals.extend(
            int.from_bytes(data[offset : offset + 4], "little")
            for offset in range(0, len(data), _SIGINFO_BYTES)
        )
