"""podvisor-init against tini, dumb-init and catatonit, on the same work, in one run.

Usage::

    .venv/bin/python bench/init.py [--quick] [--json]

With --json it prints the report of bench/common.py (one figure per row of
bench/run's table) and nothing else on stdout; progress goes to stderr. In
the report podvisor-init is the ``podvisor`` column. What it measures, for
each init (a missing one is a problem in the report and an empty column):

start
    Wall time of ``INIT -- /bin/true``, many runs, the inits taking turns
    so that machine noise hits them alike. Python's own ``python -c pass``
    (the interpreter podvisor-init runs on) is measured the same way: the
    target is at most 1.0x that.
latency
    Time from ``kill(init, SIGUSR1)`` to the child taking the signal (it
    waits in sigwaitinfo and writes CLOCK_MONOTONIC to a pipe; the clock is
    the same for the benchmark). Target: a median of at most 1 ms.
rss
    The init's peak resident set (VmHWM) after the latency run. Target: at
    most 0.5 MB above the bare interpreter's own, shown beside it.
reap
    Each init runs as PID 1 of a fresh PID namespace (``unshare --pid
    --fork``), under a child whose helper forks 10,000 processes and exits;
    they are then orphans of the init, and they all exit at once. The child
    exits when the last of them has. Reported: the time until the init has
    exited (the namespace is then empty by construction) and, of that, the
    time from the orphans' release (stamped by the helper right before its
    exit releases them) to the init's exit. The total is mostly the helper's
    10,000 forks, the same work whatever the init, and on a shared machine
    its noise swamps the init's part. The second figure is the orphans'
    exits and the init's reaping, side by side on the same cores: every
    init here reaps the orphans as they die (on each SIGCHLD, until waitpid
    finds no more), and once its child has ended tini reaps every zombie
    still there before it exits, while podvisor-init, as PID 1, leaves them
    to the kernel, which reaps them as the namespace's init exits. Targets:
    at most 1.2x tini's for the total, 1.0x for the release to the exit,
    medians of the rounds. The inits take turns, round after round, the
    order rotating (full: up to 5 rounds, as many as fit in the budget;
    quick: 1).

Python bytecode caching is turned on for the measured commands (the
project's shells often set PYTHONDONTWRITEBYTECODE, which would make every
start compile podvisor's modules afresh), and each init is run once first.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# `bench` is a folder, not an installed package: reach it from the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.common import PODVISOR, Figure, Report, Stat

PYTHON = str(Path(sys.executable))
PYTHON_PASS = "python -c pass"
TINI = "tini"
ORPHANS = 10_000
#: The init's peak RSS may exceed the bare interpreter's by this much.
RSS_ABOVE_PYTHON_MB = 0.5

#: How each init is asked to run a command (tini needs -s when not PID 1);
#: the keys are the report's: podvisor-init is `podvisor`.
INITS: dict[str, list[str]] = {
    PODVISOR: [str(common.venv_bin("podvisor-init")), "--"],
    TINI: ["tini", "-s", "--"],
    "dumb-init": ["dumb-init", "--"],
    "catatonit": ["catatonit", "--"],
}
PEER_INITS = tuple(name for name in INITS if name != PODVISOR)


@dataclass(frozen=True)
class Plan:
    start_runs: int
    signals: int
    reap_rounds: int  # at most; fewer when the next would end past `budget_s`
    budget_s: float  # the whole benchmark, from its start
    #: A reaping round still running past this (from the start) is stopped and dropped,
    #: so that the other figures are reported within bench/run's limit (190 s; quick 120).
    hard_limit_s: float


FULL = Plan(start_runs=100, signals=300, reap_rounds=5, budget_s=150.0, hard_limit_s=175.0)
QUICK = Plan(start_runs=20, signals=50, reap_rounds=1, budget_s=90.0, hard_limit_s=105.0)
#: Start runs stop early past this many seconds (a loaded machine), after `MIN_START_RUNS`.
START_BUDGET_S = 30.0
MIN_START_RUNS = 10

#: The reaping child: a helper forks N processes that block on a pipe only
#: the helper can close, then exits. Its children are now the init's orphans,
#: and all see end-of-file and exit. The helper prints the time of the
#: release right before its exit closes that pipe: a time taken after it,
#: by a process woken beside 10,000 others, would come whenever the
#: scheduler got to it, late by most of the orphans' exits. The child exits
#: when the last orphan has exited (the last holder of `gone_w` is gone).
ORPHANS_CHILD = r"""
import os, sys, time
n = int(sys.argv[1])
hold_r, hold_w = os.pipe()
gone_r, gone_w = os.pipe()
helper = os.fork()
if helper == 0:
    os.close(gone_r)
    for _ in range(n):
        if os.fork() == 0:
            os.close(hold_w)
            os.read(hold_r, 1)
            os._exit(0)
    os.write(1, f"{time.monotonic_ns()}\n".encode())
    os._exit(0)
os.close(hold_w)
os.close(hold_r)
os.close(gone_w)
os.waitpid(helper, 0)
os.read(gone_r, 1)
"""

#: The latency child: takes SIGUSR1 with sigwaitinfo and writes the time.
LATENCY_CHILD = r"""
import os, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.write(1, b"ready\n")
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    os.write(1, f"{time.monotonic_ns()}\n".encode())
"""


class BenchError(Exception):
    """Raised when an init does not run the benchmark's child as it should."""


def available(problems: list[str]) -> dict[str, list[str]]:
    """The inits installed, their argv resolved; a problem line for each missing one."""
    found = {}
    for name, argv in INITS.items():
        path = shutil.which(argv[0])
        if path is None:
            problems.append(f"{argv[0]} is not installed: its column is empty")
        else:
            found[name] = [path, *argv[1:]]
    return found


def _progress(message: str) -> None:
    common.progress("init", message)


# --- Start overhead ---------------------------------------------------------------------------


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit, with as little overhead of our own as we can."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{argv} exited with {status}")
    return elapsed


def bench_start(inits: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, Stat]:
    """Milliseconds of `INIT -- /bin/true` and of `python -c pass`, in turns."""
    commands = {name: [*argv, "/bin/true"] for name, argv in inits.items()}
    commands[PYTHON_PASS] = [PYTHON, "-c", "pass"]
    for argv in commands.values():
        run_once(argv, env)  # warm caches, write bytecode
    times: dict[str, list[float]] = {name: [] for name in commands}
    began = time.monotonic()
    for run in range(runs):
        if run >= MIN_START_RUNS and time.monotonic() - began > START_BUDGET_S:
            _progress(f"start: {run} runs of {runs} in {START_BUDGET_S:.0f} s (a slow machine)")
            break
        for name, argv in commands.items():
            times[name].append(run_once(argv, env) * 1e3)
    return {name: common.summarize(values) for name, values in times.items()}


def python_rss_mb(env: dict[str, str]) -> float:
    """The bare interpreter's own VmHWM, read by itself at its end.

    Not wait4's ru_maxrss: after posix_spawn (vfork) that also counts the
    high-water mark of the spawning process's memory, i.e. this benchmark's.
    """
    code = "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


# --- Signal latency and RSS -------------------------------------------------------------------


@dataclass
class Latency:
    micros: list[float]  # kill() to the child taking the signal, one per signal
    rss_mb: float  # the init's VmHWM after them


def bench_latency(argv: list[str], signals: int, env: dict[str, str]) -> Latency:
    proc = subprocess.Popen(
        [*argv, PYTHON, "-c", LATENCY_CHILD],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        if _read_line(fd) != b"ready":
            raise BenchError(f"{argv[0]}: the latency child did not start")
        samples = []
        for _ in range(signals):
            sent = time.monotonic_ns()
            os.kill(proc.pid, signal.SIGUSR1)
            samples.append((int(_read_line(fd)) - sent) / 1e3)
        return Latency(samples, common.peak_rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _read_line(fd: int, timeout: float = 30.0) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        if not select.select([fd], [], [], timeout)[0]:
            raise BenchError("no answer from the latency child")
        chunk = os.read(fd, 1)
        if not chunk:
            raise BenchError("the latency child ended")
        data += chunk
    return data.strip()


# --- Reaping ----------------------------------------------------------------------------------


@dataclass
class Reaping:
    total_s: list[float] = field(default_factory=list)  # launch to the init's exit
    after_release_ms: list[float] = field(default_factory=list)  # release to the init's exit


class OutOfTimeError(Exception):
    """Raised when a reaping run is still going at the benchmark's hard limit."""


def bench_reap(argv: list[str], env: dict[str, str], deadline: float) -> tuple[float, float]:
    """(seconds until the init exited, milliseconds from releasing the orphans to that)."""
    command = ["unshare", "--pid", "--fork", "--kill-child", *argv, PYTHON, "-c", ORPHANS_CHILD]
    started = time.monotonic_ns()
    proc = subprocess.Popen([*command, str(ORPHANS)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    with proc:
        try:
            output = _read_to_end(proc.stdout.fileno(), deadline)
        except OutOfTimeError:
            proc.kill()  # unshare: --kill-child takes the init, the namespace goes with it
            raise
        code = proc.wait()
    ended = time.monotonic_ns()
    if code != 0 or not output.strip().isdigit():
        raise BenchError(f"{argv[0]}: the reaping child exited with {code}")
    return (ended - started) / 1e9, (ended - int(output)) / 1e6


def _read_to_end(fd: int, deadline: float) -> bytes:
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise OutOfTimeError
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


@dataclass
class Reaper:
    """Rounds in which each init reaps once, rotating the order, while they fit the budget."""

    inits: dict[str, list[str]]
    env: dict[str, str]
    began: float  # when the benchmark began: the budget counts from there
    problems: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)

    def rounds(self, plan: Plan) -> dict[str, Reaping]:
        results = {name: Reaping() for name in self.inits}
        done, took = 0, 0.0
        # The next round is started when one like the slowest so far, and a margin, fits.
        while done < plan.reap_rounds and (done == 0 or _left(self.began, plan) > 1.15 * took):
            round_began = time.monotonic()
            samples = self._one_round(done, self.began + plan.hard_limit_s)
            if samples is None:
                self.problems.append(
                    f"reaping round {done + 1} stopped and dropped at {plan.hard_limit_s:.0f} s "
                    "(the machine is slow)"
                )
                break
            for name, (total, after) in samples.items():
                results[name].total_s.append(total)
                results[name].after_release_ms.append(after)
            done += 1
            took = max(took, time.monotonic() - round_began)
            _progress(f"reaping: round {done} done, {time.monotonic() - round_began:.0f} s")
        return results

    def _one_round(self, shift: int, deadline: float) -> dict[str, tuple[float, float]] | None:
        """Each init once, the order shifted by *shift*; None when *deadline* came first."""
        names = [n for n in self.inits if n not in self.failed]
        shift %= max(len(names), 1)
        samples: dict[str, tuple[float, float]] = {}
        for name in names[shift:] + names[:shift]:
            try:
                samples[name] = bench_reap(self.inits[name], self.env, deadline)
            except OutOfTimeError:
                return None
            except BenchError as exc:
                self.problems.append(f"{exc}; no more reaping runs of {name}")
                self.failed.add(name)
        return samples


def _left(began: float, plan: Plan) -> float:
    return plan.budget_s - (time.monotonic() - began)


# --- Measuring ----------------------------------------------------------------------------------


@dataclass
class Results:
    start: dict[str, Stat]
    python_rss_mb: float
    latency: dict[str, Latency]
    reaping: dict[str, Reaping]
    problems: list[str]
    machine: dict[str, str]  # read before the runs: 10,000 orphans raise the load average


def measure(plan: Plan) -> Results:
    began = time.monotonic()
    machine = common.machine()
    env = common.bench_env()
    problems: list[str] = []
    inits = available(problems)
    _progress(f"start: {plan.start_runs} runs of each init and of `{PYTHON_PASS}`, in turns")
    start = bench_start(inits, plan.start_runs, env)
    _progress(f"signal latency: {plan.signals} SIGUSR1 through each init")
    latency = {}
    for name, argv in inits.items():
        try:
            latency[name] = bench_latency(argv, plan.signals, env)
        except BenchError as exc:
            problems.append(str(exc))
    _progress(f"reaping {ORPHANS:,} orphans: up to {plan.reap_rounds} round(s) of every init")
    reaper = Reaper(inits, env, began)
    reaping = reaper.rounds(plan)
    rss = python_rss_mb(env)
    return Results(start, rss, latency, reaping, problems + reaper.problems, machine)


# --- The report ---------------------------------------------------------------------------------


def _judge(fig: Figure, check: Callable[[float], bool], against: str | None = None) -> Figure:
    """Set `met` from podvisor's median (over *against*'s median when given)."""
    ours = fig["values"].get(PODVISOR)
    if ours is None:
        return fig
    if against is None:
        fig["met"] = check(ours["median"])
        return fig
    base = fig["values"].get(against)
    if base is not None and base["median"] > 0:
        fig["met"] = check(ours["median"] / base["median"])
    return fig


def _samples(values: dict[str, list[float]]) -> dict[str, Stat]:
    return {name: common.summarize(s) for name, s in values.items() if s}


def figures(results: Results) -> list[Figure]:
    reaping, latency = results.reaping, results.latency
    rss_limit_mb = results.python_rss_mb + RSS_ABOVE_PYTHON_MB
    return [
        _judge(
            common.figure(
                "init start overhead: `INIT -- /bin/true`",
                "ms",
                results.start,
                baseline=TINI,
                target="<= 1.0x python -c pass",
            ),
            lambda r: r <= 1.0,
            PYTHON_PASS,
        ),
        _judge(
            common.figure(
                f"reap {ORPHANS:,} orphans: launch to the init's exit (mostly the forks)",
                "s",
                _samples({n: r.total_s for n, r in reaping.items()}),
                baseline=TINI,
                target="<= 1.2x tini",
            ),
            lambda r: r <= 1.2,
            TINI,
        ),
        _judge(
            common.figure(
                f"reap {ORPHANS:,} orphans: their release to the init's exit",
                "ms",
                _samples({n: r.after_release_ms for n, r in reaping.items()}),
                baseline=TINI,
                target="<= 1.0x tini",
            ),
            lambda r: r <= 1.0,
            TINI,
        ),
        _judge(
            common.figure(
                "signal latency: kill(init, SIGUSR1) to the child taking it",
                "µs",
                _samples({n: lat.micros for n, lat in latency.items()}),
                baseline=TINI,
                target="<= 1 ms (median)",
            ),
            lambda median: median <= 1000,
        ),
        _judge(
            common.figure(
                "init peak RSS (VmHWM)",
                "MB",
                {
                    **{n: common.one(lat.rss_mb) for n, lat in latency.items()},
                    PYTHON_PASS: common.one(results.python_rss_mb),
                },
                baseline=TINI,
                target=f"<= python -c pass + {RSS_ABOVE_PYTHON_MB} MB",
            ),
            lambda mb: mb <= rss_limit_mb,
        ),
    ]


def notes(results: Results, plan: Plan) -> list[str]:
    rounds = max((len(r.total_s) for r in results.reaping.values()), default=0)
    runs = max((stat["n"] for stat in results.start.values()), default=0)
    return [
        (
            "init: podvisor is podvisor-init (Python); tini, dumb-init and catatonit are the "
            "Debian packages (C)."
        ),
        (
            f"init: start: {runs} runs per init, in turns; signal latency: "
            f"{plan.signals} signals per init; reaping: {rounds} round(s) of {ORPHANS:,} orphans "
            f"per init (at most {plan.reap_rounds}, as many as fit in {plan.budget_s:.0f} s; a "
            "round of the four inits is about a minute on two cores)."
        ),
        (
            f"init: the reaping total is mostly the helper's {ORPHANS:,} forks, the same for "
            "every init; release to exit is the orphans' exits and the init's reaping of them "
            "as they die, side by side, then its exit (as PID 1 podvisor-init leaves the "
            "zombies still there at its child's exit to the kernel; tini reaps them first)."
        ),
    ]


def report(results: Results, plan: Plan, quick: bool) -> Report:
    return Report(
        benchmark="init",
        quick=quick,
        machine=results.machine,
        figures=figures(results),
        notes=notes(results, plan),
        problems=results.problems,
    )


def markdown(rep: Report) -> str:
    lines = [common.figures_table(rep["figures"], PEER_INITS), ""]
    lines += [f"Machine: {common.describe(rep['machine'])}.", ""]
    lines += [f"- {note}" for note in rep["notes"]]
    lines += ["", "± is half the interquartile range of the runs."]
    lines += [f"PROBLEM: {p}" for p in rep["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, one reaping round")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    try:
        with common.terminated_as_interrupt():
            results = measure(plan)
    except KeyboardInterrupt:
        _progress("interrupted")
        return 130
    rep = report(results, plan, args.quick)
    print(json.dumps(rep, indent=2, ensure_ascii=False) if args.json else markdown(rep))
    return 1 if rep["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
