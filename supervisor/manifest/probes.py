"""Probes and lifecycle hooks, with Kubernetes' defaults and rules.

Defaults (SetDefaults_Probe): periodSeconds 10, timeoutSeconds 1,
successThreshold 1, failureThreshold 3; a 0 in any of these means "the
default", as the API server reads it. httpGet: path "/", scheme HTTP.
Rules (ValidateProbe and friends): exactly one handler; successThreshold 1 for
liveness and startup probes; probe-level terminationGracePeriodSeconds at
least 1 and never on a readiness probe; ports 1-65535 or the name of one of
the container's ports. gRPC probes are refused until podvisor speaks the
gRPC health-checking protocol; the message says what to use instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import yaml

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.model import (
    ExecAction,
    HookHandler,
    HTTPGetAction,
    Lifecycle,
    Probe,
    ProbeHandler,
    SleepAction,
    TCPSocketAction,
)
from podvisor.supervisor.manifest.nodes import INT, Fields, Rule, Supported, fields_of, integer
from podvisor.supervisor.manifest.settings import parse_signal

INT32_MAX = 2**31 - 1
_GRPC = (
    "not supported: podvisor does not speak the gRPC health-checking protocol yet; use an exec "
    "probe that runs grpc_health_probe (command: [grpc_health_probe, -addr=:PORT]), "
    "or a tcpSocket probe"
)
# Probe fields whose 0 means "the default", and their defaults.
_COUNTS = {"periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}


def probe(f: Fields, which: str, ports: Collection[str]) -> Probe | None:
    """The livenessProbe, readinessProbe or startupProbe `which` of a container's fields."""
    p = f.mapping(which, fields.PROBE, fields.MISPLACED_IN_HANDLER)
    if p is None:
        return None
    handler = _probe_handler(p, ports)
    values = {"initialDelaySeconds": 0} | _COUNTS
    for key in values:
        value = _count(p, key)
        values[key] = values[key] if value is None else value
    grace = _probe_grace(p, which)
    if which != "readinessProbe" and values["successThreshold"] != 1:
        p.error(
            "successThreshold",
            f"must be 1 for a {which} (Kubernetes' rule); only a readinessProbe can ask for more",
        )
    if handler is None:
        return None
    return Probe(
        handler,
        initial_delay_seconds=values["initialDelaySeconds"],
        period_seconds=values["periodSeconds"],
        timeout_seconds=values["timeoutSeconds"],
        success_threshold=values["successThreshold"],
        failure_threshold=values["failureThreshold"],
        termination_grace_period_seconds=grace,
    )


def _count(p: Fields, key: str) -> int | None:
    """A probe's number; for all but initialDelaySeconds, 0 means the default (None here)."""
    value = p.integer(key, maximum=INT32_MAX)
    if value is None or value > 0 or (value == 0 and key == "initialDelaySeconds"):
        return value
    if key == "initialDelaySeconds":
        p.error(key, f"must be at least 0, not {value}")
    elif value < 0:
        p.error(key, f"must be at least 1 (0 means the default, {_COUNTS[key]}), not {value}")
    return None


def _probe_grace(p: Fields, which: str) -> int | None:
    key = "terminationGracePeriodSeconds"
    if which == "readinessProbe" and key in p:
        p.error(key, "may not be set on a readinessProbe: a failing one never kills")
        return None
    return p.integer(key, minimum=1)


def _probe_handler(p: Fields, ports: Collection[str]) -> ProbeHandler | None:
    present = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in p]
    if "grpc" in present:
        p.error("grpc", _GRPC)
        return None
    if not _one_handler(p, present, fields.PROBE, "a probe"):
        return None
    kind = present[0]
    if kind == "exec":
        return _exec(p)
    if kind == "httpGet":
        return _http_get(p, ports)
    return _tcp_socket(p, ports)


def _one_handler(f: Fields, present: list[str], rules: Mapping[str, Rule], what: str) -> bool:
    """True when exactly one handler is present; else say what is wrong (once)."""
    handlers = [k for k, rule in rules.items() if isinstance(rule, Supported) and k != "grpc"]
    handlers = [k for k in handlers if k in ("exec", "httpGet", "tcpSocket", "sleep")]
    if len(present) > 1:
        f.error(present[1], f"{what} has one handler; this one already has {present[0]}")
    elif not present and not _said_already(f.node, rules):
        choices = ", ".join(handlers[:-1]) + f" or {handlers[-1]}"
        f.report.error(f.node, f.path, f"must have a handler: one of {choices}")
    return len(present) == 1


def _said_already(node: yaml.Node, rules: Mapping[str, Rule]) -> bool:
    """True when a key of the mapping was refused or unknown: that error explains it."""
    assert isinstance(node, yaml.MappingNode)
    return any(
        isinstance(k, yaml.ScalarNode) and not isinstance(rules.get(k.value), Supported)
        for k, _ in node.value
    )


# --- Handlers --------------------------------------------------------------------------


def _exec(f: Fields) -> ExecAction | None:
    e = f.mapping("exec", fields.EXEC)
    if e is None:
        return None
    command = e.strings("command")
    if not command:
        e.error("command", "required: the program to run and its arguments")
        return None
    return ExecAction(command)


def _http_get(f: Fields, ports: Collection[str]) -> HTTPGetAction | None:
    h = f.mapping("httpGet", fields.HTTP_GET)
    if h is None:
        return None
    port = _port(h, ports)
    scheme = h.string("scheme") or "HTTP"
    if scheme not in ("HTTP", "HTTPS"):
        h.error("scheme", f"{scheme!r} is not HTTP or HTTPS")
    headers = tuple(filter(None, (_header(h, item, path) for item, path in h.items("httpHeaders"))))
    if port is None:
        return None
    return HTTPGetAction(h.string("path") or "/", port, h.string("host") or None, scheme, headers)


def _header(h: Fields, node: yaml.Node, path: str) -> tuple[str, str] | None:
    header = fields_of(h.report, node, path, fields.HTTP_HEADER)
    if header is None or not header.require("name", "the header's name"):
        return None
    name = header.string("name")
    value = header.string("value") if "value" in header else ""
    problem = names.header_name(name) if name is not None else None
    if problem:
        header.error("name", problem)
    if name is None or value is None or problem:
        return None
    return name, value


def _tcp_socket(f: Fields, ports: Collection[str]) -> TCPSocketAction | None:
    t = f.mapping("tcpSocket", fields.TCP_SOCKET)
    if t is None:
        return None
    port = _port(t, ports)
    return TCPSocketAction(port, t.string("host") or None) if port is not None else None


def _port(f: Fields, ports: Collection[str]) -> int | str | None:
    """A port number, or the name of one of the container's ports."""
    if not f.require("port", "a port number, or the name of a container port"):
        return None
    node = f["port"]
    if isinstance(node, yaml.ScalarNode) and node.tag == INT:
        return integer(f.report, node, f.at("port"), 1, 65535)
    name = f.string("port")
    if name is None:
        return None
    problem = names.port_name(name)
    if name.isdigit():
        f.error("port", f"must be a number, not the string {name!r}: remove the quotes")
    elif problem:
        f.error("port", problem)
    elif name not in ports:
        known = ", ".join(sorted(ports)) or "none"
        f.error("port", f"no port named {name!r} in this container (named ports: {known})")
    else:
        return name
    return None


def _sleep(f: Fields) -> SleepAction | None:
    s = f.mapping("sleep", fields.SLEEP)
    if s is None or not s.require("seconds", "how long to sleep"):
        return None
    seconds = s.integer("seconds", minimum=0)
    return SleepAction(seconds) if seconds is not None else None


# --- Lifecycle ---------------------------------------------------------------------------


@frozen
class ParsedLifecycle:
    lifecycle: Lifecycle
    stop_signal: int | None  # lifecycle.stopSignal, when given
    pre_stop_node: yaml.Node | None


def lifecycle(f: Fields, ports: Collection[str], os_name: str | None) -> ParsedLifecycle:
    """A container's `lifecycle`: its hooks, and its stopSignal."""
    life = f.mapping("lifecycle", fields.LIFECYCLE)
    if life is None:
        return ParsedLifecycle(Lifecycle(), None, None)
    return ParsedLifecycle(
        Lifecycle(
            post_start=_hook(life, "postStart", ports), pre_stop=_hook(life, "preStop", ports)
        ),
        _stop_signal(life, os_name),
        life.get("preStop"),
    )


def _hook(life: Fields, which: str, ports: Collection[str]) -> HookHandler | None:
    h = life.mapping(which, fields.LIFECYCLE_HANDLER, fields.MISPLACED_IN_HANDLER)
    if h is None:
        return None
    present = [k for k in ("exec", "httpGet", "sleep") if k in h]
    if not _one_handler(h, present, fields.LIFECYCLE_HANDLER, "a hook"):
        return None
    kind = present[0]
    if kind == "exec":
        return _exec(h)
    if kind == "httpGet":
        return _http_get(h, ports)
    return _sleep(h)


def _stop_signal(life: Fields, os_name: str | None) -> int | None:
    text = life.string("stopSignal")
    if text is None:
        return None
    if os_name is None:
        life.error(
            "stopSignal", "Kubernetes accepts stopSignal only when the pod sets spec.os.name: linux"
        )
        return None
    if not text.startswith("SIG"):
        life.error("stopSignal", f"{text!r} is not a signal name (examples: SIGTERM, SIGUSR1)")
        return None
    try:
        return parse_signal(text)
    except ValueError as error:
        life.error("stopSignal", str(error))
        return None
