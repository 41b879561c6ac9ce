"""The documents of a manifest file: one pod, the configuration it uses, and the rest.

How this works: a file is one or more YAML documents, as `kubectl apply -f`
takes them. Exactly one is the pod: a Pod, or a Deployment, ReplicaSet,
StatefulSet, DaemonSet, Job or CronJob, whose pod template becomes the pod
(`podvisor check` says so in one line, with what a workload does in a cluster
that podvisor does not: replicas above one, rollouts, schedules). ConfigMaps,
Secrets and PersistentVolumeClaims are read for the pod to use, here or from
--config files; any other kind (a Service, an Ingress) is listed as ignored.

A Job keeps its meaning: its pod template's restartPolicy (OnFailure or
Never), backoffLimit (failed containers are restarted in the pod, at most
that many times in all), activeDeadlineSeconds, and completions and
parallelism of 1.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import yaml

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.model import (
    ConfigMap,
    Ignored,
    PersistentVolumeClaim,
    PodConfig,
    PodSpec,
    RestartPolicy,
    Secret,
    Workload,
)
from podvisor.supervisor.manifest.nodes import (
    SUPPORTED,
    Fields,
    Ignore,
    Refuse,
    Report,
    Rule,
    child,
    entries,
    fields_of,
    kind_of,
    string_map,
    value_of,
)
from podvisor.supervisor.manifest.quantity import QuantityError, memory_bytes, parse_quantity

WORKLOADS = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
CONFIGURATION = ("ConfigMap", "Secret", "PersistentVolumeClaim")
_SIZE_MAX = 1024 * 1024  # a ConfigMap's or Secret's data, as etcd keeps it

# --- What each object's fields mean here ------------------------------------------------------

_ROLLOUT = Ignore("rollouts and revisions are a cluster controller's; podvisor runs one pod")
_SELECTOR = Ignore("selects the controller's pods in a cluster; podvisor runs the template's pod")
_HISTORY = Ignore("history of finished Jobs is kept by a cluster's controller")

OBJECT: dict[str, Rule] = {
    "apiVersion": SUPPORTED,
    "kind": SUPPORTED,
    "metadata": SUPPORTED,
    "spec": SUPPORTED,
    "status": Ignore("written by a cluster's controllers"),
}

CONFIG_MAP: dict[str, Rule] = {
    "apiVersion": SUPPORTED,
    "kind": SUPPORTED,
    "metadata": SUPPORTED,
    "data": SUPPORTED,
    "binaryData": SUPPORTED,
    "immutable": Ignore("nothing changes a ConfigMap while the pod runs here"),
}

SECRET: dict[str, Rule] = {
    "apiVersion": SUPPORTED,
    "kind": SUPPORTED,
    "metadata": SUPPORTED,
    "data": SUPPORTED,
    "stringData": SUPPORTED,
    "type": SUPPORTED,
    "immutable": Ignore("nothing changes a Secret while the pod runs here"),
}

PVC_SPEC: dict[str, Rule] = {
    "accessModes": SUPPORTED,
    "resources": SUPPORTED,
    "storageClassName": Ignore("a claim is a folder on this machine, of no storage class"),
    "volumeAttributesClassName": Ignore("a claim is a folder on this machine"),
    "volumeName": Ignore("a claim is a folder on this machine, bound to no PersistentVolume"),
    "selector": Ignore("a claim is a folder on this machine, bound to no PersistentVolume"),
    "volumeMode": Refuse(
        "a claim is a folder on this machine: only volumeMode Filesystem",
        harmless=lambda value: value == "Filesystem",
    ),
    "dataSource": Refuse("cloning a volume or a snapshot takes a cluster's storage driver"),
    "dataSourceRef": Refuse("populating a volume takes a cluster's storage driver"),
}

PVC_RESOURCES: dict[str, Rule] = {"requests": SUPPORTED, "limits": SUPPORTED}

POD_TEMPLATE: dict[str, Rule] = {"metadata": SUPPORTED, "spec": SUPPORTED}

#: A StatefulSet's volumeClaimTemplates[]: a PersistentVolumeClaim without kind.
CLAIM_TEMPLATE: dict[str, Rule] = {
    "apiVersion": SUPPORTED,
    "kind": SUPPORTED,
    "metadata": SUPPORTED,
    "spec": SUPPORTED,
    "status": Ignore("written by a cluster's controllers"),
}

DEPLOYMENT_SPEC: dict[str, Rule] = {
    "replicas": SUPPORTED,
    "selector": _SELECTOR,
    "template": SUPPORTED,
    "strategy": _ROLLOUT,
    "minReadySeconds": _ROLLOUT,
    "revisionHistoryLimit": _ROLLOUT,
    "progressDeadlineSeconds": _ROLLOUT,
    "paused": _ROLLOUT,
}

REPLICA_SET_SPEC: dict[str, Rule] = {
    "replicas": SUPPORTED,
    "selector": _SELECTOR,
    "template": SUPPORTED,
    "minReadySeconds": _ROLLOUT,
}

STATEFUL_SET_SPEC: dict[str, Rule] = {
    "replicas": SUPPORTED,
    "selector": _SELECTOR,
    "template": SUPPORTED,
    "serviceName": Ignore("names in cluster DNS; there is no cluster DNS"),
    "volumeClaimTemplates": SUPPORTED,
    "podManagementPolicy": _ROLLOUT,
    "updateStrategy": _ROLLOUT,
    "revisionHistoryLimit": _ROLLOUT,
    "minReadySeconds": _ROLLOUT,
    "persistentVolumeClaimRetentionPolicy": Ignore(
        "replica 0's claims stay on this machine until `podvisor volume rm`"
    ),
    "ordinals": Ignore("one pod runs, as replica 0"),
}

DAEMON_SET_SPEC: dict[str, Rule] = {
    "selector": _SELECTOR,
    "template": SUPPORTED,
    "updateStrategy": _ROLLOUT,
    "minReadySeconds": _ROLLOUT,
    "revisionHistoryLimit": _ROLLOUT,
}

JOB_SPEC: dict[str, Rule] = {
    "template": SUPPORTED,
    "backoffLimit": SUPPORTED,
    "activeDeadlineSeconds": SUPPORTED,
    "completions": SUPPORTED,
    "parallelism": SUPPORTED,
    "completionMode": Refuse(
        "one pod runs to one completion: only NonIndexed",
        harmless=lambda value: value == "NonIndexed",
    ),
    "suspend": Refuse(
        "a suspended Job runs no pod: remove suspend", harmless=lambda value: value is False
    ),
    "selector": _SELECTOR,
    "manualSelector": _SELECTOR,
    "ttlSecondsAfterFinished": Ignore("a finished Job is deleted by a cluster's controller"),
    "podReplacementPolicy": Ignore("failed containers restart in the one pod here"),
    "managedBy": Ignore("the Job is podvisor's, not a controller's"),
    "scheduling": _SELECTOR,
    "podFailurePolicy": Refuse(
        "pod failure policies are not implemented: backoffLimit counts every failure"
    ),
    "backoffLimitPerIndex": Refuse("indexed Jobs are not implemented: one pod runs"),
    "maxFailedIndexes": Refuse("indexed Jobs are not implemented: one pod runs"),
    "successPolicy": Refuse("success policies are for indexed Jobs, which are not implemented"),
}

CRON_JOB_SPEC: dict[str, Rule] = {
    "jobTemplate": SUPPORTED,
    "schedule": SUPPORTED,  # read for the one line that says it is not followed
    "timeZone": Ignore("schedules are not followed: the Job runs once, now"),
    "concurrencyPolicy": Ignore("schedules are not followed: the Job runs once, now"),
    "startingDeadlineSeconds": Ignore("schedules are not followed: the Job runs once, now"),
    "successfulJobsHistoryLimit": _HISTORY,
    "failedJobsHistoryLimit": _HISTORY,
    "suspend": Refuse(
        "a suspended CronJob runs no Job: remove suspend", harmless=lambda value: value is False
    ),
}

JOB_TEMPLATE: dict[str, Rule] = {"metadata": SUPPORTED, "spec": SUPPORTED}

_SPECS = {
    "Deployment": DEPLOYMENT_SPEC,
    "ReplicaSet": REPLICA_SET_SPEC,
    "StatefulSet": STATEFUL_SET_SPEC,
    "DaemonSet": DAEMON_SET_SPEC,
    "Job": JOB_SPEC,
    "CronJob": CRON_JOB_SPEC,
}


# --- What a file holds ----------------------------------------------------------------------


@dataclass
class Owner:
    """The workload whose pod template is the pod."""

    kind: str
    name: str
    namespace: str
    not_done: list[str] = field(default_factory=list)
    job: bool = False
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None


@dataclass
class Found:
    """The documents of one or more files, sorted out."""

    pod: Fields | None = None  # a Pod's top level, or a workload's pod template
    owner: Owner | None = None
    config_maps: list[tuple[str, ConfigMap]] = field(default_factory=list)  # (namespace, it)
    secrets: list[tuple[str, Secret]] = field(default_factory=list)
    claims: list[tuple[str, PersistentVolumeClaim]] = field(default_factory=list)
    others: list[Ignored] = field(default_factory=list)
    # A Namespace's pod-security.kubernetes.io/MODE labels (enforce, warn, audit), where
    # Kubernetes reads the pod's standard: by the Namespace's name, then by mode, the
    # label's value node and its value.
    pod_security_labels: dict[str, dict[str, tuple[yaml.Node, str]]] = field(default_factory=dict)

    def workload(self) -> Workload | None:
        """The workload whose pod template is the pod, as the model has it."""
        owner = self.owner
        return Workload(owner.kind, owner.name, tuple(owner.not_done)) if owner else None

    def config(self, namespace: str) -> PodConfig:
        """What the pod in *namespace* sees: the objects of its own namespace."""
        return PodConfig(
            config_maps={c.name: c for ns, c in self.config_maps if ns == namespace},
            secrets={s.name: s for ns, s in self.secrets if ns == namespace},
            claims={c.name: c for ns, c in self.claims if ns == namespace},
        )


def sort_out(report: Report, documents: list[yaml.Node], found: Found, main: bool) -> None:
    """Read each document of one file into *found*; *main*: the file that holds the pod.

    The items of a `kind: List` (what `kubectl get -o yaml` writes) count as
    documents. Raises at once (with `report.fail`) when the pod's kind or
    apiVersion is wrong, or there is no pod: nothing else would be worth saying.
    """
    for document in _flat(documents):
        if not isinstance(document, yaml.MappingNode):
            what = f"not {kind_of(document)}"
            report.error(
                document,
                "",
                f"a Pod manifest is a mapping (apiVersion, kind, metadata, spec), {what}",
            )
            continue
        top = fields_of(report, document, "", _rules_for(document))
        assert top is not None
        kind = _kind(top)
        if kind is None:
            continue
        if kind == "Pod" or kind in WORKLOADS:
            _the_pod(top, kind, found, main)
        elif kind in CONFIGURATION:
            _configuration(top, kind, found)
        else:
            line = report.where(top.node)[0]
            found.others.append(Ignored(f"{kind} {_name_of(top)}", line, _other(kind)))
            if kind == "Namespace":
                _pod_security_labels(top, found)
    if main and found.pod is None and found.owner is None:
        report.fail()  # what is wrong with the documents first: it may be why there is no pod
        report.error(
            None, "", "no Pod in this file: add a Pod, or a workload (Deployment, Job, ...)"
        )
        report.fail()


def _flat(documents: list[yaml.Node]) -> Iterator[yaml.Node]:
    for document in documents:
        kind = value_of(document, "kind")
        items = value_of(document, "items")
        if isinstance(kind, yaml.ScalarNode) and kind.value == "List":
            yield from _flat(list(items.value) if isinstance(items, yaml.SequenceNode) else [])
        else:
            yield document


def _rules_for(node: yaml.MappingNode) -> dict[str, Rule]:
    for key, value in node.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "kind"
            and isinstance(value, yaml.ScalarNode)
        ):
            rules = {"ConfigMap": CONFIG_MAP, "Secret": SECRET, "Pod": fields.POD}
            return rules.get(value.value, OBJECT)
    return fields.POD


def _other(kind: str) -> str:
    reasons = {
        "Service": "a Service routes to pods in a cluster; the pod's ports are on its address",
        "Ingress": "an Ingress routes to Services in a cluster; there is none here",
        "ServiceAccount": "there is no API server, so no service account",
        "Namespace": "podvisor keeps no namespaces: the pod's is only a name here "
        "(but for the Pod Security Standards its pod-security.kubernetes.io/ labels ask for)",
        "NetworkPolicy": "podvisor enforces no network policies",
        "HorizontalPodAutoscaler": "podvisor runs one pod and scales none",
        "PodDisruptionBudget": "there are no evictions on one machine",
    }
    return reasons.get(
        kind,
        "podvisor runs one pod, with the ConfigMaps, Secrets and PersistentVolumeClaims it uses",
    )


def _kind(top: Fields) -> str | None:
    if not top.require("kind", "write kind: Pod"):
        return None
    kind = top.string("kind")
    if kind is None:
        return None
    known = {k.lower(): k for k in ("Pod", *WORKLOADS, *CONFIGURATION)}
    if kind not in known.values() and kind.lower() in known:
        right = known[kind.lower()]
        hint = "a Pod is apiVersion: v1, kind: Pod" if right == "Pod" else f"kind: {right}"
        top.error("kind", f"{kind!r}: podvisor runs a Pod ({hint})")
        top.report.fail()
    want = WORKLOADS.get(kind, "v1" if kind == "Pod" or kind in CONFIGURATION else None)
    has_version = top.require("apiVersion", f"write apiVersion: {want or 'v1'}")
    version = top.string("apiVersion") if has_version else None
    if want is not None and version is not None and version != want:
        top.error("apiVersion", f"{version!r}: a {kind} is apiVersion: {want}")
    if want is not None and version != want:
        top.report.fail()  # with the wrong object, what else is wrong with it is moot
    return kind


def _pod_security_labels(top: Fields, found: Found) -> None:
    """The Pod Security Standards a Namespace enforces (or warns of) for its pods, if it says."""
    meta = value_of(top.node, "metadata")
    labels = value_of(meta, "labels") if meta is not None else None
    modes = found.pod_security_labels.setdefault(_name_of(top), {})
    for mode in ("enforce", "warn", "audit"):
        node = value_of(labels, f"pod-security.kubernetes.io/{mode}") if labels else None
        if isinstance(node, yaml.ScalarNode):
            modes[mode] = (node, node.value)


def _name_of(top: Fields) -> str:
    meta = top.mapping("metadata", fields.METADATA)
    return (meta.string("name") if meta is not None else None) or "(no name)"


def _namespace(meta: Fields | None) -> str:
    return (meta.string("namespace") if meta is not None else None) or "default"


def _the_pod(top: Fields, kind: str, found: Found, main: bool) -> None:
    if not main:
        top.error(
            "kind",
            f"a {kind} in a --config file: the pod is the one of the manifest podvisor runs; "
            "--config files hold ConfigMaps, Secrets and PersistentVolumeClaims",
        )
        top.report.fail()
    if found.pod is not None:
        where = found.pod.report.where(found.pod.node)[0]
        top.error(
            "kind",
            f"a second pod (the first is at line {where}): podvisor runs one pod per "
            "manifest; put the other in a file of its own",
        )
        top.report.fail()
    if kind == "Pod":
        found.pod = top
        return
    found.owner, found.pod = _workload(top, kind, found)


# --- Workloads -----------------------------------------------------------------------------------


def _workload(top: Fields, kind: str, found: Found) -> tuple[Owner, Fields | None]:
    meta = top.mapping("metadata", fields.METADATA)
    name = None
    if meta is None:
        top.require("metadata", "at least metadata.name")
    elif meta.require("name", f"the {kind}'s name, which the pod takes"):
        name = meta.string("name")
        problem = names.dns1123_label(name) if name is not None else None
        if problem:
            meta.error("name", problem)
    owner = Owner(kind, name or "", _namespace(meta))
    spec = top.mapping("spec", _SPECS[kind]) if top.require("spec", "its pod template") else None
    if spec is None:
        return owner, None
    if kind == "CronJob":
        spec = _cron_job(spec, owner)
        if spec is None:
            return owner, None
        kind = "Job"
    if kind == "Job":
        _job(spec, owner)
    elif kind != "DaemonSet":
        _replicas(spec, owner)
    else:
        owner.not_done.append("one pod per node: this machine is the one node")
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        owner.not_done.append("rolling updates")
    template = (
        spec.mapping("template", POD_TEMPLATE)
        if spec.require("template", "the pod template")
        else None
    )
    if template is not None and not template.require("spec", "the pod's spec"):
        return owner, None
    if template is not None and kind == "StatefulSet":
        _claim_templates(spec, owner, template, found)
    return owner, template


def _claim_templates(spec: Fields, owner: Owner, template: Fields, found: Found) -> None:
    """Each of volumeClaimTemplates as the StatefulSet's controller makes it for replica 0:
    a claim NAME-STATEFULSET-0, and a volume NAME of the pod that names it."""
    volumes: list[yaml.Node] = []
    for item, path in spec.items("volumeClaimTemplates"):
        claim = fields_of(spec.report, item, path, CLAIM_TEMPLATE)
        meta = claim.mapping("metadata", fields.METADATA) if claim is not None else None
        if claim is None or meta is None:
            if claim is not None:
                claim.require("metadata", "metadata.name: the volume's name in the template")
            continue
        name = meta.string("name") if meta.require("name", "the volume's name") else None
        problem = names.dns1123_label(name) if name is not None else None
        if problem:
            meta.error("name", problem)
        if name is None or problem:
            continue
        claim_name = f"{name}-{owner.name}-0"
        found.claims.append((owner.namespace, _claim(claim, claim_name)))
        volumes.append(_claim_volume(item, name, claim_name))
    if volumes:
        _add_volumes(template, volumes)


def _claim_volume(at: yaml.Node, name: str, claim_name: str) -> yaml.MappingNode:
    """``{name: NAME, persistentVolumeClaim: {claimName: CLAIM}}``, placed where *at* is."""

    def scalar(value: str) -> yaml.ScalarNode:
        return yaml.ScalarNode("tag:yaml.org,2002:str", value, at.start_mark, at.end_mark)

    def mapping(pairs: list[tuple[yaml.Node, yaml.Node]]) -> yaml.MappingNode:
        return yaml.MappingNode("tag:yaml.org,2002:map", pairs, at.start_mark, at.end_mark)

    claim = mapping([(scalar("claimName"), scalar(claim_name))])
    return mapping([(scalar("name"), scalar(name)), (scalar("persistentVolumeClaim"), claim)])


def _add_volumes(template: Fields, volumes: list[yaml.Node]) -> None:
    """The template's spec.volumes with *volumes* after its own (a name given twice is
    then refused, as the API server refuses a template volume a claim template names)."""
    spec = value_of(template.node, "spec")
    if not isinstance(spec, yaml.MappingNode):
        return
    node = value_of(spec, "volumes")
    if isinstance(node, yaml.SequenceNode):
        node.value.extend(volumes)
        return
    if node is None:
        at = spec
        key = yaml.ScalarNode("tag:yaml.org,2002:str", "volumes", at.start_mark, at.end_mark)
        items = yaml.SequenceNode("tag:yaml.org,2002:seq", volumes, at.start_mark, at.end_mark)
        spec.value.append((key, items))


def _cron_job(spec: Fields, owner: Owner) -> Fields | None:
    """The CronJob's Job spec; its schedule is named as not followed."""
    schedule = spec.string("schedule") if spec.require("schedule", "e.g. '*/5 * * * *'") else None
    owner.not_done.append(f"the schedule {schedule!r} (the Job runs once, now)")
    job = (
        spec.mapping("jobTemplate", JOB_TEMPLATE)
        if spec.require("jobTemplate", "the Job to run")
        else None
    )
    if job is None or not job.require("spec", "the Job's spec"):
        return None
    return job.mapping("spec", JOB_SPEC)


def _replicas(spec: Fields, owner: Owner) -> None:
    replicas = spec.integer("replicas", minimum=0)
    if replicas == 0:
        spec.error("replicas", "0 asks for no pod: nothing would run")
    elif replicas is not None and replicas > 1:
        owner.not_done.append(f"replicas: {replicas} (one pod runs)")


def _job(spec: Fields, owner: Owner) -> None:
    owner.job = True
    for key in ("completions", "parallelism"):
        value = spec.integer(key, minimum=0)
        if value is not None and value != 1:
            spec.error(
                key,
                f"{value}: podvisor runs one pod to one completion; set {key}: 1 or leave it out",
            )
    limit = spec.integer("backoffLimit", minimum=0, maximum=2**31 - 1)
    owner.backoff_limit = 6 if limit is None else limit  # Kubernetes' default
    owner.active_deadline_seconds = spec.integer("activeDeadlineSeconds", minimum=1)
    owner.not_done.append(
        "a failed pod is retried in place: its failed containers restart, counted against "
        f"backoffLimit ({owner.backoff_limit}), where a cluster would make a new pod"
    )


# --- ConfigMaps, Secrets, PersistentVolumeClaims ----------------------------------------------


def _configuration(top: Fields, kind: str, found: Found) -> None:
    meta = top.mapping("metadata", fields.METADATA)
    if meta is None:
        top.require("metadata", "at least metadata.name")
        return
    if not meta.require("name", f"the {kind}'s name, by which the pod refers to it"):
        return
    name = meta.string("name")
    problem = names.dns1123_subdomain(name) if name is not None else None
    if problem:
        meta.error("name", problem)
    if name is None or problem:
        return
    namespace = _namespace(meta)
    listed = {
        "ConfigMap": [(ns, c.name) for ns, c in found.config_maps],
        "Secret": [(ns, s.name) for ns, s in found.secrets],
        "PersistentVolumeClaim": [(ns, c.name) for ns, c in found.claims],
    }[kind]
    if (namespace, name) in listed:
        meta.error("name", f"{name!r}: a second {kind} of that name in namespace {namespace}")
        return
    if kind == "ConfigMap":
        found.config_maps.append((namespace, _config_map(top, name)))
    elif kind == "Secret":
        found.secrets.append((namespace, _secret(top, name)))
    else:
        found.claims.append((namespace, _claim(top, name)))


def _key_values(top: Fields, key: str) -> list[tuple[yaml.Node, str, str]]:
    node = top.get(key)
    if node is None:
        return []
    from podvisor.supervisor.manifest.volumes import config_key_problem

    found: list[tuple[yaml.Node, str, str]] = []
    for key_node, _, k, value in string_map(top.report, node, top.at(key)):
        problem = config_key_problem(k)
        if problem:
            top.report.error(key_node, child(top.at(key), k), problem)
            continue
        found.append((key_node, k, value))
    return found


def _config_map(top: Fields, name: str) -> ConfigMap:
    data = {k: v for _, k, v in _key_values(top, "data")}
    binary: dict[str, bytes] = {}
    for key_node, k, v in _key_values(top, "binaryData"):
        decoded = _base64(top, key_node, child(top.at("binaryData"), k), v)
        if decoded is None:
            continue
        if k in data:
            top.report.error(
                key_node,
                child(top.at("binaryData"), k),
                f"{k!r} is in data already: a key is in one of them",
            )
            continue
        binary[k] = decoded
    _size(top, sum(len(v.encode()) for v in data.values()) + sum(map(len, binary.values())))
    return ConfigMap(name, data, binary)


def _secret(top: Fields, name: str) -> Secret:
    data: dict[str, bytes] = {}
    for key_node, k, v in _key_values(top, "data"):
        decoded = _base64(top, key_node, child(top.at("data"), k), v)
        if decoded is not None:
            data[k] = decoded
    for _, k, v in _key_values(top, "stringData"):
        data[k] = v.encode()  # stringData wins over data, as the API server merges them
    kind = top.string("type") or "Opaque"
    _size(top, sum(map(len, data.values())))
    _typed_secret(top, kind, data)
    return Secret(name, kind, data)


def _typed_secret(top: Fields, kind: str, data: Mapping[str, bytes]) -> None:
    """The keys a Secret of a known type must have, as the API server checks them."""
    required = {
        "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        "kubernetes.io/dockercfg": ".dockercfg",
        "kubernetes.io/tls": "tls.crt",
        "kubernetes.io/ssh-auth": "ssh-privatekey",
    }.get(kind)
    if required is not None and required not in data:
        top.error("type", f"a {kind} Secret needs the key {required} in data or stringData")
        return
    if kind == "kubernetes.io/dockerconfigjson":
        try:
            config = json.loads(data[".dockerconfigjson"])
        except ValueError as error:
            top.error("type", f".dockerconfigjson is not JSON: {error}")
            return
        if not isinstance(config, dict) or not isinstance(config.get("auths"), dict):
            top.error(
                "type",
                ".dockerconfigjson must be a JSON object with auths: {REGISTRY: {auth: ...}}",
            )


def _base64(top: Fields, node: yaml.Node, path: str, value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        top.report.error(
            node, path, "not base64: encode it (base64 -w0), or put the text under stringData"
        )
        return None


def _size(top: Fields, size: int) -> None:
    if size > _SIZE_MAX:
        top.report.error(
            top.node, top.path or "data", f"{size} bytes of data: Kubernetes keeps at most 1 MiB"
        )


def _claim(top: Fields, name: str) -> PersistentVolumeClaim:
    spec = top.mapping("spec", PVC_SPEC)
    if spec is None:
        return PersistentVolumeClaim(name)
    modes = spec.strings("accessModes")
    for mode in modes:
        if mode not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
            spec.error(
                "accessModes",
                f"{mode!r} is not ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod",
            )
    size = None
    resources = spec.mapping("resources", PVC_RESOURCES)
    requests = resources.get("requests") if resources is not None else None
    if resources is not None and isinstance(requests, yaml.MappingNode):
        for key_node, value in entries(top.report, requests, resources.at("requests")):
            where = child(resources.at("requests"), key_node.value)
            if key_node.value != "storage":
                top.report.error(key_node, where, "a claim requests storage only")
                continue
            text = str(value.value) if isinstance(value, yaml.ScalarNode) else ""
            try:
                size = memory_bytes(parse_quantity(text.strip()))
            except QuantityError:
                top.report.error(value, where, f"{text!r} is not a size (examples: 1Gi, 500Mi)")
    return PersistentVolumeClaim(name, size, modes)


# --- The pod as its owner says --------------------------------------------------------------


def as_owner_says(spec: Fields, pod: PodSpec, owner: Owner) -> PodSpec:
    """The template's spec with the workload's rules: its restartPolicy, a Job's limits."""
    policy = spec.string("restartPolicy") if "restartPolicy" in spec else None
    if owner.job:
        if policy not in ("OnFailure", "Never"):
            spec.error(
                "restartPolicy",
                f"{'required' if policy is None else repr(policy)}: a Job's pod has "
                "restartPolicy OnFailure or Never",
            )
        deadlines = [d for d in (pod.active_deadline_seconds, owner.active_deadline_seconds) if d]
        return replace(
            pod,
            backoff_limit=owner.backoff_limit,
            active_deadline_seconds=min(deadlines) if deadlines else None,
        )
    if pod.restart_policy is not RestartPolicy.ALWAYS:
        spec.error(
            "restartPolicy",
            f"{pod.restart_policy.value!r}: a {owner.kind}'s pod has restartPolicy Always "
            "(a Job runs to completion)",
        )
    return pod


def pull_secrets(spec: Fields, config: PodConfig) -> tuple[str, ...]:
    """`imagePullSecrets`: the names of registry Secrets of this file.

    A name that is missing, or a Secret of another type, is warned about and
    left out: the kubelet, too, pulls without it.
    """
    found = []
    for item, path in spec.items("imagePullSecrets"):
        ref = fields_of(spec.report, item, path, fields.LOCAL_OBJECT_REFERENCE)
        name = (
            ref.string("name")
            if ref is not None and ref.require("name", "a Secret's name")
            else None
        )
        if ref is None or name is None:
            continue
        secret = config.secrets.get(name)
        if secret is None:
            ref.warn(
                "name",
                f'secret "{name}" not found: images are pulled without it, as the kubelet does',
            )
        elif secret.type != "kubernetes.io/dockerconfigjson":
            ref.warn(
                "name",
                f"Secret {name} is of type {secret.type}: podvisor takes registry credentials "
                "from kubernetes.io/dockerconfigjson Secrets only, and pulls without it",
            )
        else:
            found.append(name)
    return tuple(found)
