"""How an exec'd command's result reads."""

from __future__ import annotations

from podvisor.sidecars.execs import ExecResult


def test_a_result_says_why_it_failed() -> None:
    assert ExecResult(("a b",), error="No such file").describe() == (
        "cannot run 'a b': No such file"
    )
    assert ExecResult(("x",), signal=9, timeout=1.5).describe() == "command x timed out after 1.5s"
    assert ExecResult(("x",), signal=15).describe() == "command x was killed by signal 15"
    assert ExecResult(("x",), code=0).succeeded
    assert not ExecResult(("x",), code=0, timeout=1).succeeded
