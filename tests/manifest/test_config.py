"""ConfigMaps, Secrets and claims beside the pod; workloads; volumes; the downward API in env.

A manifest file holds one pod (a Pod, or a workload's pod template) and the
objects it uses, as `kubectl apply -f` takes them; --config adds files of
them. Variables from ConfigMaps and Secrets resolve as the kubelet resolves
them, and what would keep a container waiting in Kubernetes
(CreateContainerConfigError) is refused with the kubelet's words.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import documents, load, resolve_env
from podvisor.supervisor.manifest.expansion import host_ip
from podvisor.supervisor.manifest.explain import main as check
from podvisor.supervisor.manifest.model import (
    ConfigMapProjection,
    ConfigMapVolume,
    DownwardAPIFile,
    DownwardAPIProjection,
    DownwardAPIVolume,
    EmptyDirVolume,
    HostPathVolume,
    ImageVolume,
    KeyToPath,
    PersistentVolumeClaimVolume,
    ProjectedVolume,
    ResourceFieldRef,
    SecretProjection,
    SecretVolume,
    Volume,
    VolumeMount,
)
from tests.manifest.test_fields import kubernetes_definitions

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  LOG_LEVEL: debug
  greeting: hello
  "9lives": "cat"
binaryData:
  blob.bin: AAEC
---
apiVersion: v1
kind: Secret
metadata: {name: db}
data:
  password: aHVudGVyMg==   # "hunter2"
  user: bm9ib2R5       # "nobody", replaced by stringData
stringData:
  user: admin
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""

POD = """\
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [env]
"""


def pod_with(container_extra: str, spec_extra: str = "", config: str = CONFIG) -> str:
    text = config + POD + "".join(f"    {line}\n" for line in container_extra.splitlines())
    return text + "".join(f"  {line}\n" for line in spec_extra.splitlines())


def env_of(text: str) -> dict[str, str]:
    loaded = load("pod.yaml", text)
    return resolve_env(loaded.pod.container("web"), loaded.pod, "10.88.0.2")


# --- Variables from ConfigMaps and Secrets ------------------------------------------------


def test_key_refs_take_the_value() -> None:
    env = env_of(
        pod_with("""\
env:
- name: LEVEL
  valueFrom: {configMapKeyRef: {name: settings, key: LOG_LEVEL}}
- name: PASSWORD
  valueFrom: {secretKeyRef: {name: db, key: password}}
- name: USER
  valueFrom: {secretKeyRef: {name: db, key: user}}
- name: BOTH
  value: $(LEVEL)-$(PASSWORD)""")
    )
    assert env == {
        "LEVEL": "debug",
        "PASSWORD": "hunter2",
        "USER": "admin",  # stringData wins over data, as the API server merges them
        "BOTH": "debug-hunter2",
    }


def test_values_from_sources_are_not_expanded() -> None:
    config = CONFIG.replace("greeting: hello", "greeting: $(LEVEL)")
    env = env_of(
        pod_with(
            """\
env:
- {name: LEVEL, value: debug}
- name: G
  valueFrom: {configMapKeyRef: {name: settings, key: greeting}}""",
            config=config,
        )
    )
    assert env["G"] == "$(LEVEL)"


def test_env_from_with_prefix_and_env_after_it() -> None:
    env = env_of(
        pod_with("""\
envFrom:
- configMapRef: {name: settings}
  prefix: CFG_
- secretRef: {name: db}
env:
- {name: user, value: overridden}
- {name: FROM_PREFIXED, value: $(CFG_LOG_LEVEL)}""")
    )
    assert env == {
        "CFG_9lives": "cat",
        "CFG_LOG_LEVEL": "debug",
        "CFG_greeting": "hello",
        "password": "hunter2",
        "user": "overridden",
        "FROM_PREFIXED": "debug",
    }


def test_env_from_takes_keys_kubernetes_134_takes_and_skips_the_rest() -> None:
    # Since Kubernetes 1.34 a variable's name is any printable ASCII but '=';
    # a prefix can still make a name that is none.
    loaded = load("pod.yaml", pod_with("envFrom:\n- configMapRef: {name: settings}"))
    env = resolve_env(loaded.pod.container("web"), loaded.pod, None)
    assert env["9lives"] == "cat"
    text = pod_with("envFrom:\n- configMapRef: {name: settings}\n  prefix: 'A='")
    loaded = load("pod.yaml", text)
    assert resolve_env(loaded.pod.container("web"), loaded.pod, None) == {}
    assert any("InvalidEnvironmentVariableNames" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "env:\n- name: X\n  valueFrom: {configMapKeyRef: {name: settings, key: NOPE}}",
            (
                "pod.yaml:36:58: spec.containers[0].env[0].valueFrom.configMapKeyRef.key: "
                "CreateContainerConfigError: couldn't find key NOPE in ConfigMap default/settings: "
                "the kubelet keeps the container waiting; add the key, or set optional: true"
            ),
        ),
        (
            "env:\n- name: X\n  valueFrom: {secretKeyRef: {name: db, key: token}}",
            (
                "pod.yaml:36:49: spec.containers[0].env[0].valueFrom.secretKeyRef.key: "
                "CreateContainerConfigError: couldn't find key token in Secret default/db: "
                "the kubelet keeps the container waiting; add the key, or set optional: true"
            ),
        ),
        (
            "envFrom:\n- secretRef: {name: other}",
            (
                "pod.yaml:35:25: spec.containers[0].envFrom[0].secretRef.name: "
                'CreateContainerConfigError: secret "other" not found: the kubelet keeps the '
                "container waiting; add a Secret named other in namespace default to this file "
                "(or pass it with --config), or set optional: true"
            ),
        ),
    ],
)
def test_missing_keys_are_the_kubelets_create_container_config_error(
    entry: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", pod_with(entry))
    assert [str(p) for p in caught.value.problems] == [expected]


def test_optional_sources_and_keys_that_are_missing_set_nothing() -> None:
    env = env_of(
        pod_with("""\
envFrom:
- configMapRef: {name: absent, optional: true}
env:
- name: A
  valueFrom: {configMapKeyRef: {name: settings, key: NOPE, optional: true}}
- name: B
  valueFrom: {secretKeyRef: {name: absent, key: x, optional: true}}
- {name: C, value: "$(A)"}""")
    )
    assert env == {"C": "$(A)"}


def test_a_configmap_of_another_namespace_is_not_the_pods() -> None:
    text = pod_with(
        "env:\n- name: X\n  valueFrom: {configMapKeyRef: {name: settings, key: LOG_LEVEL}}",
        config=CONFIG.replace(
            "metadata: {name: settings}", "metadata: {name: settings, namespace: ops}"
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    assert 'configmap "settings" not found' in str(caught.value)


# --- The downward API ---------------------------------------------------------------------


def test_downward_env_values() -> None:
    env = env_of(
        pod_with(
            """\
resources:
  requests: {cpu: 250m, memory: 32Mi}
  limits: {memory: 64Mi}
env:
- name: NODE
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: ACCOUNT
  valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
- name: HOST_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: POD_IPS
  valueFrom: {fieldRef: {fieldPath: status.podIPs}}
- name: MEMORY_MI
  valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
- name: MEMORY_REQUEST
  valueFrom: {resourceFieldRef: {resource: requests.memory}}
- name: CPU_MILLI
  valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
- name: CPU_LIMIT
  valueFrom: {resourceFieldRef: {containerName: web, resource: limits.cpu}}""",
            spec_extra="serviceAccountName: builder",
        )
    )
    assert env == {
        "NODE": os.uname().nodename,
        "ACCOUNT": "builder",
        "HOST_IP": host_ip(),
        "POD_IPS": "10.88.0.2",
        "MEMORY_MI": "64",
        "MEMORY_REQUEST": str(32 * 2**20),
        "CPU_MILLI": "250",
        "CPU_LIMIT": str(os.cpu_count()),  # no limit: the machine's, as node allocatable
    }


def test_service_account_defaults_to_default() -> None:
    env = env_of(
        pod_with("env:\n- name: A\n  valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}")
    )
    assert env == {"A": "default"}


# --- What `podvisor check` shows ----------------------------------------------------------

SECRET_ENV = pod_with("""\
env:
- name: PASSWORD
  valueFrom: {secretKeyRef: {name: db, key: password}}
- name: LEVEL
  valueFrom: {configMapKeyRef: {name: settings, key: LOG_LEVEL}}
envFrom:
- secretRef: {name: db}
  prefix: DB_""")


def test_check_shows_env_sources_never_a_secrets_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(SECRET_ENV)
    assert check([str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "  configuration beside the pod: ConfigMap settings (4 keys), Secret db (2 keys), "
        "PersistentVolumeClaim data"
    ) in out.splitlines()
    assert "    env: PASSWORD=<secretKeyRef db/password>" in out
    assert "    env: DB_user=<envFrom secretRef db/user, prefix DB_>" in out
    assert "    env: LEVEL=debug  (from configMapKeyRef settings/LOG_LEVEL)" in out
    assert "hunter2" not in out
    assert "admin" not in out
    assert check(["--output", "json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "admin" not in out
    [plan] = json.loads(out)
    assert plan["config"] == {"config_maps": ["settings"], "secrets": ["db"], "claims": ["data"]}


def test_reprs_never_show_a_secret() -> None:
    pod = load("pod.yaml", SECRET_ENV).pod
    assert "hunter2" not in repr(pod)
    assert "admin" not in repr(pod)


def test_other_documents_are_listed_as_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = (
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    )
    ingress = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n"
    path = tmp_path / "app.yaml"
    text = service + "---\n" + pod_with("") + ingress
    path.write_text(text)
    loaded = load(path)
    ingress_line = text.splitlines().index("kind: Ingress")  # its document starts a line above
    assert [(o.path, o.line) for o in loaded.others] == [
        ("Service web", 2),
        ("Ingress web", ingress_line),
    ]
    assert check([str(path)]) == 0
    out = capsys.readouterr().out
    assert "    line 2: Service web: a Service routes to pods in a cluster" in out


def test_config_files_and_directories(tmp_path: Path) -> None:
    beside = tmp_path / "config"
    beside.mkdir()
    (beside / "settings.yaml").write_text(CONFIG.split("---", maxsplit=1)[0])
    (beside / "db.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db"},
                "stringData": {"password": "pw"},
            }
        )
    )
    (beside / "notes.txt").write_text("not read")
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        POD.removeprefix("---\n")
        + "    envFrom:\n    - configMapRef: {name: settings}\n    - secretRef: {name: db}\n"
    )
    with pytest.raises(ConfigError):
        load(pod)
    loaded = load(pod, config=[beside])
    env = resolve_env(loaded.pod.container("web"), loaded.pod, None)
    assert env["password"] == "pw"
    assert env["LOG_LEVEL"] == "debug"
    loaded = load(pod, config=[beside / "settings.yaml", beside / "db.json"])
    assert sorted(loaded.pod.config.secrets) == ["db"]


def test_a_pod_in_a_config_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(POD.removeprefix("---\n"))
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", POD.removeprefix("---\n"), config=[other])
    [problem] = caught.value.problems
    assert problem.source == str(other)
    assert "--config files hold ConfigMaps, Secrets and PersistentVolumeClaims" in problem.message


def test_secret_data_is_decoded() -> None:
    config = load("pod.yaml", pod_with("")).pod.config
    assert config.secrets["db"].data == {"password": b"hunter2", "user": b"admin"}
    assert config.config_maps["settings"].binary_data == {"blob.bin": b"\x00\x01\x02"}
    assert config.claims["data"].storage_request_bytes == 2**30


# --- imagePullSecrets ---------------------------------------------------------------------

REGISTRY = base64.b64encode(b"robot:s3cret").decode()
PULL_SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: regcred}}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{{"auths": {{"registry.example": {{"auth": "{REGISTRY}"}}}}}}'
---
"""


def test_image_pull_secrets_reach_the_image_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODVISOR_IMAGE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    text = PULL_SECRET + POD.removeprefix("---\n").replace(
        "    command: [env]", "    command: [env]\n    image: registry.example/app:1.0"
    )
    text += "  imagePullSecrets: [{name: regcred}, {name: absent}]\n"
    path = tmp_path / "app.yaml"
    path.write_text(text)
    loaded = load(path)
    assert loaded.pod.spec.image_pull_secrets == ("regcred",)
    assert loaded.pod.pull_secrets() == (("regcred", {"registry.example": {"auth": REGISTRY}}),)
    assert any('secret "absent" not found' in w for w in loaded.warnings)
    assert check([str(path)]) == 0
    out = capsys.readouterr().out
    assert "      credentials: imagePullSecret regcred (registry.example)" in out
    assert "s3cret" not in out


# --- Workloads ------------------------------------------------------------------------------

TEMPLATE = """\
    metadata:
      labels: {app: web}
    spec:
      restartPolicy: POLICY
      containers:
      - name: web
        command: [sleep, infinity]
"""


def workload(kind: str, version: str, spec: str, policy: str = "Always") -> str:
    head = f"apiVersion: {version}\nkind: {kind}\nmetadata: {{name: web, namespace: team}}\nspec:\n"
    return head + spec + "  template:\n" + TEMPLATE.replace("POLICY", policy)


@pytest.mark.parametrize(
    ("text", "summary"),
    [
        (
            workload("Deployment", "apps/v1", "  replicas: 3\n"),
            (
                "Deployment web: its pod template runs as one pod; not done here: replicas: 3 "
                "(one pod runs); rolling updates"
            ),
        ),
        (
            workload("ReplicaSet", "apps/v1", ""),
            "ReplicaSet web: its pod template runs as one pod",
        ),
        (
            workload("StatefulSet", "apps/v1", "  serviceName: web\n"),
            "StatefulSet web: its pod template runs as one pod; not done here: rolling updates",
        ),
        (
            workload("DaemonSet", "apps/v1", ""),
            (
                "DaemonSet web: its pod template runs as one pod; not done here: one pod per node: "
                "this machine is the one node; rolling updates"
            ),
        ),
        (
            workload("Job", "batch/v1", "  backoffLimit: 2\n", "OnFailure"),
            (
                "Job web: its pod template runs as one pod; not done here: a failed pod is retried "
                "in place: its failed containers restart, counted against backoffLimit (2), where "
                "a cluster would make a new pod"
            ),
        ),
    ],
)
def test_workloads_run_their_pod_template(text: str, summary: str) -> None:
    loaded = load("app.yaml", text)
    assert loaded.workload is not None
    assert loaded.workload.summary() == summary
    pod = loaded.pod
    assert (pod.name, pod.namespace, dict(pod.labels)) == ("web", "team", {"app": "web"})
    assert pod.container("web").command == ("sleep", "infinity")


def test_a_job_keeps_its_meaning() -> None:
    text = workload("Job", "batch/v1", "  activeDeadlineSeconds: 60\n", "Never")
    spec = load("job.yaml", text).pod.spec
    assert spec.backoff_limit == 6  # Kubernetes' default
    assert spec.active_deadline_seconds == 60
    assert spec.restart_policy == "Never"
    # The pod's own deadline, if shorter, still applies.
    text = text.replace(
        "      restartPolicy: Never", "      restartPolicy: Never\n      activeDeadlineSeconds: 5"
    )
    assert load("job.yaml", text).pod.spec.active_deadline_seconds == 5


def test_a_cron_job_runs_its_job_once() -> None:
    job = workload("Job", "batch/v1", "  backoffLimit: 0\n", "OnFailure").split("spec:\n", 1)[1]
    text = (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n"
        "  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n"
        + "".join(f"    {line}\n" for line in job.splitlines())
    )
    loaded = load("cron.yaml", text)
    assert loaded.workload is not None
    assert "the schedule '0 3 * * *' (the Job runs once, now)" in loaded.workload.summary()
    assert loaded.pod.spec.backoff_limit == 0
    assert loaded.pod.name == "nightly"


def test_workload_tables_match_kubernetes() -> None:
    tables = {
        "OBJECT": "io.k8s.api.apps.v1.Deployment",
        "CONFIG_MAP": "io.k8s.api.core.v1.ConfigMap",
        "SECRET": "io.k8s.api.core.v1.Secret",
        "PVC_SPEC": "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "POD_TEMPLATE": "io.k8s.api.core.v1.PodTemplateSpec",
        "DEPLOYMENT_SPEC": "io.k8s.api.apps.v1.DeploymentSpec",
        "REPLICA_SET_SPEC": "io.k8s.api.apps.v1.ReplicaSetSpec",
        "STATEFUL_SET_SPEC": "io.k8s.api.apps.v1.StatefulSetSpec",
        "DAEMON_SET_SPEC": "io.k8s.api.apps.v1.DaemonSetSpec",
        "JOB_SPEC": "io.k8s.api.batch.v1.JobSpec",
        "CRON_JOB_SPEC": "io.k8s.api.batch.v1.CronJobSpec",
        "JOB_TEMPLATE": "io.k8s.api.batch.v1.JobTemplateSpec",
    }
    for ours, theirs in tables.items():
        table: dict[str, Any] = getattr(documents, ours)
        assert set(table) == set(kubernetes_definitions()[theirs]["properties"]), ours


# --- Volumes ---------------------------------------------------------------------------------

VOLUMES = """\
volumes:
- {name: scratch, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
- {name: logs, hostPath: {path: /var/log, type: Directory}}
- {name: store, persistentVolumeClaim: {claimName: data, readOnly: true}}
- name: conf
  configMap:
    name: settings
    defaultMode: 0440
    items: [{key: LOG_LEVEL, path: level/conf, mode: 0400}]
- {name: creds, secret: {secretName: db}}
- {name: absent, secret: {secretName: nowhere, optional: true}}
- name: info
  downwardAPI:
    items:
    - {path: labels, fieldRef: {fieldPath: metadata.labels}}
    - {path: mem, resourceFieldRef: {containerName: web, resource: limits.memory, divisor: 1Mi}}
- name: all
  projected:
    sources:
    - configMap: {name: settings}
    - secret: {name: db, items: [{key: password, path: pw}]}
    - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
- {name: tools, image: {reference: "registry.example/tools:1", pullPolicy: IfNotPresent}}"""

MOUNTS = """\
volumeMounts:
- {name: scratch, mountPath: /scratch}
- {name: logs, mountPath: /var/log/host, readOnly: true, mountPropagation: HostToContainer}
- {name: conf, mountPath: /etc/app, subPath: level}
- {name: info, mountPath: /etc/info, readOnly: true, recursiveReadOnly: Enabled}
- {name: creds, mountPath: /run/creds, subPathExpr: $(POD_NAME)}"""


def test_every_volume_kind_is_read_into_the_model() -> None:
    pod = load("pod.yaml", pod_with(MOUNTS, spec_extra=VOLUMES)).pod
    assert pod.spec.volumes == (
        Volume("scratch", EmptyDirVolume("Memory", 64 * 2**20)),
        Volume("logs", HostPathVolume("/var/log", "Directory")),
        Volume("store", PersistentVolumeClaimVolume("data", read_only=True)),
        Volume(
            "conf",
            ConfigMapVolume("settings", (KeyToPath("LOG_LEVEL", "level/conf", 0o400),), 0o440),
        ),
        Volume("creds", SecretVolume("db")),
        Volume("absent", SecretVolume("nowhere", optional=True)),
        Volume(
            "info",
            DownwardAPIVolume(
                (
                    DownwardAPIFile("labels", field_path="metadata.labels"),
                    DownwardAPIFile(
                        "mem", resource_field_ref=ResourceFieldRef("web", "limits.memory", "1Mi")
                    ),
                )
            ),
        ),
        Volume(
            "all",
            ProjectedVolume(
                (
                    ConfigMapProjection("settings"),
                    SecretProjection("db", (KeyToPath("password", "pw"),)),
                    DownwardAPIProjection((DownwardAPIFile("name", field_path="metadata.name"),)),
                )
            ),
        ),
        Volume("tools", ImageVolume("registry.example/tools:1", "IfNotPresent")),
    )
    assert pod.container("web").volume_mounts == (
        VolumeMount("scratch", "/scratch"),
        VolumeMount("logs", "/var/log/host", read_only=True, mount_propagation="HostToContainer"),
        VolumeMount("conf", "/etc/app", sub_path="level"),
        VolumeMount("info", "/etc/info", read_only=True, recursive_read_only="Enabled"),
        VolumeMount("creds", "/run/creds", sub_path_expr="$(POD_NAME)"),
    )


def test_check_shows_each_volume_where_it_is_mounted_and_from_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(pod_with(MOUNTS, spec_extra=VOLUMES))
    assert check([str(path)]) == 0
    out = capsys.readouterr().out
    assert "  volumes:" in out
    for line in (
        "    scratch: emptyDir (a tmpfs (medium Memory) of 64Mi: its sizeLimit); mounted at /scratch in web",
        "    logs: hostPath /var/log (type Directory); mounted at /var/log/host in web (read-only)",
        "    store: persistentVolumeClaim claim data (1Gi), read-only; mounted nowhere",
        # configMap and secret volumes are read-only wherever they are mounted, as in Kubernetes
        (
            "    conf: configMap settings (LOG_LEVEL as level/conf, mode 0440); mounted at "
            "/etc/app in web (read-only)"
        ),
        (
            "    creds: secret db (every key as a file, mode 0644); mounted at /run/creds in web "
            "(read-only)"
        ),
        "    mount: /etc/app <- conf (configMap), read-only, subPath level",
        "    mount: /var/log/host <- logs (hostPath), read-only, propagation HostToContainer",
    ):
        assert line in out.splitlines(), line
    assert "  podvisor run refuses: " not in out  # every volume is mounted
    assert "hunter2" not in out
    assert "admin" not in out


def test_projected_sources_may_not_write_one_path() -> None:
    volumes = """\
volumes:
- name: all
  projected:
    sources:
    - configMap: {name: settings, items: [{key: greeting, path: same}]}
    - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
    - secret: {name: db, items: [{key: password, path: same}]}"""
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", pod_with("", spec_extra=volumes))
    [problem] = caught.value.problems
    assert problem.path == "spec.volumes[0].projected.sources[2].secret"
    assert problem.message == (
        "'same' is written by an earlier source too (conflicting duplicate paths): "
        "give each file a path of its own"
    )


def test_check_lists_the_files_each_volume_will_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(pod_with(MOUNTS, spec_extra=VOLUMES))
    assert check([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    after = {line: lines[i + 1] for i, line in enumerate(lines[:-1])}
    conf = (
        "    conf: configMap settings (LOG_LEVEL as level/conf, mode 0440); mounted at /etc/app "
        "in web (read-only)"
    )
    assert after[conf] == "      files: level/conf (0400)"
    creds = (
        "    creds: secret db (every key as a file, mode 0644); mounted at /run/creds in web "
        "(read-only)"
    )
    tmpfs = "      files (on a tmpfs of the pod's, never on disk): "
    assert after[creds] == tmpfs + "password (0644), user (0644)"
    assert tmpfs + "none" in lines  # the optional Secret that is not there
    assert "      files: labels (0644), mem (0644)" in lines
    assert (
        tmpfs + "9lives (0644), LOG_LEVEL (0644), blob.bin (0644), greeting (0644), "
        "name (0644), pw (0644)"
    ) in lines
    scratch = next(line for line in lines if line.startswith("    scratch: emptyDir"))
    assert not after[scratch].startswith("      files:")  # an emptyDir starts empty


def test_check_json_lists_volumes_mounts_files_and_env_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    env = """\
env:
- {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
- {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: LOG_LEVEL}}}
envFrom: [{secretRef: {name: db}, prefix: DB_}]"""
    path.write_text(pod_with(MOUNTS + "\n" + env, VOLUMES))
    assert check(["-o", "json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "admin" not in out
    [plan] = json.loads(out)
    volumes = {v["name"]: v for v in plan["volumes"]}
    assert volumes["conf"] == {
        "name": "conf",
        "kind": "configMap",
        "mounts": [
            {"container": "web", "mount_path": "/etc/app", "read_only": True, "sub_path": "level"}
        ],
        "files": [{"path": "level/conf", "mode": "0400"}],
    }
    assert volumes["store"]["mounts"] == []
    assert "files" not in volumes["scratch"]
    variables = {e["name"]: e for e in plan["containers"][0]["env"]}
    assert variables["PASSWORD"] == {
        "name": "PASSWORD",
        "value": None,
        "source": "secretKeyRef db/password",
        "secret": True,
    }
    assert variables["DB_user"]["source"] == "envFrom secretRef db/user, prefix DB_"
    assert variables["LEVEL"]["value"] == "debug"


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("", "<fieldRef status.podIP: the pod's address, given when it starts>"),
        (
            "hostNetwork: true",
            (
                f"{host_ip()}  (from fieldRef status.podIP: this machine's address, the pod "
                "being on its network)"
            ),
        ),
    ],
)
def test_check_shows_the_pod_ip_where_the_network_says_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, shown: str
) -> None:
    path = tmp_path / "app.yaml"
    env = "env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]"
    path.write_text(pod_with(env, spec_extra=spec))
    assert check([str(path)]) == 0
    assert f"    env: IP={shown}" in capsys.readouterr().out.splitlines()


def test_check_shows_no_pod_ip_on_a_loopback_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    env = "env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}]"
    text = pod_with(env).replace(
        "metadata: {name: web}",
        "metadata: {name: web, annotations: {podvisor.io/network: loopback}}",
    )
    path.write_text(text)
    assert check([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "    env: IP=''  (from fieldRef status.podIPs: none, the pod's network being loopback only)"
        in lines
    )


def test_check_shows_what_the_downward_api_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        pod_with("""\
resources: {limits: {memory: 64Mi}}
env:
- {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
- {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
- {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
- {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
- {name: ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
- name: MEMORY
  valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
- name: CPU
  valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}""")
    )
    assert check([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    cpus = (os.cpu_count() or 1) * 1000
    for line in (
        "    env: POD=web  (from fieldRef metadata.name)",
        f"    env: NODE={os.uname().nodename}  (from fieldRef spec.nodeName: this machine's name)",
        f"    env: HOST_IP={host_ip()}  (from fieldRef status.hostIP: this machine's address)",
        "    env: POD_IP=<fieldRef status.podIP: the pod's address, given when it starts>",
        "    env: ACCOUNT=default  (from fieldRef spec.serviceAccountName)",
        "    env: MEMORY=64  (from resourceFieldRef limits.memory in units of 1Mi)",
        (
            f"    env: CPU={cpus}  (from resourceFieldRef limits.cpu in units of 1m: no limit, "
            "this machine's capacity)"
        ),
    ):
        assert line in lines, line


def test_a_list_of_objects_is_read_as_its_documents() -> None:
    # What `kubectl get -o yaml` writes for several objects.
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {LEVEL: debug}
- apiVersion: v1
  kind: Pod
  metadata: {name: web}
  spec:
    containers:
    - name: web
      command: [env]
      envFrom: [{configMapRef: {name: settings}}]
"""
    loaded = load("list.yaml", text)
    assert resolve_env(loaded.pod.container("web"), loaded.pod, None) == {"LEVEL": "debug"}


def test_a_stateful_sets_claim_templates_are_replica_0s_claims_and_volumes() -> None:
    """As the StatefulSet controller makes them for replica 0: claim data-web-0 in the
    StatefulSet's namespace, and a volume data in the pod that names it."""
    text = workload(
        "StatefulSet",
        "apps/v1",
        "  serviceName: web\n"
        "  volumeClaimTemplates:\n"
        "  - metadata: {name: data}\n"
        "    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    ).replace(
        "        command: [sleep, infinity]\n",
        "        command: [sleep, infinity]\n"
        "        volumeMounts: [{name: data, mountPath: /var/lib/web}]\n",
    )
    loaded = load("sts.yaml", text)
    pod = loaded.pod
    assert pod.spec.volumes == (Volume("data", PersistentVolumeClaimVolume("data-web-0")),)
    assert pod.container("web").volume_mounts == (VolumeMount("data", "/var/lib/web"),)
    claim = pod.config.claims["data-web-0"]
    assert (claim.storage_request_bytes, claim.access_modes) == (1 << 30, ("ReadWriteOnce",))
    assert loaded.not_yet == ()


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        # A sidecar, then an init container, then main: the sidecar runs beside both.
        (("64Mi", "16Mi", "32Mi"), 80 * 2**20),  # the init container's peak: 64 + 16
        (("8Mi", "16Mi", "32Mi"), 48 * 2**20),  # the main containers' peak: 16 + 32
        ((None, "16Mi", "32Mi"), None),  # a container without a limit: the pod has none
    ],
)
def test_the_pods_memory_limit_is_the_kubelets(
    limits: tuple[str | None, str, str], expected: int | None
) -> None:
    def resources(limit: str | None) -> str:
        return f"resources: {{limits: {{memory: {limit}}}}}" if limit else "resources: {}"

    init, sidecar, main = (resources(limit) for limit in limits)
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: limits}}
spec:
  initContainers:
  - {{name: helper, command: [sleep, "60"], restartPolicy: Always, {sidecar}}}
  - {{name: prepare, command: ["true"], {init}}}
  containers:
  - {{name: main, command: ["true"], {main}}}
"""
    assert load("pod.yaml", text).pod.spec.memory_limit_bytes == expected
