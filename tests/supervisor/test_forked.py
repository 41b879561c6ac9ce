"""`ForkedCall`: a function run in a forked child, its result sent back (`pack`, `unpack`).

This process has threads (anyio's workers, pytest's), and a process with
threads runs the function itself, so each scenario runs in a fresh
interpreter, as `podvisor run` does, and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from podvisor.supervisor import manifest
from podvisor.supervisor.forked import pack, unpack
from podvisor.supervisor.lifecycle.words import Reason
from podvisor.supervisor.manifest.model import ContainerKind
from podvisor.supervisor.network.model import NetworkMode
from podvisor.supervisor.network.pod import PodNetwork, PodRecord
from podvisor.supervisor.network.records import Owner
from tests.faults import procfs

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60
#: The environment, with stdout and stderr buffered as a program's usually are.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

PROLOGUE = """
import json, os, signal, sys, time
from podvisor.supervisor.errors import ForkedCallError
from podvisor.supervisor.forked import ForkedCall

seen = {"parent": os.getpid()}

def reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
"""


def scenario(code: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROLOGUE + textwrap.dedent(code)],
        cwd=ROOT,
        env=BUFFERED,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    seen: dict[str, Any] = json.loads(last)
    return seen, done


def test_the_function_runs_in_a_child_and_its_result_comes_back() -> None:
    seen, _ = scenario(
        """
        with ForkedCall.start(lambda: {"pid": os.getpid(), "n": [1, 2.5, "x"]}, "a test") as call:
            seen["result"] = call.result()
            seen["again"] = call.result()  # read once, kept
            seen["reaped"] = reaped(call.pid)
            seen["child"] = call.pid
        print(json.dumps(seen))
        """
    )
    assert seen["result"]["pid"] == seen["child"] != seen["parent"]
    assert seen["result"]["n"] == [1, 2.5, "x"]
    assert seen["again"] == seen["result"]
    assert seen["reaped"] is True


def test_a_child_that_raises_is_an_error_naming_the_work_and_its_traceback_is_on_stderr() -> None:
    seen, done = scenario(
        """
        def broken():
            raise ValueError("no such thing")

        try:
            ForkedCall.start(broken, "the test's reader").result()
        except ForkedCallError as e:
            seen["error"] = str(e)
        print(json.dumps(seen))
        """
    )
    assert "the test's reader" in seen["error"]
    assert seen["error"].endswith("ended without a result (exit status 1)")
    assert "ValueError: no such thing" in done.stderr
    assert done.stderr.count("Traceback") == 1  # the child's; the parent said it as an error


def test_a_child_killed_before_it_answers_is_an_error_that_says_so() -> None:
    seen, _ = scenario(
        """
        call = ForkedCall.start(lambda: os.kill(os.getpid(), signal.SIGKILL), "a test")
        try:
            call.result()
        except ForkedCallError as e:
            seen["error"] = str(e)
        seen["reaped"] = reaped(call.pid)
        print(json.dumps(seen))
        """
    )
    assert seen["error"].endswith("(killed by SIGKILL)")
    assert seen["reaped"] is True


def test_signals_are_blocked_only_across_the_fork() -> None:
    # Blocked while the child is forked (a Ctrl-C must not unwind through
    # the parent's frames in the child), and unblocked in both after it.
    seen, _ = scenario(
        """
        def blocked():
            return sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))

        seen["before"] = blocked()
        seen["in the child"] = ForkedCall.start(blocked, "a test").result()
        seen["after"] = blocked()
        print(json.dumps(seen))
        """
    )
    assert seen["before"] == seen["in the child"] == seen["after"] == []


def test_a_child_interrupted_says_what_it_had_printed_and_fails_each_time_asked() -> None:
    seen, done = scenario(
        """
        def interrupted():
            print("half-way")
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C that reached the child alone
            time.sleep(60)

        call = ForkedCall.start(interrupted, "a test")
        for attempt in ("first", "second"):
            try:
                call.result()
            except ForkedCallError as e:
                seen[attempt] = str(e)
        print(json.dumps(seen))
        """
    )
    assert seen["first"].endswith("(exit status 130)")
    assert seen["second"] == seen["first"]
    assert done.stdout.startswith("half-way\n")
    assert "Traceback" not in done.stderr


def test_leaving_the_block_before_the_result_kills_and_reaps_the_child() -> None:
    seen, _ = scenario(
        """
        try:
            with ForkedCall.start(lambda: time.sleep(3600), "a test") as call:
                seen["child"] = call.pid
                raise KeyboardInterrupt  # Ctrl-C while the child works
        except KeyboardInterrupt:
            pass
        seen["reaped"] = reaped(seen["child"])
        print(json.dumps(seen))
        """
    )
    assert seen["reaped"] is True


def test_what_the_parent_printed_before_the_fork_is_written_once() -> None:
    _, done = scenario(
        """
        print("before", end="")  # in stdout's buffer: a pipe is block-buffered
        sys.stderr.write("err-before ")
        ForkedCall.start(lambda: print("child", file=sys.stderr), "a test").result()
        print(" after")
        print(json.dumps(seen))
        """
    )
    assert done.stdout.splitlines()[0] == "before after"
    assert done.stderr == "err-before child\n"


def test_what_the_function_prints_the_parent_prints_where_it_takes_the_result() -> None:
    seen, done = scenario(
        """
        import io
        def noisy():
            print("out of the child")
            print("err of the child", file=sys.stderr)
            return 7
        call = ForkedCall.start(noisy, "a test")
        print("the parent's, first")
        captured = sys.stderr = io.StringIO()  # a caller that captures its output
        seen["result"] = call.result()
        sys.stderr = sys.__stderr__
        seen["captured"] = captured.getvalue()
        print(json.dumps(seen))
        """
    )
    assert seen["result"] == 7
    assert seen["captured"] == "err of the child\n"
    assert done.stdout.splitlines()[:2] == ["the parent's, first", "out of the child"]
    assert done.stderr == ""


def test_a_process_with_threads_runs_the_function_itself() -> None:
    seen, _ = scenario(
        """
        import threading
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        seen["result"] = ForkedCall.start(os.getpid, "a test").result()
        stop.set()
        print(json.dumps(seen))
        """
    )
    assert seen["result"] == seen["parent"]


def test_the_child_dies_with_a_parent_that_is_killed() -> None:
    # The parent forks a child that would sleep for an hour, says its pid, and waits.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PROLOGUE
            + textwrap.dedent(
                """
                call = ForkedCall.start(lambda: time.sleep(3600), "a test")
                print(call.pid, flush=True)
                call.result()
                """
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert child in procfs.children_of(parent.pid)
    parent.kill()
    parent.wait(timeout=WAIT)
    parent.stdout.close()
    assert procfs.wait_gone([child], WAIT) == []  # PR_SET_PDEATHSIG


# --- what crosses the pipe ---------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_pod_comes_back_equal(path: Path) -> None:
    loaded = manifest.load(str(path))
    assert unpack(pack(loaded)) == loaded


def test_the_network_comes_back_with_its_record() -> None:
    record = PodRecord(Owner(1, 2, 3), "web", "web-1", NetworkMode.BRIDGE, veth="pv1")
    network = PodNetwork(
        NetworkMode.BRIDGE, "/run/netns/x", "10.88.0.2", {"/etc/hosts": "/run/h"}, ["w"], record
    )
    back = unpack(pack(("network", network)))
    assert back == ("network", network)
    assert back[1]._record == record  # a field left out of the comparison comes back too
    assert type(back[1].mode) is NetworkMode


def test_tuples_sets_and_enums_keep_their_types() -> None:
    value = {
        ("a", 1): frozenset({(1, 2), "x"}),
        "list": [(), (None, True, 2.5, b"\0")],
        "set": {ContainerKind.SIDECAR},
        Reason.COMPLETED: [Reason.ERROR],
    }
    back = unpack(pack(value))
    assert back == value
    assert type(back["list"][1]) is tuple
    assert type(back["set"]) is set
    assert all(type(k) in (tuple, str, Reason) for k in back)


class Pair(NamedTuple):
    low: int
    high: int


def test_what_it_cannot_spell_is_refused_by_name_and_cut_data_is_an_error() -> None:
    with pytest.raises(TypeError, match="a PosixPath cannot cross"):
        pack({"where": Path("/")})
    # A subclass would come back as its base: refused too.
    with pytest.raises(TypeError, match="a Pair cannot cross"):
        pack([Pair(1, 2)])
    data = pack(("network", [1, 2, 3]))
    with pytest.raises((EOFError, ValueError)):
        unpack(data[:-3])
