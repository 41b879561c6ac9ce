"""podvisor against supervisord: the same three programs, supervised, in one run.

Usage::

    .venv/bin/python bench/pod.py [--quick] [--json] [--runs N] [--idle SECONDS]

The work: a main program and two sidecars, small programs from the host
(two shell scripts and a Python one). Each prints one line, then idles
(``exec sleep infinity``, ``signal.pause()``). podvisor runs them from a Pod
manifest (the sidecars as native sidecars: init containers with
``restartPolicy: Always``); supervisord from a config file (the sidecars
first by priority), its programs' stdout on its own stdout
(``stdout_logfile=/dev/stdout``), so both are read the same way: on the
supervisor's stdout, through a pipe. Both are written to a temporary
directory; both run with their default settings.

What is measured:

start
    From launching the supervisor to the main program's line on its stdout,
    median of N runs; the contenders take turns so machine noise hits them
    alike, and each runs once first, unmeasured (bytecode, page cache).
    podvisor runs twice: with its default network (a bridge when it can make
    one, what users get) and with ``podvisor.io/network: loopback``.
stop
    From SIGTERM to the supervisor's exit, all programs stopped.
idle CPU and wake-ups
    Both supervisors run the pod side by side (so noise hits both) for 60 s
    (10 s with --quick) once every program has printed; the supervisor's own
    utime + stime from /proc/PID/stat (its threads, not its children) over
    that window, and its voluntary context switches (each is a sleep, so one
    wake-up; summed over its threads). For podvisor the init processes (the
    pod's PID 1 and each container's) are reported apart and in sum.
peak RSS
    VmHWM of the supervisor when all three programs have printed, each start
    run; for podvisor also the supervisor and its init processes together
    (a sum of VmHWM: pages the processes share are counted in each). And
    the supervisor's peak over its whole life, its stop included: its VmHWM
    read every 5 ms until it exits.
the floor
    What podvisor cannot go below on its default backend: the interpreter
    importing anyio on asyncio and exiting, no podvisor code; its time from
    launch to exit and its VmHWM, once per start round. Put beside
    supervisord's figures, it says which ratios are reachable at all.

Every run is stopped with SIGTERM and waited for; a supervisor that does not
exit in time is killed with its process group and descendants. This process
is a child subreaper, so anything that outlives a supervisor comes back to it
and is reported (and killed) as a leak, as are cgroups and network
namespaces of a bench pod left behind. Needs root (podvisor's namespaces and
cgroups).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# `bench` is a folder, not an installed package: reach it from the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.common import Figure, Report, Stat
from podvisor.init import syscalls
from podvisor.supervisor.cli.main import DEFAULT_BACKEND

READY = re.compile(rb"PVBENCH-READY (\S+)")
PROGRAMS = ("side-a", "side-b", "main")
LAUNCH_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
HWM_POLL = 0.005  # seconds between reads of a stopping supervisor's VmHWM
#: Time for start-up work to die down before the idle window opens: an idle
#: worker thread goes after 10 s (anyio's on asyncio, trio's thread cache).
SETTLE_SECONDS = 12.0
#: Start rounds stop early past this many seconds, after at least MIN_ROUNDS.
START_BUDGET_S = 75.0
MIN_ROUNDS = 3
#: The bounds podvisor's figures are judged against, as ratios to supervisord's.
START_BOUND = 0.35  # launch to the main program's first line
RSS_BOUND = 1.02  # the supervisor's peak RSS, all programs running
PSS_BOUND = 1.0  # the supervisor and its init processes, PSS


class BenchError(Exception):
    """Raised when a supervisor does not start, print, or stop as the benchmark needs."""


# --- The work, written for each supervisor ---------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str  # the key in the report's values
    argv: list[str]
    podvisor: bool
    pod_name: str = ""


def write_programs(tmp: Path) -> dict[str, list[str]]:
    """The three programs, as argv lists both supervisors run."""
    side_b = tmp / "side_b.py"
    side_b.write_text("import signal\nprint('PVBENCH-READY side-b', flush=True)\nsignal.pause()\n")
    return {
        "side-a": ["sh", "-c", "echo PVBENCH-READY side-a; exec sleep infinity"],
        "side-b": [sys.executable, "-u", str(side_b)],
        "main": ["sh", "-c", "echo PVBENCH-READY main; exec sleep infinity"],
    }


def write_manifest(tmp: Path, name: str, programs: dict[str, list[str]], network: str) -> Path:
    """A Pod: two native sidecars (started first, in order) and the main container."""
    annotations = {"podvisor.io/network": network} if network else {}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "initContainers": [
                {"name": p, "command": programs[p], "restartPolicy": "Always"}
                for p in ("side-a", "side-b")
            ],
            "containers": [{"name": "main", "command": programs["main"]}],
        },
    }
    path = tmp / f"{name}-{network or 'default'}.yaml"
    path.write_text(json.dumps(pod, indent=2))  # JSON is YAML
    return path


def write_supervisord_conf(tmp: Path, programs: dict[str, list[str]]) -> Path:
    """supervisord as its docs set it up, with a control socket; logs to its stdout."""
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={tmp}/supervisord.log",
        f"pidfile={tmp}/supervisord.pid",
        f"childlogdir={tmp}",
        "user=root",
        "",
        "[unix_http_server]",
        f"file={tmp}/supervisor.sock",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    for priority, name in enumerate(PROGRAMS, start=1):
        # supervisord splits `command` with shlex and expands %(name)s.
        command = shlex.join(programs[name]).replace("%", "%%")
        lines += [
            f"[program:{name}]",
            f"command={command}",
            f"priority={priority}",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "stderr_logfile=/dev/stderr",
            "stderr_logfile_maxbytes=0",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=10",
            "",
        ]
    path = tmp / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


# --- One supervisor, launched and read -------------------------------------------------------


@dataclass
class Running:
    """A launched supervisor: its process, and the times its programs said they were ready."""

    contender: Contender
    process_id: int
    stdout: int  # the read end of its stdout pipe
    launched: float  # perf_counter() just before the launch
    stderr_path: Path
    ready: dict[str, float] = field(default_factory=dict)  # program: seconds after launch
    pending: bytes = b""
    status: int | None = None
    #: VmHWM, MB, read until it exits: its peak over its whole life, stop included
    lifetime_rss_mb: float = 0.0

    def read_available(self, timeout: float) -> bool:
        """Read what the supervisor wrote, within *timeout*; False at end of file."""
        if not select.select([self.stdout], [], [], max(timeout, 0))[0]:
            return True
        now = time.perf_counter()
        chunk = os.read(self.stdout, 65536)
        if not chunk:
            return False
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            match = READY.search(line)
            if match:
                self.ready.setdefault(match[1].decode(), now - self.launched)
        return True

    def wait_ready(self, programs: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(p in self.ready for p in programs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.contender.name}: no line from {programs} in {timeout} s")
            if not self.read_available(left):
                raise BenchError(f"{self.contender.name} exited early: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no stderr)"
        return " / ".join(lines[-5:]) or "(no stderr)"


def launch(contender: Contender, tmp: Path, env: dict[str, str]) -> Running:
    read_end, write_end = os.pipe()
    stderr_path = tmp / f"{contender.name.replace(' ', '_')}.stderr"
    with stderr_path.open("ab") as stderr:
        launched = time.perf_counter()
        # A session of its own, so that a stuck supervisor can be killed with its group.
        pid = os.posix_spawn(
            contender.argv[0],
            contender.argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 1),
                (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
                (os.POSIX_SPAWN_CLOSE, read_end),
            ],
            setsid=True,
        )
    os.close(write_end)
    return Running(contender, pid, read_end, launched, stderr_path)


def stop(run: Running) -> float:
    """SIGTERM, read to end of file, wait; the seconds to exit. Kills it all on a timeout."""
    began = time.perf_counter()
    with contextlib.suppress(ProcessLookupError):
        os.kill(run.process_id, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    try:
        _read_to_end(run, deadline)
        run.status = _wait(run, deadline)
        return time.perf_counter() - began
    except BaseException:
        kill(run)
        raise
    finally:
        os.close(run.stdout)


def _read_to_end(run: Running, deadline: float) -> None:
    while run.read_available(min(deadline - time.monotonic(), HWM_POLL)):
        _note_peak(run)
        if time.monotonic() > deadline:
            raise BenchError(f"{run.contender.name} did not stop in {STOP_TIMEOUT} s")


def _note_peak(run: Running) -> None:
    """Keep the supervisor's VmHWM: read until it exits, its peak over its whole life.

    Not ru_maxrss from its wait: that is the largest of it and every child it
    reaped, and podvisor's network maker, a fork of it, can be the largest.
    """
    with contextlib.suppress(OSError, KeyError):  # gone, or a zombie without memory
        run.lifetime_rss_mb = max(run.lifetime_rss_mb, common.peak_rss_mb(run.process_id))


def _wait(run: Running, deadline: float) -> int:
    while True:
        _note_peak(run)
        done, status = os.waitpid(run.process_id, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            raise BenchError(f"process {run.process_id} closed its stdout but did not exit")
        time.sleep(HWM_POLL)  # it closed its stdout: it is on its way out


def kill(run: Running) -> None:
    """SIGKILL the supervisor's process group and every descendant, and reap it."""
    if run.status is not None:
        return
    tree = common.descendants(run.process_id)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.process_id, signal.SIGKILL)
    for pid in [run.process_id, *tree]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        run.status = os.waitstatus_to_exitcode(os.waitpid(run.process_id, 0)[1])


# --- Leaks ---------------------------------------------------------------------------------


def reap_leftovers() -> list[str]:
    """Kill and reap what came back to us (we are a subreaper): each is a leak."""
    leaks = []
    for pid in common.children(os.getpid()):
        command = " ".join(common.cmdline(pid))[:80]
        leaks.append(f"process {pid} ({command}) outlived its supervisor")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return leaks


# --- Start runs ---------------------------------------------------------------------------------


@dataclass
class StartSample:
    start_s: float
    stop_s: float
    supervisor_rss_mb: float
    lifetime_rss_mb: float  # the supervisor's peak over its life, its stop included
    tree_rss_mb: float  # the supervisor and its init processes, VmHWM
    tree_pss_mb: float  # the same, PSS
    inits: int
    #: PSS of each process of podvisor's tree by its place in it (empty for supervisord).
    pss_by_role: dict[str, list[float]] = field(default_factory=dict)


def init_processes(supervisor: int) -> list[int]:
    """podvisor's init processes below the supervisor: the pod's PID 1 and each container's."""
    found = []
    for pid in common.descendants(supervisor):
        argv = common.cmdline(pid)
        if "podvisor.init" in argv or any(a.endswith("podvisor-init") for a in argv[:2]):
            found.append(pid)
    return found


def start_once(contender: Contender, tmp: Path, env: dict[str, str]) -> StartSample:
    run = launch(contender, tmp, env)
    try:
        run.wait_ready(PROGRAMS, LAUNCH_TIMEOUT)
        inits = init_processes(run.process_id)
        rss = common.peak_rss_mb(run.process_id)
        tree = rss + sum(_quietly(common.peak_rss_mb, pid) for pid in inits)
        by_role = pss_by_role(run.process_id, inits)
        pss = sum(sum(values) for values in by_role.values())
    except BaseException:
        kill(run)
        with contextlib.suppress(OSError):
            os.close(run.stdout)
        raise
    stopped = stop(run)
    return StartSample(
        run.ready["main"], stopped, rss, run.lifetime_rss_mb, tree, pss, len(inits), by_role
    )


def pss_by_role(supervisor: int, inits: list[int]) -> dict[str, list[float]]:
    """The PSS of the supervisor and of each init, by its place in the tree.

    The supervisor's child is the pod's outer init, which waits for the pod's
    PID 1, its child; each container's init is a child of that PID 1.
    """
    parents = {pid: int(_quietly(common.parent_pid, pid)) for pid in inits}
    by_role: dict[str, list[float]] = {"supervisor": [_quietly(common.pss_mb, supervisor)]}
    for pid, parent in parents.items():
        if parent == supervisor:
            role = "outer init"
        elif parents.get(parent) == supervisor:
            role = "pod PID 1"
        else:
            role = "container init"
        by_role.setdefault(role, []).append(_quietly(common.pss_mb, pid))
    return by_role


@dataclass
class FloorSample:
    start_s: float  # launch to exit
    rss_mb: float  # VmHWM, from the rusage of its wait


#: What `podvisor run` imports before any of its own code: anyio on its default backend.
FLOOR_CODE = f"import anyio._backends._{DEFAULT_BACKEND}"


def floor_once(env: dict[str, str]) -> FloorSample:
    """The interpreter, importing `FLOOR_CODE` and exiting: timed, its peak RSS read."""
    argv = [sys.executable, "-c", FLOOR_CODE]
    began = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{shlex.join(argv)} failed with status {status}")
    return FloorSample(elapsed, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def _quietly(read: Callable[[int], float], pid: int) -> float:
    try:
        return read(pid)
    except OSError:
        return 0.0  # it exited between the listing and the reading


def start_runs(
    contenders: list[Contender],
    runs: int,
    tmp: Path,
    env: dict[str, str],
    problems: list[str],
    *,
    floor: list[FloorSample],
) -> dict[str, list[StartSample]]:
    """Each contender once unmeasured, then *runs* rounds in turns, rotating the order;
    each round also adds a sample of the floor to *floor*.

    On a machine so loaded that the rounds overrun `START_BUDGET_S`, fewer are
    made (at least `MIN_ROUNDS`), so that bench/run stays within its time.
    """
    samples: dict[str, list[StartSample]] = {c.name: [] for c in contenders}
    failed: set[str] = set()
    began = time.monotonic()
    for round_ in range(-1, runs):
        if round_ >= MIN_ROUNDS and time.monotonic() - began > START_BUDGET_S:
            problems.append(f"the machine is slow: {round_} start rounds of {runs} in the time")
            break
        shift = max(round_, 0) % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            if contender.name in failed:
                continue
            try:
                sample = start_once(contender, tmp, env)
            except (BenchError, OSError) as exc:
                problems.append(f"{exc}; no more runs of {contender.name}")
                failed.add(contender.name)
                continue
            finally:
                problems.extend(_leaks(contender))
            if round_ >= 0:
                samples[contender.name].append(sample)
        try:
            sample_of_floor = floor_once(env)
        except (BenchError, OSError) as exc:
            problems.append(f"the floor: {exc}")
        else:
            if round_ >= 0:
                floor.append(sample_of_floor)
        _progress(f"start runs: round {round_ + 1} of {runs} done")
    return samples


def _leaks(contender: Contender) -> list[str]:
    found = reap_leftovers()
    if contender.podvisor:
        found += common.leftover_pod_state(contender.pod_name)
    return [f"{contender.name}: leak: {leak}" for leak in found]


# --- The idle window -------------------------------------------------------------------------


@dataclass
class Idle:
    window_s: float
    cpu_ms: float  # utime + stime: clock ticks, but dead threads included
    run_ms: float  # schedstat: ns resolution, live threads only
    wakeups: int
    exited_threads: int
    init_cpu_ms: float = 0.0
    init_run_ms: float = 0.0
    init_wakeups: int = 0


@dataclass
class Reading:
    cpu: float
    threads: dict[int, common.ThreadCounters]


def read_counters(pid: int) -> Reading:
    return Reading(common.cpu_seconds(pid), common.thread_counters(pid))


def read_inits(pids: list[int]) -> dict[int, Reading]:
    readings = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            readings[pid] = read_counters(pid)
    return readings


def idle_window(
    contenders: list[Contender], seconds: float, tmp: Path, env: dict[str, str]
) -> dict[str, Idle]:
    """Run every contender side by side, idle, and read their counters across the window."""
    runs: list[Running] = []
    try:
        runs.extend(launch(contender, tmp, env) for contender in contenders)
        for run in runs:
            run.wait_ready(PROGRAMS, LAUNCH_TIMEOUT)
        _drain(runs, SETTLE_SECONDS)
        inits = {r.contender.name: init_processes(r.process_id) for r in runs}
        before = {r.contender.name: read_counters(r.process_id) for r in runs}
        before_inits = {name: read_inits(pids) for name, pids in inits.items()}
        began = time.monotonic()
        _drain(runs, seconds)
        window = time.monotonic() - began
        results = {}
        for run in runs:
            name = run.contender.name
            after = read_counters(run.process_id)
            results[name] = _idle(window, before[name], after)
            _add_inits(results[name], before_inits[name], read_inits(inits[name]))
    finally:
        for run in runs:
            with contextlib.suppress(BenchError):
                stop(run)
    return results


def _drain(runs: list[Running], seconds: float) -> None:
    """Keep reading the supervisors' stdout for *seconds*; select does not wake them."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable = select.select([r.stdout for r in runs], [], [], left)[0]
        for run in runs:
            if run.stdout in readable and not run.read_available(0):
                raise BenchError(f"{run.contender.name} exited while idle: {run.stderr_tail()}")


def _idle(window: float, before: Reading, after: Reading) -> Idle:
    wakeups, run_s, exited = common.thread_deltas(before.threads, after.threads)
    return Idle(window, (after.cpu - before.cpu) * 1e3, run_s * 1e3, wakeups, exited)


def _add_inits(idle: Idle, before: dict[int, Reading], after: dict[int, Reading]) -> None:
    for pid in before.keys() & after.keys():
        init = _idle(idle.window_s, before[pid], after[pid])
        idle.init_cpu_ms += init.cpu_ms
        idle.init_run_ms += init.run_ms
        idle.init_wakeups += init.wakeups


# --- The report --------------------------------------------------------------------------


SUPERVISORD = "supervisord"


def _stat(
    samples: Sequence[StartSample | FloorSample], attribute: str, scale: float = 1.0
) -> Stat | None:
    if not samples:
        return None
    return common.summarize(getattr(s, attribute) * scale for s in samples)


def _values(**named: Stat | None) -> dict[str, Stat]:
    return {name: stat for name, stat in named.items() if stat is not None}


def _verdict(fig: Figure, limit: float, strict: bool = False) -> Figure:
    """Judge podvisor / baseline against *limit* (strictly below when *strict*)."""
    r = common.ratio(fig)
    if r is not None:
        fig["met"] = r < limit if strict else r <= limit
    return fig


def start_figures(samples: dict[str, list[StartSample]], floor: list[FloorSample]) -> list[Figure]:
    ours, loopback, theirs = (samples.get(k, []) for k in ("podvisor", "loopback", SUPERVISORD))
    sup = _stat(theirs, "start_s", 1e3)
    floor_name = f"floor, not podvisor: `python -c '{FLOOR_CODE}'`"
    figures = [
        _verdict(
            common.figure(
                "pod start: launch to the main program's first line (default network)",
                "ms",
                _values(podvisor=_stat(ours, "start_s", 1e3), supervisord=sup),
                baseline=SUPERVISORD,
                target=f"<= {START_BOUND}x supervisord",
            ),
            START_BOUND,
        ),
        _verdict(
            common.figure(
                "pod start: launch to the main program's first line (network: loopback)",
                "ms",
                _values(podvisor=_stat(loopback, "start_s", 1e3), supervisord=sup),
                baseline=SUPERVISORD,
                target=f"<= {START_BOUND}x supervisord",
            ),
            START_BOUND,
        ),
        common.figure(
            "pod stop: SIGTERM to the supervisor's exit (default network)",
            "ms",
            _values(podvisor=_stat(ours, "stop_s", 1e3), supervisord=_stat(theirs, "stop_s", 1e3)),
            baseline=SUPERVISORD,
        ),
        _verdict(
            common.figure(
                "supervisor peak RSS (VmHWM), all programs running",
                "MB",
                _values(
                    podvisor=_stat(ours, "supervisor_rss_mb"),
                    supervisord=_stat(theirs, "supervisor_rss_mb"),
                ),
                baseline=SUPERVISORD,
                target=f"<= {RSS_BOUND}x supervisord",
            ),
            RSS_BOUND,
        ),
        common.figure(
            "supervisor peak RSS over its life, its stop included (VmHWM until it exits)",
            "MB",
            _values(
                podvisor=_stat(ours, "lifetime_rss_mb"),
                supervisord=_stat(theirs, "lifetime_rss_mb"),
            ),
            baseline=SUPERVISORD,
        ),
        common.figure(
            f"{floor_name}, launch to exit",
            "ms",
            _values(podvisor=_stat(floor, "start_s", 1e3), supervisord=sup),
            baseline=SUPERVISORD,
        ),
        common.figure(
            f"{floor_name}, peak RSS",
            "MB",
            _values(
                podvisor=_stat(floor, "rss_mb"),
                supervisord=_stat(theirs, "supervisor_rss_mb"),
            ),
            baseline=SUPERVISORD,
        ),
        common.figure(
            "supervisor + init processes peak RSS (sum of VmHWM)",
            "MB",
            _values(podvisor=_stat(ours, "tree_rss_mb"), supervisord=_stat(theirs, "tree_rss_mb")),
            baseline=SUPERVISORD,
        ),
        _verdict(
            common.figure(
                "supervisor + init processes PSS (shared pages split), all programs running",
                "MB",
                _values(
                    podvisor=_stat(ours, "tree_pss_mb"), supervisord=_stat(theirs, "tree_pss_mb")
                ),
                baseline=SUPERVISORD,
                target=f"<= {PSS_BOUND}x supervisord",
            ),
            PSS_BOUND,
        ),
    ]
    return [f for f in figures if "podvisor" in f["values"] or SUPERVISORD in f["values"]]


def idle_figures(idle: dict[str, Idle]) -> list[Figure]:
    ours, theirs = idle.get("podvisor"), idle.get(SUPERVISORD)
    window = next(i.window_s for i in (ours, theirs) if i is not None)
    span = f"{window:.0f} s idle, 3 programs"

    def value(item: Idle | None, attribute: str) -> Stat | None:
        return common.one(float(getattr(item, attribute))) if item else None

    cpu = common.figure(
        f"supervisor CPU (utime+stime), {span}",
        "ms",
        _values(podvisor=value(ours, "cpu_ms"), supervisord=value(theirs, "cpu_ms")),
        baseline=SUPERVISORD,
        target="< supervisord",
    )
    precise = common.figure(
        f"supervisor CPU (schedstat, ns resolution), {span}",
        "ms",
        _values(podvisor=value(ours, "run_ms"), supervisord=value(theirs, "run_ms")),
        baseline=SUPERVISORD,
        target="< supervisord",
    )
    for fig in (cpu, precise):
        _verdict(fig, 1.0, strict=True)
    inits = common.figure(
        f"init processes' CPU (utime+stime), {span}",
        "ms",
        _values(podvisor=value(ours, "init_cpu_ms")),
    )
    total = common.figure(
        f"supervisor + inits CPU (utime+stime), {span}",
        "ms",
        _values(
            podvisor=common.one(ours.cpu_ms + ours.init_cpu_ms) if ours else None,
            supervisord=value(theirs, "cpu_ms"),
        ),
        baseline=SUPERVISORD,
    )
    wakeups = common.figure(
        f"supervisor wake-ups (voluntary context switches), {span}",
        "",
        _values(podvisor=value(ours, "wakeups"), supervisord=value(theirs, "wakeups")),
        baseline=SUPERVISORD,
        target="none periodic (<= 1 per 30 s)",
        met=ours.wakeups <= max(1, window / 30) if ours else None,
    )
    init_wakeups = common.figure(
        f"init processes' wake-ups, {span}", "", _values(podvisor=value(ours, "init_wakeups"))
    )
    return [cpu, precise, inits, total, wakeups, init_wakeups]


# --- Main -------------------------------------------------------------------------------------


def contenders(programs: dict[str, list[str]], tmp: Path) -> tuple[list[Contender], list[str]]:
    """podvisor (default network and loopback) and supervisord, where installed."""
    podvisor, supervisord = common.venv_bin("podvisor"), common.venv_bin("supervisord")
    missing, found = [], []
    pod_name = f"pvbench-{os.getpid()}"
    if podvisor.exists():
        for key, network in (("podvisor", ""), ("loopback", "loopback")):
            manifest = write_manifest(tmp, pod_name, programs, network)
            found.append(Contender(key, [str(podvisor), "run", str(manifest)], True, pod_name))
    else:
        missing.append(f"podvisor is not installed in {podvisor.parent}: run scripts/setup")
    if supervisord.exists():
        conf = write_supervisord_conf(tmp, programs)
        found.append(Contender(SUPERVISORD, [str(supervisord), "-n", "-c", str(conf)], False))
    else:
        missing.append(
            f"supervisord is not installed in {supervisord.parent}: run scripts/setup "
            "(or .venv/bin/pip install supervisor)"
        )
    return found, missing


def measure(runs: int, idle_seconds: float, quick: bool) -> Report:
    problems: list[str] = []
    env = common.bench_env()
    with tempfile.TemporaryDirectory(prefix="pvbench-") as tmpdir:
        tmp = Path(tmpdir)
        found, missing = contenders(write_programs(tmp), tmp)
        problems += missing
        floor: list[FloorSample] = []
        samples = start_runs(found, runs, tmp, env, problems, floor=floor)
        idle = idle_phase(found, idle_seconds, tmp, env, problems)
    exits = [
        f"pod: {name}: {i.exited_threads} thread(s) exited in the idle window (counted as a "
        "wake-up each; their CPU time is lost to the schedstat figure)"
        for name, i in idle.items()
        if i.exited_threads
    ]
    return Report(
        benchmark="pod",
        quick=quick,
        machine=common.machine(),
        figures=start_figures(samples, floor) + (idle_figures(idle) if idle else []),
        notes=_notes(idle_seconds, samples.get("podvisor", [])) + exits,
        problems=problems,
    )


def idle_phase(
    found: list[Contender], seconds: float, tmp: Path, env: dict[str, str], problems: list[str]
) -> dict[str, Idle]:
    """podvisor with its default settings and supervisord, idle side by side."""
    _progress(f"idle window: {SETTLE_SECONDS:g} s to settle, then {seconds:g} s")
    chosen = [c for c in found if c.name in ("podvisor", SUPERVISORD)]
    try:
        return idle_window(chosen, seconds, tmp, env)
    except BenchError as exc:
        problems.append(str(exc))
        return {}
    finally:
        for contender in chosen:
            problems.extend(_leaks(contender))


def _notes(idle_seconds: float, ours: list[StartSample]) -> list[str]:
    inits = max((s.inits for s in ours), default=0)
    roles = ours[-1].pss_by_role if ours else {}
    each = ", ".join(
        f"{role} {common.median(values):.1f} MB" + (f" (x{len(values)})" if len(values) > 1 else "")
        for role, values in roles.items()
    )
    return [
        (
            f"pod: {len(ours)} start runs per contender, taking turns; the idle window "
            f"({idle_seconds:g} s) runs podvisor and supervisord side by side."
        ),
        (
            "pod: the work is a main program and two sidecars (sh, sh, python) that print a "
            "line and idle; podvisor runs its default settings, supervisord its documented ones."
        ),
        (
            f"pod: podvisor's {inits} init processes are the pod's PID 1 and one init per "
            "container (shareProcessNamespace: false, the Kubernetes default), each a Python "
            "process; a sum of VmHWM counts the pages they share once per process, PSS splits them."
        ),
        f"pod: PSS of each process, the last start run: {each or 'not read'}.",
    ]


def markdown(report: Report) -> str:
    rows = []
    for fig in report["figures"]:
        cells = [
            common.format_stat(fig["values"][k], fig["unit"]) if k in fig["values"] else "n/a"
            for k in ("podvisor", SUPERVISORD)
        ]
        r = common.ratio(fig)
        verdict = {True: "met", False: "MISSED", None: "not judged"}[fig["met"]]
        target = f"{fig['target']}: {verdict}" if fig["target"] else ""
        rows.append([fig["name"], *cells, f"{r:.2f}x" if r is not None else "", target])
    table = common.markdown_table(
        ["figure", "podvisor", "supervisord", "ratio", "target"], rows, numeric=1
    )
    lines = [table, "", f"Machine: {common.describe(report['machine'])}.", ""]
    lines += [f"- {note}" for note in report["notes"]]
    lines += ["", "± is half the interquartile range of the runs."]
    lines += [f"PROBLEM: {p}" for p in report["problems"]]
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"bench/pod: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 start runs, 10 s idle window")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--runs", type=int, help="start runs per contender (default 11)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 60)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/pod.py needs root (podvisor's namespaces and cgroups)", file=sys.stderr)
        return 2
    # Whatever escapes a supervisor comes back to us, to be reported and killed.
    syscalls.set_child_subreaper()
    runs = args.runs or (5 if args.quick else 11)
    idle = args.idle or (10.0 if args.quick else 60.0)
    try:
        with common.terminated_as_interrupt():
            report = measure(runs, idle, args.quick)
    except KeyboardInterrupt:
        _progress("interrupted; every supervisor it started was stopped")
        return 130
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
