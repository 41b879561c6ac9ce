"""One container of the manifest: its program, ports and resources, probes and hooks.

Kubernetes' rules and defaults, as the API server applies them: ports default
to TCP, and with hostNetwork a hostPort defaults to the containerPort (and must
equal it); a resource request left out defaults to its limit, and may not
exceed it; an init container that is not a sidecar may have no probes or
hooks. `command` may be left out when the image says what to run; a container
in host mode (`manifest.rootfs`) must have one.
"""

from __future__ import annotations

from dataclasses import field
from decimal import Decimal
from enum import StrEnum

import yaml

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest import env, fields, names, security
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    ContainerPort,
    Resources,
    RestartPolicy,
    SecurityContext,
)
from podvisor.supervisor.manifest.nodes import (
    Fields,
    Report,
    child,
    did_you_mean,
    entries,
    fields_of,
    scalar_text,
)
from podvisor.supervisor.manifest.probes import lifecycle, probe
from podvisor.supervisor.manifest.quantity import (
    QuantityError,
    cpu_millicores,
    memory_bytes,
    parse_quantity,
)

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_EXAMPLES = {
    "cpu": "500m, 1, 1.5",
    "memory": "128Mi, 1G, 500M",
    "ephemeral-storage": "1Gi, 500M",
}
_MAX = 2**63 - 1


@frozen
class PodContext:
    """What a container's rules need to know about the pod around it."""

    host_network: bool = False
    security: SecurityContext = field(default_factory=SecurityContext)
    os_name: str | None = None
    env_context: env.EnvContext = field(default_factory=env.EnvContext)  # what env may use


@frozen
class ParsedContainer:
    """A container, and where its parts are in the file (for the loader's later checks)."""

    container: Container
    path: str  # spec.initContainers[1]
    node: yaml.Node
    name_node: yaml.Node
    stop_signal: int | None  # from lifecycle.stopSignal
    pre_stop_node: yaml.Node | None
    probe_nodes: dict[str, yaml.Node]
    port_nodes: tuple[tuple[yaml.Node, str], ...]  # (node, path) of each of container.ports


def container(
    report: Report, node: yaml.Node, path: str, init: bool, pod: PodContext
) -> ParsedContainer | None:
    """A container of spec.containers (init False) or spec.initContainers (init True)."""
    f = fields_of(report, node, path, fields.CONTAINER)
    if f is None:
        return None
    kind, restart = _kind(f, init)
    ports = _ports(f, pod.host_network)
    port_names = {p.name for p, _, _ in ports if p.name}
    if kind is ContainerKind.INIT:
        _no_sidecar_fields(f)
    hooks = lifecycle(f, port_names, pod.os_name)
    probes = {k: probe(f, k, port_names) for k in _PROBES if kind is not ContainerKind.INIT}
    command = _command(f)
    built = Container(
        name=_name(f) or "",
        kind=kind,
        command=command,
        args=_args(f, command),
        env=env.read_env(f, pod.env_context),
        working_dir=_working_dir(f),
        ports=tuple(p for p, _, _ in ports),
        resources=_resources(f),
        liveness_probe=probes.get("livenessProbe"),
        readiness_probe=probes.get("readinessProbe"),
        startup_probe=probes.get("startupProbe"),
        lifecycle=hooks.lifecycle,
        security_context=security.container_security(
            f, pod.security, f.string("name") or "", pod.os_name
        ),
        stdin=f.flag("stdin"),
        tty=f.flag("tty"),
        stdin_once=f.flag("stdinOnce"),
        image=f.string("image"),
        image_pull_policy=_pull_policy(f),
        termination_message_path=_termination_path(f),
        termination_message_policy=str(
            f.choice("terminationMessagePolicy", _TerminationPolicy, _TerminationPolicy.FILE)
        ),
        restart_policy=restart,
    )
    return ParsedContainer(
        built,
        path,
        node,
        f.get("name") or node,
        hooks.stop_signal,
        hooks.pre_stop_node,
        {k: f[k] for k in _PROBES if k in f},
        tuple((n, p) for _, n, p in ports),
    )


def _name(f: Fields) -> str | None:
    if not f.require("name", "every container has a name"):
        return None
    name = f.string("name")
    problem = names.dns1123_label(name) if name is not None else None
    if problem:
        f.error("name", problem)
    return name


def _command(f: Fields) -> tuple[str, ...]:
    # Optional, and an empty list is as good as none (as in Kubernetes): the image
    # may say what to run. A container in host mode without one is refused once
    # its root is known (loader._root_rules).
    return f.strings("command")


#: The kernel's limit on one argument (MAX_ARG_STRLEN, execve(2)), and a bound
#: on them all that keeps a spawn request within the init channel's messages.
MAX_ARGUMENT = 128 * 1024
MAX_ARGUMENTS_TOTAL = 512 * 1024


def _args(f: Fields, command: tuple[str, ...]) -> tuple[str, ...]:
    args = f.strings("args")
    for key, items in (("command", command), ("args", args)):
        for i, arg in enumerate(items):
            size = len(arg.encode())
            if size > MAX_ARGUMENT:
                sequence = f.get(key)
                assert isinstance(sequence, yaml.SequenceNode)
                f.report.error(
                    sequence.value[i],
                    child(f.at(key), i),
                    f"{size} bytes; the kernel runs no program with an argument over "
                    f"{MAX_ARGUMENT} bytes: put it in a file and pass its path",
                )
                return args
    total = sum(len(a.encode()) for a in (*command, *args))
    if total > MAX_ARGUMENTS_TOTAL:
        f.error(
            "args" if "args" in f else "command",
            f"command and args add up to {total} bytes, over {MAX_ARGUMENTS_TOTAL}: "
            "put the data in a file and pass its path",
        )
    return args


def _kind(f: Fields, init: bool) -> tuple[ContainerKind, RestartPolicy | None]:
    if "restartPolicy" not in f:
        return (ContainerKind.INIT if init else ContainerKind.MAIN), None
    if not init:
        f.error(
            "restartPolicy",
            "not supported on a container of spec.containers: set spec.restartPolicy "
            "(only an init container takes restartPolicy: Always, which makes it a sidecar)",
        )
        return ContainerKind.MAIN, None
    value = f.string("restartPolicy")
    if value == "Always":
        return ContainerKind.SIDECAR, RestartPolicy.ALWAYS
    if value is not None:
        f.error("restartPolicy", f"{value!r}: an init container takes only Always (a sidecar)")
    return ContainerKind.INIT, None


def _no_sidecar_fields(f: Fields) -> None:
    for key in ("lifecycle", *_PROBES):
        if key in f:
            f.error(
                key,
                "may not be set on an init container that runs to completion; "
                "add restartPolicy: Always to make it a sidecar",
            )


class _TerminationPolicy(StrEnum):
    FILE = "File"
    FALLBACK_TO_LOGS_ON_ERROR = "FallbackToLogsOnError"


def _termination_path(f: Fields) -> str:
    path = f.string("terminationMessagePath") or "/dev/termination-log"
    if not path.startswith("/") or "\0" in path:
        f.error("terminationMessagePath", f"{path!r} is not an absolute path")
    return path


def _pull_policy(f: Fields) -> str | None:
    if "imagePullPolicy" not in f:
        return None
    from podvisor.supervisor.images.reference import PullPolicy

    return str(f.choice("imagePullPolicy", PullPolicy, PullPolicy.IF_NOT_PRESENT))


def _working_dir(f: Fields) -> str | None:
    value = f.string("workingDir")
    if value and not value.startswith("/"):
        f.error("workingDir", f"{value!r} must be an absolute path")
        return None
    return value or None


# --- Ports ---------------------------------------------------------------------------------


def _ports(f: Fields, host_network: bool) -> list[tuple[ContainerPort, yaml.Node, str]]:
    """(port, its node, its path) for each valid entry of `ports`."""
    found: list[tuple[ContainerPort, yaml.Node, str]] = []
    for item, path in f.items("ports"):
        p = fields_of(f.report, item, path, fields.CONTAINER_PORT)
        port = _port(p, host_network) if p is not None else None
        if p is None or port is None:
            continue
        if port.name and any(other.name == port.name for other, _, _ in found):
            p.error("name", f"duplicate port name {port.name!r}")
        found.append((port, item, path))
    return found


def _port(p: Fields, host_network: bool) -> ContainerPort | None:
    if not p.require("containerPort", "the port the program listens on"):
        return None
    number = p.integer("containerPort", 1, 65535)
    host = p.integer("hostPort", 0, 65535) or None
    if host_network and host is None:
        host = number  # Kubernetes' default: with the host's network, the port is the host's
    elif host_network and number is not None and host != number:
        p.error("hostPort", f"must equal containerPort ({number}) with hostNetwork: true")
    name = p.string("name")
    problem = names.port_name(name) if name is not None else None
    if problem:
        p.error("name", problem)
    protocol = p.string("protocol") if "protocol" in p else "TCP"
    if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
        p.error("protocol", f"{protocol!r} is not TCP, UDP or SCTP")
    if number is None or problem or protocol not in ("TCP", "UDP", "SCTP"):
        return None
    return ContainerPort(number, name, host, protocol)


# --- Resources ------------------------------------------------------------------------------

Amounts = dict[str, tuple[Decimal, yaml.Node, str]]  # resource: (quantity, node, as written)


def _resources(f: Fields) -> Resources:
    r = f.mapping("resources", fields.RESOURCES)
    if r is None:
        return Resources()
    requests = _amounts(r, "requests")
    limits = _amounts(r, "limits")
    for resource in ("cpu", "memory"):
        if (
            resource in requests
            and resource in limits
            and requests[resource][0] > limits[resource][0]
        ):
            r.report.error(
                requests[resource][1],
                child(r.at("requests"), resource),
                f"must be at most the {resource} limit ({limits[resource][2]})",
            )
    # Kubernetes' default: a request left out equals the limit.
    requests = limits | requests
    return Resources(
        cpu_request_millicores=_whole(requests, "cpu"),
        cpu_limit_millicores=_whole(limits, "cpu"),
        memory_request_bytes=_whole(requests, "memory"),
        memory_limit_bytes=_whole(limits, "memory"),
        ephemeral_storage_limit_bytes=_whole(limits, "ephemeral-storage"),
    )


def _whole(amounts: Amounts, resource: str) -> int | None:
    """Whole millicores of cpu, whole bytes of memory, rounded up as Kubernetes does."""
    if resource not in amounts:
        return None
    convert = cpu_millicores if resource == "cpu" else memory_bytes
    return convert(amounts[resource][0])


def _amounts(r: Fields, key: str) -> Amounts:
    """The cpu and memory of requests or limits, and the ephemeral-storage of limits; other
    resources are ignored or refused."""
    node = r.get(key)
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        r.error(key, "must be a mapping (resource: quantity), e.g. {cpu: 500m, memory: 128Mi}")
        return {}
    found: Amounts = {}
    for key_node, value in entries(r.report, node, r.at(key)):
        resource = key_node.value
        where = child(r.at(key), resource)
        if _resource_known(r.report, key_node, resource, where, key):
            amount = _quantity(r.report, value, where, resource)
            if amount is not None:
                found[resource] = (amount, value, scalar_text(value) or "")
    return found


def _resource_known(report: Report, key: yaml.Node, resource: str, path: str, which: str) -> bool:
    if resource in ("cpu", "memory") or (resource, which) == ("ephemeral-storage", "limits"):
        return True
    if resource == "ephemeral-storage":
        report.ignore(key, path, "scheduling: a request of local storage only chooses a node")
    elif resource.startswith("hugepages-"):
        report.error(key, path, "not supported: podvisor reserves no huge pages; remove it")
    elif "/" in resource:
        message = "not supported: extended resources are handed out by a cluster's device plugins"
        report.error(key, path, message)
    else:
        choices = ["cpu", "memory", "ephemeral-storage"]
        report.error(key, path, "unknown resource" + did_you_mean(resource, choices))
    return False


def _quantity(report: Report, node: yaml.Node, path: str, resource: str) -> Decimal | None:
    text = scalar_text(node)
    try:
        amount = parse_quantity(text.strip()) if text is not None else None
    except QuantityError:
        amount = None
    if amount is None:
        shown = f"{text!r} is not a quantity" if text is not None else "must be a quantity"
        report.error(node, path, f"{shown} (examples: {_EXAMPLES[resource]})")
        return None
    if amount < 0:
        report.error(node, path, f"{text!r} must not be negative")
        return None
    whole = _whole({resource: (amount, node, "")}, resource) or 0
    if whole >= _MAX:
        report.error(node, path, f"{text!r} is too large")
        return None
    if resource == "memory" and amount != amount.to_integral_value():
        report.warn(
            node,
            path,
            f"{text!r} is a fractional number of bytes, rounded up to {whole}; "
            "'m' means milli: did you mean M (megabytes) or Mi (mebibytes)?",
        )
    return amount
