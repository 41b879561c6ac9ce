"""The console scripts: ``podvisor`` and ``podvisor-init``.

``podvisor -- CMD`` must cost no more than the interpreter: this module and
everything tini mode needs import the standard library's cheap parts only.
The supervisor (anyio, trio, pyroute2, prometheus_client) is imported only
when a subcommand asks for it, and the pod-mode init only with ``--channel``.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

#: ``podvisor WORD ...`` runs the supervisor's command WORD; any other first
#: argument is tini mode (``podvisor -- run`` runs a program called run).
SUPERVISOR_COMMANDS = frozenset(
    {
        "run",
        "check",
        "ps",
        "status",
        "logs",
        "exec",
        "restart",
        "stop",
        "kill",
        "pause",
        "resume",
        "version",
    }
)

#: What `ps -o comm` shows for the init in either mode.
PROCESS_NAME = "podvisor-init"


def main(argv: Sequence[str] | None = None) -> int:
    """``podvisor``: a supervisor subcommand, or else tini mode."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUPERVISOR_COMMANDS:
        cli = importlib.import_module("podvisor.supervisor.cli")
        return int(cli.main(args))
    return _tini_mode(args, "podvisor")


def init_main(argv: Sequence[str] | None = None) -> int:
    """``podvisor-init``: the pod's init with ``--channel FD``, or else tini mode."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] == "--channel" or args[0].startswith("--channel=")):
        _name_process()
        podinit = importlib.import_module("podvisor.init.podinit")
        return int(podinit.serve(args))
    return _tini_mode(args, "podvisor-init")


def _tini_mode(args: list[str], prog: str) -> int:
    _name_process()
    from podvisor.init import tini

    return tini.main(args, prog=prog)


def _name_process() -> None:
    # Imported by the inits only: the supervisor, which lives as long as its
    # pod, would keep ctypes (0.3 MB) for a process name it does not set.
    from podvisor.init import syscalls

    try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
        syscalls.set_process_name(PROCESS_NAME)
    except OSError:
        pass  # cosmetic: ps shows "python3" instead
