"""A container's environment, resolved as the kubelet does (`env` reads it).

kubelet `makeEnvironmentVariables` and third_party/forked/golang/expansion:
variables are taken in order; a value's `$(NAME)` is replaced by NAME's
value if NAME was defined *earlier* in the list, and left as written
otherwise; `$$` is a literal `$`. `valueFrom` values are filled in and never
expanded. Then `$(NAME)` in command and args is expanded against the
finished environment. Only the manifest's variables take part, as on
Kubernetes (where the image's ENV does not): the caller lays the result over
the base environment the process gets.

Apart from `env` because the supervisor resolves every container's
environment while the pod runs, and needs none of the manifest's reading
(PyYAML and the checks), which `podvisor run` leaves to a forked child.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from functools import cache

from podvisor.supervisor.manifest.model import Container, Pod, ResourceFieldRef

__all__ = [
    "SUBSCRIPTED",
    "expand",
    "expand_argv",
    "field_value",
    "host_ip",
    "resolve_env",
    "resource_value",
]

#: The fieldPaths with a key: metadata.labels['k'] and metadata.annotations['k'].
SUBSCRIPTED = ("metadata.labels['", "metadata.annotations['")


def resolve_env(container: Container, pod: Pod, pod_ip: str | None) -> dict[str, str]:
    """The container's variables, in order, references expanded; pod_ip fills status.podIP."""
    env: dict[str, str] = {}
    for var in container.env:
        if var.field_path is not None:
            env[var.name] = field_value(var.field_path, pod, pod_ip)
        elif var.resource_field_ref is not None:
            env[var.name] = resource_value(var.resource_field_ref, pod)
        elif var.source is not None:  # a ConfigMap's or Secret's value is taken as it is
            env[var.name] = var.value or ""
        else:
            env[var.name] = expand(var.value or "", env)
    return env


def expand_argv(container: Container, env: Mapping[str, str]) -> tuple[str, ...]:
    """command + args with `$(NAME)` expanded against `env` (from `resolve_env`)."""
    return tuple(expand(arg, env) for arg in container.argv)


def field_value(field_path: str, pod: Pod, pod_ip: str | None) -> str:
    """The value of a `valueFrom.fieldRef.fieldPath` the loader accepted."""
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: pod.name,
        "metadata.namespace": lambda: pod.namespace,
        "metadata.uid": lambda: pod.uid,
        "status.podIP": lambda: pod_ip or "",
        "status.podIPs": lambda: pod_ip or "",
        # One machine is the node: its name and address are the host's.
        "spec.nodeName": lambda: os.uname().nodename,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if field_path in simple:
        return simple[field_path]()
    for prefix, values in zip(SUBSCRIPTED, (pod.labels, pod.annotations), strict=True):
        if field_path.startswith(prefix):
            return values.get(field_path[len(prefix) : -2], "")
    raise ValueError(f"unsupported fieldPath {field_path!r}")


@cache
def host_ip() -> str:
    """The host's primary address: the source of its default route (127.0.0.1 without one)."""
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))  # a UDP connect sends nothing: it picks a route
                address: str = probe.getsockname()[0]
                return address
        except OSError:
            continue
    return "127.0.0.1"


def resource_value(ref: ResourceFieldRef, pod: Pod) -> str:
    """A container's request or limit in units of the divisor, rounded up, as the kubelet does.

    A limit left out is this machine's capacity (the kubelet's node allocatable);
    a request left out is 0.
    """
    r = pod.container(ref.container_name).resources
    which, kind = ref.resource.split(".")
    if kind == "cpu":
        amount = r.cpu_limit_millicores if which == "limits" else r.cpu_request_millicores
        if amount is None and which == "limits":
            amount = (os.cpu_count() or 1) * 1000
        unit = 1 if ref.divisor == "1m" else 1000
    else:
        amount = r.memory_limit_bytes if which == "limits" else r.memory_request_bytes
        if amount is None and which == "limits":
            amount = _memory_total()
        unit = _memory_unit(ref.divisor)
    return str(math.ceil((amount or 0) / unit))


def _memory_unit(divisor: str) -> int:
    number = divisor[1:]
    if number.endswith("i"):
        return int(2 ** (10 * " KMGTPE".index(number[0])))
    return int(10 ** (3 * " kMGTPE".index(number[0]))) if number else 1


def _memory_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace `$(NAME)` by env[NAME] when defined; `$$` is `$`; anything else stays."""
    out: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar == -1 or dollar + 1 == len(text):
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        following = text[dollar + 1]
        if following == "$":
            out.append("$")
            i = dollar + 2
        elif following == "(" and (close := text.find(")", dollar + 2)) != -1:
            name = text[dollar + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            # Not a reference: "$x" and an unclosed "$(" are kept as written.
            out.append("$" + following)
            i = dollar + 2
    return "".join(out)
