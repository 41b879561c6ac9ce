"""seccompProfile: the filter a container's process gets, compiled when the manifest is read.

How this works
--------------
A profile is a list of rules in the OCI/Docker JSON form (``defaultAction``,
``syscalls`` with ``names``, ``action``, ``errnoRet``, ``args``, and
``includes``/``excludes`` by capability or architecture). libseccomp compiles
it into a classic BPF program for this machine's architecture (through
pyseccomp, a ctypes binding of Debian's libseccomp2: nothing to build); the
program, base64, rides in the container's securityContext to the init,
which loads it with prctl(2) right before the exec. The compilation happens
where the manifest is read, in a fork of the supervisor that exits after it,
so neither the supervisor nor the init ever imports the library.

* ``RuntimeDefault`` (also what a container gets when neither it nor the pod
  sets a profile, as with kubelet's --seccomp-default): every call allowed
  but those the OCI runtimes' default profile refuses a container that lacks
  the capability they need (mount, unshare, setns, namespace flags of clone,
  ptrace, the clock, modules, reboot, bpf, perf events, ...), and those it
  refuses to all (the kernel keyrings, kexec, io_uring, obsolete calls),
  each with EPERM; clone3 gets ENOSYS, so that libc falls back to clone,
  whose flags a filter can read.
* ``Localhost``: ``localhostProfile`` names a JSON profile file, relative to
  the manifest's directory (Kubernetes: to the kubelet's seccomp directory).
* ``Unconfined``: no filter. A privileged container is unconfined unless it
  asks for a profile.
"""

from __future__ import annotations

import base64
import errno
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from podvisor.supervisor.manifest.capabilities import CAPABILITY_BITS

#: Calls the runtime default refuses unless the container holds one of the capabilities.
NEEDS_CAPABILITY: dict[str, tuple[str, ...]] = {
    "SYS_ADMIN": (
        "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
        "mount_setattr", "move_mount", "open_tree", "quotactl", "quotactl_fd", "setdomainname",
        "sethostname", "setns", "swapoff", "swapon", "umount", "umount2", "unshare",
    ),
    "SYS_BOOT": ("reboot",),
    "SYS_MODULE": ("delete_module", "finit_module", "init_module"),
    "SYS_PACCT": ("acct",),
    "SYS_PTRACE": (
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ),
    "SYS_RAWIO": ("ioperm", "iopl"),
    "SYS_TIME": ("clock_adjtime", "clock_settime", "settimeofday", "stime"),
    "SYS_TTY_CONFIG": ("vhangup",),
    "SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "SYSLOG": ("syslog",),
    "DAC_READ_SEARCH": ("name_to_handle_at", "open_by_handle_at"),
}  # fmt: skip
#: Calls that need either of two capabilities (the newer one split from CAP_SYS_ADMIN).
NEEDS_EITHER: dict[str, tuple[str, str]] = {
    "bpf": ("BPF", "SYS_ADMIN"),
    "perf_event_open": ("PERFMON", "SYS_ADMIN"),
}
#: Refused to every container: not namespaced (keyrings), or no container's business.
REFUSED_TO_ALL = (
    "add_key", "create_module", "get_kernel_syms", "io_uring_enter", "io_uring_register",
    "io_uring_setup", "kexec_file_load", "kexec_load", "keyctl", "nfsservctl", "query_module",
    "request_key", "_sysctl", "sysfs", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
)  # fmt: skip
#: clone(2) flags that make namespaces: refused without CAP_SYS_ADMIN.
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000, 0x00000080)  # fmt: skip

_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")  # fmt: skip
_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
              "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")  # fmt: skip


class ProfileError(ValueError):
    """Raised when a seccomp profile file is not one podvisor can compile; says what and where."""


def runtime_default(capabilities: int) -> dict[str, Any]:
    """The runtime default profile for a container holding *capabilities*, as OCI JSON."""

    def held(name: str) -> bool:
        return bool(capabilities >> CAPABILITY_BITS[name] & 1)

    refused = list(REFUSED_TO_ALL)
    for cap, calls in NEEDS_CAPABILITY.items():
        if not held(cap):
            refused += calls
    refused += [call for call, caps in NEEDS_EITHER.items() if not any(map(held, caps))]
    rules: list[dict[str, Any]] = [
        {"names": sorted(refused), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    ]
    if not held("SYS_ADMIN"):
        rules += [
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
            for flag in NAMESPACE_FLAGS
        ]
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}


def read_profile(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(
            f"cannot read the seccomp profile {str(path)!r}: {exc.strerror}"
        ) from None
    except ValueError as exc:
        raise ProfileError(f"{str(path)!r} is not a JSON seccomp profile: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{str(path)!r} is not a JSON object")
    return data


#: Programs compiled in this process, by profile and capability set: a pod's
#: containers mostly share one profile (RuntimeDefault for the same
#: capabilities), and libseccomp takes milliseconds for each compilation.
_compiled: dict[tuple[str, int], str] = {}


def compile_profile(profile: dict[str, Any], capabilities: int) -> str:
    """The profile as a BPF program for this machine, base64; ProfileError when it is wrong.

    Each distinct profile and capability set is compiled once (`_compiled`).
    """
    key = (json.dumps(profile, sort_keys=True), capabilities)
    program = _compiled.get(key)
    if program is None:
        program = _compiled[key] = _compile(profile, capabilities)
    return program


def _compile(profile: dict[str, Any], capabilities: int) -> str:
    seccomp = _library()
    default = _action(seccomp, profile, "defaultAction", profile.get("defaultErrnoRet"))
    program = seccomp.SyscallFilter(default)
    for arch in profile.get("architectures") or ():
        _add_arch(seccomp, program, arch)
    for i, rule in enumerate(_list(profile, "syscalls")):
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise ProfileError(f"{where} is not an object")
        if not _applies(rule, capabilities, seccomp):
            continue
        action = _action(seccomp, rule, "action", rule.get("errnoRet"), where)
        if action == default:
            continue  # libseccomp refuses a rule that says what the default says
        args = [
            _argument(seccomp, a, f"{where}.args[{j}]")
            for j, a in enumerate(rule.get("args") or ())
        ]
        names = list(rule.get("names") or ()) + ([rule["name"]] if rule.get("name") else [])
        for name in names:
            _add_rule(program, action, str(name), args, where)
    with tempfile.TemporaryFile() as out:
        program.export_bpf(out)
        out.seek(0)
        return base64.b64encode(out.read()).decode()


def _library() -> Any:
    """pyseccomp, imported by the first compilation (only a manifest's reader compiles).

    At its import it looks its two libraries up with ctypes.util.find_library,
    which runs ldconfig (and gcc where ldconfig does not know them): tens of
    milliseconds on a pod's start. Their sonames, which the dynamic loader
    finds by itself, are tried first.
    """
    import sys

    if "pyseccomp" in sys.modules:
        return sys.modules["pyseccomp"]
    from ctypes import util

    sonames = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
    find = util.find_library
    util.find_library = lambda name: sonames.get(name) or find(name)
    try:
        import pyseccomp  # type: ignore[import-untyped]
    finally:
        util.find_library = find
    return pyseccomp


def _list(data: dict[str, Any], key: str, where: str = "") -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ProfileError(f"{where or key} must be a list")
    return value


def _action(
    seccomp: Any, data: dict[str, Any], key: str, errno_ret: object, where: str = ""
) -> int:
    name = data.get(key)
    label = f"{where}.{key}" if where else key
    if name not in _ACTIONS:
        raise ProfileError(f"{label}: {name!r} is not one of {', '.join(_ACTIONS)}")
    if name == "SCMP_ACT_ERRNO":
        code = errno_ret if isinstance(errno_ret, int) else errno.EPERM
        return int(seccomp.ERRNO(code))
    if name == "SCMP_ACT_TRACE":
        return int(seccomp.TRACE(errno_ret if isinstance(errno_ret, int) else 0))
    attribute = str(name).removeprefix("SCMP_ACT_")
    return int(getattr(seccomp, attribute))


def _add_arch(seccomp: Any, program: Any, arch: object) -> None:
    token = str(arch).removeprefix("SCMP_ARCH_")
    value = getattr(seccomp.Arch, token, None)
    if value is None:
        raise ProfileError(f"architectures: {arch!r} is not an architecture libseccomp knows")
    if value != seccomp.system_arch() and not program.exist_arch(value):
        try:
            program.add_arch(value)
        except OSError as exc:
            raise ProfileError(f"architectures: cannot add {arch!r}: {exc}") from None


def _applies(rule: dict[str, Any], capabilities: int, seccomp: Any) -> bool:
    """``includes``/``excludes``: a rule for containers that hold (or lack) capabilities."""

    def held(names: Iterable[object]) -> list[bool]:
        return [
            bool(capabilities >> CAPABILITY_BITS.get(str(n).upper().removeprefix("CAP_"), 63) & 1)
            for n in names
        ]

    native = {seccomp.system_arch()}

    def arches(names: Iterable[object]) -> list[bool]:
        return [
            getattr(seccomp.Arch, str(n).removeprefix("SCMP_ARCH_"), None) in native for n in names
        ]

    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("caps") and not all(held(includes["caps"])):
        return False
    if includes.get("arches") and not any(arches(includes["arches"])):
        return False
    if excludes.get("caps") and any(held(excludes["caps"])):
        return False
    return not (excludes.get("arches") and any(arches(excludes["arches"])))


def _argument(seccomp: Any, arg: object, where: str) -> Any:
    if not isinstance(arg, dict):
        raise ProfileError(f"{where} is not an object")
    op = arg.get("op")
    if op not in _OPERATORS:
        raise ProfileError(f"{where}.op: {op!r} is not one of {', '.join(_OPERATORS)}")
    index, value, value_two = arg.get("index"), arg.get("value", 0), arg.get("valueTwo", 0)
    if not all(isinstance(v, int) for v in (index, value, value_two)):
        raise ProfileError(f"{where}: index, value and valueTwo must be whole numbers")
    return seccomp.Arg(index, getattr(seccomp, str(op).removeprefix("SCMP_CMP_")), value, value_two)


def _add_rule(program: Any, action: int, name: str, args: list[Any], where: str) -> None:
    try:
        program.add_rule(action, name, *args)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            # libseccomp does not know the name: a call of a newer kernel, or of
            # another architecture's, as the runtimes' own profiles list them.
            return
        raise ProfileError(f"{where}: cannot add a rule for {name!r}: {exc}") from None
