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
def fd_watch() -> Iterator[FdWatch]:
    yield FdWatch()


class FdWatch:
    """A process's open descriptors at a steady point, and later: they must not grow."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}

    def steady(self, pid: int) -> None:
        self.first[pid] = procfs.fd_count(pid)

    def grown(self, pid: int, slack: int = 0) -> str:
        """'' when *pid* has no more descriptors than at `steady` (+ *slack*), else why."""
        now = procfs.fd_count(pid)
        if now > self.first[pid] + slack:
            return f"{self.first[pid]} open descriptors at the steady point, {now} later"
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
    elif report.failed:
        row.outcome = "failed" if report.when == "call" else f"error ({report.when})"
        if report.when == "teardown" and "left things behind" in str(report.longrepr):
            row.leaks.append(str(report.longrepr).rsplit("left things behind:", 1)[-1].strip())


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
        out.append(
            f"{r.scenario:<{width}}  {r.runs:>6}  {r.outcome:<8}  {len(r.leaks):>5}  "
            f"{r.seconds:>5.0f}s  {figures}"
        )
        out += [f"    leak: {leak}" for leak in r.leaks]
    failures = sum(r.outcome not in ("passed", "xfailed", "skipped") for r in rows)
    out.append(
        f"{len(rows)} scenarios, {sum(r.runs for r in rows)} runs, {failures} failures, "
        f"{sum(len(r.leaks) for r in rows)} leaks"
    )
    return out
