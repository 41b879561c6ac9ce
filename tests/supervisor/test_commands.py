"""``podvisor WORD``: a command, tini mode after ``--``, or refused; never a program by accident."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podvisor.init import entry

PODVISOR = Path(sys.executable).with_name("podvisor")


def podvisor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PODVISOR), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("words", "suggested"),
    [
        (["rm", "bundle"], None),
        (["stauts", "bundle"], "status"),
        (["htop", "-d", "5"], "top"),
        (["inspect", "bundle"], None),
        (["get", "pods"], None),
        (["sh", "-c", "rm bundle"], None),
    ],
)
def test_an_unknown_word_is_refused_and_runs_nothing(
    tmp_path: Path, words: list[str], suggested: str | None
) -> None:
    (tmp_path / "bundle").write_text("keep me\n")
    result = podvisor(*words, cwd=tmp_path)
    assert result.returncode == 2
    assert f"unknown command {words[0]!r}" in result.stderr
    assert f"podvisor -- {words[0]}" in result.stderr  # how to run it, if that was meant
    if suggested is not None:
        assert "Did you mean" in result.stderr
        assert suggested in result.stderr
    assert (tmp_path / "bundle").read_text() == "keep me\n"
    assert result.stdout == ""


def test_after_the_inits_options_a_program_needs_the_separator(tmp_path: Path) -> None:
    (tmp_path / "bundle").write_text("keep me\n")
    refused = podvisor("-s", "-g", "rm", "bundle", cwd=tmp_path)
    assert refused.returncode == 2
    assert "podvisor -s -g -- rm bundle" in refused.stderr
    assert (tmp_path / "bundle").exists()

    ran = podvisor("-s", "-g", "--", "rm", "bundle", cwd=tmp_path)
    assert (ran.returncode, ran.stderr) == (0, "")
    assert not (tmp_path / "bundle").exists()


def test_tini_mode_runs_after_the_separator() -> None:
    result = podvisor("--", "sh", "-c", "echo ran; exit 3")
    assert (result.returncode, result.stdout) == (3, "ran\n")
    # The word after -- is the program, even when it names a command.
    named = podvisor("--", "true", "run")
    assert named.returncode == 0


@pytest.mark.parametrize("asked", [["--help"], ["-h"], ["help"]])
def test_help_lists_every_command_with_a_line(asked: list[str]) -> None:
    result = podvisor(*asked)
    assert (result.returncode, result.stderr) == (0, "")
    listed = result.stdout.split("positional arguments:")[1].split("options:")[0]
    for command in entry.SUPERVISOR_COMMANDS:
        line = next(ln for ln in listed.splitlines() if ln.split()[:1] == [command])
        # The description is on the line, or on the next for a long name.
        assert len(line.split()) > 1 or command == "completion", line
    assert "podvisor -- PROGRAM" in result.stdout  # and tini mode


def test_no_words_is_a_usage_error_showing_the_help() -> None:
    result = podvisor()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
    assert result.stdout == ""


def test_help_of_one_command() -> None:
    logs = podvisor("help", "logs")
    assert logs.returncode == 0
    assert logs.stdout.startswith("usage: podvisor logs")
    assert "--tail" in logs.stdout
    check = podvisor("help", "check")
    assert check.returncode == 0
    assert "usage: podvisor check" in check.stdout
    unknown = podvisor("help", "stauts")
    assert unknown.returncode == 2
    assert "status" in unknown.stderr


def test_every_option_has_help_text() -> None:
    import podvisor.supervisor.cli.main as cli
    from podvisor.supervisor.cli import completion

    parser = cli._parser()
    for command in completion.commands(parser):
        sub = next(
            action.choices[command.name]
            for action in parser._actions
            if hasattr(action, "choices") and isinstance(action.choices, dict)
        )
        for action in sub._actions:
            if action.option_strings:
                assert action.help, f"podvisor {command.name} {action.option_strings}"


def test_bash_completion_loads_and_completes() -> None:
    script = podvisor("completion", "bash")
    assert script.returncode == 0
    loaded = subprocess.run(
        ["bash", "-c", f"source <({PODVISOR} completion bash); complete -p podvisor"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.stdout.strip().endswith("-F _podvisor podvisor"), loaded.stderr
    probe = (
        f"source <({PODVISOR} completion bash)\n"
        'COMP_WORDS=(podvisor sta); COMP_CWORD=1; _podvisor; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(podvisor logs web --t); COMP_CWORD=3; _podvisor; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(podvisor completion z); COMP_CWORD=2; _podvisor; echo "${COMPREPLY[@]}"\n'
    )
    completed = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert completed == ["status", "--tail --timestamps", "zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell: str) -> None:
    result = podvisor("completion", shell)
    assert result.returncode == 0
    if shell == "zsh":
        assert result.stdout.startswith("autoload -U +X bashcompinit && bashcompinit\n")
        assert "complete -o default -F _podvisor podvisor" in result.stdout
    else:
        assert "complete -c podvisor -n __fish_use_subcommand -a logs" in result.stdout
        assert "'__fish_seen_subcommand_from logs' -l tail" in result.stdout
    refused = podvisor("completion", "tcsh")
    assert refused.returncode == 2
