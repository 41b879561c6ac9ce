"""The shapes of names Kubernetes accepts, checked as its API server checks them.

Each check returns None when the name is fine, or the message to show.
Sources: k8s.io/apimachinery/pkg/util/validation (IsDNS1123Label,
IsQualifiedName, IsValidLabelValue, IsValidPortName) and capabilities(7).
"""

from __future__ import annotations

import re

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PORT_NAME = re.compile(r"[-a-z0-9]+")
_HEADER_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_C_IDENTIFIER = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

#: Linux capabilities (capabilities(7)), as Kubernetes writes them: without CAP_.
CAPABILITIES = frozenset((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
))  # fmt: skip


def dns1123_label(name: str) -> str | None:
    """Container names, the pod's name, namespace and hostname."""
    if len(name) <= 63 and _DNS1123_LABEL.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid name: use at most 63 lower-case letters, digits and '-', "
        "starting and ending with a letter or digit (e.g. 'my-app')"
    )


def dns1123_subdomain(name: str) -> str | None:
    """Host names in hostAliases and search domains in dnsConfig."""
    if len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid host name: use at most 253 lower-case letters, digits, "
        "'-' and '.', each part starting and ending with a letter or digit (e.g. 'db.local')"
    )


def qualified_name(key: str) -> str | None:
    """Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns1123_subdomain(prefix)):
        return f"{key!r}: the prefix before '/' must be a DNS subdomain (e.g. 'example.com')"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"{key!r} is not a valid key: the name (after any 'prefix/') must be at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value(value: str) -> str | None:
    if not value or (len(value) <= 63 and _QUALIFIED_NAME.fullmatch(value)):
        return None
    return (
        f"{value!r} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit"
    )


def port_name(name: str) -> str | None:
    """IANA service names: 1-15 of [-a-z0-9], at least one letter, no '--', no '-' at the ends."""
    if (
        len(name) <= 15
        and _PORT_NAME.fullmatch(name)
        and re.search("[a-z]", name)
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    ):
        return None
    return (
        f"{name!r} is not a valid port name: at most 15 lower-case letters, digits and '-', "
        "with at least one letter (e.g. 'http', 'metrics')"
    )


def header_name(name: str) -> str | None:
    if _HEADER_NAME.fullmatch(name):
        return None
    return f"{name!r} is not a valid HTTP header name"


def env_name(name: str) -> str | None:
    """Printable ASCII but '=' (Kubernetes' RelaxedEnvironmentVariableValidation, GA in 1.34)."""
    if name and all(" " <= c <= "~" for c in name) and "=" not in name:
        return None
    return f"{name!r} is not a valid variable name: use printable ASCII characters except '='"


def portable_env_name(name: str) -> bool:
    """True when clusters before Kubernetes 1.34 accept the name too."""
    return bool(_C_IDENTIFIER.fullmatch(name))


def capability(name: str) -> tuple[str | None, str | None]:
    """(canonical name, problem): `net_admin`, `CAP_NET_ADMIN` -> `NET_ADMIN`; `ALL` is kept."""
    canonical = name.upper().removeprefix("CAP_")
    if canonical == "ALL" or canonical in CAPABILITIES:
        return canonical, None
    return None, f"{name!r} is not a Linux capability (see capabilities(7))"
