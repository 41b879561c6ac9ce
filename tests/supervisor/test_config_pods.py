"""Real pods from files of several documents: ConfigMaps and Secrets in env, workloads, Jobs."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.manifest.expansion import host_ip
from tests.supervisor.conftest import pod_yaml, podvisor_command, podvisor_run, run_pod

pytestmark = pytest.mark.anyio

APP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  LOG_LEVEL: debug
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata: {name: db}
type: Opaque
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        command:
        - sh
        - -c
        - 'echo "level=$LEVEL password=$PASSWORD greeting=$CFG_greeting"; exec sleep 600'
        env:
        - name: LEVEL
          valueFrom: {configMapKeyRef: {name: app-config, key: LOG_LEVEL}}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
        envFrom:
        - configMapRef: {name: app-config}
          prefix: CFG_
"""


def test_a_deployment_with_its_configmap_and_secret_runs(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(APP)
    with podvisor_run(path) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "app | level=debug password=hunter2 greeting=hello\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err  # sleep's status, as its pod ended
    assert err.startswith(
        "podvisor: Deployment web: its pod template runs as one pod; not done here: "
        "replicas: 2 (one pod runs); rolling updates\n"
    )


async def test_optional_sources_are_left_out_and_downward_values_are_right() -> None:
    result = await run_pod("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
        data: {present: "yes"}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: downward}
        spec:
          restartPolicy: Never
          serviceAccountName: builder
          containers:
          - name: main
            command: [sh, -c, 'env | sort | grep -E "^(OPT|NODE|ACCOUNT|HOST_IP|POD_IP|MEM|present)"']
            resources: {limits: {memory: 64Mi}}
            envFrom:
            - configMapRef: {name: settings}
            - secretRef: {name: absent, optional: true}
            env:
            - name: OPTIONAL
              valueFrom: {configMapKeyRef: {name: settings, key: absent, optional: true}}
            - name: NODE
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: ACCOUNT
              valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
            - name: HOST_IP
              valueFrom: {fieldRef: {fieldPath: status.hostIP}}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - name: POD_IPS
              valueFrom: {fieldRef: {fieldPath: status.podIPs}}
            - name: MEM
              valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    """)
    assert result.status == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.lines("main"))
    assert "OPTIONAL" not in lines
    assert lines["present"] == "yes"
    assert lines["NODE"] == os.uname().nodename
    assert lines["ACCOUNT"] == "builder"
    assert lines["HOST_IP"] == host_ip()
    assert lines["POD_IPS"] == lines["POD_IP"]
    assert lines["MEM"] == "64"


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
async def test_a_jobs_backoff_limit_ends_its_retries(tmp_path: Path, policy: str) -> None:
    tries = tmp_path / "tries"
    result = await run_pod(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: flaky}}
        spec:
          backoffLimit: 2
          template:
            metadata:
              annotations: {{podvisor.io/backoff-initial: 100ms}}
            spec:
              restartPolicy: {policy}
              containers:
              - name: work
                command: [sh, -c, 'echo try >> {tries}; exit 3']
    """)
    assert result.status == 3, result.stderr
    assert tries.read_text().splitlines() == ["try"] * 3  # the first, and backoffLimit more


async def test_a_job_that_succeeds_in_time_is_done(tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    result = await run_pod(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: second-time}}
        spec:
          backoffLimit: 3
          template:
            metadata:
              annotations: {{podvisor.io/backoff-initial: 100ms}}
            spec:
              restartPolicy: Never
              containers:
              - name: work
                command: [sh, -c, 'echo try >> {tries}; test $(wc -l < {tries}) -ge 2']
    """)
    assert result.status == 0, result.stderr
    assert tries.read_text().splitlines() == ["try"] * 2


def test_run_takes_config_from_files_apart(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "db.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {token: t0ken}\n"
    )
    job = tmp_path / "job.yaml"
    job.write_text(
        pod_yaml("""
        apiVersion: batch/v1
        kind: Job
        metadata: {name: report}
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: report
                command: [sh, -c, 'echo "token=$TOKEN"']
                env:
                - name: TOKEN
                  valueFrom: {secretKeyRef: {name: db, key: token}}
        """)
    )
    command = [*podvisor_command(), "run", "--metrics-address", "off", str(job)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert 'CreateContainerConfigError: secret "db" not found' in refused.stderr
    ran = subprocess.run(
        [*command[:2], "--config", str(config), *command[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "report | token=t0ken\n"
