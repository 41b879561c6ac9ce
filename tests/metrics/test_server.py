"""The HTTP endpoint on both backends: routes, content negotiation, health, errors, the address."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.errors import AddressInUseError, ConfigError
from podvisor.supervisor.manifest.model import ContainerKind, EnvVar, ExecAction, Probe
from podvisor.supervisor.metrics import (
    MetricsServer,
    PodMetrics,
    metrics_address,
    parse_address,
    serve_metrics,
)
from tests.metrics.client import get, read_reply, request_bytes
from tests.metrics.conftest import (
    Driver,
    FakeCgroup,
    FakeNetwork,
    FakeProcess,
    FakeSandbox,
    FakeView,
    container,
    full_stats,
    make_pod,
    parse,
    promtool_findings,
)

pytestmark = pytest.mark.anyio


def view_of_running_pod() -> tuple[FakeView, Driver]:
    pod = make_pod(container("side", ContainerKind.SIDECAR), container("main"))
    driver = Driver(pod)
    driver.start_all()
    cgroups = {c.name: FakeCgroup(full_stats()) for c in pod.spec.all_containers}
    return FakeView(pod, driver.state, cgroups, sandbox=FakeSandbox(1)), driver


class Served:
    def __init__(self, view: FakeView, metrics: PodMetrics, port: int) -> None:
        self.view, self.metrics, self.port = view, metrics, port


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    view, _ = view_of_running_pod()
    metrics = PodMetrics(view.pod)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve_metrics, view, metrics, "127.0.0.1:0")
        assert address is not None
        yield Served(view, metrics, address[1])
        tg.cancel_scope.cancel()


# --- /metrics --------------------------------------------------------------------------


async def test_metrics_in_prometheus_text_format(served: Served, anyio_backend: str) -> None:
    reply = await get(served.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = parse(reply.text)
    assert found.value("container_memory_working_set_bytes", container="main") == 40_000_000
    [build] = found.labels_of("podvisor_build_info")
    assert build["backend"] == anyio_backend
    assert promtool_findings(reply.text) == ""


async def test_openmetrics_when_asked(served: Served) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    reply = await get(served.port, "/metrics", headers={"Accept": accept})
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.text.endswith("# EOF\n")


async def test_gzip_when_asked(served: Served) -> None:
    plain = await get(served.port, "/metrics")
    packed = await get(served.port, "/metrics", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert len(packed.body) < len(plain.body)
    assert "container_memory_working_set_bytes" in packed.text


async def test_head_has_headers_and_no_body(served: Served) -> None:
    reply = await get(served.port, "/metrics", method="HEAD")
    assert reply.status == 200
    assert int(reply.headers["content-length"]) > 0
    assert reply.body == b""


async def test_a_connection_serves_several_requests(served: Served) -> None:
    with anyio.fail_after(30):
        stream = await anyio.connect_tcp("127.0.0.1", served.port)
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            # Two requests in one send: the second waits in the buffer.
            await stream.send(
                request_bytes("/livez", close=False) + request_bytes("/readyz", close=False)
            )
            first = await read_reply(reader)
            second = await read_reply(reader)
            await stream.send(request_bytes("/metrics", close=False))
            third = await read_reply(reader)
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert first.headers["connection"] == "keep-alive"
    assert "kube_pod_status_phase" in third.text


# --- health ------------------------------------------------------------------------------


async def test_livez_follows_the_init(served: Served) -> None:
    assert (await get(served.port, "/livez")).text == "ok\n"
    assert isinstance(served.view.init, FakeSandbox)
    served.view.init.process = FakeProcess(returncode=1)
    reply = await get(served.port, "/livez")
    assert reply.status == 503
    assert "init" in reply.text


async def test_readyz_follows_the_pods_readiness(served: Served) -> None:
    assert (await get(served.port, "/readyz")).status == 200
    driver = Driver(served.view.pod)
    served.view.state = driver.state  # nothing started yet
    reply = await get(served.port, "/readyz")
    assert reply.status == 503
    assert reply.text == "not ready: containers with unready status: [side main]\n"
    served.view.state = None
    assert (await get(served.port, "/readyz")).status == 503


# --- /status -------------------------------------------------------------------------------


async def test_status_is_shaped_like_a_pods(served: Served) -> None:
    served.view.network = FakeNetwork(pod_ip="10.88.0.7")
    reply = await get(served.port, "/status")
    assert reply.headers["content-type"] == "application/json"
    status = json.loads(reply.text)
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.88.0.7"
    assert status["podIPs"] == [{"ip": "10.88.0.7"}]
    assert [c["type"] for c in status["conditions"]] == [
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c["status"] == "True" for c in status["conditions"])
    [main] = status["containerStatuses"]
    assert set(main) == {
        "name",
        "state",
        "lastState",
        "ready",
        "restartCount",
        "image",
        "imageID",
        "started",
    }
    assert main["state"]["running"]["startedAt"].endswith("Z")
    assert [c["name"] for c in status["initContainerStatuses"]] == ["side"]


# --- errors ----------------------------------------------------------------------------------


async def test_unknown_paths_and_methods(served: Served) -> None:
    assert (await get(served.port, "/nope")).status == 404
    reply = await get(served.port, "/metrics", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert (await get(served.port, "/metrics?name[]=x")).status == 200


async def test_a_malformed_request_gets_400_and_the_server_carries_on(served: Served) -> None:
    with anyio.fail_after(30):
        stream = await anyio.connect_tcp("127.0.0.1", served.port)
        async with stream:
            await stream.send(b"NONSENSE\r\n\r\n")
            reply = await read_reply(BufferedByteReceiveStream(stream))
    assert reply.status == 400
    assert reply.headers["connection"] == "close"
    assert (await get(served.port, "/livez")).status == 200


async def test_a_client_that_hangs_up_at_once_costs_nothing(served: Served) -> None:
    for _ in range(3):
        stream = await anyio.connect_tcp("127.0.0.1", served.port)
        await stream.aclose()
    assert (await get(served.port, "/livez")).status == 200


async def test_a_failing_collector_costs_one_response() -> None:
    view, _ = view_of_running_pod()

    class Broken:
        def read(self) -> object:
            raise RuntimeError("a bug")

    view.cgroups = {"main": Broken()}  # type: ignore[dict-item]
    messages: list[str] = []
    view.sink.system = messages.append  # type: ignore[method-assign, assignment]
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve_metrics, view, PodMetrics(view.pod), "127.0.0.1:0")
        assert address is not None
        reply = await get(address[1], "/metrics")
        assert reply.status == 500
        assert "a bug" not in reply.text
        assert any("a bug" in m for m in messages)
        assert (await get(address[1], "/livez")).status == 200
        tg.cancel_scope.cancel()


# --- the address -------------------------------------------------------------------------------


async def test_a_port_in_use_is_a_clear_error_at_start() -> None:
    view, _ = view_of_running_pod()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AddressInUseError, match=f"127.0.0.1:{port}.*--metrics-address"):
            await MetricsServer.open(view.pod, PodMetrics(view.pod), f"127.0.0.1:{port}")
        # started in a task group, it fails the start (wrapped, as task groups do)
        with pytest.RaisesGroup(AddressInUseError):
            async with anyio.create_task_group() as tg:
                await tg.start(serve_metrics, view, PodMetrics(view.pod), f"127.0.0.1:{port}")


async def test_an_address_not_of_this_machine_is_a_config_error() -> None:
    view, _ = view_of_running_pod()
    with pytest.raises(ConfigError, match=r"192\.0\.2\.1:9464"):
        await MetricsServer.open(view.pod, PodMetrics(view.pod), "192.0.2.1:9464")


#: A number is bound as it is; a name is resolved first.
@pytest.mark.parametrize("address", ["127.0.0.1:0", "localhost:0"])
async def test_open_then_serve_then_close(address: str) -> None:
    view, _ = view_of_running_pod()
    server = await MetricsServer.open(view.pod, PodMetrics(view.pod), address)
    assert server is not None
    host, port = server.address
    assert ipaddress.ip_address(host).is_loopback
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, view)
        assert (await get(port, "/livez", host=host)).status == 200
        tg.cancel_scope.cancel()
    with pytest.raises(OSError, match="connection attempts failed"):
        await anyio.connect_tcp(host, port)


async def test_off_serves_nothing() -> None:
    view, _ = view_of_running_pod()
    async with anyio.create_task_group() as tg:
        assert await tg.start(serve_metrics, view, PodMetrics(view.pod), "off") is None


async def test_the_bound_address_is_recorded_and_ipv6_works() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    view, _ = view_of_running_pod()
    metrics = PodMetrics(view.pod)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve_metrics, view, metrics, "[::1]:0")
        assert metrics.address == address
        assert address is not None
        assert (await get(address[1], "/livez", host="::1")).status == 200
        tg.cancel_scope.cancel()


def _link_local() -> str | None:
    """A link-local IPv6 address of this machine with its interface (fe80::1%eth0), if any."""
    with open("/proc/net/if_inet6") as f:
        for line in f:
            number, _, _, scope, _, interface = line.split()
            if scope == "20":  # IPV6_ADDR_LINKLOCAL
                return f"{ipaddress.IPv6Address(int(number, 16))}%{interface}"
    return None


async def test_a_link_local_address_is_served_on_its_interface() -> None:
    address = _link_local() if socket.has_ipv6 else None
    if address is None:
        pytest.skip("no link-local IPv6 address here")
    view, _ = view_of_running_pod()
    server = await MetricsServer.open(view.pod, PodMetrics(view.pod), f"[{address}]:0")
    assert server is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, view)
        assert (await get(server.address[1], "/livez", host=address)).status == 200
        tg.cancel_scope.cancel()


def test_address_precedence_and_default() -> None:
    assert metrics_address(None, None) == ("127.0.0.1", 9464)
    assert metrics_address(None, "0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert metrics_address("127.0.0.1:9001", "0.0.0.0:9000") == ("127.0.0.1", 9001)
    assert metrics_address("off", "0.0.0.0:9000") is None
    assert metrics_address(None, "OFF") is None
    assert metrics_address(None, "none") is None
    assert parse_address(":9464") == ("", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:port", "127.0.0.1:70000", "[::1:9464"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


# --- nothing secret --------------------------------------------------------------------------


async def test_no_env_value_or_argument_appears_in_any_output() -> None:
    secret_env, secret_arg, secret_word = "hunter2-env-value", "--token=s3cr3t-arg", "classified"
    probe = Probe(ExecAction(("sh", "-c", f"echo {secret_word}; exit 1")))
    main = container(
        "main",
        args=(secret_arg,),
        env=(EnvVar("PASSWORD", secret_env),),
        liveness_probe=probe,
    )
    pod = make_pod(main)
    driver = Driver(pod)
    driver.start_all()
    # A failed exec probe's message quotes its command and its output, and the
    # core keeps it as the container's message.
    output = f"command sh -c 'echo {secret_word}; exit 1' exited with 1: {secret_word} {secret_env} {secret_arg}"
    driver.feed(lc.Exited("main", 1))
    state = driver.state
    main_status = state.container("main")
    ended = lc.Termination(1, lc.Reason.ERROR, f"liveness probe failed: {output}", None, 1.0, 2.0)
    state = replace(
        state, containers=(replace(main_status, terminated=ended, message=ended.message),)
    )
    view = FakeView(pod, state, {"main": FakeCgroup(full_stats())}, sandbox=FakeSandbox(1))
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve_metrics, view, PodMetrics(pod), "127.0.0.1:0")
        assert address is not None
        replies = [
            await get(address[1], path)
            for path in ("/metrics", "/status", "/readyz", "/livez", "/")
        ]
        tg.cancel_scope.cancel()
    everything = "\n".join(r.text for r in replies)
    assert "liveness probe failed" in everything  # the message is there, blanked
    for secret in (secret_env, secret_arg, secret_word, "s3cr3t"):
        assert secret not in everything


# --- HTTP edge cases -------------------------------------------------------------------------


async def exchange(port: int, raw: bytes) -> list[bytes]:
    """Send *raw*, read until the server closes: every response's status line."""
    with anyio.fail_after(30):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(raw)
            data = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    data += await stream.receive()
    return re.findall(rb"HTTP/1\.1 [0-9]{3} [^\r]*", data)


async def test_http_1_0_closes_after_one_response(served: Served) -> None:
    assert await exchange(served.port, b"GET /livez HTTP/1.0\r\n\r\n") == [b"HTTP/1.1 200 OK"]


async def test_a_request_body_is_skipped_and_the_connection_goes_on(served: Served) -> None:
    raw = (
        b"GET /livez HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert await exchange(served.port, raw) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411"),
        (b"GET /livez HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"413"),
        (b"GET /livez HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", b"431"),
        (b"GET /livez HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /livez HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
    ],
)
async def test_what_is_not_served_gets_a_4xx_or_5xx_and_a_close(
    served: Served, raw: bytes, status: bytes
) -> None:
    [line] = await exchange(served.port, raw)
    assert line.split()[1] == status
