"""The pod manifest: a Kubernetes Pod (apiVersion v1, kind Pod), loaded and validated.

    from podvisor.supervisor.manifest import load
    loaded = load("pod.yaml")          # raises ConfigError with every problem at once
    for c in loaded.pod.spec.all_containers: ...

The model is in `model`, podvisor's `podvisor.io/` annotations in `settings`,
what happens to each Kubernetes field in `fields`, and `podvisor check` in
`explain`.
"""

from __future__ import annotations

from podvisor.supervisor.manifest.env import expand, expand_argv, resolve_env
from podvisor.supervisor.manifest.loader import LoadedPod, load
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    ContainerPort,
    ContainerSettings,
    EnvVar,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    Ignored,
    Lifecycle,
    Pod,
    PodSettings,
    PodSpec,
    Probe,
    Resources,
    RestartPolicy,
    SecurityContext,
    SleepAction,
    TCPSocketAction,
)
from podvisor.supervisor.manifest.quantity import (
    QuantityError,
    cpu_millicores,
    memory_bytes,
    parse_quantity,
)
from podvisor.supervisor.manifest.settings import SETTINGS, settings_table

__all__ = [
    "SETTINGS",
    "Container",
    "ContainerKind",
    "ContainerPort",
    "ContainerSettings",
    "EnvVar",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "Ignored",
    "Lifecycle",
    "LoadedPod",
    "Pod",
    "PodSettings",
    "PodSpec",
    "Probe",
    "QuantityError",
    "Resources",
    "RestartPolicy",
    "SecurityContext",
    "SleepAction",
    "TCPSocketAction",
    "cpu_millicores",
    "expand",
    "expand_argv",
    "load",
    "memory_bytes",
    "parse_quantity",
    "resolve_env",
    "settings_table",
]
