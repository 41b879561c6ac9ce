"""podvisor-init against tini, dumb-init and catatonit, on the same work, in one run.

Usage::

    .venv/bin/python bench/init.py [--quick] [--json]

What it measures, for each init (missing ones are reported as n/a):

start
    Wall time of ``INIT -- /bin/true``, median of many runs, the inits taking
    turns so that machine noise hits them alike. Python's own ``python -c
    pass`` (the interpreter podvisor-init runs on) is measured the same way:
    the target is at most 1.5x that.
reap
    Each init runs as PID 1 of a fresh PID namespace (``unshare --pid
    --fork``), under a child whose helper forks 10,000 processes and exits;
    they are then orphans of the init, and they all exit at once. The child
    exits when the last of them has. Reported: the time until the init has
    exited (the namespace is then empty by construction) and, of that, the
    time from the orphans' release to the init's exit. The total is mostly
    the helper's 10,000 forks, the same work whatever the init, and on a
    shared machine its noise swamps the init's part; so the target (at most
    1.2x tini's) is checked on the second figure, the init's own reaping.
latency
    Median time from ``kill(init, SIGUSR1)`` to the child taking the signal
    (it waits in sigwaitinfo and writes CLOCK_MONOTONIC to a pipe; the clock
    is the same for the benchmark). Target: at most 1 ms.
rss
    The init's peak resident set (VmHWM) after the latency run. Target: at
    most 10 MB. The bare interpreter's own figure is printed beside it.

Python bytecode caching is turned on for the measured commands (the
project's shells often set PYTHONDONTWRITEBYTECODE, which would make every
start compile podvisor's modules afresh), and each init is run once first.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PYTHON = str(Path(sys.executable))

#: How each init is asked to run a command (tini needs -s when not PID 1).
INITS: dict[str, list[str]] = {
    "podvisor-init": [str(BIN / "podvisor-init"), "--"],
    "tini": ["tini", "-s", "--"],
    "dumb-init": ["dumb-init", "--"],
    "catatonit": ["catatonit", "--"],
}

#: The reaping child: a helper forks N processes that block on a pipe only
#: the helper can close, then exits. Its children are now the init's orphans,
#: and all see end-of-file and exit. The child prints when it released them,
#: and exits when the last has exited (the last holder of `gone_w` is gone).
ORPHANS = r"""
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
    os._exit(0)
os.close(hold_w)
os.close(hold_r)
os.close(gone_w)
os.waitpid(helper, 0)
os.write(1, f"{time.monotonic_ns()}\n".encode())
os.read(gone_r, 1)
"""

#: The latency child: takes SIGUSR1 with sigwaitinfo and writes the time.
LATENCY = r"""
import os, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.write(1, b"ready\n")
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    os.write(1, f"{time.monotonic_ns()}\n".encode())
"""


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def available() -> dict[str, list[str]]:
    return {name: argv for name, argv in INITS.items() if shutil.which(argv[0])}


# --- Start overhead ---------------------------------------------------------------


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit, with as little overhead of our own as we can."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} exited with {status}")
    return elapsed


def bench_start(inits: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, float]:
    commands = {name: [*_resolve(argv), "/bin/true"] for name, argv in inits.items()}
    commands["python -c pass"] = [PYTHON, "-c", "pass"]
    for argv in commands.values():
        run_once(argv, env)  # warm caches, write bytecode
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(run_once(argv, env))
    return {name: statistics.median(values) for name, values in times.items()}


def python_rss_mb(env: dict[str, str]) -> float:
    """The bare interpreter's own VmHWM, read by itself at its end.

    Not wait4's ru_maxrss: after posix_spawn (vfork) that also counts the
    high-water mark of the spawning process's memory, i.e. this benchmark's.
    """
    code = "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


def _resolve(argv: list[str]) -> list[str]:
    path = shutil.which(argv[0])
    assert path is not None
    return [path, *argv[1:]]


# --- Reaping ------------------------------------------------------------------------


def bench_reap(argv: list[str], orphans: int, env: dict[str, str]) -> tuple[float, float]:
    """(seconds until the init exited, seconds from releasing the orphans to that)."""
    command = ["unshare", "--pid", "--fork", "--kill-child", *argv, PYTHON, "-c", ORPHANS]
    started = time.monotonic_ns()
    proc = subprocess.Popen([*command, str(orphans)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    released = int(proc.stdout.readline())
    proc.stdout.read()
    code = proc.wait()
    ended = time.monotonic_ns()
    if code != 0:
        raise RuntimeError(f"{command} exited with {code}")
    return (ended - started) / 1e9, (ended - released) / 1e9


# --- Signal latency and RSS ---------------------------------------------------------------


def bench_latency(argv: list[str], signals: int, env: dict[str, str]) -> tuple[float, float]:
    """(median seconds from kill to the child taking SIGUSR1, the init's VmHWM in MB)."""
    proc = subprocess.Popen(
        [*argv, PYTHON, "-c", LATENCY], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        if _read_line(fd) != b"ready":
            raise RuntimeError(f"{argv}: the latency child did not start")
        samples = []
        for _ in range(signals):
            sent = time.monotonic_ns()
            os.kill(proc.pid, signal.SIGUSR1)
            samples.append((int(_read_line(fd)) - sent) / 1e9)
        rss = _peak_rss_mb(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
    return statistics.median(samples), rss


def _read_line(fd: int, timeout: float = 30.0) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        if not select.select([fd], [], [], timeout)[0]:
            raise RuntimeError("no answer from the latency child")
        chunk = os.read(fd, 1)
        if not chunk:
            raise RuntimeError("the latency child ended")
        data += chunk
    return data.strip()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


# --- Report ------------------------------------------------------------------------------


def measure(quick: bool) -> dict[str, object]:
    env = bench_env()
    inits = available()
    start_runs, signals, reap_runs = (20, 50, 1) if quick else (100, 300, 3)
    orphans = 10_000
    start = bench_start(inits, start_runs, env)
    python_rss = python_rss_mb(env)
    results: dict[str, dict[str, float]] = {}
    for name, argv in inits.items():
        reaps = [bench_reap(_resolve(argv), orphans, env) for _ in range(reap_runs)]
        latency, rss = bench_latency(_resolve(argv), signals, env)
        results[name] = {
            "start_s": start[name],
            "reap_total_s": statistics.median(r[0] for r in reaps),
            "reap_after_release_s": statistics.median(r[1] for r in reaps),
            "latency_s": latency,
            "peak_rss_mb": rss,
        }
    return {
        "machine": f"{os.cpu_count()} CPUs, {os.uname().release}",
        "python": sys.version.split()[0],
        "python_c_pass_s": start["python -c pass"],
        "python_c_pass_rss_mb": python_rss,
        "runs": {"start": start_runs, "signals": signals, "reap": reap_runs, "orphans": orphans},
        "inits": results,
        "missing": sorted(set(INITS) - set(inits)),
    }


ROWS = [
    ("start (`INIT -- /bin/true`, median)", "start_s", 1e3, "ms"),
    ("reap 10,000 orphans: until the init exits", "reap_total_s", 1.0, "s"),
    ("reap: from the orphans' release to exit", "reap_after_release_s", 1e3, "ms"),
    ("signal latency (median)", "latency_s", 1e6, "µs"),
    ("peak RSS (VmHWM)", "peak_rss_mb", 1.0, "MB"),
]


def markdown(report: dict[str, object]) -> str:
    inits = report["inits"]
    assert isinstance(inits, dict)
    names = list(inits)
    lines = [
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, scale, unit in ROWS:
        cells = [_cell(inits, name, key, scale, unit) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    python_pass, python_rss = report["python_c_pass_s"], report["python_c_pass_rss_mb"]
    assert isinstance(python_pass, float)
    assert isinstance(python_rss, float)
    lines.append("")
    lines.append(
        f"Ratios in brackets are to tini. `python -c pass` on the same interpreter: "
        f"{python_pass * 1e3:.1f} ms, peak RSS {python_rss:.1f} MB."
    )
    if "podvisor-init" in inits:
        lines.extend(_targets(inits, python_pass))
    return "\n".join(lines)


def _cell(inits: dict[str, dict[str, float]], name: str, key: str, scale: float, unit: str) -> str:
    value = inits[name][key]
    text = f"{value * scale:.3g} {unit}" if value * scale < 100 else f"{value * scale:.0f} {unit}"
    if "tini" in inits and name != "tini" and inits["tini"][key] > 0:
        text += f" ({value / inits['tini'][key]:.2f}x)"
    return text


def _targets(inits: dict[str, dict[str, float]], python_pass: float) -> list[str]:
    ours = inits["podvisor-init"]
    checks = [
        ("start <= 1.5x python -c pass", ours["start_s"] / python_pass, 1.5, "x"),
        ("peak RSS <= 10 MB", ours["peak_rss_mb"], 10.0, " MB"),
        ("median signal latency <= 1 ms", ours["latency_s"] * 1e3, 1.0, " ms"),
    ]
    if "tini" in inits:
        ratio = ours["reap_after_release_s"] / inits["tini"]["reap_after_release_s"]
        checks.insert(1, ("reaping (release to exit) <= 1.2x tini", ratio, 1.2, "x"))
    lines = ["", "Targets for podvisor-init:", ""]
    for label, value, limit, unit in checks:
        verdict = "met" if value <= limit else "MISSED"
        lines.append(f"- {label}: {value:.2f}{unit}, {verdict}")
    return lines


def main(argv: list[str]) -> int:
    unknown = set(argv) - {"--quick", "--json"}
    if unknown:
        print(f"usage: {sys.argv[0]} [--quick] [--json]", file=sys.stderr)
        return 2
    report = measure(quick="--quick" in argv)
    print(json.dumps(report, indent=2) if "--json" in argv else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
