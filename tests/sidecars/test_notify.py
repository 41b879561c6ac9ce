"""NOTIFY_SOCKET and notification-fd: parsing, and real senders in real cgroups."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from podvisor.init import protocol
from podvisor.sidecars import notify
from podvisor.sidecars.actions import ContainerActions
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import ContainerSettings
from podvisor.supervisor.pod.init_client import InitProcessHandle
from tests.sidecars.support import (
    PY,
    FakeHost,
    make_container,
    make_pod,
    read_line,
    sandboxed_pod,
)

# --- The messages ------------------------------------------------------------------------


def test_the_assignments_podvisor_acts_on() -> None:
    parsed = notify.parse(b"READY=1\nSTATUS=Serving 3 clients\nMAINPID=77\nWATCHDOG=1\n")
    assert parsed == notify.Notice(ready=True, watchdog=True, status="Serving 3 clients")
    assert parsed.event("web") == lc.Notified("web", True, True, False, "Serving 3 clients")


def test_stopping_and_an_empty_status() -> None:
    assert notify.parse(b"STOPPING=1\nSTATUS=") == notify.Notice(stopping=True, status="")


def test_other_values_and_lines_are_ignored() -> None:
    parsed = notify.parse(b"READY=0\nWATCHDOG=trigger\nFDSTORE=1\ngarbage\n\xff\xfe")
    assert parsed.empty


def test_the_socket_lives_in_the_pods_directory() -> None:
    pod = make_pod(make_container(), name="web")
    path = notify.socket_path(pod)
    assert path == Path(f"/run/podvisor/pods/web-{pod.uid.replace('-', '')[:8]}/notify.sock")


def test_a_long_pod_name_gets_a_short_socket_path() -> None:
    path = notify.socket_path(make_pod(make_container(), name="w" * 200))
    assert len(str(path)) <= 107
    assert path.name == "notify.sock"


def test_env_names_the_socket_and_the_watchdog() -> None:
    plain = make_container("plain")
    watched = make_container("watched", settings=ContainerSettings(watchdog_usec=2_000_000))
    host = FakeHost(make_pod(plain, watched))
    actions = ContainerActions(host)
    host.close()
    assert actions.env_for(plain) == {"NOTIFY_SOCKET": str(actions.notify_path)}
    assert actions.env_for(watched) == {
        "NOTIFY_SOCKET": str(actions.notify_path),
        "WATCHDOG_USEC": "2000000",
    }


# --- Real senders ----------------------------------------------------------------------------

#: sd_notify in five lines: send argv[2] to argv[1], say "sent", stay alive (so
#: that podvisor can still find the sender's cgroup when it reads the message).
SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[2].encode().replace(b"\\n", b"\n"), sys.argv[1])
print("sent", flush=True)
time.sleep(1000)
"""


async def send_from(host: FakeHost, container: str | None, message: str) -> None:
    """Run SEND in *container*'s cgroup (None: in no container's) and wait until it has sent."""
    path = str(notify.socket_path(host.pod))
    cgroups = tuple(host.own_cgroups[container].procs_files()) if container else ()
    spec = protocol.Process((PY, "-c", SEND, path, message), cgroups=cgroups)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        spawned = await host.init.spawn(spec, (write_fd, write_fd, write_fd))
        assert isinstance(spawned, InitProcessHandle), spawned
        os.close(write_fd)
        write_fd = -1
        assert await read_line(read_fd) == "sent"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


@pytest.mark.anyio
@pytest.mark.needs_root
async def test_messages_are_attributed_by_the_senders_cgroup() -> None:
    pod = make_pod(make_container("db"), make_container("web"))
    async with sandboxed_pod(pod, cgroups=True) as (host, _):
        # The stranger names a container; content never decides who sent it.
        await send_from(host, None, "READY=1\\nSTATUS=I am web")
        await send_from(host, "web", "READY=1\\nSTATUS=listening")
        assert await host.next_event() == lc.Notified("web", ready=True, status="listening")
        await send_from(host, "db", "WATCHDOG=1")
        assert await host.next_event() == lc.Notified("db", watchdog=True)
        await send_from(host, "db", "STOPPING=1")
        assert await host.next_event() == lc.Notified("db", stopping=True)
    assert host.posted == [
        lc.Notified("web", ready=True, status="listening"),
        lc.Notified("db", watchdog=True),
        lc.Notified("db", stopping=True),
    ]
    (line,) = host.recorded.lines
    assert "ignored a message from pid" in line
    assert "in no container" in line


@pytest.mark.anyio
@pytest.mark.needs_root
async def test_the_socket_is_gone_after_the_pod() -> None:
    pod = make_pod(make_container())
    path = notify.socket_path(pod)
    async with sandboxed_pod(pod):
        assert path.is_socket()
        assert path.stat().st_mode & 0o777 == 0o666
    assert not path.exists()
    assert not path.parent.exists()


@pytest.mark.anyio
@pytest.mark.needs_root
async def test_a_stale_socket_is_replaced() -> None:
    pod = make_pod(make_container())
    path = notify.socket_path(pod)
    path.parent.mkdir(parents=True)
    path.write_text("left by a supervisor that was SIGKILLed")
    async with sandboxed_pod(pod):
        assert path.is_socket()
    assert not path.parent.exists()


# --- notification-fd ---------------------------------------------------------------------------


def with_fd(n: int = 3) -> ContainerSettings:
    return ContainerSettings(notification_fd=n)


@pytest.mark.anyio
@pytest.mark.needs_root
async def test_a_newline_on_the_notification_fd_means_ready() -> None:
    c = make_container("s6", settings=with_fd(5))
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        given = actions.notification_fd(c)
        assert given is not None
        target, write_fd = given
        assert target == 5
        # The program writes "ready\n" in two parts, then keeps the fd open.
        code = f"import os, time; os.write({write_fd}, b're'); os.write({write_fd}, b'ady\\n')"
        async with await anyio.open_process(
            [PY, "-c", code + "; time.sleep(1000)"], pass_fds=(write_fd,)
        ) as process:
            os.close(write_fd)
            try:
                assert await host.next_event() == lc.Notified("s6", ready=True)
            finally:
                process.kill()


@pytest.mark.anyio
async def test_a_newline_in_any_chunk_is_ready() -> None:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    seen: list[bool] = []

    async def reader() -> None:
        seen.append(await notify.read_notification(read_fd))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        os.write(write_fd, b"almost")
        await anyio.wait_all_tasks_blocked()
        assert seen == []
        os.write(write_fd, b" there\n")
    assert seen == [True]
    # The reader has closed its end:
    with pytest.raises(BrokenPipeError):
        os.write(write_fd, b"more")
    os.close(write_fd)


@pytest.mark.anyio
async def test_end_of_file_without_a_newline_is_not_ready() -> None:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    await anyio.run_process(
        [PY, "-c", f"import os; os.write({write_fd}, b'no newline')"], pass_fds=(write_fd,)
    )
    os.close(write_fd)
    assert await notify.read_notification(read_fd) is False


@pytest.mark.anyio
@pytest.mark.needs_root
async def test_a_new_instance_replaces_the_old_pipe() -> None:
    c = make_container("s6", settings=with_fd())
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        old = actions.notification_fd(c)
        new = actions.notification_fd(c)
        assert old is not None
        assert new is not None
        os.write(new[1], b"\n")
        assert await host.next_event() == lc.Notified("s6", ready=True)
        await anyio.wait_all_tasks_blocked()  # the old reader has run its cancellation
        with pytest.raises(BrokenPipeError):  # nobody reads the old instance's pipe any more
            os.write(old[1], b"\n")
        os.close(old[1])
        os.close(new[1])
    assert host.posted == [lc.Notified("s6", ready=True)]


def test_a_container_without_notification_fd_gets_none() -> None:
    host = FakeHost(make_pod(make_container()))
    host.close()
    assert ContainerActions(host).notification_fd(make_container()) is None
