"""`podvisor run`: real pods in real namespaces, on trio and asyncio."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.pods import podvisor_command
from tests.supervisor.conftest import pod_yaml, podvisor_run, run_pod

pytestmark = pytest.mark.anyio


def _shell_pod(script: str, *, policy: str = "Never", extra: str = "") -> str:
    """A pod running `sh -c SCRIPT`; write $$$$ for the shell's $$, since Kubernetes
    reduces $$ to $ in command and args (its escape for $(VAR))."""
    return f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: shell}}
        spec:
          restartPolicy: {policy}
          terminationGracePeriodSeconds: 5
          {extra}
          containers:
            - name: main
              command: ["sh", "-c", {json.dumps(script)}]
    """


# --- namespaces ---------------------------------------------------------------------


async def test_init_is_pid_1_and_only_pod_processes_are_visible() -> None:
    result = await run_pod(_shell_pod("ps -e -o pid=,comm=", extra="shareProcessNamespace: true"))
    assert result.status == 0, result.stderr
    processes = [line.split() for line in result.lines("main")]
    assert ["1", "podvisor-init"] in processes
    # init, the shell and ps: nothing of the host's
    assert {comm for _, comm in processes} <= {"podvisor-init", "sh", "ps"}


async def test_each_container_sees_its_own_pid_namespace_by_default() -> None:
    result = await run_pod(_shell_pod("echo $$$$; ps -e -o comm= | sort | tr '\\n' ' '"))
    assert result.status == 0, result.stderr
    pid_line, comms = result.lines("main")
    # The container's init is PID 1 of its own namespace, so the shell is 2.
    assert pid_line == "2"
    assert "podvisor-init" in comms.split()


async def test_containers_inherit_no_descriptor_of_the_pods_init() -> None:
    # Only stdin, stdout and stderr (and the listing's own descriptor): never the
    # init's channel to the supervisor, which would let a container speak for it.
    script = "import os; print(*sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: fds}}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              command: [{json.dumps(sys.executable)}, "-c", {json.dumps(script)}]
    """)
    assert result.status == 0, result.stderr
    assert result.lines("main") == ["0 1 2 3"]


async def test_hostname_is_the_pod_name_or_spec_hostname() -> None:
    assert (await run_pod(_shell_pod("hostname"))).lines("main") == ["shell"]
    named = await run_pod(_shell_pod("hostname", extra="hostname: web-0"))
    assert named.lines("main") == ["web-0"]


async def test_only_the_containers_own_variables_expand_in_its_command() -> None:
    # The kubelet expands $(VAR) in command and args against env and envFrom
    # alone: HOSTNAME and PATH are the runtime's, set after the expansion.
    script = "echo '$(HOSTNAME)' '$(PATH)' '$(MINE)'"
    own = "env: [{name: MINE, value: own}]\n              command:"
    result = await run_pod(_shell_pod(script).replace("command:", own))
    assert result.status == 0, result.stderr
    assert result.lines("main") == ["$(HOSTNAME) $(PATH) own"]


async def test_with_host_network_the_hostname_is_the_nodes() -> None:
    # As the kubelet leaves a hostNetwork pod's sandbox to the node's name
    # (spec.hostname applies to pods with their own network only).
    script = "hostname; cat /etc/hostname; echo $$HOSTNAME"
    extra = "hostNetwork: true\n          hostname: web-0"
    result = await run_pod(_shell_pod(script, extra=extra))
    assert result.status == 0, result.stderr
    assert result.lines("main") == [socket.gethostname()] * 3


async def test_the_containers_own_init_counts_against_its_pids_limit() -> None:
    # What the annotation's words say: one of the limit is the container's init
    # (PID 1 of its namespace); the shell and cat are the others.
    script = "cat /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current 2>/dev/null"
    extra = "metadata: {name: shell, annotations: {podvisor.io/pids-limit: '3'}}"
    text = _shell_pod(script).replace("metadata: {name: shell}", extra)
    assert (await run_pod(text)).lines("main") == ["3"]


async def test_host_aliases_and_dns_config_are_the_pods_name_files() -> None:
    script = "getent hosts db; grep -v '^#' /etc/resolv.conf"
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata:
          name: names
          annotations: {{podvisor.io/network: loopback}}
        spec:
          restartPolicy: Never
          hostAliases: [{{ip: 10.1.2.3, hostnames: [db, db.local]}}]
          dnsPolicy: None
          dnsConfig:
            nameservers: [192.0.2.53]
            searches: [svc.example]
            options: [{{name: ndots, value: "2"}}]
          containers:
            - name: main
              command: ["sh", "-c", {json.dumps(script)}]
    """)
    assert result.status == 0, result.stderr
    assert result.lines("main") == [
        "10.1.2.3        db db.local",
        "nameserver 192.0.2.53",
        "search svc.example",
        "options ndots:2",
    ]


async def test_containers_reach_each_other_on_localhost(tmp_path: Path) -> None:
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: talk}}
        spec:
          restartPolicy: Never
          initContainers:
            - name: server
              restartPolicy: Always
              command: ["python3", "-c", "import socket; s = socket.create_server(('127.0.0.1', 7070)); open('{tmp_path}/up', 'w').close(); c, _ = s.accept(); c.sendall(b'hello from server'); c.close()"]
              startupProbe:
                exec: {{command: ["test", "-e", "{tmp_path}/up"]}}
                periodSeconds: 1
                failureThreshold: 30
          containers:
            - name: client
              command: ["python3", "-c", "import socket; print(socket.create_connection(('127.0.0.1', 7070)).recv(100).decode())"]
    """)
    assert result.status == 0, result.stderr
    assert result.lines("client") == ["hello from server"]


# --- restart policies and the exit status -------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (3, 3), (255, 255)])
async def test_exit_status_is_the_main_containers(code: int, expected: int) -> None:
    assert (await run_pod(_shell_pod(f"exit {code}"))).status == expected


async def test_a_signal_death_is_128_plus_n() -> None:
    assert (await run_pod(_shell_pod("kill -TERM $$$$"))).status == 143


async def test_on_failure_restarts_until_success(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"
    result = await run_pod(_shell_pod(script, policy="OnFailure"))
    assert result.status == 0
    assert counter.read_text().count("x") == 3


async def test_never_does_not_restart(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    result = await run_pod(_shell_pod(f"echo x >> {counter}; exit 7", policy="Never"))
    assert result.status == 7
    assert counter.read_text().count("x") == 1


async def test_always_restarts_a_completed_container(tmp_path: Path) -> None:
    # Always restarts even exit 0; the pod ends when the deadline stops it.
    counter = tmp_path / "runs"
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -lt 2 || exec sleep 60"
    result = await run_pod(_shell_pod(script, policy="Always", extra="activeDeadlineSeconds: 3"))
    assert counter.read_text().count("x") == 2
    assert result.status == 124


async def test_a_missing_program_cannot_run() -> None:
    result = await run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: missing}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              command: ["/no/such/program"]
    """)
    assert result.status == 127
    assert "/no/such/program" in result.stderr


# --- logs ---------------------------------------------------------------------------


async def test_logs_are_prefixed_and_never_split() -> None:
    result = await run_pod(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: logs}}
        spec:
          restartPolicy: Never
          initContainers:
            - name: sidecar
              restartPolicy: Always
              command: ["sh", "-c", "while true; do echo {"s" * 3000}; done"]
          containers:
            - name: main
              command: ["python3", "-c", "import sys\\nfor i in range(2000): print('m' * 3000)\\nsys.stdout.write('partial')"]
    """)
    assert result.status == 0
    for line in result.stdout.splitlines():
        name, sep, text = line.partition(" | ")
        assert sep, line[:80]
        assert text in ("s" * 3000, "m" * 3000, "partial"), (name, text[:40])
    assert result.lines("main")[-1] == "partial"
    assert len(result.lines("main")) == 2001


async def test_json_logs() -> None:
    result = await run_pod(_shell_pod("echo out; echo err >&2"), log_format="json")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    records += [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    by_stream = {(r["container"], r["stream"]): r for r in records if r["container"] == "main"}
    assert by_stream["main", "stdout"]["line"] == "out"
    assert by_stream["main", "stderr"]["line"] == "err"
    assert by_stream["main", "stdout"]["pod"] == "shell"
    assert "time" in by_stream["main", "stdout"]


# --- stopping -----------------------------------------------------------------------


def _write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(pod_yaml(body))
    return path


_SEEN: dict[int, list[tuple[str, str]]] = {}


def _wait_for_line(proc: subprocess.Popen[str], container: str, text: str) -> None:
    """Read the pod's output until *container* has printed *text* (its ready signal)."""
    seen = _SEEN.setdefault(proc.pid, [])
    assert proc.stdout is not None
    while (container, text) not in seen:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"{container} never said {text!r}; saw {seen}")
        name, _, said = line.rstrip("\n").partition(" | ")
        seen.append((name.strip(), said))


def test_sigterm_stops_main_then_sidecars_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "order"
    trap = f"trap 'echo $NAME $(date +%s.%N) >> {log}; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    path = _write(
        tmp_path,
        "pod.yaml",
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: order}}
        spec:
          terminationGracePeriodSeconds: 20
          initContainers:
            - name: first
              restartPolicy: Always
              env: [{{name: NAME, value: first}}]
              command: ["sh", "-c", "{trap}"]
            - name: second
              restartPolicy: Always
              env: [{{name: NAME, value: second}}]
              command: ["sh", "-c", "{trap}"]
          containers:
            - name: main
              env: [{{name: NAME, value: main}}]
              command: ["sh", "-c", "{trap}"]
    """,
    )
    with podvisor_run(path) as proc:
        for name in ("first", "second", "main"):  # each has its trap set
            _wait_for_line(proc, name, "up")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    names = [line.split()[0] for line in log.read_text().splitlines()]
    assert names == ["main", "second", "first"], err
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("args", "backend"), [((), "asyncio"), (("--backend", "trio"), "trio")], ids=["default", "trio"]
)
def test_podvisor_run_is_on_asyncio_unless_told_trio(
    tmp_path: Path, args: tuple[str, ...], backend: str
) -> None:
    # asyncio is the default for its start: trio and its imports cost about 100 ms.
    path = _write(
        tmp_path,
        "pod.yaml",
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: backend, annotations: {podvisor.io/network: loopback}}
        spec:
          restartPolicy: Never
          containers:
            - {name: main, command: ["echo", "done"]}
    """,
    )
    # Every interpreter of the pod prints what it imports: the supervisor, its init.
    with podvisor_run(path, *args, env={"PYTHONPROFILEIMPORTTIME": "1"}) as proc:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "main | done" in out
    imported = {line.rpartition("|")[2].strip() for line in err.splitlines()}
    assert backend in imported
    assert ("trio" in imported) == (backend == "trio")


def test_podvisor_run_does_what_it_registered_for_its_exit(tmp_path: Path) -> None:
    # `podvisor run` skips the interpreter's teardown once the pod is gone,
    # but not its atexit handlers (the owner lock of its network records) nor
    # its last lines.
    from podvisor.supervisor.network.records import OWNERS_DIR

    path = _write(
        tmp_path,
        "pod.yaml",
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: last-words, annotations: {podvisor.io/network: loopback}}
        spec:
          restartPolicy: Never
          containers:
            - {name: main, command: ["echo", "done"]}
    """,
    )
    with podvisor_run(path) as proc:
        owner_lock = f"*-{proc.pid}-*.lock"
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "main | done" in out
    assert "pod Succeeded (exit 0)" in err
    assert not list(OWNERS_DIR.glob(owner_lock))


#: Modules a supervisor has no use for while its pod runs: the command
#: line's and the manifest's reading and the network's making (forked
#: children's work), the control client, and standard modules only rare paths
#: use. Each would stay in memory as long as the pod.
NOT_KEPT = (
    "argparse",
    "yaml",
    "podvisor.supervisor.manifest.loader",
    "podvisor.supervisor.manifest.nodes",
    "difflib",
    "decimal",
    "uuid",
    "podvisor.supervisor.cli.commands",
    "hashlib",
    "datetime",
    "pyroute2",
    "unittest",
    "shutil",  # with bz2 and lzma: 0.75 MB
    "_pickle",  # what crosses a forked child's pipe is marshal data
    "pickle",
    "podvisor.init.tini",
    # What only some pods or requests use, imported by the first that does:
    "podvisor.sidecars.probes",
    "podvisor.sidecars.hooks",
    "podvisor.sidecars.execs",  # and shlex, for exec probes, hooks and `podvisor exec`
    "podvisor.supervisor.network.proxy",
    "podvisor.supervisor.network.create",  # with the /etc files' rendering: the maker's
    "podvisor.supervisor.network.etcfiles",
    "podvisor.supervisor.control.handlers",
    "podvisor.supervisor.control.connection",  # and the messages, `wire`, with it
    "podvisor.supervisor.control.wire",
    "podvisor.supervisor.pod.volumes",  # a pod without volumes
    "podvisor.supervisor.pod.volume_files",
    "podvisor.supervisor.metrics.endpoint",  # and its HTTP, `http`: the first connection's
    "podvisor.supervisor.metrics.http",
    "podvisor.supervisor.cgroups.stats",
    "podvisor.supervisor.metrics.status",
    "podvisor.init.process",  # its exit status for a program that cannot run
    "pwd",  # HOME on the host's files comes from /etc/passwd, read as runc reads it
    "concurrent.futures.thread",  # asyncio's resolver: a numeric metrics address needs none
)

#: Kept by none but a pod with a network namespace of its own, which needs it
#: to unmount the namespace at its stop.
NOT_KEPT_WITHOUT_NETNS = ("ctypes",)


@pytest.mark.parametrize("network", ["bridge", "host"])
def test_the_supervisor_keeps_the_pod_not_the_manifests_reader(
    tmp_path: Path, network: str
) -> None:
    path = _write(
        tmp_path,
        "pod.yaml",
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: lean, annotations: {{podvisor.io/network: {network}}}}}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              command: ["echo", "done"]
              resources: {{limits: {{memory: 64Mi, cpu: 250m}}}}
    """,
    )
    # `podvisor run` as the console script runs it, in a fresh interpreter,
    # which then says what it imported over the pod's whole life, its stop
    # included. A bridge (an error, not host mode, if it cannot be made): a
    # child makes it, the stop undoes it. The host's network: no namespace.
    # The metrics endpoint listens (on a free port), unasked.
    code = (
        "import sys\n"
        "from podvisor.init.entry import main\n"
        f"status = main(['run', {str(path)!r}, '--metrics-address', '127.0.0.1:0'])\n"
        "print('modules:', ' '.join(sys.modules))\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "main | done" in done.stdout
    modules = set(done.stdout.rpartition("modules: ")[2].split())
    assert "podvisor.supervisor.manifest.model" in modules  # it ran the pod
    assert [m for m in NOT_KEPT if m in modules] == []
    if network == "host":
        assert [m for m in NOT_KEPT_WITHOUT_NETNS if m in modules] == []


@pytest.mark.parametrize("broken", [False, True], ids=["valid", "broken"])
def test_podvisor_run_reads_the_manifest_from_stdin(broken: bool) -> None:
    # The manifest is read by a forked child: stdin is the child's to read.
    text = pod_yaml(
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: stdin, annotations: {podvisor.io/network: loopback}}
        spec:
          restartPolicy: Never
          containers:
            - {name: main, command: ["echo", "from stdin"]}
        """
    )
    if broken:
        text = text.replace("restartPolicy: Never", "restartPolicy: Sometimes")
    done = subprocess.run(
        [*podvisor_command(), "run", "--metrics-address", "off", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if broken:
        assert done.returncode == 2
        assert "<stdin>:" in done.stderr
        assert "restartPolicy" in done.stderr
        assert done.stderr.count("nothing was started") == 1
        assert done.stdout == ""
    else:
        assert done.returncode == 0, done.stderr
        assert "main | from stdin" in done.stdout


def test_grace_deadline_kills_a_term_ignoring_double_forked_escapee(tmp_path: Path) -> None:
    pidfile = tmp_path / "escapee"
    escape = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    script = tmp_path / "escape.py"
    script.write_text(escape)
    path = _write(
        tmp_path,
        "pod.yaml",
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: escape}}
        spec:
          terminationGracePeriodSeconds: 2
          shareProcessNamespace: true
          containers:
            - name: main
              command: ["sh", "-c", "trap '' TERM; python3 {script}; echo up; while :; do sleep 0.1; done"]
    """,
    )
    with podvisor_run(path) as proc:
        _wait_for_line(proc, "main", "up")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        waited = time.monotonic() - started
    assert waited >= 1.5  # it waited for the grace period, then killed
    assert proc.returncode == 137
    # The escapee ran in the pod's PID namespace; every process of the pod is gone.
    assert not any(
        "time.sleep(600)" in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit()
    )


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def test_supervisor_sigkill_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = f"podvisor-test-marker-{os.getpid()}"
    path = _write(
        tmp_path,
        "pod.yaml",
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: orphaned}}
        spec:
          terminationGracePeriodSeconds: 3
          containers:
            - name: main
              command: ["sh", "-c", "echo up; exec -a {marker} sleep 600"]
    """,
    )
    with podvisor_run(path) as proc:
        _wait_for_line(proc, "main", "up")
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not any(marker in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()):
                break
            time.sleep(0.05)
        survivors = [p for p in os.listdir("/proc") if p.isdigit() and marker in _cmdline(p)]
        assert not survivors
    # The cgroups a SIGKILLed supervisor left are removed by the next start.
    with podvisor_run(
        _write(
            tmp_path,
            "ok.yaml",
            """
        apiVersion: v1
        kind: Pod
        metadata: {name: orphaned}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              command: ["true"]
    """,
        )
    ) as rerun:
        rerun.communicate(timeout=60)
    assert rerun.returncode == 0


async def test_a_program_that_is_not_executable_cannot_run(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    result = await run_pod(_shell_pod("unused").replace('["sh", "-c", "unused"]', f'["{script}"]'))
    assert result.status == 126
    assert f"{script}: Permission denied" in result.stderr


async def test_a_missing_working_dir_is_a_start_error() -> None:
    result = await run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: nowhere}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              command: ["true"]
              workingDir: /no/such/dir
    """)
    # The program exists; its process could not be set up: StartError, 128.
    assert result.status == 128
    assert "/no/such/dir" in result.stderr


async def test_command_and_args_expand_variables_as_kubernetes_does() -> None:
    result = await run_pod("""
        apiVersion: v1
        kind: Pod
        metadata: {name: expand}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              env:
                - {name: GREETING, value: hello}
                - name: POD
                  valueFrom: {fieldRef: {fieldPath: metadata.name}}
              command: ["echo", "$(GREETING) from $(POD)", "$$(GREETING)", "$(UNDEFINED)"]
    """)
    assert result.lines("main") == ["hello from expand $(GREETING) $(UNDEFINED)"]
