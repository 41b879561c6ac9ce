"""The console scripts: ``podvisor`` and ``podvisor-init``.

``podvisor WORD ...`` runs the supervisor's command WORD and nothing else: a
word that is not a command (a typo, ``podvisor rm bundle``) is refused, never
run as a program. Tini mode is ``podvisor [OPTIONS] -- CMD``, or
``podvisor-init [OPTIONS] CMD``, tini's own form, for a drop-in.

``podvisor -- CMD`` must cost no more than the interpreter: this module and
everything tini mode needs import the standard library's cheap parts only.
The supervisor (anyio, trio, pyroute2, prometheus_client) is imported only
when a subcommand asks for it, and the pod-mode init only with ``--channel``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would slow every start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

#: ``podvisor WORD ...`` runs the supervisor's command WORD (``podvisor -- run``
#: runs a program called run). The command line's parser holds the same names
#: with their descriptions; a test keeps the two the same.
SUPERVISOR_COMMANDS = frozenset(
    {
        "run",
        "check",
        "ps",
        "status",
        "events",
        "describe",
        "top",
        "attach",
        "logs",
        "exec",
        "restart",
        "stop",
        "kill",
        "pause",
        "resume",
        "image",
        "volume",
        "version",
        "help",
        "completion",
    }
)
HELP_FLAGS = frozenset({"-h", "--help"})

#: What `ps -o comm` shows for the init in either mode.
PROCESS_NAME = "podvisor-init"


def main(argv: Sequence[str] | None = None) -> int:
    """``podvisor``: a supervisor command, tini mode after options or ``--``, else refused."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in SUPERVISOR_COMMANDS or args[0] in HELP_FLAGS:
        cli = _module("podvisor.supervisor.cli.main")
        status = int(cli.main(args))
        if argv is None and args[:1] == ["run"]:
            # The pod is gone and all it held undone: the interpreter's
            # teardown of the supervisor's modules would only keep the
            # caller waiting.
            from podvisor.init import process

            process.exit_now(status)
        return status
    if args[0].startswith("-"):
        return _tini_mode(args, "podvisor", separator_required=True)
    cli = _module("podvisor.supervisor.cli.main")
    return int(cli.unknown_command(args[0]))


def init_main(argv: Sequence[str] | None = None) -> int:
    """``podvisor-init``: the pod's init with ``--channel FD``, or else tini mode."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] == "--channel" or args[0].startswith("--channel=")):
        _name_process()
        podinit = _module("podvisor.init.podinit")
        return int(podinit.serve(args))
    return _tini_mode(args, "podvisor-init")


def _module(name: str) -> ModuleType:
    """``importlib.import_module(name)``, without importing importlib (and warnings with it)."""
    __import__(name)
    return sys.modules[name]


def _tini_mode(args: list[str], prog: str, *, separator_required: bool = False) -> int:
    _name_process()
    from podvisor.init import tini

    return tini.main(args, prog=prog, separator_required=separator_required)


def _name_process() -> None:
    from podvisor.init import syscalls  # loads nothing: the name goes to /proc/self/comm

    try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
        syscalls.set_process_name(PROCESS_NAME)
    except OSError:
        pass  # cosmetic: ps shows "python3" instead
