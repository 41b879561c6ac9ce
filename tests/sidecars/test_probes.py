"""Probes against real processes in a real pod (init, namespaces), without the runner.

Each test starts the pod's init (`sandboxed_pod`), runs `ContainerActions.probe`
in a task as the runner would, and reads the ProbeResults it posts.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from podvisor.init.podinit import descendants
from podvisor.sidecars.actions import ContainerActions
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import (
    Container,
    ExecAction,
    HTTPGetAction,
    Probe,
    ProbeHandler,
    TCPSocketAction,
)
from podvisor.supervisor.network import NetworkMode
from tests.sidecars.support import (
    HTTP_SERVER,
    PY,
    WAIT,
    FakeHost,
    make_container,
    make_pod,
    read_line,
    sandboxed_pod,
    spawn_server,
)

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

LIVENESS = lc.ProbeKind.LIVENESS


def probe(handler: ProbeHandler, **fields: int) -> Probe:
    return Probe(handler, **{"period_seconds": 1, "timeout_seconds": 5, **fields})


async def results(host: FakeHost, count: int) -> list[lc.ProbeResult]:
    found: list[lc.ProbeResult] = []
    while len(found) < count:
        event = await host.next_event()
        assert isinstance(event, lc.ProbeResult), event
        found.append(event)
    return found


async def first_result(actions: ContainerActions, host: FakeHost, c: Container) -> lc.ProbeResult:
    """Run *c*'s liveness probe until it reports once."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(actions.probe, c, LIVENESS)
        (result,) = await results(host, 1)
        tg.cancel_scope.cancel()
    return result


def live_processes(host: FakeHost) -> list[int]:
    """The pod's processes that have not exited, its init (PID 1 in the pod) aside."""
    alive = []
    for pid in descendants(host.init.process.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields["State"][0] != "Z" and fields["NSpid"].split()[-1] != "1":
            alive.append(pid)
    return alive


# --- exec ----------------------------------------------------------------------------


async def test_exec_probe_reports_every_attempt(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    c = make_container(liveness=probe(ExecAction(("sh", "-c", f"echo checking; test -e {flag}"))))
    async with sandboxed_pod(make_pod(c)) as (host, actions), anyio.create_task_group() as tg:
        tg.start_soon(actions.probe, c, LIVENESS)
        (failed,) = await results(host, 1)
        assert failed == lc.ProbeResult("app", LIVENESS, False, failed.message)
        assert "exited with 1: checking" in failed.message
        flag.touch()
        while not (await results(host, 1))[0].success:
            pass  # an attempt may have started before the flag existed
        tg.cancel_scope.cancel()


async def test_exec_probe_waits_initial_delay_then_period() -> None:
    c = make_container(liveness=probe(ExecAction(("true",)), initial_delay_seconds=1))
    async with sandboxed_pod(make_pod(c)) as (host, actions), anyio.create_task_group() as tg:
        began = anyio.current_time()
        tg.start_soon(actions.probe, c, LIVENESS)
        first, second = await results(host, 2)
        assert first.success
        assert second.success
        # Lower bounds only: the machine may be slow, never early.
        assert anyio.current_time() - began >= 2.0
        tg.cancel_scope.cancel()


async def test_exec_probe_runs_in_the_pod_and_the_container_cgroup(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    script = f"echo $$ > {out}; hostname >> {out}; cat /proc/self/cgroup >> {out}"
    c = make_container(liveness=probe(ExecAction(("sh", "-c", script))))
    async with sandboxed_pod(make_pod(c), cgroups=True) as (host, actions):
        assert (await first_result(actions, host, c)).success
    pid, hostname, *cgroups = out.read_text().splitlines()
    assert int(pid) != os.getpid()
    assert hostname == "pv-sidecars"  # the pod's UTS namespace
    assert any(line.endswith("/app") for line in cgroups), cgroups


async def test_exec_probe_timeout_kills_the_command() -> None:
    command = (PY, "-c", "import time; print('started', flush=True); time.sleep(1000)")
    c = make_container(liveness=probe(ExecAction(command), timeout_seconds=1))
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        result = await first_result(actions, host, c)
        assert not result.success
        assert "timed out after 1s: started" in result.message
        assert live_processes(host) == []


async def test_stopping_a_probe_kills_its_command(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # our own writer: no end-of-file
    command = (PY, "-c", f"import time; open({str(fifo)!r}, 'w').write('up\\n'); time.sleep(1000)")
    c = make_container(liveness=probe(ExecAction(command), timeout_seconds=1000))
    try:
        async with sandboxed_pod(make_pod(c)) as (host, actions):
            async with anyio.create_task_group() as tg:
                tg.start_soon(actions.probe, c, LIVENESS)
                assert await read_line(fd) == "up"
                assert len(live_processes(host)) == 1
                tg.cancel_scope.cancel()  # what StopProbe does
            assert live_processes(host) == []
            assert host.posted == []
    finally:
        os.close(fd)


async def test_a_stopped_probe_does_not_wait_for_a_deaf_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # During the pod's teardown nobody reads the init's replies any more: the
    # kill of a cancelled command must give up rather than hold the runner.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    command = (PY, "-c", f"import time; open({str(fifo)!r}, 'w').write('up\\n'); time.sleep(1000)")
    c = make_container(liveness=probe(ExecAction(command), timeout_seconds=1000))
    try:
        async with sandboxed_pod(make_pod(c)) as (host, actions):

            async def deaf(pid: int, signum: int, *, group: bool = False) -> int:
                await anyio.sleep_forever()
                raise AssertionError("never answered")

            monkeypatch.setattr(host.init, "signal", deaf)
            began = anyio.current_time()
            # A shielded wait that never ends would hang here (pytest's timeout ends it).
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(actions.probe, c, LIVENESS)
                    assert await read_line(fd) == "up"
                    tg.cancel_scope.cancel()  # what StopProbe does
            assert anyio.current_time() - began < WAIT
            assert host.posted == []
    finally:
        os.close(fd)


async def test_exec_probe_of_a_missing_program_fails() -> None:
    c = make_container(liveness=probe(ExecAction(("/nonexistent/pv-check",))))
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        result = await first_result(actions, host, c)
    assert not result.success
    assert "cannot run /nonexistent/pv-check: No such file or directory" in result.message


# --- httpGet and tcpSocket, inside the pod's network namespace ------------------------------


async def http_result(path: str, *, port_name: bool = False, **fields: object) -> lc.ProbeResult:
    """One httpGet attempt at *path* against HTTP_SERVER, run in a loopback pod."""
    pod_name = "pv-sidecars-http"
    async with sandboxed_pod(
        make_pod(make_container(), name=pod_name), network=NetworkMode.LOOPBACK
    ) as (host, actions):
        port = int(await spawn_server(host, HTTP_SERVER))
        action = HTTPGetAction(path, "web" if port_name else port, **fields)  # type: ignore[arg-type]
        c = make_container(ports=[("web", port)], liveness=probe(action, timeout_seconds=1))
        return await first_result(actions, host, c)


async def test_http_probe_succeeds_on_a_port_only_the_pod_has() -> None:
    result = await http_result("/")
    assert result.success, result.message
    assert result.message == ""


async def test_http_probe_takes_a_port_by_name() -> None:
    assert (await http_result("/status/204", port_name=True)).success


async def test_http_probe_fails_on_a_server_error() -> None:
    result = await http_result("/status/500")
    assert not result.success
    assert result.message == "HTTP probe failed with statuscode: 500"


async def test_http_probe_sends_its_headers() -> None:
    assert not (await http_result("/token")).success
    assert (await http_result("/token", headers=(("X-Token", "s3cret"),))).success


async def test_http_probe_follows_a_redirect_in_the_pod() -> None:
    result = await http_result("/to//status/500")
    assert not result.success  # followed: the 500 at the end decides
    assert result.message == "HTTP probe failed with statuscode: 500"


async def test_http_probe_counts_a_redirect_elsewhere_as_success() -> None:
    result = await http_result("/to/http://192.0.2.1/")
    assert result.success
    assert "redirects: 302 to http://192.0.2.1/" in result.message


async def test_http_probe_times_out() -> None:
    result = await http_result("/slow")
    assert not result.success
    assert "no answer within 1s" in result.message


async def test_http_probe_fails_when_nothing_listens() -> None:
    c = make_container(liveness=probe(HTTPGetAction("/", 1)))
    async with sandboxed_pod(make_pod(c), network=NetworkMode.LOOPBACK) as (host, actions):
        result = await first_result(actions, host, c)
    assert not result.success
    assert "Connection refused" in result.message


async def test_https_probe_does_not_check_certificates(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls_server = HTTP_SERVER.replace(
        "print(server.server_address",
        "import ssl\n"
        "context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        "context.load_cert_chain(sys.argv[1], sys.argv[2])\n"
        "server.socket = context.wrap_socket(server.socket, server_side=True)\n"
        "print(server.server_address",
    )
    c = make_container()
    async with sandboxed_pod(make_pod(c), network=NetworkMode.LOOPBACK) as (host, actions):
        port = int(await spawn_server(host, tls_server, str(cert), str(key)))
        https = make_container(liveness=probe(HTTPGetAction("/", port, scheme="HTTPS")))
        plain = make_container(liveness=probe(HTTPGetAction("/", port)))
        assert (await first_result(actions, host, https)).success
        assert not (await first_result(actions, host, plain)).success


async def test_tcp_probe_connects_inside_the_pod() -> None:
    c = make_container()
    async with sandboxed_pod(make_pod(c), network=NetworkMode.LOOPBACK) as (host, actions):
        port = int(await spawn_server(host, HTTP_SERVER))
        listening = make_container(liveness=probe(TCPSocketAction(port)))
        closed = make_container(liveness=probe(TCPSocketAction(1)))
        assert (await first_result(actions, host, listening)).success
        refused = await first_result(actions, host, closed)
    assert not refused.success
    assert "Connection refused" in refused.message


async def test_a_missing_port_name_fails_the_probe() -> None:
    c = make_container(liveness=probe(TCPSocketAction("metrics")))
    async with sandboxed_pod(make_pod(c), network=NetworkMode.LOOPBACK) as (host, actions):
        result = await first_result(actions, host, c)
    assert not result.success
    assert result.message == "container app has no port named 'metrics'"
