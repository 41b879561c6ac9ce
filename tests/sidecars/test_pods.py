"""Issue 5 end to end: real pods run by the real runner, with real processes throughout.

Each test writes a Pod manifest, runs it with `PodRunner` and checks what
the containers recorded (a timeline of nanosecond timestamps in a file) and
the lifecycle core's view of the pod (`run.container(name)`). Every pod has
a loopback network of its own, so the ports in it exist nowhere else.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

from podvisor.supervisor import lifecycle as lc
from tests.sidecars.pods import (
    ONESHOT,
    PRELUDE,
    SERVICE,
    PodRun,
    Timeline,
    container,
    manifest,
    marked,
    program,
    run_pod,
    sidecar,
    up_probe,
)
from tests.sidecars.support import PY, WAIT

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

READINESS = lc.ProbeKind.READINESS
STARTUP = lc.ProbeKind.STARTUP
LIVENESS = lc.ProbeKind.LIVENESS


def streak(run: PodRun, name: str, kind: lc.ProbeKind) -> int:
    """Successes (> 0) or failures (< 0) in a row of a probe, as the core counts them."""
    return run.container(name).streaks.get(kind, 0)


def phase(run: PodRun) -> lc.PodPhase:
    return run.state.phase


def pod_ready(run: PodRun) -> bool:
    return run.state.containers_ready


async def release(fifo: Path) -> None:
    """Let a container blocked reading *fifo* go on (waits until it has opened it)."""
    with anyio.fail_after(WAIT):
        await anyio.to_thread.run_sync(fifo.write_text, "go\n", abandon_on_cancel=True)


# --- Order ------------------------------------------------------------------------------------


async def test_init_containers_then_sidecars_then_mains_and_a_job_like_end(tmp_path: Path) -> None:
    log = tmp_path / "log"

    def service(name: str) -> dict[str, object]:
        return sidecar(name, program(SERVICE, name, log), startupProbe=up_probe(log, name))

    pod = manifest(
        "order",
        init=[
            container("init-a", program(ONESHOT, "init-a", log)),
            container("init-b", program(ONESHOT, "init-b", log)),
            service("side-a"),
            service("side-b"),
        ],
        containers=[
            container("main-a", program(ONESHOT, "main-a", log)),
            container("main-b", program(ONESHOT, "main-b", log)),
        ],
    )
    async with run_pod(pod) as run:
        assert await run.finished() == 0  # the mains completed: the pod ends by itself
    assert run.state.phase is lc.PodPhase.SUCCEEDED
    t = Timeline(log)
    t.assert_order(
        ("init-a", "start"),
        ("init-a", "end"),
        ("init-b", "start"),
        ("init-b", "end"),
        ("side-a", "start"),
        ("side-b", "start"),
        ("main-a", "start"),
    )
    t.assert_order(("side-b", "start"), ("main-b", "start"))
    # Sidecars outlive the mains, and stop in reverse order.
    t.assert_order(("main-a", "end"), ("side-b", "stop"), ("side-a", "stop"))
    t.assert_order(("main-b", "end"), ("side-b", "stop"))
    assert t.count("side-a", "start") == t.count("side-b", "start") == 1


async def test_sidecars_outlive_main_during_a_stop_and_stop_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "log"

    def service(name: str) -> dict[str, object]:
        return sidecar(name, program(SERVICE, name, log), startupProbe=up_probe(log, name))

    pod = manifest(
        "stop-order",
        init=[service("side-a"), service("side-b")],
        containers=[container("main", program(SERVICE, "main", log))],
    )
    async with run_pod(pod) as run:
        await run.up("main")
        run.stop()
        await run.finished()
    Timeline(log).assert_order(("main", "stop"), ("side-b", "stop"), ("side-a", "stop"))


async def test_a_sidecars_pre_stop_hook_runs_when_the_stop_begins(tmp_path: Path) -> None:
    """As the kubelet runs every preStop hook when the pod's termination begins: the main
    container, slow to stop, sees the sidecar's hook before it ends; the sidecar's stop
    signal still waits for the main container's end."""
    log = tmp_path / "log"
    hooked = marked(log, "side", "pre-stop")
    hook = PRELUDE + 'record("pre-stop")\nmark("pre-stop")\n'
    lingering = SERVICE.replace(
        "signal.signal(signal.SIGTERM, on_term)",
        f"""def on_term(signum, frame):
    deadline = time.time() + 10
    while not os.path.exists({str(hooked)!r}) and time.time() < deadline:
        time.sleep(0.05)
    record("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)""",
    )
    side = sidecar(
        "side",
        program(SERVICE, "side", log),
        startupProbe=up_probe(log, "side"),
        lifecycle={"preStop": {"exec": {"command": program(hook, "side", log)}}},
    )
    pod = manifest(
        "side-pre-stop",
        init=[side],
        containers=[container("main", program(lingering, "main", log))],
    )
    async with run_pod(pod) as run:
        await run.up("main")
        run.stop()
        await run.finished()
    Timeline(log).assert_order(("side", "pre-stop"), ("main", "stop"), ("side", "stop"))


async def test_a_sidecars_startup_probe_gates_the_main_container(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    os.mkfifo(gate)
    # Listens on 18081 (in the pod only) once the test opens the gate.
    gated = (
        PRELUDE
        + f"""
signal.signal(signal.SIGTERM, on_term)
record("start")
open({str(gate)!r}).read()
server = socket.create_server(("127.0.0.1", 18081))
record("listening")
while True:
    server.accept()[0].close()
"""
    )
    probe = {"tcpSocket": {"port": 18081}, "periodSeconds": 1, "failureThreshold": 60}
    pod = manifest(
        "gated",
        init=[sidecar("proxy", program(gated, "proxy", log), startupProbe=probe)],
        containers=[container("main", program(SERVICE, "main", log))],
    )
    async with run_pod(pod) as run:
        await run.until(
            "the startup probe failed twice", lambda: streak(run, "proxy", STARTUP) <= -2
        )
        assert run.container("main").step is lc.Step.PENDING
        assert run.container("proxy").state is lc.State.RUNNING
        assert not run.container("proxy").started
        await release(gate)
        await run.up("main")
        assert run.container("proxy").restart_count == 0
    Timeline(log).assert_order(("proxy", "start"), ("proxy", "listening"), ("main", "start"))


# --- Restarts -----------------------------------------------------------------------------------


async def test_a_crashed_sidecar_restarts_while_main_keeps_running(tmp_path: Path) -> None:
    log, trigger = tmp_path / "log", tmp_path / "crash"
    os.mkfifo(trigger)
    # The first instance crashes when the test says so; the next ones run.
    flaky = (
        PRELUDE
        + f"""
signal.signal(signal.SIGTERM, on_term)
record("start")
if not os.path.exists(f"{{LOG}}.{{NAME}}.crashed"):
    mark("crashed")
    open({str(trigger)!r}).read()
    record("crash")
    sys.exit(1)
while True:
    time.sleep(1000)
"""
    )
    pod = manifest(
        "crashy",
        init=[sidecar("flaky", program(flaky, "flaky", log))],
        containers=[container("main", program(SERVICE, "main", log))],
    )
    async with run_pod(pod) as run:
        await run.up("main")
        main_pid = run.container("main").pid
        await release(trigger)
        await run.until(
            "the sidecar runs again",
            lambda: run.container("flaky").restart_count == 1 and run.container("flaky").started,
        )
        crash = run.container("flaky").last_state
        assert crash is not None
        assert crash.exit_code == 1
        assert run.container("main").restart_count == 0
        assert run.container("main").pid == main_pid
    t = Timeline(log)
    assert t.count("main", "start") == 1
    t.assert_order(("main", "start"), ("flaky", "crash"))


async def test_a_job_ends_with_its_mains_code_whatever_its_sidecars_do(tmp_path: Path) -> None:
    log = tmp_path / "log"
    stubborn = PRELUDE + 'signal.signal(signal.SIGTERM, signal.SIG_IGN)\nrecord("start")\n'
    stubborn += 'mark("up")\nwhile True:\n    time.sleep(1000)\n'
    job = PRELUDE + 'record("start")\nsys.exit(3)\n'
    # The startup probe holds the job back until the sidecar ignores SIGTERM:
    # a stop that came sooner would find it still at the default, and end it.
    ignoring = sidecar(
        "stubborn", program(stubborn, "stubborn", log), startupProbe=up_probe(log, "stubborn")
    )
    pod = manifest(
        "job",
        init=[ignoring],
        containers=[container("job", program(job, "job", log))],
        grace=1,
    )
    async with run_pod(pod) as run:
        assert await run.finished() == 3
    stubborn_end = run.container("stubborn").terminated
    assert stubborn_end is not None
    assert stubborn_end.signal == 9  # it ignored SIGTERM and was killed at the deadline
    assert run.state.phase is lc.PodPhase.FAILED


# --- Probes ---------------------------------------------------------------------------------------


async def test_each_probe_kind_against_a_server_in_the_pod(tmp_path: Path) -> None:
    server = [PY, "-m", "http.server", "--bind", "127.0.0.1", "18321"]
    idle = ["sleep", "1000"]

    def ready_probe(handler: dict[str, object]) -> dict[str, object]:
        return {**handler, "periodSeconds": 1, "timeoutSeconds": 2}

    pod = manifest(
        "probes",
        [
            container(
                "web",
                server,
                workingDir=str(tmp_path),
                ports=[{"name": "http", "containerPort": 18321}],
                startupProbe=ready_probe({"tcpSocket": {"port": 18321}}) | {"failureThreshold": 30},
                readinessProbe=ready_probe({"httpGet": {"path": "/", "port": "http"}}),
                livenessProbe=ready_probe({"exec": {"command": ["true"]}}),
            ),
            container(
                "bad-http",
                idle,
                readinessProbe=ready_probe({"httpGet": {"path": "/missing", "port": 18321}}),
            ),
            container("bad-tcp", idle, readinessProbe=ready_probe({"tcpSocket": {"port": 18322}})),
            container(
                "bad-exec", idle, readinessProbe=ready_probe({"exec": {"command": ["false"]}})
            ),
        ],
    )
    async with run_pod(pod) as run:
        await run.until("web is ready", lambda: run.container("web").ready)
        await run.until("web's liveness passes", lambda: streak(run, "web", LIVENESS) >= 1)
        for name in ("bad-http", "bad-tcp", "bad-exec"):
            await run.until(f"{name} failed twice", lambda n=name: streak(run, n, READINESS) <= -2)  # type: ignore[misc]
            assert not run.container(name).ready
        assert not run.state.containers_ready
        # The server's port is the pod's alone: nothing listens on it here.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", 18321), timeout=WAIT).close()
    assert run.container("web").restart_count == 0


async def test_a_failing_liveness_probe_restarts_the_container(tmp_path: Path) -> None:
    log = tmp_path / "log"
    # Healthy from its second start on.
    code = (
        PRELUDE
        + """
signal.signal(signal.SIGTERM, on_term)
record("start")
if os.path.exists(f"{LOG}.{NAME}.once"):
    mark("healthy")
mark("once")
while True:
    time.sleep(1000)
"""
    )
    probe = {
        "exec": {"command": ["test", "-e", str(marked(log, "app", "healthy"))]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    pod = manifest(
        "liveness",
        [container("app", program(code, "app", log), livenessProbe=probe)],
        restart="Always",
        grace=2,
    )
    async with run_pod(pod) as run:
        await run.until(
            "the second instance passes its liveness probe",
            lambda: run.container("app").restart_count == 1 and streak(run, "app", LIVENESS) >= 1,
        )
        previous = run.container("app").last_state
        assert previous is not None
        assert "Liveness probe failed" in previous.message
    t = Timeline(log)
    t.assert_order(("app", "start"), ("app", "stop"))  # stopped with its stop signal, not killed
    assert t.count("app", "start") == 2


async def test_readiness_flips_with_the_probe(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1}
    pod = manifest("flips", [container("app", ["sleep", "1000"], readinessProbe=probe)])
    async with run_pod(pod) as run:
        await run.until("a failure is seen", lambda: streak(run, "app", READINESS) <= -1)
        assert not run.container("app").ready
        flag.touch()
        await run.until("app is ready", lambda: run.container("app").ready)
        assert pod_ready(run)
        flag.unlink()
        await run.until("app is unready", lambda: not run.container("app").ready)
        assert not pod_ready(run)
        assert run.container("app").restart_count == 0


# --- NOTIFY_SOCKET ------------------------------------------------------------------------------------

#: sd_notify from Python: send argv[3] (with "\n" for newlines) to NOTIFY_SOCKET.
NOTIFY = (
    PRELUDE
    + """
def notify(message):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(message.encode(), os.environ["NOTIFY_SOCKET"])
    s.close()
signal.signal(signal.SIGTERM, on_term)
"""
)


async def test_ready_on_notify_socket_starts_a_sidecar(tmp_path: Path) -> None:
    log = tmp_path / "log"
    daemon = (
        NOTIFY
        + """
record("start")
notify("READY=1\\nSTATUS=serving")
record("notified")
while True:
    time.sleep(1000)
"""
    )
    # A startup probe that never passes: only READY=1 can start the sidecar.
    never = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 60}
    pod = manifest(
        "notify",
        init=[sidecar("daemon", program(daemon, "daemon", log), startupProbe=never)],
        containers=[container("main", program(SERVICE, "main", log))],
    )
    async with run_pod(pod) as run:
        await run.up("main")
        daemon_status = run.container("daemon")
        assert daemon_status.started
        assert daemon_status.ready
        assert daemon_status.notify_status == "serving"
        assert daemon_status.restart_count == 0
    Timeline(log).assert_order(("daemon", "notified"), ("main", "start"))


async def test_watchdog_pings_keep_a_container_alive_until_they_stop(tmp_path: Path) -> None:
    log, stop_pinging = tmp_path / "log", tmp_path / "stop-pinging"
    pinger = (
        NOTIFY
        + f"""
record("start")
assert os.environ["WATCHDOG_USEC"] == "2000000"
i = 0
while not os.path.exists({str(stop_pinging)!r}):
    notify("WATCHDOG=1")
    i += 1
    print("ping", i, flush=True)
    time.sleep(0.1)
record("silent")
while True:
    time.sleep(1000)
"""
    )
    pod = manifest(
        "watchdog",
        [container("app", program(pinger, "app", log))],
        restart="Always",
        grace=2,
        annotations={"podvisor.io/watchdog-usec.app": "2000000"},
    )
    async with run_pod(pod) as run:
        await run.log.line("ping 40")  # four seconds: twice the watchdog's interval
        assert run.container("app").restart_count == 0
        stop_pinging.touch()
        await run.until("app is restarted", lambda: run.container("app").restart_count == 1)
        previous = run.container("app").last_state
        assert previous is not None
        assert "watchdog" in previous.message
    Timeline(log).assert_order(("app", "silent"), ("app", "stop"))


async def test_a_newline_on_the_notification_fd_starts_a_sidecar(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    os.mkfifo(gate)
    # s6-style: a newline on fd 3 once the test opens the gate.
    daemon = (
        PRELUDE
        + f"""
signal.signal(signal.SIGTERM, on_term)
record("start")
open({str(gate)!r}).read()
os.write(3, b"\\n")
record("notified")
while True:
    time.sleep(1000)
"""
    )
    pod = manifest(
        "notification-fd",
        init=[sidecar("daemon", program(daemon, "daemon", log))],
        containers=[container("main", program(SERVICE, "main", log))],
        annotations={"podvisor.io/notification-fd.daemon": "3"},
    )
    async with run_pod(pod) as run:
        await run.until("daemon runs", lambda: run.container("daemon").state is lc.State.RUNNING)
        assert not run.container("daemon").started
        assert run.container("main").step is lc.Step.PENDING
        await release(gate)
        await run.up("main")
        assert run.container("daemon").started
        assert run.container("daemon").restart_count == 0
    Timeline(log).assert_order(("daemon", "notified"), ("main", "start"))


# --- Hooks ------------------------------------------------------------------------------------------


async def test_post_start_holds_the_container_until_it_finishes(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    os.mkfifo(gate)
    hook = PRELUDE + f'record("post-start")\nopen({str(gate)!r}).read()\n'
    lifecycle = {"postStart": {"exec": {"command": program(hook, "app", log)}}}
    pod = manifest(
        "post-start", [container("app", program(SERVICE, "app", log), lifecycle=lifecycle)]
    )
    async with run_pod(pod) as run:
        await run.until("the hook runs", lambda: run.container("app").step is lc.Step.POST_START)
        app = run.container("app")
        assert (app.state, app.reason) == (lc.State.WAITING, lc.Reason.CONTAINER_CREATING)
        assert phase(run) is lc.PodPhase.PENDING
        await release(gate)
        await run.until("app runs", lambda: run.container("app").state is lc.State.RUNNING)
        assert phase(run) is lc.PodPhase.RUNNING
    assert Timeline(log).count("app", "post-start") == 1  # alongside the entrypoint: no order


async def test_a_failing_post_start_hook_kills_and_restarts_the_container(tmp_path: Path) -> None:
    log = tmp_path / "log"
    lifecycle = {"postStart": {"exec": {"command": ["sh", "-c", "echo no config; exit 1"]}}}
    pod = manifest(
        "bad-hook",
        [container("app", program(SERVICE, "app", log), lifecycle=lifecycle)],
        restart="Always",
    )
    async with run_pod(pod) as run:
        await run.until("app restarted", lambda: run.container("app").restart_count >= 1)
        previous = run.container("app").last_state
        assert previous is not None
        assert "postStart hook failed" in previous.message
        assert "no config" in previous.message
        await run.log.line("app: postStart hook failed")


async def test_pre_stop_runs_before_the_stop_signal(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hook = PRELUDE + 'record("pre-stop")\n'
    lifecycle = {"preStop": {"exec": {"command": program(hook, "app", log)}}}
    pod = manifest(
        "pre-stop", [container("app", program(SERVICE, "app", log), lifecycle=lifecycle)]
    )
    async with run_pod(pod) as run:
        await run.up("app")
        run.stop()
        assert await run.finished() == 0
    Timeline(log).assert_order(("app", "start"), ("app", "pre-stop"), ("app", "stop"))


async def test_a_pre_stop_hook_that_overruns_the_grace_period_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "log"
    hook = PRELUDE + 'record("pre-stop")\ntime.sleep(1000)\n'
    lifecycle = {"preStop": {"exec": {"command": program(hook, "app", log)}}}
    pod = manifest(
        "slow-pre-stop",
        [container("app", program(SERVICE, "app", log), lifecycle=lifecycle)],
        grace=2,
    )
    async with run_pod(pod) as run:
        await run.up("app")
        began = anyio.current_time()
        run.stop()
        assert await run.finished() == 0  # its SIGTERM handler ran: it exited 0
        assert anyio.current_time() - began >= 2.0
    t = Timeline(log)
    assert t.count("app", "pre-stop") == 1
    # The hook used the whole grace period; the program still gets SIGTERM (and 2 s).
    t.assert_order(("app", "pre-stop"), ("app", "stop"))


async def test_grace_zero_still_sends_sigterm_and_the_program_handles_it(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pod = manifest("grace-zero", [container("app", program(SERVICE, "app", log))], grace=0)
    async with run_pod(pod) as run:
        await run.up("app")
        run.stop()
        assert await run.finished() == 0  # not 137: SIGTERM came, and time to act on it
        app = run.container("app")
        assert (app.exit_code, app.signal) == (0, None)
    assert Timeline(log).count("app", "stop") == 1


async def test_a_post_start_hook_holds_back_the_next_container(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    os.mkfifo(gate)
    hook = PRELUDE + f'record("post-start")\nopen({str(gate)!r}).read()\nrecord("post-started")\n'
    lifecycle = {"postStart": {"exec": {"command": program(hook, "a", log)}}}
    pod = manifest(
        "post-start-order",
        [
            container("a", program(SERVICE, "a", log), lifecycle=lifecycle),
            container("b", program(SERVICE, "b", log)),
        ],
    )
    async with run_pod(pod) as run:
        await run.until("a's hook runs", lambda: run.container("a").step is lc.Step.POST_START)
        b = run.container("b")
        assert (b.step, b.state, b.pid) == (lc.Step.PENDING, lc.State.WAITING, None)
        await release(gate)
        await run.up("b")
    Timeline(log).assert_order(("a", "post-start"), ("a", "post-started"), ("b", "start"))
