"""Pod Security Standards: baseline and restricted, as the admission controller checks them.

Each control reads the manifest as written, not as podvisor would run it:
the admission controller sees the Pod object, so a field left unset where
the standard wants it set (restricted's ``seccompProfile``, ``runAsNonRoot``,
``capabilities.drop: [ALL]``) is a violation even where podvisor's default
would give the same. A violation names the control as the admission
controller's message does (``allowPrivilegeEscalation != false``), the field
and its line, and what to set.

Where Kubernetes reads the level: the label ``pod-security.kubernetes.io/enforce``
of the pod's Namespace. podvisor reads it from a Namespace of the same file
named as the pod's namespace, from the pod's annotation
``podvisor.io/pod-security``, or from ``--pod-security`` (the strictest wins);
the label on the pod itself means nothing to Kubernetes, and is warned about.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from podvisor.supervisor.manifest.nodes import child, plain, value_of
from podvisor.supervisor.manifest.sysctls import SAFE

LEVELS = ("privileged", "baseline", "restricted")
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

_BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                            "container_engine_t"})  # fmt: skip
_RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})  # fmt: skip
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def level(text: str) -> str:
    """A level's name, checked; ValueError with the three to choose from."""
    if text not in LEVELS:
        raise ValueError(f"{text!r} is not a Pod Security Standard: use {', '.join(LEVELS)}")
    return text


def strictest(*levels: str | None) -> str | None:
    given = [lv for lv in levels if lv]
    return max(given, key=LEVELS.index) if given else None


@dataclass(frozen=True)
class Violation:
    """One thing the standard forbids: its control, where, and what to do."""

    level: str  # the lowest level that forbids it
    control: str  # the admission controller's words for the check
    detail: str
    path: str
    node: yaml.Node | None

    def message(self, level: str, verb: str = "violates") -> str:
        """The admission controller's words; kubectl warns with verb "would violate"."""
        return f'{verb} PodSecurity "{level}:latest": {self.control} ({self.detail})'


# --- Reading the manifest as written ------------------------------------------------------


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _value(node: yaml.Node | None) -> object:
    return None if node is None else plain(node)


@dataclass(frozen=True)
class _Context:
    """A securityContext (the pod's or a container's) and who it speaks for."""

    who: str  # 'pod' or 'container "web"'
    path: str  # of the securityContext
    node: yaml.Node | None  # the securityContext, None when not set
    owner: yaml.Node  # where a missing securityContext is reported

    def at(self, *keys: str) -> tuple[yaml.Node | None, str]:
        node, path = self.node, self.path
        for key in keys:
            node, path = value_of(node, key), child(path, key)
        return node, path

    def where(self, *keys: str) -> yaml.Node:
        """The deepest node that is there on the way to *keys*."""
        node, found = self.node, self.node or self.owner
        for key in keys:
            node = value_of(node, key)
            if node is None:
                break
            found = node
        return found


@dataclass(frozen=True)
class _Container:
    name: str
    path: str
    node: yaml.Node
    context: _Context


def _containers(spec: yaml.Node) -> Iterator[_Container]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for index, node in enumerate(_items(value_of(spec, key))):
            path = child(f"spec.{key}", index)
            name = str(_value(value_of(node, "name")) or index)
            sc = child(path, "securityContext")
            context = _Context(f'container "{name}"', sc, value_of(node, "securityContext"), node)
            yield _Container(name, path, node, context)


# --- The controls ---------------------------------------------------------------------------


def violations(spec: yaml.Node, annotations: dict[str, tuple[yaml.Node, str]]) -> list[Violation]:
    """Every violation of the restricted level (baseline's among them) in the pod's *spec*."""
    pod = _Context("pod", "spec.securityContext", value_of(spec, "securityContext"), spec)
    containers = list(_containers(spec))
    found = [
        *_host_namespaces(spec),
        *_host_path_volumes(spec),
        *_sysctls(pod),
        *_apparmor_annotations(annotations),
        *_volume_types(spec),
    ]
    for context in (pod, *(c.context for c in containers)):
        found += [*_profiles(context), *_run_as_user(context)]
    for c in containers:
        found += [*_container_baseline(c), *_container_restricted(c, pod)]
    return found


def _host_namespaces(spec: yaml.Node) -> Iterator[Violation]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        node = value_of(spec, key)
        if _value(node) is True:
            yield Violation("baseline", "host namespaces", f"{key}=true", f"spec.{key}", node)


def _host_path_volumes(spec: yaml.Node) -> Iterator[Violation]:
    for index, volume in enumerate(_items(value_of(spec, "volumes"))):
        if value_of(volume, "hostPath") is not None:
            name = _value(value_of(volume, "name"))
            path = child(child("spec.volumes", index), "hostPath")
            yield Violation("baseline", "hostPath volumes", f'volume "{name}"', path, volume)


def _volume_types(spec: yaml.Node) -> Iterator[Violation]:
    for index, volume in enumerate(_items(value_of(spec, "volumes"))):
        name = _value(value_of(volume, "name"))
        keys = [k.value for k, _ in volume.value] if isinstance(volume, yaml.MappingNode) else []
        for key in keys:
            if key != "name" and key not in _RESTRICTED_VOLUMES:
                path = child(child("spec.volumes", index), key)
                detail = f'volume "{name}" uses restricted volume type "{key}"'
                yield Violation("restricted", "restricted volume types", detail, path, volume)


def _sysctls(pod: _Context) -> Iterator[Violation]:
    node, path = pod.at("sysctls")
    for index, item in enumerate(_items(node)):
        name = _value(value_of(item, "name"))
        if name not in SAFE:
            at = child(child(path, index), "name")
            yield Violation("baseline", "forbidden sysctls", str(name), at, value_of(item, "name"))


def _apparmor_annotations(annotations: dict[str, tuple[yaml.Node, str]]) -> Iterator[Violation]:
    for key, (node, value) in annotations.items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            path = child("metadata.annotations", key)
            detail = f'{key}="{value}"'
            yield Violation("baseline", "forbidden AppArmor profile", detail, path, node)


def _profiles(sc: _Context) -> Iterator[Violation]:
    """AppArmor, SELinux, seccomp (baseline's side) and Windows' hostProcess of one context."""
    node, path = sc.at("appArmorProfile", "type")
    if _value(node) == "Unconfined":
        detail = f'{sc.who} must not set appArmorProfile.type to "Unconfined"'
        yield Violation("baseline", "forbidden AppArmor profile", detail, path, node)
    options, path = sc.at("seLinuxOptions")
    for key in ("type", "user", "role"):
        value = _value(value_of(options, key))
        if value is not None and (key != "type" or value not in _SELINUX_TYPES):
            detail = f'{sc.who} set forbidden securityContext.seLinuxOptions: {key} "{value}"'
            node = value_of(options, key)
            yield Violation("baseline", "seLinuxOptions", detail, child(path, key), node)
    node, path = sc.at("seccompProfile", "type")
    if _value(node) == "Unconfined":
        detail = f'{sc.who} must not set securityContext.seccompProfile.type to "Unconfined"'
        yield Violation("baseline", "seccompProfile", detail, path, node)
    node, path = sc.at("windowsOptions", "hostProcess")
    if _value(node) is True:
        detail = f"{sc.who} must not set securityContext.windowsOptions.hostProcess=true"
        yield Violation("baseline", "hostProcess", detail, path, node)


def _run_as_user(sc: _Context) -> Iterator[Violation]:
    node, path = sc.at("runAsUser")
    if _value(node) == 0:
        yield Violation(
            "restricted", "runAsUser=0", f"{sc.who} must not set runAsUser=0", path, node
        )


def _container_baseline(c: _Container) -> Iterator[Violation]:
    sc = c.context
    node, path = sc.at("privileged")
    if _value(node) is True:
        detail = f"{sc.who} must not set securityContext.privileged=true"
        yield Violation("baseline", "privileged", detail, path, node)
    adds, path = sc.at("capabilities", "add")
    for item in _items(adds):
        if _value(item) not in _BASELINE_CAPABILITIES:
            detail = (
                f'{sc.who} must not include "{_value(item)}" in securityContext.capabilities.add'
            )
            yield Violation("baseline", "non-default capabilities", detail, path, item)
    node, path = sc.at("procMount")
    if _value(node) not in (None, "Default"):
        detail = f'{sc.who} must not set securityContext.procMount to "{_value(node)}"'
        yield Violation("baseline", "procMount", detail, path, node)
    for index, port in enumerate(_items(value_of(c.node, "ports"))):
        host = _value(value_of(port, "hostPort"))
        if host not in (None, 0):
            at = child(child(child(c.path, "ports"), index), "hostPort")
            detail = f"{sc.who} uses hostPort {host}"
            yield Violation("baseline", "hostPort", detail, at, value_of(port, "hostPort"))
    yield from _handler_hosts(c)


def _handler_hosts(c: _Container) -> Iterator[Violation]:
    """Probes and hooks that reach out to another host, as the standard's newest control forbids."""
    handlers = [
        (k, value_of(c.node, k)) for k in ("livenessProbe", "readinessProbe", "startupProbe")
    ]
    life = value_of(c.node, "lifecycle")
    handlers += [(f"lifecycle.{k}", value_of(life, k)) for k in ("postStart", "preStop")]
    for where, handler in handlers:
        for kind in ("httpGet", "tcpSocket"):
            host = value_of(value_of(handler, kind), "host")
            if _value(host) not in (None, ""):
                path = f"{c.path}.{where}.{kind}.host"
                detail = f'{c.context.who} uses probe or lifecycle host "{_value(host)}"'
                yield Violation("baseline", "probe or lifecycle host", detail, path, host)


def _container_restricted(c: _Container, pod: _Context) -> Iterator[Violation]:
    sc = c.context
    node, path = sc.at("allowPrivilegeEscalation")
    if _value(node) is not False:
        detail = f"{sc.who} must set securityContext.allowPrivilegeEscalation=false"
        where = node or sc.where("allowPrivilegeEscalation")
        yield Violation("restricted", "allowPrivilegeEscalation != false", detail, path, where)
    yield from _non_root(c, pod)
    yield from _seccomp_set(c, pod)
    yield from _capabilities_restricted(c)


def _non_root(c: _Container, pod: _Context) -> Iterator[Violation]:
    own, path = c.context.at("runAsNonRoot")
    pods, _ = pod.at("runAsNonRoot")
    effective = _value(own) if own is not None else _value(pods)
    if effective is not True:
        detail = f"pod or {c.context.who} must set securityContext.runAsNonRoot=true"
        where = own or c.context.where("runAsNonRoot")
        yield Violation("restricted", "runAsNonRoot != true", detail, path, where)


def _seccomp_set(c: _Container, pod: _Context) -> Iterator[Violation]:
    own, path = c.context.at("seccompProfile", "type")
    pods, _ = pod.at("seccompProfile", "type")
    effective = _value(own) if own is not None else _value(pods)
    if effective not in ("RuntimeDefault", "Localhost") and effective != "Unconfined":
        detail = (
            f"pod or {c.context.who} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost"'
        )
        where = c.context.where("seccompProfile", "type")
        yield Violation("restricted", "seccompProfile", detail, path, where)


def _capabilities_restricted(c: _Container) -> Iterator[Violation]:
    sc = c.context
    drops, path = sc.at("capabilities", "drop")
    if "ALL" not in [_value(i) for i in _items(drops)]:
        detail = f'{sc.who} must set securityContext.capabilities.drop=["ALL"]'
        where = drops or sc.where("capabilities", "drop")
        yield Violation("restricted", "unrestricted capabilities", detail, path, where)
    adds, path = sc.at("capabilities", "add")
    for item in _items(adds):
        if _value(item) != "NET_BIND_SERVICE":
            detail = (
                f'{sc.who} must not include "{_value(item)}" in securityContext.capabilities.add'
            )
            yield Violation("restricted", "unrestricted capabilities", detail, path, item)


def at_level(found: list[Violation], enforced: str) -> list[Violation]:
    """The violations a level forbids: none for privileged, baseline's, or all."""
    limit = LEVELS.index(enforced)
    return [v for v in found if LEVELS.index(v.level) <= limit]
