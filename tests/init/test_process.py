"""podvisor.init.process: spawn, the child's signal state, reap and exit statuses."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from podvisor.init import process
from tests.init.support import INIT, signal_mask_bits, wait_pid

PY = sys.executable


def test_forwarded_is_every_catchable_signal_but_sigchld() -> None:
    assert signal.SIGRTMIN in process.FORWARDED
    assert signal.SIGRTMAX in process.FORWARDED
    assert {signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGWINCH} <= process.FORWARDED
    # The fault signals too: the kernel raises the init's own faults at it even blocked.
    assert process.FAULTS <= process.FORWARDED
    left_out = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP}
    assert {int(s) for s in signal.valid_signals()} - left_out == process.FORWARDED


@pytest.mark.parametrize(
    ("launch", "blocked", "ignored"),
    [
        ("", set(), set()),
        (
            (
                "signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGUSR2, signal.SIGRTMIN})\n"
                "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
            ),
            {signal.SIGUSR2, signal.SIGRTMIN},
            {signal.SIGHUP, signal.SIGINT, signal.SIGCHLD},
        ),
    ],
    ids=["clean-parent", "parent-blocks-and-ignores"],
)
def test_the_child_starts_with_the_mask_and_ignored_set_the_init_inherited(
    launch: str, blocked: set[int], ignored: set[int]
) -> None:
    # The launcher sets the signal state, then becomes the init. The init
    # itself blocks and ignores more (and SIGPIPE is ignored by Python), but
    # the command must see exactly what the launcher had. Python cannot reset
    # glibc's reserved signals (32, 33), and a CI runner may leave them
    # ignored; so the launcher reports its own state before the exec, and the
    # command's state is compared with that.
    launcher = f"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
for n in signal.valid_signals() - {{signal.SIGKILL, signal.SIGSTOP}}:
    signal.signal(n, signal.SIG_DFL)
{launch}
with open("/proc/self/status") as status:
    sys.stdout.write(status.read() + "--- exec ---\\n")
sys.stdout.flush()
os.execv(sys.executable, [*{list(INIT)!r}, "--", "cat", "/proc/self/status"])
"""
    result = subprocess.run(
        [PY, "-c", launcher], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("--- exec ---\n")
    reserved = set(range(signal.SIGRTMIN)) - {int(s) for s in signal.valid_signals()}
    assert signal_mask_bits(before, "SigBlk") == blocked
    assert signal_mask_bits(before, "SigIgn") - reserved == ignored
    assert signal_mask_bits(after, "SigBlk") == signal_mask_bits(before, "SigBlk")
    assert signal_mask_bits(after, "SigIgn") == signal_mask_bits(before, "SigIgn")


def test_an_init_whose_parent_ignored_sigchld_still_reaps_and_reports() -> None:
    launcher = f"""
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.executable, [*{list(INIT)!r}, "--", "sh", "-c", "exit 5"])
"""
    result = subprocess.run([PY, "-c", launcher], capture_output=True, timeout=60, check=False)
    assert result.returncode == 5


# --- spawn, in this process ----------------------------------------------------------


def test_spawn_maps_fds_sets_cwd_and_a_new_session(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        pid = process.spawn(
            ["sh", "-c", "pwd; echo err >&2; ps -o sid=,pgid= -p $$"],
            dict(os.environ),
            cwd=str(tmp_path),
            fds=(0, write_end, write_end),
        )
        os.close(write_end)
        output = _read_all(read_end)
    finally:
        os.close(read_end)
    assert os.waitstatus_to_exitcode(wait_pid(pid)) == 0
    lines = output.splitlines()
    assert lines[:2] == [str(tmp_path), "err"]
    assert lines[2].split() == [str(pid), str(pid)]


def test_spawn_swapped_fds_land_where_asked() -> None:
    # fds (stdout-pipe, stdin-pipe) onto (0, 1): each must be copied before
    # the other overwrites it.
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    try:
        pid = process.spawn(["cat"], dict(os.environ), fds=(to_child_r, from_child_w, 2))
        os.close(to_child_r)
        os.close(from_child_w)
        os.write(to_child_w, b"through\n")
        os.close(to_child_w)
        assert _read_all(from_child_r) == "through\n"
    finally:
        os.close(from_child_r)
    assert os.waitstatus_to_exitcode(wait_pid(pid)) == 0


def test_spawn_works_from_a_thread_other_than_the_main_one() -> None:
    # The child resets signal dispositions, which Python allows only in the
    # main thread: after fork, the forking thread is the child's main thread.
    results: list[int | str] = []

    def start() -> None:
        try:
            pid = process.spawn(["sh", "-c", "exit 4"], dict(os.environ))
            results.append(os.waitstatus_to_exitcode(wait_pid(pid)))
        except Exception as exc:  # reported to the main thread
            results.append(repr(exc))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(timeout=60)
    assert results == [4]


def test_before_exec_runs_in_the_child_and_its_errors_come_back() -> None:
    def fail() -> None:
        raise OSError(errno.EROFS, "cgroup.procs is read-only")

    with pytest.raises(process.SpawnError) as caught:
        process.spawn(["true"], dict(os.environ), before_exec=fail)
    assert (caught.value.stage, caught.value.errno) == ("before_exec", errno.EROFS)
    assert "read-only" in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "err", "code"),
    [
        (["/nonexistent/pv-x"], errno.ENOENT, 127),
        (["pv-no-such-program"], errno.ENOENT, 127),
        (["/"], errno.EACCES, 126),
        (["{tmp}/pv-not-executable"], errno.EACCES, 126),
        (["{tmp}/pv-not-a-program"], errno.ENOEXEC, 126),
    ],
)
def test_exec_errors_are_raised_in_the_parent(
    argv: list[str], err: int, code: int, tmp_path: Path
) -> None:
    (tmp_path / "pv-not-executable").write_text("#!/bin/sh\n")
    (tmp_path / "pv-not-a-program").write_bytes(b"\x7fELF nonsense")
    (tmp_path / "pv-not-a-program").chmod(0o755)
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(process.SpawnError) as caught:
        process.spawn(argv, dict(os.environ))
    assert (caught.value.stage, caught.value.errno) == ("exec", err)
    assert str(caught.value).startswith(f"{argv[0]}: ")
    assert process.exec_failure_exit_code(caught.value) == code


def test_a_missing_cwd_is_named() -> None:
    with pytest.raises(process.SpawnError) as caught:
        process.spawn(["true"], dict(os.environ), cwd="/nonexistent/pv-dir")
    assert caught.value.stage == "chdir"
    assert str(caught.value) == "/nonexistent/pv-dir: No such file or directory"


# --- reap and exit_status ---------------------------------------------------------------


def test_reap_drains_every_ended_child() -> None:
    # In a child of ours, so that waitpid(-1) sees only that child's children.
    code = """
import os, sys
from podvisor.init import process
pids = {process.spawn(["sh", "-c", f"exit {n}"], dict(os.environ)) for n in range(5)}
seen = {}
while len(seen) < 5:
    os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
    process.reap(lambda pid, status: seen.__setitem__(pid, process.exit_status(status)))
assert set(seen) == pids, (seen, pids)
assert sorted(seen.values()) == [0, 1, 2, 3, 4]
assert process.reap(lambda pid, status: None) == 0
"""
    result = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_reap_stops_at_the_child_it_waits_for() -> None:
    # All five have ended; waitpid(-1) finds them in the order they were born,
    # so with last= the first-born, reaping stops after it and leaves four.
    code = """
import os, time
from podvisor.init import process
pids = [process.spawn(["true"], dict(os.environ)) for _ in range(5)]
def state(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
deadline = time.monotonic() + 30
while any(state(pid) != "Z" for pid in pids) and time.monotonic() < deadline:
    time.sleep(0.005)
seen = []
assert process.reap(lambda pid, status: seen.append(pid), last=pids[0]) == 1
assert seen == [pids[0]]
assert process.reap(lambda pid, status: seen.append(pid), last=pids[0]) == 4
assert sorted(seen) == sorted(pids)
"""
    result = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_child_that_runs_without_exec_finds_its_parents_objects_frozen() -> None:
    # A full collection writes to every object it tracks: in a fork that
    # lives on, it would copy every page the two processes share. An exec'd
    # child (tini mode's) leaves the collector as it is.
    code = """
import gc, os
from podvisor.init import process
made = [{"n": n} for n in range(1000)]
pid = process.spawn(["true"], dict(os.environ))
os.waitpid(pid, 0)
assert gc.get_freeze_count() == 0
def run():
    return 0 if gc.get_freeze_count() >= len(made) else 1
pid = process.spawn(["a fork"], dict(os.environ), run=run)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert gc.get_freeze_count() >= len(made)
"""
    result = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0), (3 << 8, 3), (255 << 8, 255), (9, 137), (15, 143), (11 | 0x80, 139)],
)
def test_exit_status(raw: int, expected: int) -> None:
    assert process.exit_status(raw) == expected


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()
