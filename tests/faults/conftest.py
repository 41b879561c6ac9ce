"""The fault-injection suite: fixtures, and the summary printed at the end of the run.

Every scenario records what it did with the `faults` fixture (how many runs,
what it measured, any leak it found); the tests/conftest.py `no_leaks`
fixture adds the machine-wide leaks (processes, cgroups, namespaces, links,
mounts) as teardown errors. At the end of the session the terminal reporter
prints one table, scenarios x runs x failures x leaks, and writes it to
$TMPDIR/podvisor-faults-summary.txt for the README.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults import procfs

SUMMARY_FILE = "podvisor-faults-summary.txt"


@pytest.fixture
def anyio_backend() -> str:
    """trio unless a test picks asyncio with `parametrize("anyio_backend", ...)`."""
    return "trio"


@dataclass
class Record:
    """What one scenario did: filled by the test, read by the summary."""

    runs: int = 0
    figures: dict[str, str] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)

    def figure(self, name: str, value: object) -> None:
        self.figures[name] = str(value)

    def leak(self, what: str, found: object) -> None:
        """Record a leak if *found* is not empty/zero, and fail the test with it."""
        if found:
            self.leaks.append(f"{what}: {found}")
        assert not found, f"{what}: {found}"


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Record]:
    record = Record()
    started = time.monotonic()
    yield record
    request.node.user_properties.append(("faults", record))
    request.node.user_properties.append(("seconds", time.monotonic() - started))


@pytest.fixture
def fd_watch() -> FdWatch:
    return FdWatch()


class FdWatch:
    """A process's open descriptors, sampled over a scenario: they must not grow.

    `sample` at steady points along the way (`steady` is the first); `grown`
    samples once more and compares the usual count of the first half (its
    median) with the fewest seen in the second. The fewest ignores what is
    open for a moment (a probe's pipes, a scrape's connection), and a leak
    raises that floor; the median ignores a descriptor closed for a moment
    early on (one the supervisor replaces), which would lower the first floor.
    """

    def __init__(self) -> None:
        self.counts: dict[int, list[int]] = {}
        self.first: dict[int, dict[int, str]] = {}

    def sample(self, pid: int) -> None:
        self.counts.setdefault(pid, []).append(procfs.fd_count(pid))
        self.first.setdefault(pid, procfs.fd_targets(pid))

    steady = sample

    def grown(self, pid: int, slack: int = 0) -> str:
        """'' when the floor of *pid*'s descriptors did not rise (by more than *slack*)."""
        self.sample(pid)
        counts = self.counts[pid]
        half = len(counts) // 2
        early, late = statistics.median_low(counts[:half]), min(counts[half:])
        if late > early + slack:
            now = procfs.fd_targets(pid)
            new = {fd: what for fd, what in now.items() if self.first[pid].get(fd) != what}
            return (
                f"at least {early} open descriptors early on, at least {late} later "
                f"({counts}); new since the first look: {new}"
            )
        return ""


# --- the summary ------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    outcome: str = "passed"
    runs: int = 0
    seconds: float = 0.0
    leaks: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    foreign: bool = False  # `no_leaks` named only other pods' leftovers


_ROWS: dict[str, Row] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "faults" not in report.keywords or "/faults/" not in report.nodeid.replace("\\", "/"):
        return
    row = _ROWS.setdefault(report.nodeid, Row(report.nodeid.split("::", 1)[-1]))
    for key, value in report.user_properties:
        if key == "faults":
            assert isinstance(value, Record)
            row.runs = value.runs
            row.figures = value.figures
            row.leaks = list(value.leaks)
        elif key == "seconds":
            row.seconds = float(value)  # type: ignore[arg-type]
    if report.skipped and hasattr(report, "wasxfail"):
        row.outcome = "xfailed"
    elif report.skipped:
        row.outcome = "skipped"
    elif (
        report.failed and report.when == "teardown" and "left things behind" in str(report.longrepr)
    ):
        own = _own_leaks(str(report.longrepr))
        row.leaks += own
        if own:
            row.outcome = "error (teardown)"
        else:
            row.foreign = True  # a colleague's pod ended meanwhile: not this scenario's
    elif report.failed:
        row.outcome = "failed" if report.when == "call" else f"error ({report.when})"


def _own_leaks(longrepr: str) -> list[str]:
    """The lines of `no_leaks`' complaint that are ours: our children, our pods' names.

    It compares machine-wide state, so a colleague's pod that ended during
    our test shows up too; those lines are not counted (rerun to be sure).
    """
    said = longrepr.rsplit("left things behind:", 1)[-1]
    lines = [line.removeprefix("E").strip() for line in said.splitlines()]
    return [line for line in lines if "fault-" in line or line.startswith("processes left")]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    lines = summary_lines(list(_ROWS.values()))
    terminalreporter.write_sep("=", "fault-injection summary")
    for line in lines:
        terminalreporter.write_line(line)
    path = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / SUMMARY_FILE
    path.write_text("\n".join(lines) + "\n")
    terminalreporter.write_line(f"(also written to {path})")


def summary_lines(rows: list[Row]) -> list[str]:
    width = max(len(r.scenario) for r in rows)
    out = [f"{'scenario':<{width}}  {'runs':>6}  {'result':<8}  {'leaks':>5}  {'time':>6}  figures"]
    for r in rows:
        figures = ", ".join(f"{k}={v}" for k, v in r.figures.items())
        outcome = r.outcome + ("*" if r.foreign else "")
        out.append(
            f"{r.scenario:<{width}}  {r.runs:>6}  {outcome:<8}  {len(r.leaks):>5}  "
            f"{r.seconds:>5.0f}s  {figures}"
        )
        out += [f"    leak: {leak}" for leak in r.leaks]
    failures = sum(r.outcome not in ("passed", "xfailed", "skipped") for r in rows)
    if any(r.foreign for r in rows):
        out.append(
            "* no_leaks also named leftovers of pods not from this suite (other tests on this "
            "machine): not counted; rerun alone to be sure"
        )
    out.append(
        f"{len(rows)} scenarios, {sum(r.runs for r in rows)} runs, {failures} failures, "
        f"{sum(len(r.leaks) for r in rows)} leaks"
    )
    return out
