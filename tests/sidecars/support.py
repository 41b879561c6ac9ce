"""A pod without the runner: a real init (and network, cgroups) around `ContainerActions`.

`sandboxed_pod` starts what the runner would (the pod's init in fresh
namespaces, optionally a loopback network namespace and real cgroups), and a
`FakeHost`, the pod's view without a runner: it records what is posted. The
unit tests
of probes, hooks and notifications use it; the end-to-end tests use the real
runner instead.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio

from podvisor.init import protocol
from podvisor.sidecars.actions import ContainerActions
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupDriver, ContainerCgroup
from podvisor.supervisor.errors import InitDiedError
from podvisor.supervisor.manifest.model import (
    Container,
    ContainerKind,
    ContainerPort,
    ContainerSettings,
    Lifecycle,
    Pod,
    PodSpec,
    Probe,
)
from podvisor.supervisor.network import NetworkMode, NetworkRequest, create_network
from podvisor.supervisor.pod.init_client import InitClient, InitProcessHandle
from podvisor.supervisor.pod.logs import ContainerLog
from podvisor.supervisor.pod.resources import stop_init
from podvisor.supervisor.pod.sandbox import plan_namespaces
from podvisor.supervisor.pod.view import PodView

PY = sys.executable
WAIT = 30.0  # the bound of every wait in these tests; the machine is slow and shared


def make_container(
    name: str = "app",
    command: Sequence[str] = ("sleep", "1000"),
    *,
    ports: Sequence[tuple[str, int]] = (),
    liveness: Probe | None = None,
    readiness: Probe | None = None,
    startup: Probe | None = None,
    lifecycle: Lifecycle | None = None,
    settings: ContainerSettings | None = None,
) -> Container:
    return Container(
        name=name,
        kind=ContainerKind.MAIN,
        command=tuple(command),
        ports=tuple(ContainerPort(number, name=port) for port, number in ports),
        liveness_probe=liveness,
        readiness_probe=readiness,
        startup_probe=startup,
        lifecycle=lifecycle or Lifecycle(),
        settings=settings or ContainerSettings(),
    )


def make_pod(*containers: Container, name: str = "pv-sidecars", grace: int = 5) -> Pod:
    return Pod(
        name=name,
        namespace="default",
        uid=str(uuid.uuid4()),
        labels={},
        annotations={},
        spec=PodSpec(containers=containers, termination_grace_period_seconds=grace),
    )


class RecordingSink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.containers: dict[str, ContainerLog] = {}
        self.output_drops = 0
        self.file_drops = 0

    def system(self, message: str) -> None:
        self.lines.append(message)


class NoInit:
    """An init that is not there (yet): `sandboxed_pod` puts a real one in its place."""

    host_pid = 0
    process = None

    async def spawn(
        self, spec: protocol.Process, fds: Sequence[int] = ()
    ) -> InitProcessHandle | protocol.SpawnFailed:
        raise InitDiedError("no init in this test")

    async def signal(self, pid: int, signum: int, *, group: bool = False) -> int:
        raise InitDiedError("no init in this test")


class FakeHost(PodView):
    """A pod's view without a runner: what is posted is recorded and feeds `next_event`."""

    def __init__(self, pod: Pod) -> None:
        self.posted: list[lc.Event] = []
        self.recorded = RecordingSink()
        self._send, self._receive = anyio.create_memory_object_stream[lc.Event](1000)
        self.own_cgroups: dict[str, ContainerCgroup] = {}
        super().__init__(
            pod,
            self.recorded,
            cgroups=self.own_cgroups,
            network=None,
            init=NoInit(),  # type: ignore[arg-type]
            post=self._record,
            process_for=self._process,
        )

    def _process(self, c: Container, argv: Sequence[str] | None) -> protocol.Process:
        assert argv is not None
        cgroup = self.own_cgroups.get(c.name)
        return protocol.Process(
            tuple(argv),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cgroups=tuple(cgroup.procs_files()) if cgroup is not None else (),
        )

    def _record(self, event: lc.Event) -> None:
        self.posted.append(event)
        self._send.send_nowait(event)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def next_event(self) -> lc.Event:
        with anyio.fail_after(WAIT):
            return await self._receive.receive()


@asynccontextmanager
async def sandboxed_pod(
    pod: Pod, *, network: NetworkMode | None = None, cgroups: bool = False
) -> AsyncIterator[tuple[FakeHost, ContainerActions]]:
    """The pod's init (in a loopback netns when asked), ContainerActions serving."""
    host = FakeHost(pod)
    async with AsyncExitStack() as stack:
        if cgroups:
            pod_cgroup = CgroupDriver.detect().create_pod(pod.name, pod.uid)
            stack.callback(pod_cgroup.remove)
            for c in pod.spec.all_containers:
                host.own_cgroups[c.name] = pod_cgroup.container(c.name)
        if network is not None:
            request = NetworkRequest(pod.name, pod.uid, pod.name, mode=network)
            host.network = await create_network(request)
            stack.push_async_callback(host.network.aclose)
        netns = host.network.netns_path if host.network is not None else None
        plan = plan_namespaces(
            host_pid=False,
            host_ipc=False,
            hostname=pod.name,
            netns=netns,
            binds=(),
            cgroup_procs=(),
            grace=5.0,
        )
        init = await InitClient.start(plan)
        host.init = init
        actions = ContainerActions(host)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(init.serve)
                await tg.start(actions.serve)
                try:
                    yield host, actions
                finally:
                    await stop_init(init)
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                init.close()  # again, when the set-up above failed: closing twice is harmless
                await init.process.aclose()
            host.close()


async def spawn_server(host: FakeHost, code: str, *args: str) -> str:
    """Run `python -c CODE ARGS` in the pod; the first line it prints (it keeps running).

    The init kills it when the pod ends.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    spec = protocol.Process((PY, "-c", code, *args))
    try:
        spawned = await host.init.spawn(spec, (null, write_fd, write_fd))
    finally:
        os.close(null)
        os.close(write_fd)
    try:
        assert isinstance(spawned, InitProcessHandle), spawned
        return await read_line(read_fd)
    finally:
        os.close(read_fd)


async def read_line(fd: int) -> str:
    """The first line on *fd*, waited for at most WAIT seconds."""
    os.set_blocking(fd, False)
    data = b""
    with anyio.fail_after(WAIT):
        while b"\n" not in data:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                raise AssertionError(f"end of output before a line: {data!r}")
            data += chunk
    return data.split(b"\n", 1)[0].decode()


#: An HTTP server on 127.0.0.1, any port: prints the port, then answers GET
#: /status/N with status N, /to/LOCATION with a 302 to LOCATION, /token with
#: 200 when the X-Token header is "s3cret" (else 401), anything else with 200;
#: a request for /slow never gets an answer.
HTTP_SERVER = r"""
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(3600)
        if self.path == "/token":
            self.send_response(200 if self.headers.get("X-Token") == "s3cret" else 401)
        elif self.path.startswith("/status/"):
            self.send_response(int(self.path.split("/")[2]))
        elif self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/"):])
        else:
            self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
