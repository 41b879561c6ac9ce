"""The pod manifest: a Kubernetes Pod (apiVersion v1, kind Pod), loaded and validated.

    from podvisor.supervisor.manifest import load
    loaded = load("pod.yaml")          # raises ConfigError with every problem at once
    for c in loaded.pod.spec.all_containers: ...

The model is in `model`, podvisor's `podvisor.io/` annotations in `settings`,
what happens to each Kubernetes field in `fields`, and `podvisor check` in
`explain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podvisor.supervisor.lazy import lazy_names

if TYPE_CHECKING:
    from podvisor.supervisor.manifest.expansion import expand, expand_argv, resolve_env
    from podvisor.supervisor.manifest.loader import load
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
        LoadedPod,
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

# Each name is imported from its module when it is first asked for
# (`podvisor.supervisor.lazy`). The supervisor needs the model and
# `expansion` while the pod runs, never the reading (PyYAML and the checks):
# `podvisor run` reads the manifest in a forked child, and importing the model
# must not import them.
_HOME = {
    "expand": "expansion",
    "expand_argv": "expansion",
    "resolve_env": "expansion",
    "load": "loader",
    "QuantityError": "quantity",
    "cpu_millicores": "quantity",
    "memory_bytes": "quantity",
    "parse_quantity": "quantity",
    "SETTINGS": "settings",
    "settings_table": "settings",
}  # and the model's names: "model"

if not TYPE_CHECKING:
    __getattr__ = lazy_names(
        __name__, {name: _HOME.get(name, "model") for name in __all__}, globals()
    )
