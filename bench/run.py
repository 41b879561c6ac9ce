"""Every benchmark in one go, one table: podvisor beside tini, dumb-init, catatonit, supervisord.

Usage::

    bench/run [--quick] [--json] [--only init,pod,metrics]

Each benchmark is a file of this folder, run as ``python bench/X.py --json
[--quick]`` in a process group of its own; its JSON (the shape is in
bench/common.py) becomes rows of the table. A benchmark that is missing,
fails, prints no usable JSON or overruns its time is reported as such and the
others still run. The whole run stays within 10 minutes on a 2-core machine
(``--quick``: within 5.5, in practice about 3).

This process is a child subreaper: a supervisor a killed benchmark left
behind comes back to it and is stopped (SIGTERM, so that podvisor removes its
cgroups and network namespaces, then SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Any

# `bench` is a folder, not an installed package: reach it from the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.common import PEERS, PODVISOR, Figure, Stat
from podvisor.init import syscalls

HERE = Path(__file__).resolve().parent

#: The benchmarks in the order they run, with their time limits (full, quick) in seconds.
#: The full limits add up to 9.5 minutes, within the 10 a whole run may take.
BENCHMARKS: dict[str, tuple[float, float]] = {
    "init": (190.0, 120.0),
    "pod": (180.0, 120.0),
    "metrics": (200.0, 120.0),
}
TOTAL_LIMIT = (570.0, 330.0)
STOP_GRACE = 15.0

#: Where each peer comes from.
PEER_SOURCES = {
    "tini": "Debian package tini",
    "dumb-init": "Debian package dumb-init",
    "catatonit": "Debian package catatonit",
    "supervisord": "PyPI package supervisor, in .venv",
}
INSTALL_HINT = (
    "install the missing peers with scripts/setup (or `make setup`): it runs "
    "`apt-get install tini dumb-init catatonit` and `.venv/bin/pip install -e '.[dev,bench]'` "
    "(supervisor comes with the bench extra)"
)


# --- The peers ---------------------------------------------------------------------------------


def peer_path(name: str) -> str | None:
    if name == "supervisord":
        path = common.venv_bin("supervisord")
        return str(path) if path.exists() else None
    return shutil.which(name)


def peer_version(path: str) -> str:
    """The first line a peer prints for --version (tini and dumb-init use stderr)."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "version unknown"


def check_peers() -> tuple[dict[str, str], list[str]]:
    """{peer: version} of those installed, and a problem line per missing one."""
    found, missing = {}, []
    for name in PEERS:
        path = peer_path(name)
        if path is None:
            missing.append(f"{name} is not installed ({PEER_SOURCES[name]}): its column is empty")
        else:
            found[name] = peer_version(path)
    return found, missing


# --- Running one benchmark --------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    report: dict[str, Any] | None = None
    failure: str | None = None  # why there is no report
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def run_benchmark(name: str, quick: bool, limit: float) -> Outcome:
    script = HERE / f"{name}.py"
    if not script.exists():
        return Outcome(name, failure=f"missing: {script.relative_to(HERE.parent)} does not exist")
    argv = [sys.executable, str(script), "--json", *(["--quick"] if quick else [])]
    _progress(f"{name}: {' '.join(argv[1:])} (at most {limit:.0f} s)")
    began = time.monotonic()
    # stdout to a file: a pipe nobody reads while we wait would stall a large JSON.
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=HERE.parent,
            env=common.bench_env(),
            start_new_session=True,  # so that a benchmark overrunning its time is stopped whole
        )
        tail, pump = _echo_stderr(process, name)
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            outcome = Outcome(name, failure=f"timed out after {limit:.0f} s: {_join(tail)}")
        except BaseException:
            _stop_group(process)
            raise
        else:
            pump.join(timeout=5)
            stdout.seek(0)
            outcome = _parse(name, process.returncode, stdout.read(), tail)
    outcome.seconds = time.monotonic() - began
    outcome.problems += [f"{name}: {p}" for p in stop_leftovers()]
    return outcome


def _echo_stderr(process: subprocess.Popen[bytes], name: str) -> tuple[deque[str], Thread]:
    """Pass the benchmark's progress through as it comes, and keep its last lines."""
    tail: deque[str] = deque(maxlen=5)
    stream = process.stderr
    assert stream is not None

    def pump() -> None:
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                tail.append(line)
                print(f"  [{name}] {line}", file=sys.stderr, flush=True)

    thread = Thread(target=pump, daemon=True)
    thread.start()
    return tail, thread


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the benchmark's group (it stops its pods), then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE)
            return


def _parse(name: str, status: int, stdout: bytes, tail: deque[str]) -> Outcome:
    text = stdout.decode(errors="replace")
    start = text.find("{")
    try:
        report = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        return Outcome(name, failure=f"exit {status}, unreadable JSON ({exc}): {_join(tail)}")
    if not isinstance(report, dict) or not isinstance(report.get("figures"), list):
        return Outcome(name, failure=f"exit {status}, no `figures` in its JSON: {_join(tail)}")
    outcome = Outcome(name, report=report)
    if status != 0:
        outcome.problems.append(f"{name}: exited with {status}")
    return outcome


def _join(lines: deque[str]) -> str:
    return " / ".join(lines) or "(nothing on stderr)"


def stop_leftovers() -> list[str]:
    """Stop what a benchmark left behind; it came back to us, the subreaper."""
    found = {pid: " ".join(common.cmdline(pid))[:80] for pid in common.children(os.getpid())}
    left = list(found)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + STOP_GRACE
        while left and time.monotonic() < deadline:
            left = [pid for pid in left if not _reaped(pid)]
            time.sleep(0.1)
    return [f"left process {pid} ({command}) behind; stopped it" for pid, command in found.items()]


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


# --- The table --------------------------------------------------------------------------------


def _stat(value: object) -> Stat | None:
    """A value as a Stat: a bare number is one sample; anything else is not a figure."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return common.one(float(value))
    if isinstance(value, dict) and isinstance(value.get("median"), int | float):
        n = value.get("n", 1)
        spread = value.get("spread")
        return Stat(
            median=float(value["median"]),
            spread=float(spread) if isinstance(spread, int | float) else None,
            n=int(n) if isinstance(n, int) else 1,
        )
    return None


def read_figure(raw: object) -> Figure | None:
    """A figure of a benchmark's JSON, checked; None when it is not one."""
    if not isinstance(raw, dict) or not isinstance(raw.get("values"), dict):
        return None
    values = {str(k): s for k, v in raw["values"].items() if (s := _stat(v)) is not None}
    met = raw.get("met")
    baseline, target = raw.get("baseline"), raw.get("target")
    return common.figure(
        str(raw.get("name", "?")),
        str(raw.get("unit", "")),
        _with_podvisor_key(values),
        baseline=baseline if isinstance(baseline, str) else None,
        target=target if isinstance(target, str) else None,
        met=met if isinstance(met, bool) else None,
    )


def _with_podvisor_key(values: dict[str, Stat]) -> dict[str, Stat]:
    """`podvisor-init` and the like stand in the podvisor column when alone there."""
    ours = [k for k in values if k.startswith(PODVISOR)]
    if PODVISOR not in values and len(ours) == 1:
        values = {(PODVISOR if k == ours[0] else k): v for k, v in values.items()}
    return values


def figure_row(benchmark: str, fig: Figure) -> list[str]:
    values = fig["values"]
    others = [
        f"{k}: {common.format_stat(v, fig['unit'])}"
        for k, v in values.items()
        if k != PODVISOR and k not in PEERS
    ]
    name = fig["name"] + (f" ({'; '.join(others)})" if others else "")
    cells = [
        common.format_stat(values[k], fig["unit"]) if k in values else "—"
        for k in (PODVISOR, *PEERS)
    ]
    r = common.ratio(fig)
    ratio = f"{r:.2f}x {fig['baseline']}" if r is not None else ""
    verdict = {True: "met", False: "**missed**", None: "not judged"}[fig["met"]]
    target = f"{fig['target']}: {verdict}" if fig["target"] else ""
    return [benchmark, name, *cells, ratio, target]


def table(outcomes: list[Outcome]) -> str:
    rows = []
    for outcome in outcomes:
        if outcome.report is None:
            rows.append([outcome.name, f"*{outcome.failure}*", *[""] * (len(PEERS) + 3)])
            continue
        for raw in outcome.report["figures"]:
            fig = read_figure(raw)
            if fig is None:
                outcome.problems.append(f"{outcome.name}: a figure that is not one: {raw!r:.80}")
            else:
                rows.append(figure_row(outcome.name, fig))
    header = ["benchmark", "figure", PODVISOR, *PEERS, "ratio", "target"]
    return common.markdown_table(header, rows, numeric=2)


def markdown(
    outcomes: list[Outcome], peers: dict[str, str], missing: list[str], quick: bool, took: float
) -> str:
    command = "bench/run" + (" --quick" if quick else "")
    versions = "; ".join(f"{name}: {version}" for name, version in peers.items()) or "none"
    lines = [
        f"Measured with `{command}` on {time.strftime('%Y-%m-%d')} in {took:.0f} s.",
        f"Machine: {common.describe(common.machine())}.",
        f"Peers: {versions}.",
        "",
        table(outcomes),
        "",
        (
            "Each cell: the median, ± half the interquartile range over the runs (no ± for a "
            "figure measured once). Ratio: podvisor's median over the named peer's. "
            "— : the peer does not do this work, or is not installed."
        ),
    ]
    notes = [n for o in outcomes if o.report for n in o.report.get("notes", [])]
    lines += ["", *[f"- {n}" for n in notes]] if notes else []
    problems = [
        f"{o.name}: {p}" for o in outcomes if o.report for p in o.report.get("problems", [])
    ]
    problems += [p for o in outcomes for p in o.problems] + missing
    lines += ["", "Problems:", *[f"- {p}" for p in problems]] if problems else []
    return "\n".join(lines)


def merged_json(
    outcomes: list[Outcome], peers: dict[str, str], missing: list[str], quick: bool, took: float
) -> str:
    return json.dumps(
        {
            "quick": quick,
            "seconds": round(took, 1),
            "machine": common.machine(),
            "peers": peers,
            "benchmarks": {
                o.name: o.report if o.report is not None else {"failure": o.failure}
                for o in outcomes
            },
            "problems": [p for o in outcomes for p in o.problems] + missing,
        },
        indent=2,
    )


# --- Main --------------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"bench/run: {message}", file=sys.stderr, flush=True)


def _chosen(only: str | None) -> list[str]:
    if only is None:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"bench/run: unknown benchmark {unknown}; known: {list(BENCHMARKS)}")
    return names


def run_all(names: list[str], quick: bool, began: float) -> list[Outcome]:
    """Each benchmark in turn, within its own limit and what is left of the run's."""
    total = TOTAL_LIMIT[quick]
    outcomes = []
    for name in names:
        left = total - (time.monotonic() - began)
        if left < 10:
            outcomes.append(Outcome(name, failure="skipped: no time left of the run's limit"))
            continue
        outcomes.append(run_benchmark(name, quick, min(BENCHMARKS[name][quick], left)))
        _progress(f"{name}: done in {outcomes[-1].seconds:.0f} s")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (a few minutes)")
    parser.add_argument("--json", action="store_true", help="print every result as one JSON")
    parser.add_argument("--only", help="comma-separated benchmarks: " + ",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    names = _chosen(args.only)
    if os.geteuid() != 0:
        _progress("not root: the pod and metrics benchmarks will fail (namespaces, cgroups)")
    peers, missing = check_peers()
    for line in missing:
        _progress(line)
    if missing:
        _progress(INSTALL_HINT)
    # A supervisor that a killed benchmark leaves behind comes back to us, to be stopped.
    syscalls.set_child_subreaper()
    began = time.monotonic()
    try:
        with common.terminated_as_interrupt():
            outcomes = run_all(names, args.quick, began)
    except KeyboardInterrupt:
        _progress("interrupted; the running benchmark was stopped")
        return 130
    took = time.monotonic() - began
    render = merged_json if args.json else markdown
    print(render(outcomes, peers, missing, args.quick, took))
    return 0 if all(o.report is not None for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
