"""Execs' bookkeeping against a scripted init: races that a real init makes rare."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from podvisor.init import protocol
from podvisor.sidecars.execs import ExecResult, Execs
from tests.sidecars.support import FakeHost, make_container, make_pod


@dataclass
class ScriptedChannel:
    """An init that spawns pid 42 and reports its exit *before* it answers the spawn."""

    execs: Execs | None = None
    requests: list[protocol.Message] = field(default_factory=list)

    async def request(
        self, message: protocol.Message, fds: Sequence[int] = ()
    ) -> tuple[protocol.Message, list[int]]:
        self.requests.append(message)
        if message["op"] == "spawn":
            os.write(fds[1], b"early bird\n")
            assert self.execs is not None
            self.execs.on_exit(42, 3, None)  # the exit outran the reply
            return {"ev": "spawned", "id": 1, "pid": 42}, []
        return {"ev": "signalled", "id": 2, "errno": 0}, []


@dataclass
class ScriptedSandbox:
    channel: ScriptedChannel


@pytest.mark.anyio
async def test_an_exit_reported_before_the_spawn_reply_is_not_lost() -> None:
    host = FakeHost(make_pod(make_container()))
    host.close()
    channel = ScriptedChannel()
    host.sandbox = ScriptedSandbox(channel)  # type: ignore[assignment]
    execs = channel.execs = Execs(host)
    result = await execs.run(make_container(), ["check"], timeout=5)
    assert result == ExecResult(("check",), code=3, output="early bird\n")
    assert result.describe() == "command check exited with 3: early bird"
    assert [r["op"] for r in channel.requests] == ["spawn"]  # nothing left to kill


def test_a_result_says_why_it_failed() -> None:
    assert ExecResult(("a b",), error="No such file").describe() == (
        "cannot run 'a b': No such file"
    )
    assert ExecResult(("x",), signal=9, timeout=1.5).describe() == "command x timed out after 1.5s"
    assert ExecResult(("x",), signal=15).describe() == "command x was killed by signal 15"
    assert ExecResult(("x",), code=0).succeeded
    assert not ExecResult(("x",), code=0, timeout=1).succeeded
