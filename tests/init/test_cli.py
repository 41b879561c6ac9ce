"""The command line: tini's flags, usage errors, programs that cannot run, imports."""

from __future__ import annotations

import os
import signal
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

import pytest

from podvisor.init import entry, syscalls, tini
from podvisor.init.tini import Options, UsageError, parse_args
from tests.init.support import INIT, PODVISOR, PODVISOR_INIT, run_init

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# --- Parsing (pure) ------------------------------------------------------------


def test_defaults() -> None:
    assert parse_args(["cmd"], {}) == Options(command=("cmd",))


def test_flags_cluster_and_values_attach_or_follow() -> None:
    options = parse_args(["-vvgsw", "-e3", "-e", "4", "-pSIGKILL", "--pid-ns", "cmd", "a"], {})
    assert options == Options(
        command=("cmd", "a"),
        verbosity=3,
        subreaper=True,
        kill_group=True,
        parent_death_signal=signal.SIGKILL,
        remap_exit=frozenset({3, 4}),
        warn_reaped=True,
        pid_ns=True,
    )


def test_options_stop_at_the_first_operand_or_double_dash() -> None:
    assert parse_args(["-s", "cmd", "-v", "--"], {}).command == ("cmd", "-v", "--")
    assert parse_args(["--", "-v"], {}).command == ("-v",)
    assert parse_args(["-", "x"], {}).command == ("-", "x")


def test_environment_variables() -> None:
    environ = {"TINI_SUBREAPER": "", "TINI_KILL_PROCESS_GROUP": "1", "TINI_VERBOSITY": "3"}
    options = parse_args(["-v", "cmd"], environ)
    assert (options.subreaper, options.kill_group, options.verbosity) == (True, True, 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9", 9),
        ("KILL", 9),
        ("SIGKILL", 9),
        ("sigterm", 15),
        ("SIGRTMIN", signal.SIGRTMIN),
        ("RTMIN+3", signal.SIGRTMIN + 3),
        ("SIGRTMAX", signal.SIGRTMAX),
        ("RTMAX+1", None),
        ("NOPE", None),
        ("0", None),
        ("65", None),
    ],
)
def test_signal_names(text: str, expected: int | None) -> None:
    assert tini.parse_signal(text) == expected


def test_rewrite_pairs() -> None:
    options = parse_args(["--rewrite", "15:10", "--rewrite=HUP:0", "-r", "TERM:SIGINT", "c"], {})
    assert options.rewrite == ((15, 10), (1, 0), (15, 2))


def test_actions() -> None:
    assert parse_args(["--version"], {}).action == "version"
    assert parse_args(["-h"], {}).action == "help"
    assert parse_args(["--help"], {}).action == "help"
    assert parse_args(["-l"], {}).action == "license"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--"],
        ["-v"],
        ["-x", "cmd"],
        ["--bogus", "cmd"],
        ["-e"],
        ["-e", "256", "cmd"],
        ["-e", "x", "cmd"],
        ["-p", "NOPE", "cmd"],
        ["--rewrite", "15", "cmd"],
        ["--rewrite", "15:NOPE", "cmd"],
        ["--pid-ns=yes", "cmd"],
    ],
)
def test_usage_errors(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(args, {})


# --- As a process ----------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--"], ["-x", "true"], ["-e", "999", "true"]])
def test_bad_command_lines_print_usage_and_exit_1(args: list[str]) -> None:
    result = run_init(args)
    assert result.returncode == 1
    assert "Usage: podvisor-init" in result.stderr
    assert result.stdout == ""


def test_help_and_version() -> None:
    helped = run_init(["-h"])
    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("Usage: podvisor-init")
    version = run_init(["--version"], prefix=[str(PODVISOR)])
    assert version.returncode == 0
    assert version.stdout.startswith("podvisor version ")


def test_a_missing_program_exits_127_naming_it() -> None:
    for program in ("/nonexistent/pv-program", "pv-no-such-program-on-path"):
        result = run_init(["--", program, "arg"])
        assert result.returncode == 127
        assert result.stderr.count("\n") == 1
        assert program in result.stderr
        assert "No such file or directory" in result.stderr


def test_a_program_that_cannot_be_executed_exits_126_naming_it(tmp_path: Path) -> None:
    script = tmp_path / "pv-not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    for program in (str(script), str(tmp_path)):
        result = run_init(["--", program])
        assert result.returncode == 126
        assert result.stderr.count("\n") == 1
        assert program in result.stderr
        assert "Permission denied" in result.stderr


def test_a_program_is_found_on_path(tmp_path: Path) -> None:
    script = tmp_path / "pv-hello"
    script.write_text('#!/bin/sh\necho hello "$@"\n')
    script.chmod(0o755)
    result = run_init(["--", "pv-hello", "world"], env={**os.environ, "PATH": str(tmp_path)})
    assert (result.returncode, result.stdout) == (0, "hello world\n")


def test_when_it_cannot_become_a_subreaper_it_says_why_and_carries_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with mock.patch.object(syscalls, "HAVE_PRCTL", new=False):
        assert not tini.become_subreaper(tini.Log("podvisor-init", 1))
    err = capfd.readouterr().err
    assert "cannot become a child subreaper" in err
    assert "not available" in err


# --- Imports -------------------------------------------------------------------

HEAVY = {"trio", "anyio", "pyroute2", "prometheus_client", "yaml", "asyncio", "sniffio"}


def _imported_after_site(
    args: list[str], launch: Sequence[str] = (sys.executable, "-X", "importtime")
) -> set[str]:
    """What ``LAUNCH ARGS`` imported after ``site``, as -X importtime says it."""
    result = run_init(args, prefix=launch)
    assert result.returncode == 0, result.stderr
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "site" in names
    return set(names[names.index("site") + 1 :])


@pytest.mark.parametrize(
    "prefix", [["-m", "podvisor.init"], [str(PODVISOR)]], ids=["podvisor-init", "podvisor"]
)
def test_tini_mode_imports_only_the_standard_library(prefix: list[str]) -> None:
    imported = _imported_after_site([*prefix, "--", "true"])
    tops = {name.split(".")[0] for name in imported}
    assert not tops & HEAVY
    assert not {name for name in imported if name.startswith("podvisor.supervisor")}
    assert tops - {"podvisor"} <= set(sys.stdlib_module_names)


#: Everything tini mode may import once the interpreter has started: its own
#: four modules and two small ones of the standard library; ``_ctypes`` (for
#: prctl) only where the init is not PID 1. Not ``signal`` (its enums), not
#: ``ctypes``, not ``importlib`` (it imports ``warnings``).
TINI_MODE_MODULES = {
    "podvisor",
    "podvisor.init",
    "podvisor.init.entry",
    "podvisor.init.tini",
    "podvisor.init.process",
    "podvisor.init.syscalls",
    "__future__",
    "errno",
}
NOT_PID_1_MODULES = {"_ctypes"}


@pytest.mark.parametrize("script", [PODVISOR_INIT, PODVISOR], ids=["podvisor-init", "podvisor"])
@pytest.mark.parametrize("pid_1", [False, True], ids=["subreaper", "pid-1"])
def test_tini_mode_imports_these_modules_and_no_more(script: Path, pid_1: bool) -> None:
    launch = ["unshare", "--pid", "--fork", "--kill-child"] if pid_1 else []
    imported = _imported_after_site(
        [str(script), "--", "true"], [*launch, sys.executable, "-X", "importtime"]
    )
    allowed = TINI_MODE_MODULES if pid_1 else TINI_MODE_MODULES | NOT_PID_1_MODULES
    assert imported <= allowed
    assert {"podvisor.init.tini", "podvisor.init.process"} <= imported  # it did run tini mode
    assert pid_1 or "_ctypes" in imported  # and, not PID 1, made itself a subreaper


# --- Dispatch --------------------------------------------------------------------


@pytest.fixture
def no_renaming() -> Iterator[mock.MagicMock]:
    # The console scripts rename the process; not pytest's, please.
    with mock.patch.object(syscalls, "set_process_name") as rename:
        yield rename


def test_podvisor_subcommands_go_to_the_supervisor(
    monkeypatch: pytest.MonkeyPatch, no_renaming: mock.MagicMock
) -> None:
    seen: list[list[str]] = []
    cli = types.ModuleType("podvisor.supervisor.cli.main")

    def cli_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 3

    cli.main = cli_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "podvisor.supervisor.cli.main", cli)
    assert entry.main(["run", "pod.yaml"]) == 3
    assert seen == [["run", "pod.yaml"]]
    assert {"run", "check", "ps", "logs", "exec", "version"} <= entry.SUPERVISOR_COMMANDS


def test_channel_goes_to_the_pod_init(
    monkeypatch: pytest.MonkeyPatch, no_renaming: mock.MagicMock
) -> None:
    seen: list[list[str]] = []
    podinit = types.ModuleType("podvisor.init.podinit")

    def serve(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    podinit.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "podvisor.init.podinit", podinit)
    assert entry.init_main(["--channel", "5"]) == 0
    assert seen == [["--channel", "5"]]


def test_options_first_are_tini_mode(
    no_renaming: mock.MagicMock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert entry.main(["--version"]) == 0
    assert entry.init_main(["-h"]) == 0
    assert "Usage: podvisor-init" in capsys.readouterr().out
    no_renaming.assert_called_with("podvisor-init")


def test_the_commands_are_the_parsers() -> None:
    import podvisor.supervisor.cli.main as cli

    assert set(cli._commands()) == entry.SUPERVISOR_COMMANDS


def test_the_init_is_named_podvisor_init() -> None:
    result = run_init(["--", "sh", "-c", "cat /proc/$PPID/comm"], prefix=[*INIT])
    assert (result.returncode, result.stdout) == (0, "podvisor-init\n")
