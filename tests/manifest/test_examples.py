"""The manifests in examples/ run on Kubernetes too, and Kubernetes' documented pods load here.

Each example is validated against Kubernetes' own schema (kubernetes-validate,
strict: unknown fields are errors), so "the same file runs on a cluster" is
checked, not hoped. The manifests from the Kubernetes documentation's sidecar
and probe pages (https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/,
https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/;
CC BY 4.0, The Kubernetes Authors) are copied as they are, with `command`
added where the docs rely on an image's entrypoint: each is accepted, or
refused field by field with lines and reasons.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import (
    ContainerKind,
    ExecAction,
    HTTPGetAction,
    Probe,
    TCPSocketAction,
    load,
)
from podvisor.supervisor.manifest.model import EmptyDirVolume, Volume, VolumeMount

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))
OURS = {"job.yaml", "web.yaml"}  # examples/bundle.yaml is the lead's


def test_the_examples_are_there() -> None:
    assert {m.name for m in MANIFESTS} >= OURS


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_example_is_a_valid_kubernetes_pod(manifest: Path) -> None:
    # Each document: a file may hold the ConfigMaps and Secrets its pod uses.
    documents: list[dict[str, Any]] = list(yaml.safe_load_all(manifest.read_text()))
    version = kubernetes_validate.latest_version()
    for data in documents:
        assert kubernetes_validate.validate(data, version, strict=True)
    assert documents[-1]["kind"] in {"Pod", "Job", "Deployment"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_example_loads(manifest: Path) -> None:
    loaded = load(manifest)
    if manifest.name in OURS:
        assert loaded.warnings == ()
        assert loaded.ignored == ()


@pytest.mark.parametrize("manifest", sorted(EXAMPLES / name for name in OURS), ids=str)
def test_example_programs_are_on_this_machine(manifest: Path) -> None:
    # They must be real, runnable pods: every program comes from the host.
    for container in load(manifest).pod.spec.all_containers:
        assert shutil.which(container.command[0]), container.command[0]
        for probe in (container.startup_probe, container.readiness_probe, container.liveness_probe):
            if probe is not None and isinstance(probe.handler, ExecAction):
                assert shutil.which(probe.handler.command[0])


def test_web_example_starts_in_order() -> None:
    pod = load(EXAMPLES / "web.yaml").pod
    assert [(c.name, c.kind) for c in pod.spec.all_containers] == [
        ("prepare", ContainerKind.INIT),
        ("log-tailer", ContainerKind.SIDECAR),
        ("status", ContainerKind.SIDECAR),
        ("web", ContainerKind.MAIN),
    ]
    status = pod.container("status")
    assert status.startup_probe is not None
    assert status.startup_probe.handler == HTTPGetAction("/healthz", "status", "127.0.0.1")


# --- The Kubernetes documentation's sidecar page -------------------------------------

# application/deployment-sidecar.yaml's pod template, as a Pod.
SIDECAR_PAGE = """\
apiVersion: v1
kind: Pod
metadata:
  name: myapp
  labels:
    app: myapp
spec:
  containers:
    - name: myapp
      image: alpine:latest
      command: ['sh', '-c', 'while true; do echo "logging" >> /opt/logs.txt; sleep 1; done']
      volumeMounts:
        - name: data
          mountPath: /opt
  initContainers:
    - name: logshipper
      image: alpine:latest
      restartPolicy: Always
      command: ['sh', '-c', 'tail -F /opt/logs.txt']
      volumeMounts:
        - name: data
          mountPath: /opt
  volumes:
    - name: data
      emptyDir: {}
"""

# application/deployment-sidecar.yaml itself: the same pod as the Deployment's template.
SIDECAR_PAGE_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
  labels:
    app: myapp
spec:
  replicas: 1
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
    spec:
""" + "\n".join("    " + line for line in SIDECAR_PAGE.split("spec:\n", 1)[1].splitlines())


def test_sidecar_page_volumes_are_read_and_run() -> None:
    loaded = load("deployment-sidecar.yaml", SIDECAR_PAGE)
    pod = loaded.pod
    assert pod.spec.volumes == (Volume("data", EmptyDirVolume()),)
    for name in ("myapp", "logshipper"):
        assert pod.container(name).volume_mounts == (VolumeMount("data", "/opt"),)
    assert loaded.not_yet == ()  # `podvisor run` mounts an emptyDir


def test_sidecar_page_as_the_deployment_it_is() -> None:
    data: dict[str, Any] = yaml.safe_load(SIDECAR_PAGE_DEPLOYMENT)
    assert kubernetes_validate.validate(data, kubernetes_validate.latest_version(), strict=True)
    loaded = load("deployment-sidecar.yaml", SIDECAR_PAGE_DEPLOYMENT)
    assert loaded.workload is not None
    assert loaded.workload.summary() == (
        "Deployment myapp: its pod template runs as one pod; not done here: rolling updates"
    )
    assert loaded.pod.name == "myapp"
    assert loaded.pod.labels == {"app": "myapp"}
    assert [c.name for c in loaded.pod.spec.all_containers] == ["logshipper", "myapp"]
    assert [i.path for i in loaded.ignored] == ["spec.selector"]


def test_sidecar_page_without_its_volume_is_accepted() -> None:
    # Share the host's /tmp instead of an emptyDir: what the refusal says to do.
    text = SIDECAR_PAGE.replace("/opt/logs.txt", "/tmp/podvisor-logs.txt")
    text = "\n".join(
        line
        for line in text.splitlines()
        if "volume" not in line
        and "name: data" not in line
        and "Path: /opt" not in line
        and "emptyDir" not in line
    )
    loaded = load("deployment-sidecar.yaml", text)
    pod = loaded.pod
    assert [(c.name, c.kind) for c in pod.spec.all_containers] == [
        ("logshipper", ContainerKind.SIDECAR),
        ("myapp", ContainerKind.MAIN),
    ]
    assert pod.container("logshipper").command == ("sh", "-c", "tail -F /tmp/podvisor-logs.txt")
    assert pod.container("myapp").image == "alpine:latest"  # accepted, not pulled
    assert loaded.ignored == ()
    # The page's own sidecar has no probe, so nothing waits for it: podvisor says so.
    assert loaded.warnings == (
        (
            "deployment-sidecar.yaml:13:13: spec.initContainers[0]: sidecar without a "
            "startupProbe: the containers after it start as soon as its process has started, "
            "ready or not"
        ),
    )


# --- The Kubernetes documentation's probe page ----------------------------------------

# pods/probe/exec-liveness.yaml as it is: its args run on the busybox image
# (tests/rootfs/test_examples.py runs it so).
EXEC_LIVENESS = """\
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-exec
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/busybox:1.27.2
    args:
    - /bin/sh
    - -c
    - touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600
    livenessProbe:
      exec:
        command:
        - cat
        - /tmp/healthy
      initialDelaySeconds: 5
      periodSeconds: 5
"""

# pods/probe/http-liveness.yaml, with the image's entrypoint as command.
HTTP_LIVENESS = """\
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-http
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/e2e-test-images/agnhost:2.40
    command: [/agnhost]
    args:
    - liveness
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
        httpHeaders:
        - name: Custom-Header
          value: Awesome
      initialDelaySeconds: 3
      periodSeconds: 3
"""

# pods/probe/tcp-liveness-readiness.yaml, with command added.
TCP_LIVENESS_READINESS = """\
apiVersion: v1
kind: Pod
metadata:
  name: goproxy
  labels:
    app.kubernetes.io/name: goproxy
spec:
  containers:
  - name: goproxy
    image: registry.k8s.io/goproxy:0.1
    command: [/goproxy]
    ports:
    - containerPort: 8080
    readinessProbe:
      tcpSocket:
        port: 8080
      initialDelaySeconds: 15
      periodSeconds: 10
    livenessProbe:
      tcpSocket:
        port: 8080
      initialDelaySeconds: 15
      periodSeconds: 10
"""

# pods/probe/grpc-liveness.yaml (it has its command already).
GRPC_LIVENESS = """\
apiVersion: v1
kind: Pod
metadata:
  name: etcd-with-grpc
spec:
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.1-0
    command: [ "/usr/local/bin/etcd", "--data-dir",  "/var/lib/etcd", "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://127.0.0.1:2379", "--log-level", "debug"]
    ports:
    - containerPort: 2379
    livenessProbe:
      grpc:
        port: 2379
      initialDelaySeconds: 10
"""

# The page's named-port and startup-probe snippets, in a pod, with its pod-level grace.
NAMED_PORT_STARTUP = """\
apiVersion: v1
kind: Pod
metadata:
  name: slow-start
spec:
  terminationGracePeriodSeconds: 3600  # pod-level
  containers:
  - name: test
    command: [python3, -m, http.server, "8080"]
    ports:
    - name: liveness-port
      containerPort: 8080
      hostPort: 8080

    livenessProbe:
      httpGet:
        path: /healthz
        port: liveness-port
      failureThreshold: 1
      periodSeconds: 60
      # Override pod-level terminationGracePeriodSeconds #
      terminationGracePeriodSeconds: 60

    startupProbe:
      httpGet:
        path: /healthz
        port: liveness-port
      failureThreshold: 30
      periodSeconds: 10
"""


def test_probe_page_exec_liveness() -> None:
    loaded = load("exec-liveness.yaml", EXEC_LIVENESS)
    assert loaded.ignored == ()
    assert loaded.warnings == ()
    container = loaded.pod.container("liveness")
    # The page's two fields, and Kubernetes' defaults for the rest.
    assert container.liveness_probe == Probe(
        ExecAction(("cat", "/tmp/healthy")),
        initial_delay_seconds=5,
        period_seconds=5,
        timeout_seconds=1,
        success_threshold=1,
        failure_threshold=3,
    )
    assert loaded.pod.labels == {"test": "liveness"}


def test_probe_page_http_liveness() -> None:
    container = load("http-liveness.yaml", HTTP_LIVENESS).pod.container("liveness")
    assert container.argv == ("/agnhost", "liveness")
    assert container.liveness_probe == Probe(
        HTTPGetAction("/healthz", 8080, None, "HTTP", (("Custom-Header", "Awesome"),)),
        initial_delay_seconds=3,
        period_seconds=3,
    )


def test_probe_page_tcp_liveness_and_readiness() -> None:
    container = load("tcp-liveness-readiness.yaml", TCP_LIVENESS_READINESS).pod.container("goproxy")
    expected = Probe(TCPSocketAction(8080), initial_delay_seconds=15, period_seconds=10)
    assert container.readiness_probe == expected
    assert container.liveness_probe == expected
    assert container.ports[0].protocol == "TCP"
    assert container.ports[0].host_port is None


def test_probe_page_grpc_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError) as caught:
        load("grpc-liveness.yaml", GRPC_LIVENESS)
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (13, 7)
    assert problem.path == "spec.containers[0].livenessProbe.grpc"
    assert "grpc_health_probe" in problem.message
    assert "tcpSocket" in problem.message


def test_probe_page_grpc_as_the_page_once_spelled_it() -> None:
    text = GRPC_LIVENESS.replace("grpc:", "gRPC:")
    with pytest.raises(ConfigError) as caught:
        load("grpc-liveness.yaml", text)
    assert [str(p) for p in caught.value.problems] == [
        (
            "grpc-liveness.yaml:13:7: spec.containers[0].livenessProbe.gRPC: unknown field; "
            "did you mean 'grpc'?"
        )
    ]


def test_probe_page_named_port_and_startup_probe() -> None:
    loaded = load("startup.yaml", NAMED_PORT_STARTUP)
    container = loaded.pod.container("test")
    assert loaded.pod.spec.termination_grace_period_seconds == 3600
    assert container.liveness_probe == Probe(
        HTTPGetAction("/healthz", "liveness-port"),
        period_seconds=60,
        failure_threshold=1,
        termination_grace_period_seconds=60,
    )
    assert container.startup_probe == Probe(
        HTTPGetAction("/healthz", "liveness-port"), period_seconds=10, failure_threshold=30
    )
    assert container.ports[0].host_port == 8080
    assert loaded.warnings == ()
