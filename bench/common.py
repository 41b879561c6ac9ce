"""What the benchmarks share: statistics, the JSON they print, /proc readings, tables.

The JSON every ``bench/X.py --json`` prints, and ``bench/run.py`` merges
-----------------------------------------------------------------------
One object (a `Report`)::

    {
      "benchmark": "pod",                   # the file's name, without .py
      "quick": false,
      "machine": {...},                     # machine(): CPU, cores, kernel, Python
      "figures": [                          # one row of the merged table each
        {
          "name": "start: launch to the main program's first line",
          "unit": "ms",                     # the unit of every number in "values"
          "values": {                       # "podvisor" and the peers that did the same work
            "podvisor":    {"median": 180.0, "spread": 12.0, "n": 15},
            "supervisord": {"median": 420.0, "spread": 30.0, "n": 15}
          },
          "baseline": "supervisord",        # ratio = podvisor / baseline (medians); null: none
          "target": "<= 0.5x supervisord",  # what podvisor must reach, as text; null: none
          "met": true                       # the verdict; null when it cannot be judged
        }
      ],
      "notes": ["..."],                     # said under the table
      "problems": ["..."]                   # what went wrong: leaks, missing peers, failures
    }

Keys of "values": ``podvisor`` (exactly one per figure: a variant of
podvisor is a figure of its own) and any of ``tini``, ``dumb-init``,
``catatonit``, ``supervisord``; any other key (``python -c pass``) is shown
beside the row. A value is a `Stat`; a bare number is read as one sample.
"spread" is the interquartile range (p75 - p25), null for one sample.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import NamedTuple, NotRequired, TypedDict

#: The columns of the merged table, in order.
PODVISOR = "podvisor"
PEERS = ("tini", "dumb-init", "catatonit", "supervisord")

# --- The JSON shape -------------------------------------------------------------------------


class Stat(TypedDict):
    median: float
    spread: float | None  # interquartile range; None for a single sample
    n: int
    p99: NotRequired[float]
    min: NotRequired[float]
    max: NotRequired[float]


class Figure(TypedDict):
    name: str
    unit: str
    values: dict[str, Stat]
    baseline: str | None
    target: str | None
    met: bool | None


class Report(TypedDict):
    benchmark: str
    quick: bool
    machine: dict[str, str]
    figures: list[Figure]
    notes: list[str]
    problems: list[str]


def figure(
    name: str,
    unit: str,
    values: dict[str, Stat],
    *,
    baseline: str | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> Figure:
    return Figure(name=name, unit=unit, values=values, baseline=baseline, target=target, met=met)


def ratio(fig: Figure) -> float | None:
    """podvisor's median over the baseline's, or None when either is missing or zero."""
    ours, base = fig["values"].get(PODVISOR), fig["values"].get(fig["baseline"] or "")
    if ours is None or base is None or base["median"] == 0:
        return None
    return ours["median"] / base["median"]


# --- Statistics -------------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the closest ranks."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p99(samples: Sequence[float]) -> float:
    return percentile(samples, 99)


def spread(samples: Sequence[float]) -> float | None:
    """The interquartile range: robust to the odd slow run a noisy machine gives."""
    if len(samples) < 2:
        return None
    return percentile(samples, 75) - percentile(samples, 25)


def summarize(samples: Iterable[float]) -> Stat:
    values = list(samples)
    return Stat(
        median=median(values),
        spread=spread(values),
        n=len(values),
        p99=p99(values),
        min=min(values),
        max=max(values),
    )


def one(value: float) -> Stat:
    """A figure measured once (a peak, a count over one window)."""
    return Stat(median=value, spread=None, n=1)


# --- The machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on, for the table's caption."""
    return {
        "cpu": _cpu_model(),
        "cores": str(len(os.sched_getaffinity(0))),
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        # Other work on the machine moves the figures: say how busy it was.
        "load": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def describe(info: dict[str, str]) -> str:
    return ", ".join(
        f"{info[k]}" if k in ("cpu", "kernel", "os", "python", "load") else f"{k} {info[k]}"
        for k in ("cpu", "cores", "memory", "kernel", "os", "python", "load")
        if k in info
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"


# --- /proc readings -------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 is [0]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """The process's own utime + stime (all its threads, not its children)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ThreadCounters(NamedTuple):
    switches: int  # voluntary context switches: each is one sleep, so one wake-up
    run_ns: int  # time on a CPU (schedstat), in ns


def thread_counters(pid: int) -> dict[int, ThreadCounters]:
    """Per live thread: wake-ups and CPU time, finer than the clock ticks of /proc/PID/stat."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            run_ns = int((task / "schedstat").read_text().split()[0])
            switches = next(
                int(line.split()[1])
                for line in (task / "status").read_text().splitlines()
                if line.startswith("voluntary_ctxt_switches:")
            )
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # it exited while we looked
        found[int(task.name)] = ThreadCounters(switches, run_ns)
    return found


def thread_deltas(
    before: dict[int, ThreadCounters], after: dict[int, ThreadCounters]
) -> tuple[int, float, int]:
    """(wake-ups, CPU seconds, threads that exited) between two readings.

    A thread that exited took its counters with it: it counts as one wake-up
    (at least), and its CPU time is lost (the figure errs low).
    """
    wakeups, run_ns = 0, 0
    for tid, now in after.items():
        then = before.get(tid, ThreadCounters(0, 0))
        wakeups += now.switches - then.switches
        run_ns += now.run_ns - then.run_ns
    exited = len(before.keys() - after.keys())
    return wakeups + exited, run_ns / 1e9, exited


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of its fields."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set size."""
    return int(status(pid)["VmHWM"].split()[0]) / 1024


def pss_mb(pid: int) -> float:
    """The proportional set size now: shared pages split among the processes sharing them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no Pss in /proc/{pid}/smaps_rollup")


def parent_pid(pid: int) -> int:
    return int(stat_fields(pid)[1])


def _process_tree() -> dict[int, list[int]]:
    """Each process's children, from the parent links in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            tree.setdefault(parent_pid(int(entry.name)), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # it exited while we looked
    return tree


def children(pid: int) -> list[int]:
    return _process_tree().get(pid, [])


def descendants(root: int) -> list[int]:
    """Every living descendant of *root*."""
    tree = _process_tree()
    found, queue = [], [root]
    while queue:
        for child in tree.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def leftover_pod_state(pod_name: str) -> list[str]:
    """Cgroups and network namespaces of a bench pod still there after it stopped."""
    found = [
        f"cgroup {cgroup}"
        for base in own_cgroup_dirs()
        for cgroup in base.glob(f"podvisor-{pod_name}-*")
    ]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"netns {p.name}" for p in netns.iterdir() if pod_name in p.name]
    return found


def own_cgroup_dirs() -> list[Path]:
    """Our cgroup in each mounted hierarchy: where podvisor makes the pod's cgroups."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, root, mountpoint = fields[sep + 1], fields[3], fields[4]
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            key = next((o for o in fields[sep + 3].split(",") if o in own), "")
            if not key:
                continue
        else:
            continue
        relative = own.get(key, "/")
        if root != "/" and relative.startswith(root):
            relative = relative[len(root) :]
        dirs.append(Path(mountpoint) / relative.lstrip("/"))
    return dirs


# --- Running the measured programs ------------------------------------------------------------


def bench_env() -> dict[str, str]:
    """The environment for measured commands: bytecode caching on, as users have it.

    The project's shells often set PYTHONDONTWRITEBYTECODE, which would make every
    start of a Python program compile its modules afresh.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if "PODVISOR_LOG_DIR" not in env:  # the benchmark's pods log to a folder of its own
        env["PODVISOR_LOG_DIR"] = _log_dir()
    return env


@functools.cache
def _log_dir() -> str:
    """A folder for the measured pods' log files, removed when the benchmark ends."""
    path = tempfile.mkdtemp(prefix="podvisor-bench-logs-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def venv_bin(name: str) -> Path:
    """A console script of the virtual environment this interpreter runs in."""
    return Path(sys.executable).parent / name


def progress(benchmark: str, message: str) -> None:
    """A line of progress on stderr: stdout is the JSON's alone."""
    print(f"bench/{benchmark}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM (bench/run's time limit) unwinds like Ctrl-C, so what was started is stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- Tables ----------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """Three significant digits, without an exponent for the sizes benchmarks give."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.2g}" if magnitude < 0.01 else f"{value:.3f}"


def format_stat(stat: Stat, unit: str) -> str:
    """`180 ms ±6.0`: the median, and half the interquartile range when there are runs."""
    text = f"{format_number(stat['median'])} {unit}".rstrip()
    if stat["spread"] is not None:
        text += f" ±{format_number(stat['spread'] / 2)}"
    return text


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: int = 1) -> str:
    """A Markdown table; columns from *numeric* on are right-aligned."""
    rule = ["---" if i < numeric else "---:" for i in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |"
                     for line in lines)  # fmt: skip


def figures_table(figures: Iterable[Figure], columns: Sequence[str]) -> str:
    """One benchmark's figures as Markdown: podvisor and *columns*; other values by the name."""
    rows = []
    for fig in figures:
        values = fig["values"]
        others = [
            f"{k}: {format_stat(v, fig['unit'])}"
            for k, v in values.items()
            if k != PODVISOR and k not in columns
        ]
        name = fig["name"] + (f" ({'; '.join(others)})" if others else "")
        cells = [
            format_stat(values[k], fig["unit"]) if k in values else "—"
            for k in (PODVISOR, *columns)
        ]
        r = ratio(fig)
        verdict = {True: "met", False: "**missed**", None: "not judged"}[fig["met"]]
        rows.append(
            [
                name,
                *cells,
                f"{r:.2f}x {fig['baseline']}" if r is not None else "",
                f"{fig['target']}: {verdict}" if fig["target"] else "",
            ]
        )
    return markdown_table(["figure", PODVISOR, *columns, "ratio", "target"], rows)
