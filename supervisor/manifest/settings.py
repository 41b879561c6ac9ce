"""podvisor's own settings: `podvisor.io/` annotations, typed and validated like fields.

Annotations keep the manifest a valid Pod, so the same file runs on
Kubernetes, which ignores them. A pod-wide setting is `podvisor.io/NAME`; a
per-container one is `podvisor.io/NAME.CONTAINER`; `pids-limit` is both (the
pod's default, and one container's own). Annotation values are always strings
in Kubernetes, so quote numbers: `podvisor.io/pids-limit: "100"`. Kubernetes
limits the part after the `/` to 63 characters, which bounds the container
names a per-container setting can name.

`SETTINGS` is the one table; `settings_table()` renders it for the README.
An unknown `podvisor.io/` key is an error, with a "did you mean";
`read_settings` turns the annotations into PodSettings and, per container,
ContainerSettings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import signal
from collections.abc import Callable, Iterable
from typing import Any, Literal

import yaml

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import ContainerSettings, PodSettings
from podvisor.supervisor.manifest.nodes import Report, child, did_you_mean

PREFIX = "podvisor.io/"


@frozen
class Setting:
    """One `podvisor.io/` annotation."""

    name: str  # the key after PREFIX, without a container suffix
    scope: Literal["pod", "container", "both"]
    value: str  # what a value looks like
    default: str
    meaning: str
    parse: Callable[[str], object]  # raises ValueError(message) for a bad value
    attribute: str  # the field of PodSettings / ContainerSettings it sets


# --- Value parsers: each raises ValueError with the message a user reads -------------


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _log_size(text: str) -> int:
    from podvisor.supervisor.manifest.quantity import memory_bytes, parse_quantity

    try:
        size = memory_bytes(parse_quantity(text))
    except ValueError:
        size = 0
    if size < 1024:
        raise ValueError(f"{text!r} is not a size of at least 1Ki (examples: 10Mi, 500Ki)")
    return size


def _fd(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 3:
        raise ValueError(f"{text!r} is not a file descriptor of 3 or more (0-2 are stdio)")
    return int(text)


def _cpuset(text: str) -> str:
    ranges = text.split(",")
    for part in ranges:
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ValueError(f"{text!r} is not a CPU list (examples: 0, 0-3, 0-1,4)")
    return text


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    """Seconds from `10`, `1.5`, `500ms`, `10s`, `5m`, `1h30m`."""
    if re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", text):
        seconds = float(text)
    elif text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError(f"{text!r} is not a duration (examples: 10, 10s, 500ms, 5m)")
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def _rootfs(text: str) -> str:
    if text not in ("host", "image"):
        raise ValueError(f"{text!r} is not host or image")
    return text


def _network(text: str) -> str:
    if text not in ("host", "loopback", "bridge"):
        raise ValueError(f"{text!r} is not a network mode: use host, loopback or bridge")
    return text


def _subnet(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise ValueError(f"{text!r} is not a subnet (example: 10.88.0.0/24)") from None
    if network.num_addresses < 4:
        raise ValueError(f"{text!r} is too small: it must hold the host and the pod")
    return str(network)


def _address(text: str) -> str:
    if text in ("off", "none"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"{text!r} is not HOST:PORT or off (examples: 127.0.0.1:9464, [::1]:9464, :9464)"
        )
    bare = host.removeprefix("[").removesuffix("]")
    if host and host != "localhost":
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address (or localhost)") from None
        if ":" in bare and not host.startswith("["):
            raise ValueError(f"write an IPv6 address in brackets: [{bare}]:{port}")
    return text


def parse_signal(text: str) -> int:
    """A signal number from `SIGTERM`, `TERM`, `15` or `SIGRTMIN+3`."""
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if text.isdigit() and 1 <= int(text) < signal.SIGRTMAX + 1:
        return int(text)
    m = re.fullmatch(r"SIG(RTMIN|RTMAX)([+-][0-9]+)?", name)
    if m:
        number = int(getattr(signal, f"SIG{m[1]}")) + int(m[2] or 0)
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
    elif name in signal.Signals.__members__ and name not in ("SIGKILL", "SIGSTOP"):
        return int(signal.Signals[name])
    raise ValueError(
        f"{text!r} is not a signal that can stop a process (examples: SIGTERM, SIGINT)"
    )


def _pod_security(text: str) -> str:
    from podvisor.supervisor.manifest.podsecurity import level

    return level(text)


def _sysctl_patterns(text: str) -> tuple[str, ...]:
    from podvisor.supervisor.manifest.sysctls import allowed_patterns

    return allowed_patterns(text)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "metrics-address", "pod", "HOST:PORT or off", "127.0.0.1:9464",
        "Serve /metrics, /livez, /readyz and /status on this address (:9464 for every"
        " interface); off for none. The --metrics-address flag overrides it.",
        _address, "metrics_address",
    ),
    Setting(
        "network", "pod", "host, loopback or bridge", "podvisor's default",
        "The pod's network: the host's, a private loopback, or a bridge to the host. "
        "spec.hostNetwork: true means host.",
        _network, "network",
    ),
    Setting(
        "subnet", "pod", "CIDR", "chosen by podvisor",
        "The bridge network's subnet (with network: bridge only).",
        _subnet, "subnet",
    ),
    Setting(
        "rootfs", "both", "host or image", "image when the container names one",
        "Where a container's programs come from: its image's root file system (an overlay"
        " entered with pivot_root), or the host's own files (host mode, as in a bundle"
        " inside a container). A container without `image:` runs in host mode.",
        _rootfs, "rootfs",
    ),
    Setting(
        "backoff-initial", "pod", "duration (10, 10s, 500ms)", "10s",
        "Delay before the second restart in a row of a crashing container (the first is"
        " immediate); it doubles after each crash.",
        _duration, "backoff_initial_seconds",
    ),
    Setting(
        "backoff-max", "pod", "duration", "300s",
        "Longest delay between restarts.",
        _duration, "backoff_max_seconds",
    ),
    Setting(
        "backoff-reset", "pod", "duration", "600s",
        "A container that ran this long without crashing starts again from the first delay.",
        _duration, "backoff_reset_seconds",
    ),
    Setting(
        "allowed-unsafe-sysctls", "pod", "sysctls, prefixes ending in * (kernel.msg*)", "none",
        "Namespaced sysctls outside the kubelet's safe set this pod may set in"
        " spec.securityContext.sysctls, as the kubelet's --allowed-unsafe-sysctls allows them.",
        _sysctl_patterns, "allowed_unsafe_sysctls",
    ),
    Setting(
        "pod-security", "pod", "privileged, baseline or restricted", "none",
        "The Pod Security Standard the pod must meet, or it is refused before anything"
        " starts (as a Namespace's pod-security.kubernetes.io/enforce label does).",
        _pod_security, "pod_security",
    ),
    Setting(
        "pids-limit", "both", "whole number >= 1", "no limit",
        "pids.max of each container's cgroup: `pids-limit` for every container, "
        "`pids-limit.CONTAINER` for one. The container's own init counts as one process "
        "(unless shareProcessNamespace).",
        _positive_int, "pids_limit",
    ),
    Setting(
        "container-log-max-size", "pod", "size (10Mi, 500Ki)", "10Mi",
        "A container's log file is rotated when it would grow past this (containerLogMaxSize).",
        _log_size, "log_max_size",
    ),
    Setting(
        "container-log-max-files", "pod", "whole number >= 1", "5",
        "Log files kept per container instance, the current one included"
        " (containerLogMaxFiles).",
        _positive_int, "log_max_files",
    ),
    Setting(
        "cpuset", "container", "CPU list (0-1,3)", "every CPU",
        "The CPUs the container may run on (cpuset.cpus).",
        _cpuset, "cpuset",
    ),
    Setting(
        "watchdog-usec", "container", "microseconds", "none",
        "sd_notify watchdog: the container must send WATCHDOG=1 at least this often "
        "or it is restarted (WATCHDOG_USEC is set for it).",
        _positive_int, "watchdog_usec",
    ),
    Setting(
        "notification-fd", "container", "descriptor >= 3", "none",
        "s6-style readiness: the container writes a line to this descriptor when it is ready.",
        _fd, "notification_fd",
    ),
    Setting(
        "stop-signal", "container", "signal (SIGINT, QUIT, 3)", "SIGTERM",
        "The signal that asks the container to stop (as lifecycle.stopSignal).",
        parse_signal, "stop_signal",
    ),
)  # fmt: skip

BY_NAME = {s.name: s for s in SETTINGS}


def settings_table() -> str:
    """The settings as a Markdown table, for the README."""
    rows = ["| Annotation | Value | Default | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        keys = {
            "pod": f"`{PREFIX}{s.name}`",
            "container": f"`{PREFIX}{s.name}.CONTAINER`",
            "both": f"`{PREFIX}{s.name}`, `{PREFIX}{s.name}.CONTAINER`",
        }[s.scope]
        rows.append(f"| {keys} | {s.value} | {s.default} | {s.meaning} |")
    return "\n".join(rows)


def known_keys(containers: Iterable[str]) -> list[str]:
    """Every valid key for these container names, for "did you mean"."""
    names = list(containers)
    keys = []
    for s in SETTINGS:
        if s.scope != "container":
            keys.append(PREFIX + s.name)
        if s.scope != "pod":
            keys += [f"{PREFIX}{s.name}.{c}" for c in names]
    return keys


# --- Reading the annotations -------------------------------------------------------------

Annotation = tuple[yaml.ScalarNode, yaml.Node, str, str]  # key node, value node, key, value


@frozen
class Settings:
    """What the annotations set: the pod's settings, and each container's own values."""

    pod: PodSettings
    containers: dict[str, dict[str, Any]]  # container: {ContainerSettings attribute: value}
    nodes: dict[str, yaml.Node]  # annotation key: its value's node

    def for_container(self, name: str, stop_signal: int | None) -> ContainerSettings:
        """A container's settings: its annotations over lifecycle.stopSignal over the pod's."""
        values: dict[str, Any] = {"pids_limit": self.pod.pids_limit}
        own = self.containers.get(name, {})
        if stop_signal is not None:
            values["stop_signal"] = stop_signal
        values["stop_signal_given"] = stop_signal is not None or "stop_signal" in own
        return ContainerSettings(**(values | own))


def read_settings(
    report: Report, annotations: list[Annotation], containers: list[str], host_network: bool
) -> Settings:
    """The `podvisor.io/` annotations, each checked like a field; the others are left alone."""
    pod: dict[str, Any] = {}
    per_container: dict[str, dict[str, Any]] = {}
    for annotation in annotations:
        key_node, _, key, _ = annotation
        if not key.startswith(PREFIX):
            _prefix_typo(report, key_node, key)
            continue
        read = _read_one(report, annotation, containers)
        if read is not None:
            target, attribute, parsed = read
            (per_container.setdefault(target, {}) if target else pod)[attribute] = parsed
    settings = PodSettings(**pod)
    nodes = {key: value_node for _, value_node, key, _ in annotations}
    settings = _check_pod(report, settings, nodes, host_network)
    return Settings(settings, per_container, nodes)


def _read_one(
    report: Report, annotation: Annotation, containers: list[str]
) -> tuple[str, str, object] | None:
    """(container or "", attribute, value) of one annotation; None when it is wrong (reported)."""
    key_node, value_node, key, value = annotation
    where = child("metadata.annotations", key)
    name, dot, target = key.removeprefix(PREFIX).partition(".")
    setting = BY_NAME.get(name)
    if setting is None:
        hint = did_you_mean(key, known_keys(containers))
        report.error(key_node, where, "unknown podvisor setting" + hint)
        return None
    problem = _scope_problem(setting, dot, target, containers)
    if problem:
        report.error(key_node, where, problem)
        return None
    try:
        return target, setting.attribute, setting.parse(value)
    except ValueError as error:
        report.error(value_node, where, str(error))
        return None


def _scope_problem(setting: Setting, dot: str, target: str, containers: list[str]) -> str | None:
    key = PREFIX + setting.name
    if dot and setting.scope == "pod":
        return f"{key} applies to the whole pod: remove '.{target}'"
    if not dot and setting.scope == "container":
        return f"{key} applies to one container: write {key}.CONTAINER"
    if dot and target not in containers:
        return f"no container named {target!r}" + did_you_mean(target, containers)
    return None


def _prefix_typo(report: Report, node: yaml.Node, key: str) -> None:
    prefix = key.partition("/")[0] + "/"
    if "/" in key and prefix != PREFIX and did_you_mean(prefix, [PREFIX]):
        report.warn(
            node,
            child("metadata.annotations", key),
            f"{prefix} is not {PREFIX}: podvisor ignores this annotation",
        )


def _check_pod(
    report: Report, pod: PodSettings, nodes: dict[str, yaml.Node], host_network: bool
) -> PodSettings:
    """The rules between pod settings; spec.hostNetwork: true means network host."""
    where = "metadata.annotations[podvisor.io/{}]".format
    node = nodes.get(PREFIX + "backoff-initial") or nodes.get(PREFIX + "backoff-max")
    if pod.backoff_initial_seconds > pod.backoff_max_seconds:
        report.error(
            node,
            where("backoff-initial"),
            f"{pod.backoff_initial_seconds:g}s is longer than "
            f"backoff-max ({pod.backoff_max_seconds:g}s)",
        )
    if pod.subnet is not None and pod.network != "bridge":
        report.error(
            nodes[PREFIX + "subnet"],
            where("subnet"),
            "applies only with podvisor.io/network: bridge",
        )
    if host_network and pod.network not in (None, "host"):
        report.error(
            nodes[PREFIX + "network"],
            where("network"),
            f"{pod.network!r} contradicts spec.hostNetwork: true",
        )
    return dataclasses.replace(pod, network="host") if host_network else pod
