"""Every Kubernetes Pod field is either supported, ignored with a reason, or refused with one.

The tables in podvisor.supervisor.manifest.fields are checked against
Kubernetes' own OpenAPI schema (bundled with kubernetes-validate), so a field
a cluster accepts never falls through to "unknown field", and no table
invents a field Kubernetes does not have.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import pytest
import yaml

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import fields, load
from podvisor.supervisor.manifest.nodes import SUPPORTED, Ignore, Refuse, Rule

# Our table -> Kubernetes' definition.
TABLES = {
    "POD": "io.k8s.api.core.v1.Pod",
    "METADATA": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "POD_SPEC": "io.k8s.api.core.v1.PodSpec",
    "POD_SECURITY_CONTEXT": "io.k8s.api.core.v1.PodSecurityContext",
    "POD_OS": "io.k8s.api.core.v1.PodOS",
    "HOST_ALIAS": "io.k8s.api.core.v1.HostAlias",
    "POD_DNS_CONFIG": "io.k8s.api.core.v1.PodDNSConfig",
    "POD_DNS_CONFIG_OPTION": "io.k8s.api.core.v1.PodDNSConfigOption",
    "CONTAINER": "io.k8s.api.core.v1.Container",
    "CONTAINER_PORT": "io.k8s.api.core.v1.ContainerPort",
    "RESOURCES": "io.k8s.api.core.v1.ResourceRequirements",
    "ENV_VAR": "io.k8s.api.core.v1.EnvVar",
    "ENV_VAR_SOURCE": "io.k8s.api.core.v1.EnvVarSource",
    "FIELD_REF": "io.k8s.api.core.v1.ObjectFieldSelector",
    "SECURITY_CONTEXT": "io.k8s.api.core.v1.SecurityContext",
    "CAPABILITIES": "io.k8s.api.core.v1.Capabilities",
    "SECCOMP_PROFILE": "io.k8s.api.core.v1.SeccompProfile",
    "SYSCTL": "io.k8s.api.core.v1.Sysctl",
    "APP_ARMOR_PROFILE": "io.k8s.api.core.v1.AppArmorProfile",
    "SELINUX_OPTIONS": "io.k8s.api.core.v1.SELinuxOptions",
    "WINDOWS_OPTIONS": "io.k8s.api.core.v1.WindowsSecurityContextOptions",
    "PROBE": "io.k8s.api.core.v1.Probe",
    "EXEC": "io.k8s.api.core.v1.ExecAction",
    "HTTP_GET": "io.k8s.api.core.v1.HTTPGetAction",
    "HTTP_HEADER": "io.k8s.api.core.v1.HTTPHeader",
    "TCP_SOCKET": "io.k8s.api.core.v1.TCPSocketAction",
    "GRPC": "io.k8s.api.core.v1.GRPCAction",
    "LIFECYCLE": "io.k8s.api.core.v1.Lifecycle",
    "LIFECYCLE_HANDLER": "io.k8s.api.core.v1.LifecycleHandler",
    "SLEEP": "io.k8s.api.core.v1.SleepAction",
    "CONFIG_MAP_KEY_SELECTOR": "io.k8s.api.core.v1.ConfigMapKeySelector",
    "SECRET_KEY_SELECTOR": "io.k8s.api.core.v1.SecretKeySelector",
    "RESOURCE_FIELD_SELECTOR": "io.k8s.api.core.v1.ResourceFieldSelector",
    "ENV_FROM_SOURCE": "io.k8s.api.core.v1.EnvFromSource",
    "CONFIG_MAP_ENV_SOURCE": "io.k8s.api.core.v1.ConfigMapEnvSource",
    "SECRET_ENV_SOURCE": "io.k8s.api.core.v1.SecretEnvSource",
    "VOLUME": "io.k8s.api.core.v1.Volume",
    "EMPTY_DIR": "io.k8s.api.core.v1.EmptyDirVolumeSource",
    "HOST_PATH": "io.k8s.api.core.v1.HostPathVolumeSource",
    "PVC_SOURCE": "io.k8s.api.core.v1.PersistentVolumeClaimVolumeSource",
    "CONFIG_MAP_VOLUME": "io.k8s.api.core.v1.ConfigMapVolumeSource",
    "SECRET_VOLUME": "io.k8s.api.core.v1.SecretVolumeSource",
    "KEY_TO_PATH": "io.k8s.api.core.v1.KeyToPath",
    "DOWNWARD_API_VOLUME": "io.k8s.api.core.v1.DownwardAPIVolumeSource",
    "DOWNWARD_API_FILE": "io.k8s.api.core.v1.DownwardAPIVolumeFile",
    "PROJECTED_VOLUME": "io.k8s.api.core.v1.ProjectedVolumeSource",
    "VOLUME_PROJECTION": "io.k8s.api.core.v1.VolumeProjection",
    "CONFIG_MAP_PROJECTION": "io.k8s.api.core.v1.ConfigMapProjection",
    "SECRET_PROJECTION": "io.k8s.api.core.v1.SecretProjection",
    "DOWNWARD_API_PROJECTION": "io.k8s.api.core.v1.DownwardAPIProjection",
    "IMAGE_VOLUME": "io.k8s.api.core.v1.ImageVolumeSource",
    "VOLUME_MOUNT": "io.k8s.api.core.v1.VolumeMount",
    "LOCAL_OBJECT_REFERENCE": "io.k8s.api.core.v1.LocalObjectReference",
}


@cache
def kubernetes_definitions() -> dict[str, Any]:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    schema = (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{version}-local-strict"
        / "_definitions.json"
    )
    definitions: dict[str, Any] = json.loads(schema.read_text())["$defs"]
    return definitions


def table(name: str) -> dict[str, Rule]:
    rules: dict[str, Rule] = getattr(fields, name)
    return rules


@pytest.mark.parametrize(("ours", "theirs"), TABLES.items())
def test_table_matches_kubernetes(ours: str, theirs: str) -> None:
    kubernetes = set(kubernetes_definitions()[theirs]["properties"])
    assert set(table(ours)) == kubernetes


def test_every_table_is_checked() -> None:
    names = {n for n in dir(fields) if n.isupper() and isinstance(getattr(fields, n), dict)}
    assert names - {"MISPLACED_IN_HANDLER"} == set(TABLES)


def test_every_reason_says_something() -> None:
    for name in TABLES:
        for key, rule in table(name).items():
            if rule is not SUPPORTED:
                assert isinstance(rule, Ignore | Refuse)
                assert len(rule.reason) > 20, (name, key)


# --- Each rule does what it says, for every field of a container and a pod -------------

BASE = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {"containers": [{"name": "web", "command": ["sleep", "infinity"]}]},
}
WHAT_NOBODY_ASKS_FOR = {"x-asked": "something"}


def pod_with(where: str, key: str) -> str:
    """BASE with `key` set in the pod's spec, metadata or its container, as YAML."""
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    target = {
        "pod": data,
        "metadata": data["metadata"],
        "spec": data["spec"],
        "container": data["spec"]["containers"][0],
    }[where]
    target[key] = WHAT_NOBODY_ASKS_FOR
    return yaml.safe_dump(data, sort_keys=False)


SCOPES = [
    ("pod", "POD"),
    ("metadata", "METADATA"),
    ("spec", "POD_SPEC"),
    ("container", "CONTAINER"),
]


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (where, key)
        for where, name in SCOPES
        for key, rule in table(name).items()
        if isinstance(rule, Ignore)
    ],
)
def test_ignored_fields_are_listed_with_their_reason(where: str, key: str) -> None:
    rule = table(dict(SCOPES)[where])[key]
    assert isinstance(rule, Ignore)
    loaded = load("pod.yaml", pod_with(where, key))
    assert [(i.path.rsplit(".", 1)[-1], i.reason) for i in loaded.ignored] == [(key, rule.reason)]


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (where, key)
        for where, name in SCOPES
        for key, rule in table(name).items()
        if isinstance(rule, Refuse)
    ],
)
def test_refused_fields_are_refused_with_their_reason(where: str, key: str) -> None:
    rule = table(dict(SCOPES)[where])[key]
    assert isinstance(rule, Refuse)
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", pod_with(where, key))
    [problem] = caught.value.problems
    assert problem.path.endswith(key)
    assert problem.message == f"not supported: {rule.reason}"
    assert problem.line > 0


@pytest.mark.parametrize("empty", [[], {}, None])
def test_refused_fields_asking_for_nothing_pass(empty: object) -> None:
    # `volumeDevices: []` asks for no device: nothing to refuse, nothing to list.
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    data["spec"]["containers"][0]["volumeDevices"] = empty
    loaded = load("pod.yaml", yaml.safe_dump(data))
    assert loaded.ignored == ()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("procMount", "Default", "Default"),
        ("appArmorProfile", {"type": "Unconfined"}, "{type: Unconfined}"),
    ],
)
def test_refused_fields_asking_for_what_podvisor_does_are_ignored(
    key: str, value: object, expected: str
) -> None:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    data["spec"]["containers"][0]["securityContext"] = {key: value}
    loaded = load("pod.yaml", yaml.safe_dump(data))
    [ignored] = loaded.ignored
    assert ignored.path == f"spec.containers[0].securityContext.{key}"
    assert ignored.reason == f"{key}: {expected} asks for what podvisor does anyway"
