"""``podvisor completion bash|zsh|fish``: shell completion scripts.

The scripts are written from the command line's own parser, so a command or
an option added there completes without a second list to keep. A word in a
POD position completes to the names `podvisor ps` lists, a MANIFEST to files.
zsh loads the bash script through its ``bashcompinit`` layer.
"""

from __future__ import annotations

import argparse
import shlex

from podvisor.supervisor.frozen import frozen

#: What a command's first positional word is, by its metavar.
POD_WORDS = frozenset({"POD"})
FILE_WORDS = frozenset({"manifest", "FILE"})
#: The names of the running pods, one a line (the first column of `podvisor ps`).
PODS = "podvisor ps 2>/dev/null | awk 'NR > 1 {print $1}'"


@frozen
class Command:
    """What completes after one command: its options and what its first word is."""

    name: str
    summary: str
    options: tuple[str, ...]
    #: "pods", "files", a fixed list of words, or nothing.
    operand: str | tuple[str, ...] | None


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The commands of *parser* (``podvisor``'s), in the order its help lists them."""
    found = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        summaries = {choice.dest: str(choice.help) for choice in action._choices_actions}
        for name, sub in action.choices.items():
            found.append(_command(name, summaries.get(name, ""), sub, list(action.choices)))
    return found


def _command(name: str, summary: str, parser: argparse.ArgumentParser, names: list[str]) -> Command:
    options: list[str] = []
    operand: str | tuple[str, ...] | None = None
    for action in parser._actions:
        if action.option_strings:
            options += action.option_strings
        elif operand is None:
            operand = _operand(action, names)
    if name == "check":  # its options are its own parser's, read when it runs
        options += ["-o", "--output", "-h", "--help"]
        operand = "files"
    return Command(name, summary, tuple(options), operand)


def _operand(action: argparse.Action, names: list[str]) -> str | tuple[str, ...] | None:
    metavar = action.metavar or action.dest
    if metavar in POD_WORDS:
        return "pods"
    if metavar in FILE_WORDS:
        return "files"
    if metavar == "COMMAND":
        return tuple(names)
    if action.choices is not None:
        return tuple(str(choice) for choice in action.choices)
    return None


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for *shell* ("bash", "zsh" or "fish")."""
    found = commands(parser)
    if shell == "fish":
        return _fish(found)
    text = _bash(found)
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + text
    return text


def _bash(found: list[Command]) -> str:
    names = " ".join(c.name for c in found)
    cases = []
    for c in found:
        words = f"opts={shlex.quote(' '.join(c.options))}"
        if c.operand == "pods":
            operand = f"words=$({PODS})"
        elif c.operand == "files":
            operand = "files=1"
        elif isinstance(c.operand, tuple):
            operand = f"words={shlex.quote(' '.join(c.operand))}"
        else:
            operand = ":"
        cases.append(f"        {c.name}) {words}; {operand} ;;")
    body = "\n".join(cases)
    return f"""\
# podvisor's completion for bash: source <(podvisor completion bash)
_podvisor() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} opts="" words="" files=0
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{names}" -- "$cur"))
        return
    fi
    case ${{COMP_WORDS[1]}} in
{body}
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [ "$files" -eq 1 ]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}
complete -o default -F _podvisor podvisor
"""


def _fish(found: list[Command]) -> str:
    lines = [
        "# podvisor's completion for fish: podvisor completion fish | source",
        "complete -c podvisor -f",
    ]
    for c in found:
        lines.append(
            f"complete -c podvisor -n __fish_use_subcommand -a {c.name} -d {shlex.quote(c.summary)}"
        )
        seen = f"'__fish_seen_subcommand_from {c.name}'"
        for option in c.options:
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            lines.append(f"complete -c podvisor -n {seen} {flag}")
        if c.operand == "pods":
            lines.append(f"complete -c podvisor -n {seen} -a {shlex.quote(f'({PODS})')}")
        elif c.operand == "files":
            lines.append(f"complete -c podvisor -n {seen} -F")
        elif isinstance(c.operand, tuple):
            lines.append(f"complete -c podvisor -n {seen} -a {shlex.quote(' '.join(c.operand))}")
    return "\n".join(lines) + "\n"
