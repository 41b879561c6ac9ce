"""A container's environment, read from the manifest (`expansion` resolves it).

`env` entries are a name and a literal `value` (a string: YAML's 8080 or
yes must be quoted, as the API server demands), or a `valueFrom.fieldRef`
among the fields podvisor knows without a cluster: metadata.name,
.namespace, .uid, .labels['k'], .annotations['k'], and status.podIP(s).
ConfigMaps, Secrets and resourceFieldRef are refused.
"""

from __future__ import annotations

import yaml

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.expansion import SUBSCRIPTED
from podvisor.supervisor.manifest.model import EnvVar
from podvisor.supervisor.manifest.nodes import Fields, did_you_mean, fields_of

__all__ = ["read_env"]

_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "status.podIP",
    "status.podIPs",
)
_CLUSTER_FIELD_PATHS = (
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
)


def read_env(container: Fields) -> tuple[EnvVar, ...]:
    """A container's `env`, in order; a name defined twice is warned about, as Kubernetes does."""
    found: list[EnvVar] = []
    seen: dict[str, int] = {}
    for i, (item, path) in enumerate(container.items("env")):
        var = _env_var(container, item, path)
        if var is None:
            continue
        if var.name in seen:
            container.report.warn(
                item, path, f"{var.name} is defined again: this entry hides env[{seen[var.name]}]"
            )
        seen[var.name] = i
        found.append(var)
    return tuple(found)


def _env_var(container: Fields, node: yaml.Node, path: str) -> EnvVar | None:
    f = fields_of(container.report, node, path, fields.ENV_VAR)
    if f is None or not f.require("name", "the variable's name"):
        return None
    name = f.string("name")
    problem = names.env_name(name) if name is not None else None
    if problem:
        f.error("name", problem)
    elif name is not None and not names.portable_env_name(name):
        f.warn(
            "name",
            f"{name!r}: Kubernetes before 1.34 refuses variable names that are not "
            "letters, digits, '_', '-' and '.' (not starting with a digit)",
        )
    value = f.string("value")
    field_path = _value_from(f) if "valueFrom" in f else None
    if value and "valueFrom" in f:
        f.error("valueFrom", "may not be set together with a value")
    if name is None or problem:
        return None
    return EnvVar(name, None if field_path else value, field_path)


def _value_from(f: Fields) -> str | None:
    source = f.mapping("valueFrom", fields.ENV_VAR_SOURCE)
    if source is None:
        return None
    ref = source.mapping("fieldRef", fields.FIELD_REF)
    if ref is None:
        if not _refused_source(source.node):  # that error says it already
            source.report.error(source.node, source.path, "must have a source: fieldRef")
        return None
    version = ref.string("apiVersion")
    if version not in (None, "v1"):
        ref.error("apiVersion", f"{version!r}: only v1")
    if not ref.require("fieldPath", "e.g. metadata.name or status.podIP"):
        return None
    field_path = ref.string("fieldPath")
    problem = _field_path_problem(field_path) if field_path is not None else None
    if problem:
        ref.error("fieldPath", problem)
        return None
    return field_path


def _refused_source(node: yaml.Node) -> bool:
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value != "fieldRef" for k, _ in node.value
    )


def _field_path_problem(field_path: str) -> str | None:
    if field_path in _FIELD_PATHS:
        return None
    for prefix in SUBSCRIPTED:
        if field_path.startswith(prefix) and field_path.endswith("']"):
            return names.qualified_name(field_path[len(prefix) : -2])
    if field_path in _CLUSTER_FIELD_PATHS:
        return f"{field_path} is known only to a cluster; write the value under value instead"
    choices = [*_FIELD_PATHS, "metadata.labels['KEY']", "metadata.annotations['KEY']"]
    return f"{field_path!r} is not supported (supported: {', '.join(choices)})" + did_you_mean(
        field_path, list(_FIELD_PATHS)
    )
