"""How the commands print: ages, quantities, durations, aligned and coloured tables."""

from __future__ import annotations

import io

import pytest

from podvisor.supervisor.cli import output as out
from podvisor.supervisor.cli.commands import Unreachable, _ps_table, _signal_number, _status_text
from podvisor.supervisor.control.wire import ContainerRow, PodSummary, StatusReply, Termination


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-3, "0s"), (0, "0s"), (59.9, "59s"), (192, "3m12s"), (3600, "1h0m"),
     (5 * 3600 + 4 * 60 + 59, "5h4m"), (2 * 86400 + 3 * 3600, "2d3h")],
)  # fmt: skip
def test_ages_read_as_kubectls(seconds: float | None, text: str) -> None:
    assert out.age(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert out.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "5 m", "1x", "m5", "1h 30m", "-5s"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        out.parse_duration(text)


def test_quantities() -> None:
    assert [out.memory(n) for n in (None, 0, 1023, 2048, 45 << 20, 3 << 30)] == [
        "-", "0", "1023", "2.0Ki", "45Mi", "3.0Gi",
    ]  # fmt: skip
    assert [out.cores(c) for c in (None, 0, 0.0004, 0.12, 1, 1.5, 2.25)] == [
        "-", "0m", "0m", "120m", "1", "1.5", "2.25",
    ]  # fmt: skip
    assert out.against("45Mi", "128Mi") == "45Mi/128Mi"
    assert out.against("45Mi", None) == "45Mi"
    assert out.percent(32, 128) == " (25%)"
    assert out.percent(32, None) == ""


def test_signals_by_name_or_number() -> None:
    assert [_signal_number(s) for s in ("KILL", "sigterm", "hup", "9")] == [9, 15, 1, 9]
    for bad in ("NOPE", "0", "99", "-1"):
        with pytest.raises(ValueError, match="not a signal"):
            _signal_number(bad)


def test_tables_align_on_what_is_seen_and_colour_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    rows = [["web", "Running", "2/2"], ["db-primary", "CrashLoopBackOff", "0/1"]]
    plain = out.table(("NAME", "STATUS", "READY"), rows, out.Style(io.StringIO()))
    assert plain.splitlines() == [
        "NAME         STATUS             READY",
        "web          Running            2/2",
        "db-primary   CrashLoopBackOff   0/1",
    ]
    painted = out.table(("NAME", "STATUS", "READY"), rows, out.Style(Terminal()))
    assert "web          \x1b[32mRunning         \x1b[0m   2/2" in painted
    assert "\x1b[31mCrashLoopBackOff\x1b[0m" in painted
    assert _strip(painted) == plain
    monkeypatch.setenv("NO_COLOR", "1")
    assert out.table(("NAME", "STATUS", "READY"), rows, out.Style(Terminal())) == plain
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert out.table(("NAME", "STATUS", "READY"), rows, out.Style(Terminal())) == plain


def _strip(text: str) -> str:
    for code in ("\x1b[32m", "\x1b[31m", "\x1b[0m"):
        text = text.replace(code, "")
    return "\n".join(line.rstrip() for line in text.splitlines())


NOW = 1_000_000.0


def test_ps_explains_the_pods_it_cannot_read() -> None:
    pods: list[PodSummary | Unreachable] = [
        PodSummary(name="web", uid="u1", phase="Running", status="Running", ready=2,
                   containers=2, restarts=1, start_time=NOW - 192, pod_ip="10.88.0.2",
                   metrics="127.0.0.1:9464", supervisor_pid=7, owner_uid=0),
        Unreachable(name="db", status="Unknown", error="permission denied: use sudo"),
    ]  # fmt: skip
    text = _ps_table(pods, out.Style(io.StringIO()), NOW)
    assert text.splitlines() == [
        "NAME   STATUS    READY   RESTARTS   AGE     IP          METRICS",
        "web    Running   2/2     1          3m12s   10.88.0.2   127.0.0.1:9464",
        "db     Unknown   -       -          -       -           -",
        "db: permission denied: use sudo",
    ]


def test_status_says_what_the_last_termination_was() -> None:
    pod = PodSummary(name="web", uid="u1", phase="Running", status="Running", ready=1,
                     containers=2, restarts=4, start_time=NOW - 600, pod_ip=None, metrics=None,
                     supervisor_pid=7, owner_uid=0)  # fmt: skip
    app = ContainerRow(
        name="app", kind="main", state="waiting", reason="CrashLoopBackOff",
        message="back-off 20s restarting failed container=app", ready=False, started=False,
        restarts=4, started_at=None, pid=None, paused=False,
        last_termination=Termination(reason="OOMKilled", exit_code=137, signal=9, message="",
                                     started_at=None, finished_at=NOW - 5),
        cpu_cores=None, cpu_seconds=None, cpu_limit_cores=None, memory_bytes=0,
        memory_limit_bytes=64 << 20, pids=0, pids_max=100,
    )  # fmt: skip
    found = StatusReply(pod, (app,))
    lines = _status_text(found, out.Style(io.StringIO()), NOW).splitlines()
    assert lines[:3] == [
        "Pod:       web",
        "Status:    Running   ready 1/2   restarts 4   up 10m0s",
        "IP:        -   metrics -   supervisor pid 7",
    ]
    assert lines[5].split() == [
        "app", "main", "Waiting", "CrashLoopBackOff", "no", "4",
        "OOMKilled", "(exit", "137,", "signal", "9)", "5s", "ago",
        "-", "-", "-",
    ]  # fmt: skip
    assert lines[6] == "app: back-off 20s restarting failed container=app"
