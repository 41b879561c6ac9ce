"""The ``podvisor`` command line, past tini mode: ``run``, ``check``, ``help``, ...

`podvisor.init.entry` sends every command here, and every first word that is
not one, to be refused; ``podvisor -- CMD`` never imports this module.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING, Literal

from podvisor.supervisor.errors import EXIT_CONFIG, EXIT_PODVISOR, ConfigError, PodvisorError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.version import version

if TYPE_CHECKING:
    import argparse

    from podvisor.supervisor.manifest.model import LoadedPod, Pod
    from podvisor.supervisor.network.maker import NetworkMaker

BACKENDS = ("asyncio", "trio")
#: asyncio by default: it is in the standard library, and a supervisor on it
#: starts sooner and weighs less than on trio, whose own import it avoids.
#: Both backends run the same code and the same tests.
DEFAULT_BACKEND = "asyncio"


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; *command*, the first argument, leaves out what it does not need."""
    import argparse  # not at the top: `podvisor run` parses in a child (`_read`)

    parser = argparse.ArgumentParser(
        prog="podvisor",
        usage="podvisor COMMAND [ARGS...]\n       podvisor [INIT OPTIONS] -- PROGRAM [ARGS...]",
        description="Run a Kubernetes Pod on this machine.",
        epilog=TINI_MODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="podvisor")
    run = sub.add_parser("run", help="run a pod from its manifest until it ends")
    run.add_argument("manifest", help="a Pod manifest (YAML or JSON), or - for stdin")
    run.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a file (or a directory of them) with ConfigMaps, Secrets and "
        "PersistentVolumeClaims the pod uses; repeatable",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="container log lines as `name | line` (default) or JSON objects",
    )
    run.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve /metrics, /livez, /readyz and /status here (default: the annotation "
        "podvisor.io/metrics-address, else 127.0.0.1:9464; 'off' for none)",
    )
    run.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="start the pod in the background, print its name once it runs, and return "
        "(follow it with `podvisor attach POD`)",
    )
    run.add_argument(
        "--pod-security",
        choices=("privileged", "baseline", "restricted"),
        metavar="LEVEL",
        help="refuse to start a pod that violates this Pod Security Standard "
        "(baseline or restricted), as the admission controller would",
    )
    run.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help=f"the async backend the supervisor runs on (default: {DEFAULT_BACKEND})",
    )
    sub.add_parser(
        "check", help="validate a manifest and explain what `run` would do", add_help=False
    )
    # The control client's commands, but for `run`: the supervisor would keep
    # the client's code (and its imports) for as long as the pod runs.
    if command != "run":
        from podvisor.supervisor.cli import commands as ctl

        ctl.add_commands(sub)
        from podvisor.supervisor.images import cli as image_cli

        image_cli.add_command(sub)
        from podvisor.supervisor.cli import volumes as volume_cli

        volume_cli.add_command(sub)
    versioning = sub.add_parser("version", help="print podvisor's version")
    versioning.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for scripts",
    )
    helping = sub.add_parser("help", help="list the commands, or show one command's help")
    helping.add_argument("topic", nargs="?", metavar="COMMAND")
    completing = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for SHELL. Load it with, for bash: "
        "source <(podvisor completion bash)",
    )
    completing.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    return parser


TINI_MODE_HELP = """\
Tini mode: `podvisor -- PROGRAM [ARGS...]` runs PROGRAM under podvisor's
init, which forwards signals, reaps zombies and exits with PROGRAM's status,
as tini does; the init's options (`podvisor-init --help`) go before the --.
`podvisor-init PROGRAM [ARGS...]` is the same init in tini's own form."""

SHELLS = ("bash", "zsh", "fish")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        _parser().print_help(sys.stderr)
        return EXIT_CONFIG
    if argv[0] in ("-h", "--help"):
        argv = ["help"]
    if argv[0] == "help" and len(argv) > 1 and argv[1] not in ("-h", "--help"):
        return _help(argv[1:])
    if argv[0] == "check":
        from podvisor.supervisor.manifest.explain import main as check_main

        return check_main(argv[1:])
    if argv[0] == "run":
        return _run(argv)  # its command line is read with its manifest: `_start`
    args = _parser(argv[0]).parse_args(argv)
    if getattr(args, "ctl", None) is not None:
        from podvisor.supervisor.cli import commands as ctl

        return ctl.dispatch(args)
    _local_command(args)
    return 0


def _local_command(args: argparse.Namespace) -> None:
    """``help``, ``completion`` and ``version``: answered without a pod."""
    if args.command == "help":
        _parser().print_help()
    elif args.command == "completion":
        from podvisor.supervisor.cli.completion import script

        print(script(args.shell, _parser()), end="")
    elif args.output == "json":
        import json
        import platform

        found = {"version": version(), "python": platform.python_version()}
        print(json.dumps(found))
    else:
        print(f"podvisor {version()}")


def _help(topic: list[str]) -> int:
    """``podvisor help COMMAND``: that command's own help."""
    command = topic[0]
    if len(topic) > 1:
        print("podvisor: help takes one command, e.g. podvisor help logs", file=sys.stderr)
        return EXIT_CONFIG
    if command not in _commands():
        return unknown_command(command)
    return main([command, "--help"])


def _commands() -> dict[str, str]:
    """Every command, with its one-line description."""
    import argparse

    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: str(choice.help) for choice in action._choices_actions}
    return {}


def unknown_command(word: str) -> int:
    """Refuse *word*, which is no command: name the closest, and how to run a program."""
    import difflib

    print(f"podvisor: unknown command {word!r}", file=sys.stderr)
    commands = _commands()
    close = difflib.get_close_matches(word, commands, n=3, cutoff=0.6)
    if close:
        print(f"Did you mean: {', '.join(close)}?", file=sys.stderr)
    print(
        "`podvisor help` lists the commands; to run a program under podvisor's init, "
        f"put -- before it: podvisor -- {word} ...",
        file=sys.stderr,
    )
    return EXIT_CONFIG


@frozen
class RunCommand:
    """`podvisor run`'s command line, read (`_read`)."""

    manifest: str
    log_format: Literal["text", "json"]
    metrics_address: str | None
    backend: str


def _read(argv: list[str]) -> tuple[RunCommand, LoadedPod | None] | int:
    """`podvisor run`'s command line and its manifest; an exit status when it says to stop.

    The manifest is None, once what is wrong is said, if it cannot be run.
    Runs in a child (`_start`): argparse and the manifest's reading stay out
    of the supervisor.
    """
    try:
        args = _parser("run").parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error argparse has said
        return stop.code if isinstance(stop.code, int) else EXIT_CONFIG
    command = RunCommand(args.manifest, args.log_format, args.metrics_address, args.backend)
    return command, _load(command.manifest, args.config, args.pod_security)


def _load(
    path: str, config: list[str] | None = None, pod_security: str | None = None
) -> LoadedPod | None:
    """The manifest at *path*; None, once what is wrong is said, if it cannot be run."""
    from podvisor.supervisor import manifest

    try:
        loaded = manifest.load(path, config=config or (), pod_security=pod_security)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"podvisor: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"podvisor: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None
    # What `podvisor check` accepts and `run` does not do yet (volumes, until mounted).
    for line in loaded.not_yet:
        print(line, file=sys.stderr)
    if loaded.not_yet:
        print("podvisor: nothing was started", file=sys.stderr)
        return None
    if loaded.workload is not None:
        print(f"podvisor: {loaded.workload.summary()}", file=sys.stderr)
    return loaded


def _brief(maker: NetworkMaker | None, pod: Pod) -> NetworkMaker | None:
    """Send *maker* *pod*'s network to make; dismissed (None) if the runner makes it."""
    if maker is None:
        return None
    # All but a loopback network, which is made in microseconds without pyroute2.
    if pod.spec.host_network or pod.settings.network != "loopback":
        maker.make(pod)
        return maker
    maker.dismiss()
    return None


def _run(argv: list[str]) -> int:
    if any(a in ("-d", "--detach") for a in argv[1:]):
        # Imported only here: a supervisor would keep the control client's code.
        from podvisor.supervisor.cli.detach import run_detached

        return run_detached(argv)
    # A launcher that ignores SIGCHLD would have the kernel reap our children
    # (the network's maker, the pod's init) before we could wait for them.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Start-up makes about 50,000 objects that live as long as the process
    # (modules, classes, functions); the cyclic collector would go over them
    # again and again while they are made. It runs from the pod's set-up on,
    # and leaves them out (`gc.freeze` in `_start`). They stay frozen: the
    # collection at the interpreter's exit would go over them all again, and
    # lengthen every pod's stop.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _start(argv)
    finally:
        if collecting:
            gc.enable()


def _start(argv: list[str]) -> int:
    # The network's maker, then the pod's init, start before the runner is
    # imported: their work runs beside those imports, not after them. The
    # maker first of all, so that it imports pyroute2 while the manifest is
    # read, and holds nothing of the init's.
    with contextlib.ExitStack() as started:
        from podvisor.supervisor.network.maker import NetworkMaker

        maker = NetworkMaker.fork()
        if maker is not None:
            started.enter_context(maker)
        # The command line and the manifest are read in a child: the
        # supervisor keeps the pod, not argparse, PyYAML and the manifest's
        # checks, for as long as the pod runs. Meanwhile this
        # process imports what starts the pod's init.
        from podvisor.supervisor.forked import ForkedCall

        reader = started.enter_context(
            ForkedCall.start(partial(_read, argv), "the manifest's reader")
        )
        # The pod's init too starts before the manifest is read, and the
        # runner is imported while it is: the interpreter's start-up, the
        # imports and the reading run side by side. An init whose manifest
        # cannot be run gets no plan: it reads end of file and exits.
        from podvisor.supervisor.pod.sandbox import WaitingInit

        try:
            init = started.enter_context(WaitingInit())
        except OSError as exc:
            print(f"podvisor: cannot start the pod's init: {exc}", file=sys.stderr)
            return EXIT_PODVISOR
        from podvisor.supervisor.pod.runner import RunOptions, run_pod

        try:
            read = reader.result()
        except PodvisorError as exc:
            print(f"podvisor: {exc}", file=sys.stderr)
            return exc.exit_status
        if isinstance(read, int):
            return read
        args, loaded = read
        if loaded is None:
            return EXIT_CONFIG
        # Only now, the reader reaped: it held a copy of the maker's request
        # pipe, whose end of file the maker waits for.
        maker = _brief(maker, loaded.pod)

        gc.freeze()
        gc.enable()
        options = RunOptions(
            log_format=args.log_format,
            metrics_address=args.metrics_address,
            init=init,
            network_maker=maker,
        )
        try:
            return run_pod(loaded, options, backend=args.backend)
        except PodvisorError as exc:
            print(f"podvisor: {exc}", file=sys.stderr)
            return exc.exit_status
