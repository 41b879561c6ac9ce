"""podvisor.supervisor.pod.signals: no signal lost to a storm, and nothing left changed after."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from podvisor.supervisor.pod.signals import receiving_signals

pytestmark = pytest.mark.anyio

CAUGHT = (signal.SIGTERM, signal.SIGUSR1)


async def test_a_sigterm_after_a_storm_of_realtime_signals_is_received() -> None:
    # Real-time signals queue: 3,000 of them, one wake-up byte each, overflow
    # asyncio's wake-up socket; the SIGTERM after them must still come through.
    with receiving_signals(CAUGHT) as inbox:
        for n in range(3000):
            os.kill(os.getpid(), signal.SIGRTMIN + n % 8)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        got = []
        with anyio.fail_after(30):
            while signal.SIGTERM not in got:
                got.append(await inbox.receive())
        assert got == [signal.SIGUSR1, signal.SIGTERM]


async def test_a_signal_from_another_thread_wakes_the_loop() -> None:
    with receiving_signals(CAUGHT) as inbox:
        await anyio.to_thread.run_sync(os.kill, os.getpid(), signal.SIGUSR1)
        with anyio.fail_after(30):
            assert await inbox.receive() == signal.SIGUSR1


async def test_children_start_with_realtime_signals_at_their_default() -> None:
    # Caught, not ignored: an ignored signal would stay ignored in every pod process.
    with receiving_signals(CAUGHT):
        child = await anyio.run_process(["grep", "SigIgn", "/proc/self/status"])
    ignored = int(child.stdout.split()[1], 16)
    realtime = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    assert [n for n in realtime if ignored & (1 << (n - 1))] == []


async def test_inboxes_closed_in_any_order_put_everything_back() -> None:
    before = {n: signal.getsignal(n) for n in (*CAUGHT, signal.SIGRTMIN, signal.SIGRTMAX)}
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    first = receiving_signals(CAUGHT)
    second = receiving_signals(CAUGHT)
    one, two = first.__enter__(), second.__enter__()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)  # each open inbox gets it
        with anyio.fail_after(30):
            assert (await one.receive(), await two.receive()) == (signal.SIGUSR1,) * 2
    finally:
        first.__exit__(None, None, None)  # the first one closes first
    os.kill(os.getpid(), signal.SIGUSR1)  # the second still receives
    with anyio.fail_after(30):
        assert await two.receive() == signal.SIGUSR1
    second.__exit__(None, None, None)
    assert {n: signal.getsignal(n) for n in before} == before
    assert signal.set_wakeup_fd(wakeup_before) == wakeup_before


async def test_an_inbox_opened_outside_the_main_thread_changes_nothing() -> None:
    before = {n: signal.getsignal(n) for n in CAUGHT}

    def in_a_worker() -> None:
        with receiving_signals(CAUGHT) as idle:
            assert not idle.pending

    with receiving_signals(CAUGHT) as inbox:
        await anyio.to_thread.run_sync(in_a_worker)
        os.kill(os.getpid(), signal.SIGUSR1)  # still received here
        with anyio.fail_after(30):
            assert await inbox.receive() == signal.SIGUSR1
    assert {n: signal.getsignal(n) for n in CAUGHT} == before
