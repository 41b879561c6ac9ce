"""What a valid manifest loads into: Kubernetes' defaults, podvisor's settings, the warnings.

The malformed side of each rule is in test_malformed.py; this file checks the
values a pod gets when the manifest is right, and the footguns `podvisor
check` warns about.
"""

from __future__ import annotations

import io
import json
import signal
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import (
    SETTINGS,
    ContainerKind,
    ContainerPort,
    ContainerSettings,
    EnvVar,
    ExecAction,
    HTTPGetAction,
    Lifecycle,
    PodSettings,
    Probe,
    Resources,
    RestartPolicy,
    SecurityContext,
    SleepAction,
    TCPSocketAction,
    load,
    nodes,
    settings_table,
)

MINIMAL = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    command: [sleep, infinity]
"""


def pod_yaml(container: str = "", spec: str = "", annotations: str = "") -> str:
    """MINIMAL with extra lines for the container, the spec and the annotations."""

    def indent(text: str, n: int) -> str:
        return "".join(" " * n + line + "\n" for line in text.splitlines())

    meta = "  annotations:\n" + indent(annotations, 4) if annotations else ""
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n"
        + meta
        + "spec:\n"
        + indent(spec, 2)
        + "  containers:\n  - name: web\n    command: [sleep, infinity]\n"
        + indent(container, 4)
    )


# --- Kubernetes' defaults ------------------------------------------------------------


def test_minimal_pod_gets_kubernetes_defaults() -> None:
    loaded = load("pod.yaml", MINIMAL)
    pod = loaded.pod
    assert pod.name == "web"
    assert pod.namespace == "default"
    assert uuid.UUID(pod.uid).version == 4  # generated, as the API server does
    assert pod.labels == {}
    assert pod.annotations == {}
    assert pod.source == "pod.yaml"
    spec = pod.spec
    assert spec.restart_policy is RestartPolicy.ALWAYS
    assert spec.termination_grace_period_seconds == 30
    assert spec.active_deadline_seconds is None
    assert spec.hostname is None
    assert not spec.share_process_namespace
    assert not spec.host_network
    assert not spec.host_pid
    assert not spec.host_ipc
    [web] = spec.containers
    assert web.kind is ContainerKind.MAIN
    assert web.argv == ("sleep", "infinity")
    assert web.resources == Resources()
    assert web.lifecycle == Lifecycle()
    # Every container gets the runtime default seccomp filter, compiled as the manifest is read.
    assert web.security_context.seccomp_type == "RuntimeDefault"
    assert web.security_context.seccomp_filter
    assert replace(web.security_context, seccomp_type="", seccomp_filter="") == SecurityContext()
    assert web.settings == ContainerSettings(stop_signal=signal.SIGTERM)
    assert pod.settings == PodSettings()
    assert loaded.ignored == ()
    assert loaded.warnings == ()


def test_uid_and_namespace_are_kept() -> None:
    text = MINIMAL.replace("  name: web\n", "  name: web\n  namespace: shop\n  uid: abc-123\n", 1)
    pod = load("pod.yaml", text).pod
    assert (pod.namespace, pod.uid) == ("shop", "abc-123")


def test_probe_defaults_and_zero_means_default() -> None:
    container = pod_yaml(
        """\
livenessProbe:
  exec: {command: [test, -e, /tmp]}
readinessProbe:
  httpGet: {port: 8080}
  periodSeconds: 0
  timeoutSeconds: 0
  successThreshold: 0
  failureThreshold: 0
startupProbe:
  tcpSocket: {port: 8080, host: 127.0.0.1}
  initialDelaySeconds: 0
  successThreshold: 1
"""
    )
    web = load("pod.yaml", container).pod.container("web")
    assert web.liveness_probe == Probe(ExecAction(("test", "-e", "/tmp")), 0, 10, 1, 1, 3, None)
    # 0 is what the API server reads as "not set": the defaults.
    assert web.readiness_probe == Probe(HTTPGetAction("/", 8080, None, "HTTP", ()), 0, 10, 1, 1, 3)
    assert web.startup_probe == Probe(TCPSocketAction(8080, "127.0.0.1"))


def test_readiness_probe_may_ask_for_more_successes() -> None:
    text = pod_yaml("readinessProbe:\n  exec: {command: ['true']}\n  successThreshold: 3\n")
    probe = load("pod.yaml", text).pod.container("web").readiness_probe
    assert probe is not None
    assert probe.success_threshold == 3


def test_ports_default_to_tcp_and_host_network_publishes_them() -> None:
    ports = "ports:\n- {name: http, containerPort: 8080}\n- {containerPort: 53, protocol: UDP}\n"
    web = load("pod.yaml", pod_yaml(ports)).pod.container("web")
    assert web.ports == (
        ContainerPort(8080, "http", None, "TCP"),
        ContainerPort(53, None, None, "UDP"),
    )
    # With the host's network, a port is the host's: hostPort defaults to containerPort.
    pod = load("pod.yaml", pod_yaml(ports, spec="hostNetwork: true")).pod
    assert [p.host_port for p in pod.container("web").ports] == [8080, 53]
    assert pod.settings.network == "host"


def test_requests_default_to_limits_and_round_up() -> None:
    resources = """\
resources:
  limits: {cpu: "1.5", memory: 128Mi}
  requests: {cpu: 0.0001}
"""
    web = load("pod.yaml", pod_yaml(resources)).pod.container("web")
    assert web.resources == Resources(
        cpu_request_millicores=1,  # rounded up, never to zero
        cpu_limit_millicores=1500,
        memory_request_bytes=128 * 2**20,  # defaults to the limit
        memory_limit_bytes=128 * 2**20,
    )


@pytest.mark.parametrize(
    ("written", "size"),
    [("1G", 10**9), ("1e3", 1000), ("100k", 100_000), ("500M", 500 * 10**6), (1024, 1024)],
)
def test_memory_quantities(written: object, size: int) -> None:
    text = pod_yaml(f"resources: {{limits: {{memory: {json.dumps(written)}}}}}")
    assert load("pod.yaml", text).pod.container("web").resources.memory_limit_bytes == size


@pytest.mark.parametrize(
    ("written", "millicores"), [("500m", 500), (0.5, 500), (2, 2000), ("0.1", 100), ("1e3", 10**6)]
)
def test_cpu_quantities(written: object, millicores: int) -> None:
    text = pod_yaml(f"resources: {{limits: {{cpu: {json.dumps(written)}}}}}")
    assert load("pod.yaml", text).pod.container("web").resources.cpu_limit_millicores == millicores


def test_start_order_init_containers_sidecars_then_main() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  restartPolicy: OnFailure
  initContainers:
  - {name: first, command: ["true"]}
  - name: proxy
    restartPolicy: Always
    command: [sleep, infinity]
    startupProbe: {exec: {command: ["true"]}}
  - {name: migrate, command: ["true"]}
  containers:
  - {name: app, command: [sleep, infinity]}
  - {name: worker, command: [sleep, infinity]}
"""
    pod = load("pod.yaml", text).pod
    assert pod.spec.restart_policy is RestartPolicy.ON_FAILURE
    assert [(c.name, c.kind, c.restart_policy) for c in pod.spec.all_containers] == [
        ("first", ContainerKind.INIT, None),
        ("proxy", ContainerKind.SIDECAR, RestartPolicy.ALWAYS),
        ("migrate", ContainerKind.INIT, None),
        ("app", ContainerKind.MAIN, None),
        ("worker", ContainerKind.MAIN, None),
    ]


def test_everything_supported_at_once() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata:
  name: full
  labels: {app.kubernetes.io/name: full, tier: ""}
spec:
  terminationGracePeriodSeconds: 20
  activeDeadlineSeconds: 600
  shareProcessNamespace: true
  hostname: box
  hostIPC: true
  os: {name: linux}
  securityContext: {runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true}
  containers:
  - name: app
    image: example/app:1
    command: [/usr/bin/env]
    args: [--flag]
    workingDir: /srv
    stdin: true
    stdinOnce: true
    tty: true
    env:
    - {name: A, value: "1"}
    - name: NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    lifecycle:
      postStart:
        httpGet: {path: /warm, port: 8080, scheme: HTTPS, httpHeaders: [{name: X-A, value: b}]}
      preStop:
        exec: {command: [kill, -TERM, "1"]}
      stopSignal: SIGQUIT
    securityContext:
      runAsUser: 1001
      allowPrivilegeEscalation: false
      capabilities: {add: [net_bind_service, CAP_CHOWN], drop: [ALL]}
"""
    loaded = load("pod.yaml", text)
    pod = loaded.pod
    assert pod.labels == {"app.kubernetes.io/name": "full", "tier": ""}
    spec = pod.spec
    assert (spec.termination_grace_period_seconds, spec.active_deadline_seconds) == (20, 600)
    assert (spec.share_process_namespace, spec.hostname, spec.host_ipc) == (True, "box", True)
    app = pod.container("app")
    assert app.image == "example/app:1"
    assert app.argv == ("/usr/bin/env", "--flag")
    assert (app.working_dir, app.stdin, app.stdin_once, app.tty) == ("/srv", True, True, True)
    assert app.env == (EnvVar("A", "1"), EnvVar("NAME", None, "metadata.name"))
    assert app.lifecycle == Lifecycle(
        post_start=HTTPGetAction("/warm", 8080, None, "HTTPS", (("X-A", "b"),)),
        pre_stop=ExecAction(("kill", "-TERM", "1")),
    )
    assert app.settings.stop_signal == signal.SIGQUIT
    # The container's securityContext wins over the pod's, field by field.
    assert replace(app.security_context, seccomp_type="", seccomp_filter="") == SecurityContext(
        run_as_user=1001,
        run_as_group=1000,
        run_as_non_root=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities_add=("NET_BIND_SERVICE", "CHOWN"),
        capabilities_drop=("ALL",),
    )
    assert loaded.warnings == ()


def test_sleep_hook_as_long_as_the_grace_period_is_allowed_with_a_warning() -> None:
    text = pod_yaml("lifecycle:\n  preStop:\n    sleep: {seconds: 30}\n")
    loaded = load("pod.yaml", text)
    assert loaded.pod.container("web").lifecycle.pre_stop == SleepAction(30)
    assert loaded.warnings == (
        (
            "pod.yaml:10:7: spec.containers[0].lifecycle.preStop.sleep.seconds: 30s takes all "
            "of terminationGracePeriodSeconds (30s): the container is killed as soon as it is "
            "sent its stop signal"
        ),
    )


# --- Ignored fields ------------------------------------------------------------------------


def test_cluster_fields_are_listed_as_ignored_with_line_and_reason() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  creationTimestamp: null
  resourceVersion: "42"
spec:
  nodeSelector: {disktype: ssd}
  serviceAccount: web
  dnsPolicy: ClusterFirst
  containers:
  - name: web
    image: nginx
    imagePullPolicy: Always
    command: [sleep, infinity]
    terminationMessagePolicy: FallbackToLogsOnError
status:
  phase: Running
"""
    ignored = load("pod.yaml", text).ignored
    assert [(i.path, i.line) for i in ignored] == [
        ("metadata.resourceVersion", 6),  # creationTimestamp: null is not set at all
        ("spec.nodeSelector", 8),
        ("spec.serviceAccount", 9),  # dnsPolicy (line 10) is read: see test_dns.py
        ("status", 17),
    ]
    assert ignored[1].reason == "scheduling: the pod runs on this machine"


def test_an_ephemeral_storage_limit_is_read_and_its_request_ignored() -> None:
    text = pod_yaml(
        "resources:\n  limits: {memory: 64Mi, ephemeral-storage: 1Gi}\n"
        "  requests: {ephemeral-storage: 1Mi}\n"
    )
    loaded = load("pod.yaml", text)
    [ignored] = loaded.ignored
    assert ignored.path == "spec.containers[0].resources.requests[ephemeral-storage]"
    assert ignored.reason.startswith("scheduling")
    [c] = loaded.pod.spec.containers
    assert c.resources.ephemeral_storage_limit_bytes == 1 << 30


# --- podvisor.io/ settings -------------------------------------------------------------------


def test_settings_from_annotations() -> None:
    annotations = """\
podvisor.io/metrics-address: "127.0.0.1:9100"
podvisor.io/network: bridge
podvisor.io/subnet: 10.88.0.0/24
podvisor.io/backoff-initial: 500ms
podvisor.io/backoff-max: 1m
podvisor.io/backoff-reset: "90"
podvisor.io/pids-limit: "100"
podvisor.io/pids-limit.web: "10"
podvisor.io/cpuset.web: 0-1,3
podvisor.io/watchdog-usec.web: "5000000"
podvisor.io/notification-fd.web: "3"
podvisor.io/stop-signal.web: HUP
example.com/other: anything
"""
    pod = load("pod.yaml", pod_yaml(annotations=annotations)).pod
    assert pod.settings == PodSettings(
        metrics_address="127.0.0.1:9100",
        network="bridge",
        subnet="10.88.0.0/24",
        backoff_initial_seconds=0.5,
        backoff_max_seconds=60.0,
        backoff_reset_seconds=90.0,
        pids_limit=100,
    )
    assert pod.container("web").settings == ContainerSettings(
        pids_limit=10,
        cpuset="0-1,3",
        watchdog_usec=5_000_000,
        notification_fd=3,
        stop_signal=1,
        stop_signal_given=True,
    )
    assert pod.annotations["example.com/other"] == "anything"


def test_pod_pids_limit_is_every_containers_default() -> None:
    text = pod_yaml(annotations='podvisor.io/pids-limit: "50"')
    assert load("pod.yaml", text).pod.container("web").settings.pids_limit == 50


@pytest.mark.parametrize(
    ("value", "number"),
    [("SIGINT", 2), ("int", 2), ("15", 15), ("SIGRTMIN+2", signal.SIGRTMIN + 2), ("USR1", 10)],
)
def test_stop_signal_forms(value: str, number: int) -> None:
    text = pod_yaml(annotations=f"podvisor.io/stop-signal.web: {value!r}")
    assert load("pod.yaml", text).pod.container("web").settings.stop_signal == number


def test_stop_signal_from_lifecycle_and_annotation_must_agree() -> None:
    text = pod_yaml(
        "lifecycle: {stopSignal: SIGINT}",
        spec="os: {name: linux}",
        annotations="podvisor.io/stop-signal.web: SIGQUIT",
    )
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    assert [p.message for p in caught.value.problems] == [
        "contradicts the container's lifecycle.stopSignal; keep one"
    ]


def test_backoff_initial_longer_than_max() -> None:
    text = pod_yaml(annotations='podvisor.io/backoff-initial: 10m\npodvisor.io/backoff-max: "60"')
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    assert [str(p) for p in caught.value.problems] == [
        (
            "pod.yaml:6:34: metadata.annotations[podvisor.io/backoff-initial]: 600s is longer "
            "than backoff-max (60s)"
        )
    ]


def test_settings_table_documents_every_setting() -> None:
    table = settings_table()
    assert table.count("\n") == len(SETTINGS) + 1
    for setting in SETTINGS:
        assert f"podvisor.io/{setting.name}" in table
        fields = set(PodSettings.__dataclass_fields__) | set(ContainerSettings.__dataclass_fields__)
        assert setting.attribute in fields


# --- Warnings ------------------------------------------------------------------------------


def test_warnings_for_footguns() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    podvisr.io/network: loopback
spec:
  terminationGracePeriodSeconds: 10
  initContainers:
  - name: logs
    restartPolicy: Always
    command: [tail, -F, /tmp/pv-log]
  containers:
  - name: web
    command: [sleep, infinity]
    env:
    - {name: A, value: "1"}
    - {name: A, value: "2"}
    - {name: my.var-1, value: x}
    resources:
      limits: {memory: 500m}
    livenessProbe:
      exec: {command: ["true"]}
      periodSeconds: 5
      timeoutSeconds: 5
      terminationGracePeriodSeconds: 3
    lifecycle:
      preStop:
        sleep: {seconds: 5}
"""
    loaded = load("pod.yaml", text)
    assert loaded.warnings == (
        (
            "pod.yaml:6:5: metadata.annotations[podvisr.io/network]: podvisr.io/ is not "
            "podvisor.io/: podvisor ignores this annotation"
        ),
        (
            "pod.yaml:10:11: spec.initContainers[0]: sidecar without a startupProbe: the "
            "containers after it start as soon as its process has started, ready or not"
        ),
        "pod.yaml:18:7: spec.containers[0].env[1]: A is defined again: this entry hides env[0]",
        (
            "pod.yaml:21:24: spec.containers[0].resources.limits.memory: '500m' is a fractional "
            "number of bytes, rounded up to 1; 'm' means milli: did you mean M (megabytes) or "
            "Mi (mebibytes)?"
        ),
        (
            "pod.yaml:22:5: spec.containers[0].livenessProbe: timeoutSeconds (5) is not below "
            "periodSeconds (5): a slow probe runs into the next one"
        ),
        (
            "pod.yaml:28:7: spec.containers[0].lifecycle.preStop.sleep.seconds: 5s is not "
            "shorter than livenessProbe.terminationGracePeriodSeconds (3s): when that probe "
            "fails, the container is killed during its preStop hook"
        ),
    )


def test_env_name_kubernetes_accepts_only_lately_is_a_warning() -> None:
    loaded = load("pod.yaml", pod_yaml('env: [{name: "1ST", value: x}]'))
    assert loaded.pod.container("web").env == (EnvVar("1ST", "x"),)
    assert len(loaded.warnings) == 1
    assert "before 1.34" in loaded.warnings[0]


# --- Reading ---------------------------------------------------------------------------------


def test_json_manifest_loads_like_yaml() -> None:
    data = yaml.safe_load(MINIMAL)
    from_json = load("pod.json", json.dumps(data, indent=2)).pod
    from_yaml = load("pod.yaml", MINIMAL).pod
    assert from_json.spec == from_yaml.spec


def test_json_yaml_cannot_read_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pure-Python loader refuses tabs in JSON; podvisor falls back to json, without lines.
    monkeypatch.setattr(nodes, "_LOADER", yaml.SafeLoader)
    text = json.dumps(yaml.safe_load(MINIMAL), indent="\t")
    assert load("pod.json", text).pod.container("web").argv == ("sleep", "infinity")
    with pytest.raises(ConfigError) as caught:
        load("pod.json", text.replace('"web"', '"Web"'))
    assert str(caught.value.problems[0]).startswith("pod.json: metadata.name: 'Web'")


def test_yaml_1_1_booleans_are_not_strings() -> None:
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", pod_yaml("env: [{name: DEBUG, value: yes}]"))
    assert (
        caught.value.problems[0].message == "must be a string, not the boolean yes: quote it, 'yes'"
    )


def test_reads_a_file_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(MINIMAL)
    assert load(path).pod.source == str(path)
    assert load(str(path)).pod.name == "web"
    monkeypatch.setattr("sys.stdin", io.StringIO(MINIMAL))
    assert load("-").pod.source == "<stdin>"


def test_unreadable_files_say_so_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "missing.yaml")
    assert str(caught.value) == f"{tmp_path}/missing.yaml: cannot read: No such file or directory"
    binary = tmp_path / "pod.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as caught:
        load(binary)
    assert str(caught.value) == f"{binary}: not UTF-8 text: invalid start byte"


def test_problems_come_in_file_order_all_at_once() -> None:
    text = pod_yaml("ports: [{containerPort: 0}]\nstdin: maybe", spec="restartPolicy: Sometimes")
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    lines = [p.line for p in caught.value.problems]
    assert lines == sorted(lines)
    assert len(lines) == 3
    assert caught.value.exit_status == 2


def test_a_readiness_probe_does_not_gate_what_starts_after_a_sidecar() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - name: proxy
    restartPolicy: Always
    command: [sleep, infinity]
    readinessProbe: {exec: {command: ["true"]}}
  containers:
  - {name: web, command: [sleep, infinity]}
"""
    assert load("pod.yaml", text).warnings == (
        (
            "pod.yaml:6:11: spec.initContainers[0]: sidecar without a startupProbe: the "
            "containers after it start as soon as its process has started, ready or not "
            "(its readinessProbe does not hold them back)"
        ),
    )
    gated = text.replace("readinessProbe:", "startupProbe:")
    assert load("pod.yaml", gated).warnings == ()


def test_aliases_cannot_make_a_small_file_expensive() -> None:
    # A "billion laughs" document: ten levels of ten aliases each.
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = pod_yaml("securityContext:\n  seccompProfile: *l9").replace(
        "apiVersion: v1\n", "apiVersion: v1\nx-bomb:\n" + "".join(f"  {lv}\n" for lv in levels)
    )
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    (problem,) = caught.value.problems  # refused whole, before any field is read
    assert "YAML aliases expand this document" in problem.message
    assert problem.line == 12  # l9: its one alias stands for the most nodes


def test_check_says_what_an_ephemeral_storage_limit_and_a_claims_fs_group_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from podvisor.supervisor.manifest.explain import main

    path = tmp_path / "pod.yaml"
    spec = (
        "securityContext: {fsGroup: 2000, fsGroupChangePolicy: OnRootMismatch}\n"
        "volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n"
    )
    container = "resources: {limits: {ephemeral-storage: 2Mi}}\n"
    claim = (
        "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\n"
        "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n"
    )
    path.write_text(pod_yaml(container, spec) + claim)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "    ephemeral-storage: limit 2Mi on its log files only, as on the host's files it has "
        "no writable layer of its own; the pod's total 2Mi: evicted past either"
    ) in out.splitlines()
    assert "claim data (1Gi), its files given to fsGroup 2000 unless its folder is already" in out
