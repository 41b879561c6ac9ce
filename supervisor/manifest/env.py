"""A container's environment: read from the manifest, then resolved as the kubelet does.

Reading: `env` entries are a name and a literal `value` (a string: YAML's
8080 or yes must be quoted, as the API server demands), or a
`valueFrom.fieldRef` among the fields podvisor knows without a cluster:
metadata.name, .namespace, .uid, .labels['k'], .annotations['k'], and
status.podIP(s). ConfigMaps, Secrets and resourceFieldRef are refused.

Resolving (kubelet `makeEnvironmentVariables` and
third_party/forked/golang/expansion): variables are taken in order; a value's
`$(NAME)` is replaced by NAME's value if NAME was defined *earlier* in the
list, and left as written otherwise; `$$` is a literal `$`. `valueFrom`
values are filled in and never expanded. Then `$(NAME)` in command and args is
expanded against the finished environment. Only the manifest's variables take
part, as on Kubernetes (where the image's ENV does not): the caller lays the
result over the base environment the process gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import yaml

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.model import Container, EnvVar, Pod
from podvisor.supervisor.manifest.nodes import Fields, did_you_mean, fields_of

__all__ = ["expand", "expand_argv", "read_env", "resolve_env"]

_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "status.podIP",
    "status.podIPs",
)
_SUBSCRIPTED = ("metadata.labels['", "metadata.annotations['")
_CLUSTER_FIELD_PATHS = (
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
)


# --- Reading -------------------------------------------------------------------------


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
    for prefix in _SUBSCRIPTED:
        if field_path.startswith(prefix) and field_path.endswith("']"):
            return names.qualified_name(field_path[len(prefix) : -2])
    if field_path in _CLUSTER_FIELD_PATHS:
        return f"{field_path} is known only to a cluster; write the value under value instead"
    choices = [*_FIELD_PATHS, "metadata.labels['KEY']", "metadata.annotations['KEY']"]
    return f"{field_path!r} is not supported (supported: {', '.join(choices)})" + did_you_mean(
        field_path, list(_FIELD_PATHS)
    )


# --- Resolving -----------------------------------------------------------------------


def resolve_env(container: Container, pod: Pod, pod_ip: str | None) -> dict[str, str]:
    """The container's variables, in order, references expanded; pod_ip fills status.podIP."""
    env: dict[str, str] = {}
    for var in container.env:
        if var.field_path is not None:
            env[var.name] = field_value(var.field_path, pod, pod_ip)
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
    }
    if field_path in simple:
        return simple[field_path]()
    for prefix, values in zip(_SUBSCRIPTED, (pod.labels, pod.annotations), strict=True):
        if field_path.startswith(prefix):
            return values.get(field_path[len(prefix) : -2], "")
    raise ValueError(f"unsupported fieldPath {field_path!r}")


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
