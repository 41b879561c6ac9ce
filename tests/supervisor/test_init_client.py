"""The init client against a scripted init: orderings and failures a real init makes rare."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from podvisor.init import protocol, seqpacket
from podvisor.supervisor.errors import InitDiedError
from podvisor.supervisor.packets import PacketStream
from podvisor.supervisor.pod.init_client import InitClient, InitProcessHandle
from podvisor.supervisor.pod.sandbox import InitProcess, SandboxPlan

pytestmark = pytest.mark.anyio
WAIT = 10


@asynccontextmanager
async def scripted() -> AsyncIterator[tuple[InitClient, socket.socket]]:
    """A client serving, and the init's end of its channel, which the test plays."""
    ours, theirs = protocol.socketpair()
    process = InitProcess(subprocess.Popen(["true"]))  # noqa: ASYNC220 (as WaitingInit does)
    client = InitClient(process, PacketStream(ours, protocol.MAX_MESSAGE), SandboxPlan(()))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.serve)
            with theirs:
                yield client, theirs
            tg.cancel_scope.cancel()
    finally:
        client.close()
        await process.wait()
        process.close()


def answer(theirs: socket.socket, *events: protocol.Event) -> protocol.Request:
    """Read the client's next request, then send *events* at once, in one burst."""
    received = protocol.receive_request(theirs)
    assert received is not None
    request, fds = received
    for fd in fds:
        os.close(fd)
    for event in events:
        protocol.send(theirs, event)
    return request


async def test_an_exit_right_behind_its_spawn_reply_reaches_the_handle() -> None:
    async with scripted() as (client, theirs):
        async with anyio.create_task_group() as tg:
            results: list[InitProcessHandle | protocol.SpawnFailed] = []

            async def spawn() -> None:
                results.append(await client.spawn(protocol.Process(("check",))))

            tg.start_soon(spawn)
            # Both are on the wire before the client reads either.
            request = await anyio.to_thread.run_sync(
                answer, theirs, protocol.Spawned(1, 42), protocol.Exited(1, 42, 3, None)
            )
        assert isinstance(request, protocol.Spawn)
        assert request.process.argv == ("check",)
        [handle] = results
        assert isinstance(handle, InitProcessHandle)
        with anyio.fail_after(WAIT):
            await handle.wait()
        assert (handle.pid, handle.code, handle.signal) == (42, 3, None)


async def test_a_failed_spawn_says_why() -> None:
    async with scripted() as (client, theirs):
        async with anyio.create_task_group() as tg:
            results: list[InitProcessHandle | protocol.SpawnFailed] = []

            async def spawn() -> None:
                results.append(await client.spawn(protocol.Process(("nope",))))

            tg.start_soon(spawn)
            failed = protocol.SpawnFailed(1, 2, "exec", "nope: No such file or directory")
            await anyio.to_thread.run_sync(answer, theirs, failed)
        assert results == [failed]


async def test_a_signal_is_answered_with_its_errno() -> None:
    async with scripted() as (client, theirs):
        async with anyio.create_task_group() as tg:
            errnos: list[int] = []

            async def signal() -> None:
                errnos.append(await client.signal(42, 15, group=True))

            tg.start_soon(signal)
            request = await anyio.to_thread.run_sync(answer, theirs, protocol.Signalled(1, 3))
        assert request == protocol.Signal(1, 42, 15, True)
        assert errnos == [3]


async def test_what_the_init_cannot_mean_is_a_notice_and_the_client_reads_on() -> None:
    async with scripted() as (client, theirs):
        seqpacket.send(theirs, b'{"ev": "exited", "pid": "forty-two"}')
        seqpacket.send(theirs, b'{"ev": "dance"}')
        protocol.send(theirs, protocol.OrphansReaped(7))
        with anyio.fail_after(WAIT):
            notices = [await client.notices.receive() for _ in range(3)]
        assert [type(n) for n in notices] == [
            protocol.Refused,
            protocol.Refused,
            protocol.OrphansReaped,
        ]
        assert isinstance(notices[0], protocol.Refused)
        assert "exited: no 'id'" in notices[0].message
        assert isinstance(notices[1], protocol.Refused)
        assert "not an event the supervisor knows" in notices[1].message


async def spawned(client: InitClient, theirs: socket.socket, pid: int) -> InitProcessHandle:
    """A process spawned through *client*, the init's side answering it with *pid*."""
    results: list[InitProcessHandle | protocol.SpawnFailed] = []

    async def spawn() -> None:
        results.append(await client.spawn(protocol.Process(("long",))))

    async with anyio.create_task_group() as tg:
        tg.start_soon(spawn)
        await anyio.to_thread.run_sync(answer, theirs, protocol.Spawned(1, pid))
    [handle] = results
    assert isinstance(handle, InitProcessHandle)
    return handle


async def test_when_the_init_goes_waiters_and_handles_fail() -> None:
    async with scripted() as (client, theirs):
        handle = await spawned(client, theirs, pid=7)

        async def signal() -> None:
            with pytest.raises(InitDiedError):
                await client.signal(7, 9)

        async with anyio.create_task_group() as tg:
            tg.start_soon(signal)
            received = await anyio.to_thread.run_sync(protocol.receive_request, theirs)
            assert received is not None
            theirs.shutdown(socket.SHUT_RDWR)  # the init is gone before it answers
        with anyio.fail_after(WAIT), pytest.raises(InitDiedError):
            await handle.wait()
        with pytest.raises(InitDiedError):
            await client.spawn(protocol.Process(("late",)))


async def test_closing_the_channel_ends_its_reader_as_the_inits_end_does() -> None:
    # The pod's undoing closes the channel once the init is gone, whether or
    # not the reader has seen the end-of-file yet: it must end, not fail.
    async with scripted() as (client, theirs):
        handle = await spawned(client, theirs, pid=7)
        client.close()  # the reader is waiting on the channel
        with anyio.fail_after(WAIT), pytest.raises(InitDiedError):
            await handle.wait()  # the reader ended, and said the process is lost with it
