"""A container's environment, read from the manifest (`expansion` resolves the rest).

`env` entries are a name and a literal `value` (a string: YAML's 8080 or
yes must be quoted, as the API server demands), or a `valueFrom`:

* `fieldRef`: metadata.name, .namespace, .uid, .labels['k'],
  .annotations['k'], status.podIP(s), status.hostIP(s), spec.nodeName (this
  machine's name), spec.serviceAccountName; filled in at the container's start.
* `resourceFieldRef`: a container's request or limit in units of `divisor`;
  a limit left out is this machine's capacity, as the kubelet's allocatable.
* `configMapKeyRef`, `secretKeyRef`: a key of a ConfigMap or Secret of the
  same file (or of --config), resolved here, as the kubelet resolves them.

`envFrom` adds every key of a ConfigMap or Secret, with its `prefix`; `env`
entries come after it, so they win. A missing ConfigMap, Secret or key that
is not `optional: true` would keep the container waiting in Kubernetes
(CreateContainerConfigError, with the kubelet's message): nothing would ever
add it here, so the manifest is refused with that message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

import yaml

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.expansion import SUBSCRIPTED
from podvisor.supervisor.manifest.model import EnvVar, PodConfig, ResourceFieldRef
from podvisor.supervisor.manifest.nodes import Fields, did_you_mean, fields_of

__all__ = ["EnvContext", "read_env", "resource_field_ref"]

_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
#: What resourceFieldRef may read, and the divisors the API server accepts for each.
_CPU_DIVISORS = ("1m", "1")
_MEMORY_DIVISORS = (
    "1",
    "1k",
    "1M",
    "1G",
    "1T",
    "1P",
    "1E",
    "1Ki",
    "1Mi",
    "1Gi",
    "1Ti",
    "1Pi",
    "1Ei",
)
_RESOURCES = {
    "limits.cpu": _CPU_DIVISORS,
    "requests.cpu": _CPU_DIVISORS,
    "limits.memory": _MEMORY_DIVISORS,
    "requests.memory": _MEMORY_DIVISORS,
}
_CONFIG_ERROR = "CreateContainerConfigError"


@frozen
class EnvContext:
    """What a container's environment may refer to: the pod's ConfigMaps, Secrets, containers."""

    namespace: str = "default"
    config: PodConfig = field(default_factory=PodConfig)
    containers: tuple[str, ...] = ()  # every container's name, for resourceFieldRef


def read_env(container: Fields, context: EnvContext | None = None) -> tuple[EnvVar, ...]:
    """`envFrom`'s variables, then `env`'s in order; a name defined twice in env is warned about."""
    context = context or EnvContext()
    found = _env_from(container, context)
    seen: dict[str, int] = {}
    for i, (item, path) in enumerate(container.items("env")):
        var = _env_var(container, item, path, context)
        if var is None:
            continue
        if var.name in seen:
            container.report.warn(
                item, path, f"{var.name} is defined again: this entry hides env[{seen[var.name]}]"
            )
        seen[var.name] = i
        found.append(var)
    return tuple(found)


def _env_var(container: Fields, node: yaml.Node, path: str, context: EnvContext) -> EnvVar | None:
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
    own = container.string("name") or ""
    found = _value_from(f, own, context) if "valueFrom" in f else None
    if value and "valueFrom" in f:
        f.error("valueFrom", "may not be set together with a value")
    if name is None or problem or (found is _SKIP):
        return None
    if found is not None:
        return EnvVar(
            name,
            found.value,
            found.field_path,
            found.source,
            found.secret,
            found.resource_field_ref,
        )
    return EnvVar(name, value)


# A valueFrom whose optional source is missing: the variable is not set at all.
_SKIP = EnvVar("")


def _value_from(f: Fields, own: str, context: EnvContext) -> EnvVar | None:
    source = f.mapping("valueFrom", fields.ENV_VAR_SOURCE)
    if source is None:
        return None
    kinds = [
        k
        for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
        if k in source
    ]
    if not kinds:
        if not _refused_source(source.node):  # that error says it already
            source.report.error(
                source.node,
                source.path,
                "must have a source: fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
            )
        return None
    if len(kinds) > 1:
        source.error(kinds[1], f"may not be set together with {kinds[0]}: give one source")
        return None
    kind = kinds[0]
    if kind == "fieldRef":
        field_path = _field_ref(source)
        return EnvVar("", field_path=field_path) if field_path else None
    if kind == "resourceFieldRef":
        ref = resource_field_ref(source, "resourceFieldRef", own, context.containers)
        text = f"resourceFieldRef {_ref_text(ref, own)}" if ref is not None else ""
        return EnvVar("", source=text, resource_field_ref=ref) if ref is not None else None
    return _key_ref(source, kind, context)


def _ref_text(ref: ResourceFieldRef, own: str) -> str:
    where = f" of {ref.container_name}" if ref.container_name != own else ""
    divisor = f" in units of {ref.divisor}" if ref.divisor != "1" else ""
    return f"{ref.resource}{where}{divisor}"


# --- fieldRef and resourceFieldRef ----------------------------------------------------------


def _field_ref(source: Fields) -> str | None:
    ref = source.mapping("fieldRef", fields.FIELD_REF)
    if ref is None:
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
    return isinstance(node, yaml.MappingNode) and bool(node.value)


def _field_path_problem(field_path: str) -> str | None:
    if field_path in _FIELD_PATHS:
        return None
    for prefix in SUBSCRIPTED:
        if field_path.startswith(prefix) and field_path.endswith("']"):
            return names.qualified_name(field_path[len(prefix) : -2])
    choices = [*_FIELD_PATHS, "metadata.labels['KEY']", "metadata.annotations['KEY']"]
    return f"{field_path!r} is not supported (supported: {', '.join(choices)})" + did_you_mean(
        field_path, list(_FIELD_PATHS)
    )


def resource_field_ref(
    parent: Fields, key: str, own: str, containers: tuple[str, ...]
) -> ResourceFieldRef | None:
    """`resourceFieldRef` under *parent*; containerName defaults to *own* ("" to require it)."""
    ref = parent.mapping(key, fields.RESOURCE_FIELD_SELECTOR)
    if ref is None:
        return None
    container = ref.string("containerName") or own
    if not container:
        ref.error("containerName", "required: the container whose resources to read")
    elif containers and container not in containers:
        ref.error(
            "containerName",
            f"{container!r} is not a container of this pod"
            + did_you_mean(container, list(containers)),
        )
        return None
    resource = _resource(ref)
    divisor = _divisor(ref, resource) if resource is not None else None
    if resource is None or divisor is None or not container:
        return None
    return ResourceFieldRef(container, resource, divisor)


def _resource(ref: Fields) -> str | None:
    if not ref.require("resource", "e.g. limits.memory or requests.cpu"):
        return None
    resource = ref.string("resource")
    if resource is not None and resource not in _RESOURCES:
        hint = did_you_mean(resource, list(_RESOURCES))
        ref.error(
            "resource",
            f"{resource!r} is not supported (supported: {', '.join(_RESOURCES)}){hint}",
        )
        return None
    return resource


def _divisor(ref: Fields, resource: str) -> str | None:
    if "divisor" not in ref:
        return "1"
    node = ref["divisor"]
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else None
    allowed = _RESOURCES[resource]
    if text not in allowed:
        ref.error(
            "divisor", f"{text!r} is not a divisor for {resource} (one of {', '.join(allowed)})"
        )
        return None
    return text


# --- ConfigMaps and Secrets ------------------------------------------------------------------


def _key_ref(source: Fields, kind: str, context: EnvContext) -> EnvVar | None:
    rules = (
        fields.CONFIG_MAP_KEY_SELECTOR if kind == "configMapKeyRef" else fields.SECRET_KEY_SELECTOR
    )
    ref = source.mapping(kind, rules)
    if ref is None:
        return None
    has_name = ref.require("name", "the name of a " + _word(kind))
    has_key = ref.require("key", "the key whose value to take")
    name, key = ref.string("name"), ref.string("key")
    optional = ref.flag("optional")
    if not (has_name and has_key) or name is None or key is None:
        return None
    secret = kind == "secretKeyRef"
    data = _data(context, secret, name)
    if data is not None and key in data:
        return EnvVar("", _text(data[key]), source=f"{kind} {name}/{key}", secret=secret)
    if optional:
        return _SKIP
    if data is None:
        ref.error("name", _missing(secret, name, context))
    else:
        ref.error(
            "key",
            f"{_CONFIG_ERROR}: couldn't find key {key} in {_word(kind)} {context.namespace}/"
            f"{name}: the kubelet keeps the container waiting; add the key, or set "
            "optional: true" + did_you_mean(key, list(data)),
        )
    return None


def _word(kind: str) -> str:
    return "Secret" if kind.lower().startswith("secret") else "ConfigMap"


def _data(context: EnvContext, secret: bool, name: str) -> Mapping[str, str | bytes] | None:
    """A Secret's data, or a ConfigMap's `data` (never binaryData, as in the kubelet)."""
    if secret:
        found = context.config.secrets.get(name)
        return found.data if found is not None else None
    config_map = context.config.config_maps.get(name)
    return config_map.data if config_map is not None else None


def _missing(secret: bool, name: str, context: EnvContext) -> str:
    word = "secret" if secret else "configmap"
    kind = "Secret" if secret else "ConfigMap"
    return (
        f'{_CONFIG_ERROR}: {word} "{name}" not found: the kubelet keeps the container waiting; '
        f"add a {kind} named {name} in namespace {context.namespace} to this file (or pass "
        "it with --config), or set optional: true"
    )


def _text(value: str | bytes) -> str:
    # A variable holds bytes; those that are not UTF-8 reach the program unchanged.
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def _env_from(container: Fields, context: EnvContext) -> list[EnvVar]:
    """Every key of each envFrom source, prefixed; a later source wins, as in the kubelet."""
    found: dict[str, EnvVar] = {}
    for item, path in container.items("envFrom"):
        f = fields_of(container.report, item, path, fields.ENV_FROM_SOURCE)
        if f is None:
            continue
        kinds = [k for k in ("configMapRef", "secretRef") if k in f]
        if len(kinds) != 1:
            where = kinds[1] if kinds else "configMapRef"
            message = "give one source: configMapRef or secretRef"
            (f.error(where, message) if kinds else f.report.error(item, path, message))
            continue
        kind = kinds[0]
        secret = kind == "secretRef"
        rules = fields.SECRET_ENV_SOURCE if secret else fields.CONFIG_MAP_ENV_SOURCE
        ref = f.mapping(kind, rules)
        prefix = f.string("prefix") or ""
        if ref is None or not ref.require("name", f"the name of a {_word(kind)}"):
            continue
        name = ref.string("name")
        if name is None:
            continue
        data = _data(context, secret, name)
        if data is None:
            if not ref.flag("optional"):
                ref.error("name", _missing(secret, name, context))
            continue
        skipped = []
        for key in sorted(data):
            variable = prefix + key
            if names.env_name(variable):
                skipped.append(variable)
                continue
            source = f"envFrom {kind} {name}/{key}" + (f", prefix {prefix}" if prefix else "")
            found.pop(variable, None)  # a later source's variable comes later
            found[variable] = EnvVar(variable, _text(data[key]), source=source, secret=secret)
        if skipped:
            f.warn(
                kind,
                f"keys {skipped} of {_word(kind)} {context.namespace}/{name} are skipped: they "
                "are not valid variable names (the kubelet's InvalidEnvironmentVariableNames)",
            )
    return list(found.values())
