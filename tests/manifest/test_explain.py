"""`podvisor check`: the plan for valid manifests, the problems for the rest, exit 0 or 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from podvisor.supervisor.manifest.explain import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PODVISOR = Path(sys.executable).parent / "podvisor"

BROKEN = """\
apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  containers:
  - name: web
"""


def test_web_example_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "web.yaml")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    start = lines.index("  start order:")
    assert lines[start + 1 : start + 5] == [
        "    1. init     prepare  (the next waits for it to exit 0)",
        "    2. sidecar  log-tailer  (the next waits for its startupProbe)",
        "    3. sidecar  status  (the next waits for its startupProbe)",
        "    4. main     web",
    ]
    # Each container's command, limits, probes and hooks, with the defaults filled in.
    assert "  container web (main container)" in lines
    assert (
        '    command: sh -c \'exec python3 -m http.server "$PORT" --directory '
        "/tmp/podvisor-web/site 2>>/tmp/podvisor-web/access.log'" in lines
    )
    assert "    resources: cpu request 100m, limit 500m; memory request 32Mi, limit 128Mi" in lines
    assert (
        "    livenessProbe: connect tcp <pod IP>:8080 (port http); first after 2s, then every 10s, "
        "timeout 1s; passes after 1 success; after 3 failures in a row kills and restarts the "
        "container (grace 10s)" in lines
    )
    assert "    preStop: sleep 2s" in lines
    assert (
        "    stop: preStop, then SIGINT; SIGKILL 10s after the stop began, 2s after SIGINT at the "
        "earliest" in lines
    )
    assert "    pids limit: 64" in lines
    assert "warnings:" not in out


def test_ignored_fields_and_warnings_are_in_the_plan(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeSelector: {disktype: ssd}
  containers:
  - name: web
    command: [sleep, infinity]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<stdin>: pod web (namespace default)\n")
    assert "    line 5: spec.nodeSelector: scheduling: the pod runs on this machine\n" in out
    assert (
        "    <stdin>:9:5: spec.containers[0].readinessProbe: timeoutSeconds (1) is not below "
        "periodSeconds (1): a slow probe runs into the next one\n" in out
    )


def test_the_plan_shows_the_pods_name_files(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  hostAliases: [{ip: 10.1.2.3, hostnames: [db, db.local]}]
  dnsPolicy: None
  dnsConfig: {nameservers: [192.0.2.53], options: [{name: edns0}]}
  containers: [{name: web, command: [sleep, infinity]}]
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    out = capsys.readouterr().out
    assert (
        "  /etc/hosts: 10.1.2.3 db db.local\n"
        "  /etc/resolv.conf: dnsConfig alone (dnsPolicy: None)\n"
        "    nameservers: 192.0.2.53\n"
        "    options: edns0\n"
    ) in out


def test_the_plan_says_a_container_without_a_cpu_request_weighs_least(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: idle, command: [sleep, infinity]}
  - {name: cache, command: [sleep, infinity], resources: {limits: {memory: 64Mi}}}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    least = "no cpu request: the least CPU weight, as Kubernetes gives BestEffort"
    assert f"    resources: {least}" in lines
    assert f"    resources: {least}; memory request 64Mi, limit 64Mi" in lines


def test_the_plan_writes_booleans_as_yaml_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: web, command: [sleep, infinity], securityContext: {runAsNonRoot: true, runAsUser: 7}}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    out = capsys.readouterr().out
    assert "    runAsNonRoot: true\n" in out
    assert "True" not in out


def test_the_plan_says_whether_a_host_mode_termination_message_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "why").touch()
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - {{name: a, command: [sleep, infinity], terminationMessagePath: {tmp_path}/none}}
  - {{name: b, command: [sleep, infinity], terminationMessagePath: {tmp_path}/why}}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    out = capsys.readouterr().out
    assert (
        f"    termination message: not read: {tmp_path}/none is no file on this machine "
        "to bind a file of the container's own over, and podvisor makes none on the host\n"
    ) in out
    assert (
        f"    termination message: read from a file of its own, bound over {tmp_path}/why\n" in out
    )


def test_the_plan_shows_each_variable_expanded_as_the_container_gets_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    env:
    - {name: P, value: "1"}
    - {name: C, value: "$(P)-$$(B)-$(NOPE)"}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: URL, value: "http://$(IP):$(P)"}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    out = capsys.readouterr().out
    assert "    env: C='1-$(B)-$(NOPE)'\n" in out
    assert "    env: URL='http://$(IP):$(P)'  ($(IP) filled in when it starts)\n" in out


def test_the_start_order_waits_for_a_sidecars_notification_fd(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `run` starts them: the core counts such a sidecar started only once
    # its line comes (tests/sidecars/test_pods.py), so no warning either.
    text = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: {podvisor.io/notification-fd.db: "3", podvisor.io/notification-fd.cache: "4"}
spec:
  initContainers:
  - {name: db, command: [sleep, infinity], restartPolicy: Always}
  - name: cache
    command: [sleep, infinity]
    restartPolicy: Always
    startupProbe: {exec: {command: ["true"]}}
  containers: [{name: web, command: [sleep, infinity]}]
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  start order:")
    assert lines[start + 1 : start + 4] == [
        "    1. sidecar  db  (the next waits for its readiness line on fd 3: notification-fd)",
        "    2. sidecar  cache  (the next waits for its startupProbe or its readiness line on fd 4)",
        "    3. main     web",
    ]
    assert "  warnings:" not in lines


def test_the_plan_says_a_post_start_hook_holds_back_the_next_and_the_2s_minimum(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: proxy
    command: [sleep, infinity]
    lifecycle:
      postStart: {exec: {command: ["true"]}}
      preStop: {exec: {command: ["true"]}}
  - {name: web, command: [sleep, infinity]}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("  start order:")
    assert lines[start + 1 : start + 3] == [
        "    1. main     proxy  (the next waits for its postStart hook)",
        "    2. main     web",
    ]
    assert (
        "    stop: SIGTERM, then SIGKILL after 2s (the kubelet's minimum, above "
        "terminationGracePeriodSeconds 0; no time for preStop)" in lines
    )
    assert (
        "    stop: SIGTERM, then SIGKILL after 2s (the kubelet's minimum, above "
        "terminationGracePeriodSeconds 0)" in lines
    )


@pytest.mark.parametrize(
    ("annotation", "line"),
    [
        (
            None,
            (
                "  metrics: http://127.0.0.1:9464/metrics, the host's endpoint, shared with the "
                "host's other pods (podvisor.io/metrics-address gives the pod its own)"
            ),
        ),
        ("off", "  metrics: none (podvisor.io/metrics-address: off)"),
        (
            "127.0.0.1:9500",
            "  metrics: http://127.0.0.1:9500/metrics, the pod's own (podvisor.io/metrics-address)",
        ),
    ],
)
def test_the_plan_says_where_the_metrics_are_served(
    annotation: str | None,
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As `run` serves them: the host's endpoint unless the pod asks for its own.
    monkeypatch.delenv("PODVISOR_METRICS_ADDRESS", raising=False)
    annotations = f"{{podvisor.io/metrics-address: {annotation!r}}}" if annotation else "{}"
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: web, annotations: {annotations}}}
spec: {{containers: [{{name: web, command: [sleep, infinity]}}]}}
"""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["-"]) == 0
    assert line in capsys.readouterr().out.splitlines()


def test_problems_go_to_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    assert main([str(EXAMPLES / "job.yaml"), str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{EXAMPLES / 'job.yaml'}: pod sum-job")
    assert err.startswith(f"{broken}:6:5: spec.containers[0].command: required in host mode")
    assert err.count("\n") == 1


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    assert main(["--output", "json", str(EXAMPLES / "web.yaml"), str(broken)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"{broken}:6:5:")
    web, bad = json.loads(out)
    assert web["ok"] is True
    assert web["pod"]["name"] == "web"
    assert [c["name"] for c in web["start_order"]] == ["prepare", "log-tailer", "status", "web"]
    status = web["containers"][2]
    assert status["kind"] == "sidecar"
    assert status["startup_probe"] == {
        "handler": {
            "type": "HTTPGetAction",
            "path": "/healthz",
            "port": "status",
            "host": "127.0.0.1",
            "scheme": "HTTP",
            "headers": [],
        },
        "initial_delay_seconds": 0,
        "period_seconds": 2,
        "timeout_seconds": 1,
        "success_threshold": 1,
        "failure_threshold": 15,
        "termination_grace_period_seconds": None,
    }
    assert web["containers"][3]["settings"]["stop_signal"] == 2
    assert web["settings"]["backoff_initial_seconds"] == 1.0
    assert web["ignored"] == []
    assert web["warnings"] == []
    assert bad == {
        "source": str(broken),
        "ok": False,
        "errors": [
            {
                "line": 6,
                "column": 5,
                "path": "spec.containers[0].command",
                "message": (
                    "required in host mode (it names no image): podvisor runs the program "
                    "from the host's file system, so give it and its arguments (e.g. command: "
                    "[python3, -m, http.server]), or name an image that says what to run"
                ),
            }
        ],
    }


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["--output", "xml", "pod.yaml"]) == 2
    assert "usage: podvisor check" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "usage: podvisor check" in capsys.readouterr().out


@pytest.mark.skipif(not PODVISOR.exists(), reason="the podvisor console script is not installed")
def test_podvisor_check_command() -> None:
    examples = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    done = subprocess.run(
        [str(PODVISOR), "check", *examples], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("  start order:") == len(examples)
    bad = subprocess.run(
        [str(PODVISOR), "check", "-"],
        input=BROKEN,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("<stdin>:6:5: spec.containers[0].command: required")
