"""`load()`: a manifest file in, a validated `Pod` out, or every problem at once.

How this works: the text is composed into YAML nodes (nodes.py), its
documents sorted out (documents.py: the Pod or a workload's pod template, the
ConfigMaps, Secrets and claims beside it; a wrong kind or apiVersion is the
only thing said), then the pod is read top down: metadata, spec and each
container (containers.py, probes.py, security.py, env.py, volumes.py), then
the `podvisor.io/` annotations (settings.py), then the rules that span
containers: unique names, host ports, hook and grace-period sums,
sidecars nothing waits for. Each reader records problems in one `Report`;
only at the end does `load` raise ConfigError carrying all of them in file
order.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING

import yaml

from podvisor.supervisor.errors import ConfigError, Problem
from podvisor.supervisor.manifest import dns, documents, fields, lsm, names, podsecurity, volumes
from podvisor.supervisor.manifest.bounds import MAX_MANIFEST_BYTES
from podvisor.supervisor.manifest.containers import ParsedContainer, PodContext, container
from podvisor.supervisor.manifest.env import EnvContext
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    LoadedPod,
    Pod,
    PodSpec,
    RestartPolicy,
    SleepAction,
)
from podvisor.supervisor.manifest.nodes import (
    Fields,
    Report,
    child,
    compose_all,
    position,
    string_map,
)
from podvisor.supervisor.manifest.podsecurity import strictest
from podvisor.supervisor.manifest.security import pod_security
from podvisor.supervisor.manifest.settings import Annotation, Settings, read_settings
from podvisor.supervisor.manifest.sysctls import read_sysctls

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path  # not imported at run time: `podvisor check` starts faster

_ANNOTATIONS_MAX = 256 * 1024  # Kubernetes' TotalAnnotationSizeLimitB


def load(
    source: str | Path,
    text: str | None = None,
    config: Sequence[str | Path] = (),
    pod_security: str | None = None,
) -> LoadedPod:
    """Load and validate a Pod manifest (YAML or JSON); `-` reads standard input.

    The file holds one Pod or workload, and may hold the ConfigMaps, Secrets and
    PersistentVolumeClaims it uses; *config* names more files (or directories
    of them) with those. Raises ConfigError listing every problem, each as
    `FILE:LINE:COLUMN: PATH: MESSAGE`, when the manifest is not a pod podvisor can run.
    *pod_security*: a Pod Security Standard the pod must meet, as `--pod-security` asks.
    """
    name = "<stdin>" if str(source) == "-" else str(source)
    found = documents.Found()
    warnings: list[Problem] = []
    for path in _config_files(config):
        beside = Report(path)
        documents.sort_out(beside, compose_all(path, _read(path, path)), found, main=False)
        warnings += beside.warnings
    if text is None:
        text = _read(source, name)
    report = Report(name)
    documents.sort_out(report, compose_all(name, text), found, main=True)
    pod = _pod(report, found, pod_security)
    report.fail()
    assert pod is not None
    warnings = sorted(report.warnings, key=lambda p: (p.line, p.column)) + warnings
    ignored = sorted(report.ignored, key=lambda i: i.line)
    return LoadedPod(
        pod,
        tuple(ignored),
        tuple(str(w) for w in warnings),
        workload=found.workload(),
        not_yet=tuple(str(p) for p in report.not_yet),
        others=tuple(found.others),
    )


def _config_files(config: Sequence[str | Path]) -> list[str]:
    """--config: files as given, and the .yaml, .yml and .json files of a directory, by name."""
    files = []
    for given in config:
        if os.path.isdir(given):
            inside = sorted(os.listdir(given))
            files += [
                os.path.join(given, f) for f in inside if f.endswith((".yaml", ".yml", ".json"))
            ]
        else:
            files.append(os.fspath(given))
    return files


def _read(source: str | Path, name: str) -> str:
    try:
        # One character past the limit is enough for compose_all to refuse it.
        if str(source) == "-":
            return sys.stdin.read(MAX_MANIFEST_BYTES + 1)
        with open(os.fspath(source), encoding="utf-8") as file:
            return file.read(MAX_MANIFEST_BYTES + 1)
    except UnicodeDecodeError as error:
        raise ConfigError([Problem(name, 0, 0, "", f"not UTF-8 text: {error.reason}")]) from None
    except OSError as error:
        raise ConfigError([Problem(name, 0, 0, "", f"cannot read: {error.strerror}")]) from None


# --- Pod and metadata ----------------------------------------------------------------


def _pod(report: Report, found: documents.Found, pod_security: str | None = None) -> Pod | None:
    top, owner = found.pod, found.owner
    if top is None:
        return None
    if owner is None:  # a workload's pod takes the workload's name
        top.require("metadata", "at least metadata.name")
    meta = top.mapping("metadata", fields.METADATA) or Fields(report, top.node, "metadata", {})
    pod_name = owner.name if owner is not None else None
    named = owner is None and "metadata" in top
    if named and meta.require("name", "the pod's name (e.g. name: web)"):
        pod_name = _dns_label(meta, "name")
    namespace = owner.namespace if owner is not None else _dns_label(meta, "namespace")
    namespace = namespace or "default"
    labels = _labels(meta)
    annotations = _annotations(meta)
    spec = (
        top.mapping("spec", fields.POD_SPEC)
        if top.require("spec", "the pod's containers")
        else None
    )
    if spec is None:
        return None
    config = found.config(namespace)
    pod_spec, parsed = _spec(spec, EnvContext(namespace, config, _container_names(spec)))
    if owner is not None:
        pod_spec = documents.as_owner_says(spec, pod_spec, owner)
    containers = [p.container.name for p in parsed]
    settings = read_settings(report, annotations, containers, pod_spec.host_network)
    lsm.apparmor_annotations(report, annotations, containers)
    enforced = strictest(
        pod_security,
        settings.pod.pod_security,
        _namespace_level(report, found, namespace, "enforce"),
    )
    warned = strictest(*(_namespace_level(report, found, namespace, m) for m in ("warn", "audit")))
    _pod_security(report, spec, annotations, enforced, warned)
    pod_spec = _with_settings(report, pod_spec, parsed, settings)
    pod_spec = dataclasses.replace(
        pod_spec,
        sysctls=read_sysctls(
            spec,
            host_network=pod_spec.host_network,
            host_ipc=pod_spec.host_ipc,
            network=settings.pod.network,
            allowed=settings.pod.allowed_unsafe_sysctls,
        ),
    )
    _across_containers(report, pod_spec, parsed)
    if settings.pod.network == "loopback":
        _no_host_ports_on_loopback(report, parsed)
    return Pod(
        name=pod_name or "",
        namespace=namespace,
        uid=meta.string("uid") or _new_uid(),
        labels={k: v for _, _, k, v in labels},
        annotations={k: v for _, _, k, v in annotations},
        spec=pod_spec,
        settings=dataclasses.replace(settings.pod, pod_security=enforced),
        source=report.source,
        config=config,
    )


def _namespace_level(
    report: Report, found: documents.Found, namespace: str, mode: str
) -> str | None:
    """The level the pod's Namespace asks for in *mode*, where the file has that Namespace."""
    label = found.pod_security_labels.get(namespace, {}).get(mode)
    if label is None:
        return None
    node, value = label
    try:
        return podsecurity.level(value)
    except ValueError as error:
        report.error(node, f"metadata.labels[pod-security.kubernetes.io/{mode}]", str(error))
        return None


def _pod_security(
    report: Report,
    spec: Fields,
    annotations: list[Annotation],
    enforced: str | None,
    warned: str | None,
) -> None:
    """Each violation of the enforced standard, as a problem at its line; of the warned one,
    as a warning (kubectl's "would violate PodSecurity")."""
    for key_node, _, key, _ in annotations:
        if key == podsecurity.ENFORCE_LABEL:
            report.warn(
                key_node,
                child("metadata.annotations", key),
                "Kubernetes reads this from the pod's Namespace, not the pod: put it on a "
                "Namespace in this file, or use podvisor.io/pod-security",
            )
    if enforced is None and warned is None:
        return
    given = {key: (value_node, value) for _, value_node, key, value in annotations}
    found = podsecurity.violations(spec.node, given)
    refused = podsecurity.at_level(found, enforced) if enforced else []
    for violation in refused:
        report.error(violation.node, violation.path, violation.message(enforced or ""))
    for violation in podsecurity.at_level(found, warned) if warned else []:
        if violation not in refused:
            said = violation.message(warned or "", "would violate")
            report.warn(violation.node, violation.path, said)


def _new_uid() -> str:
    import uuid  # imports platform: paid only when the manifest has no uid

    return str(uuid.uuid4())


def _dns_label(f: Fields, key: str) -> str | None:
    value = f.string(key)
    problem = names.dns1123_label(value) if value is not None else None
    if problem:
        f.error(key, problem)
        return None
    return value


def _labels(meta: Fields) -> list[Annotation]:
    node = meta.get("labels")
    found = string_map(meta.report, node, meta.at("labels")) if node is not None else []
    for key_node, value_node, key, value in found:
        where = child(meta.at("labels"), key)
        for problem, at in (
            (names.qualified_name(key), key_node),
            (names.label_value(value), value_node),
        ):
            if problem:
                meta.report.error(at, where, problem)
    return found


def _annotations(meta: Fields) -> list[Annotation]:
    node = meta.get("annotations")
    found = string_map(meta.report, node, meta.at("annotations")) if node is not None else []
    for key_node, _, key, _ in found:
        problem = names.qualified_name(key)
        if problem:
            meta.report.error(key_node, child(meta.at("annotations"), key), problem)
    size = sum(len(k) + len(v) for _, _, k, v in found)
    if size > _ANNOTATIONS_MAX:
        meta.error("annotations", f"{size} bytes: Kubernetes allows at most 256 KiB")
    return found


# --- Spec ------------------------------------------------------------------------------


def _spec(spec: Fields, env: EnvContext) -> tuple[PodSpec, list[ParsedContainer]]:
    os_name = _os(spec)
    context = PodContext(
        host_network=spec.flag("hostNetwork"),
        security=pod_security(spec.report, spec.get("securityContext"), os_name),
        os_name=os_name,
        env_context=env,
    )
    pod_volumes = volumes.read_volumes(spec, env)
    init = volumes.with_mounts(spec, _containers(spec, "initContainers", context), pod_volumes)
    main = volumes.with_mounts(spec, _containers(spec, "containers", context), pod_volumes)
    grace = spec.integer("terminationGracePeriodSeconds", minimum=0)
    policy = dns.dns_policy(spec)
    pod_spec = PodSpec(
        containers=tuple(p.container for p in main),
        init_containers=tuple(p.container for p in init),
        restart_policy=_restart_policy(spec),
        termination_grace_period_seconds=30 if grace is None else grace,
        active_deadline_seconds=spec.integer("activeDeadlineSeconds", minimum=1),
        share_process_namespace=spec.flag("shareProcessNamespace"),
        hostname=_dns_label(spec, "hostname"),
        host_network=context.host_network,
        host_pid=spec.flag("hostPID"),
        host_ipc=spec.flag("hostIPC"),
        host_aliases=dns.host_aliases(spec),
        dns_policy=policy,
        dns_config=dns.dns_config(spec, policy),
        volumes=pod_volumes,
        image_pull_secrets=documents.pull_secrets(spec, env.config),
        service_account_name=spec.string("serviceAccountName") or "default",
    )
    if pod_spec.share_process_namespace and pod_spec.host_pid:
        spec.error("shareProcessNamespace", "cannot be true with hostPID: true")
    return pod_spec, init + main


def _containers(spec: Fields, key: str, context: PodContext) -> list[ParsedContainer]:
    items = spec.items(key)
    if key == "containers" and not items:
        node = spec.get(key)
        if node is None:
            spec.error(key, "required: at least one container")
        elif isinstance(node, yaml.SequenceNode):
            spec.error(key, "must list at least one container")
    parsed = (
        container(spec.report, item, path, key == "initContainers", context) for item, path in items
    )
    return [p for p in parsed if p is not None]


def _container_names(spec: Fields) -> tuple[str, ...]:
    """Every container's name, read ahead: a container's env may refer to another's resources."""
    found = []
    for key in ("initContainers", "containers"):
        node = spec.get(key)
        for item in node.value if isinstance(node, yaml.SequenceNode) else ():
            for k, v in item.value if isinstance(item, yaml.MappingNode) else ():
                if k.value == "name" and isinstance(v, yaml.ScalarNode):
                    found.append(str(v.value))
    return tuple(found)


def _restart_policy(spec: Fields) -> RestartPolicy:
    return spec.choice("restartPolicy", RestartPolicy, RestartPolicy.ALWAYS)


def _os(spec: Fields) -> str | None:
    os = spec.mapping("os", fields.POD_OS)
    name = os.string("name") if os is not None else None
    if name not in (None, "linux"):
        assert os is not None
        os.error("name", f"{name!r}: podvisor runs Linux programs only (os.name: linux)")
    return name


def _with_settings(
    report: Report, spec: PodSpec, parsed: list[ParsedContainer], settings: Settings
) -> PodSpec:
    """The spec with each container's `settings` filled in from the annotations."""
    built = {}
    for p in parsed:
        name = p.container.name
        own = settings.containers.get(name, {}).get("stop_signal")
        if p.stop_signal is not None and own is not None and own != p.stop_signal:
            key = f"podvisor.io/stop-signal.{name}"
            where = child("metadata.annotations", key)
            report.error(
                settings.nodes[key],
                where,
                "contradicts the container's lifecycle.stopSignal; keep one",
            )
        with_settings = settings.for_container(name, p.stop_signal)
        built[name] = dataclasses.replace(p.container, settings=with_settings)
        _root_rules(report, p, built[name], settings.pod.rootfs)
    return dataclasses.replace(
        spec,
        containers=tuple(built.get(c.name, c) for c in spec.containers),
        init_containers=tuple(built.get(c.name, c) for c in spec.init_containers),
    )


def _root_rules(report: Report, p: ParsedContainer, c: Container, pod_rootfs: str | None) -> None:
    """A container in host mode needs a command; one on an image needs an image."""
    from podvisor.supervisor.manifest.rootfs import RootMode, choice_for

    choice = choice_for(c, pod_rootfs)
    if choice.mode is RootMode.HOST and not c.command:
        report.error(
            p.node,
            child(p.path, "command"),
            f"required in host mode ({choice.why}): podvisor runs the program from the host's "
            "file system, so give it and its arguments (e.g. command: [python3, -m, "
            "http.server]), or name an image that says what to run",
        )
    if choice.mode is RootMode.IMAGE and not c.image:
        report.error(
            p.node,
            child(p.path, "image"),
            f"required: {choice.why}, but the container names no image",
        )
    if choice.mode is RootMode.HOST:
        _non_root_in_host_mode(report, p, c)


def _non_root_in_host_mode(report: Report, p: ParsedContainer, c: Container) -> None:
    """runAsNonRoot with no runAsUser: in host mode the uid is podvisor's own, root here.

    The kubelet refuses an image of root so; on an image, its User is checked
    where the image is had (`pod.rootfs`).
    """
    sc = c.security_context
    if not sc.run_as_non_root or sc.run_as_user is not None or os.geteuid() != 0:
        return
    path = child(p.path, "securityContext")
    node = _value_of(p.node, "securityContext")
    own = _value_of(node, "runAsNonRoot")
    report.error(
        own or node or p.node,
        child(path, "runAsNonRoot") if own is not None else path,
        f"container has runAsNonRoot and image will run as root (container: {c.name}): "
        "with no image, a container runs as the user podvisor runs as (root here); "
        "set runAsUser to a uid other than 0",
    )


def _value_of(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v  # type: ignore[no-any-return]
    return None


# --- Rules across containers, and warnings ------------------------------------------------


def _across_containers(report: Report, spec: PodSpec, parsed: list[ParsedContainer]) -> None:
    _unique_names(report, parsed)
    _host_ports(report, parsed)
    settled = {c.name: c for c in spec.all_containers}  # with their annotations' settings
    for p in parsed:
        _pre_stop_time(report, spec.termination_grace_period_seconds, p)
        _probe_times(report, p)
        c = settled.get(p.container.name, p.container)
        # As in Kubernetes, only a startupProbe holds back what starts after a
        # sidecar; here its notification-fd line does too.
        waits = c.startup_probe is not None or c.settings.notification_fd is not None
        if c.kind is ContainerKind.SIDECAR and not waits and spec.containers:
            hint = " (its readinessProbe does not hold them back)" if c.readiness_probe else ""
            report.warn(
                p.name_node,
                p.path,
                "sidecar without a startupProbe: the containers after it start as soon as "
                f"its process has started, ready or not{hint}",
            )


def _unique_names(report: Report, parsed: list[ParsedContainer]) -> None:
    seen: dict[str, ParsedContainer] = {}
    for p in parsed:
        name = p.container.name
        if name and name in seen:
            first = position(seen[name].name_node)[0]
            report.error(
                p.name_node,
                child(p.path, "name"),
                f"{name!r} is taken (line {first}): names are unique across containers "
                "and initContainers",
            )
        seen.setdefault(name, p)


def _host_ports(report: Report, parsed: list[ParsedContainer]) -> None:
    seen: dict[tuple[int, str], str] = {}
    for p in parsed:
        for port, (node, path) in zip(p.container.ports, p.port_nodes, strict=True):
            key = (port.host_port or 0, port.protocol)
            if port.host_port and key in seen:
                report.error(
                    node,
                    child(path, "hostPort"),
                    f"{port.host_port}/{port.protocol} is taken already, "
                    f"by container {seen[key]!r}",
                )
            seen.setdefault(key, p.container.name)


def _no_host_ports_on_loopback(report: Report, parsed: list[ParsedContainer]) -> None:
    """A hostPort forwards to the pod's own address, as Kubernetes' DNAT does: the
    loopback network has none but 127.0.0.1, where a server is the pod's alone."""
    for p in parsed:
        for port, (node, path) in zip(p.container.ports, p.port_nodes, strict=True):
            if port.host_port:
                report.error(
                    node,
                    child(path, "hostPort"),
                    "needs the pod's own address to forward to, and the loopback network "
                    "has none: use the bridge network (podvisor.io/network: bridge) or "
                    "remove hostPort",
                )


def _pre_stop_time(report: Report, grace: int, p: ParsedContainer) -> None:
    """A preStop sleep runs inside the grace period: longer is an error, as long a warning."""
    pre_stop = p.container.lifecycle.pre_stop
    if not isinstance(pre_stop, SleepAction) or p.pre_stop_node is None:
        return
    seconds = pre_stop.seconds
    path = f"{p.path}.lifecycle.preStop.sleep.seconds"
    if seconds > grace:
        report.error(
            p.pre_stop_node,
            path,
            f"{seconds}s is longer than terminationGracePeriodSeconds ({grace}s): "
            "the container would be killed during its preStop hook",
        )
    elif seconds == grace:
        report.warn(
            p.pre_stop_node,
            path,
            f"{seconds}s takes all of terminationGracePeriodSeconds ({grace}s): "
            "the container is killed as soon as it is sent its stop signal",
        )
    c = p.container
    for which, probe in (("livenessProbe", c.liveness_probe), ("startupProbe", c.startup_probe)):
        probe_grace = probe.termination_grace_period_seconds if probe else None
        if probe_grace is not None and seconds >= probe_grace:
            report.warn(
                p.pre_stop_node,
                path,
                f"{seconds}s is not shorter than {which}.terminationGracePeriodSeconds "
                f"({probe_grace}s): when that probe fails, the container is killed during "
                "its preStop hook",
            )


def _probe_times(report: Report, p: ParsedContainer) -> None:
    c = p.container
    probes = {
        "livenessProbe": c.liveness_probe,
        "readinessProbe": c.readiness_probe,
        "startupProbe": c.startup_probe,
    }
    for which, node in p.probe_nodes.items():
        probe = probes[which]
        if probe is not None and probe.timeout_seconds >= probe.period_seconds:
            report.warn(
                node,
                child(p.path, which),
                f"timeoutSeconds ({probe.timeout_seconds}) is not below periodSeconds "
                f"({probe.period_seconds}): a slow probe runs into the next one",
            )
