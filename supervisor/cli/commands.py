"""``podvisor ps / status / logs / exec / restart / stop / kill / pause / resume``.

Each command talks to one pod's control socket (`control_protocol` says where
it is and what goes over it) and prints what a person reads, or with
``-o json`` what a script reads. The client is plain blocking sockets and the
standard library: it starts as fast as the interpreter does.

Exit statuses
-------------
0    done
1    the request failed: no such pod or container, permission denied, a pod
     that does not answer, a container that is not running (`ControlError`)
2    a usage error (bad flags)
exec: the command's own status, 128+N when signal N ended it, 126 when it
     cannot be run, 127 when it is not found, 255 when the pod went away
     before it ended (as ssh).

exec and terminals
------------------
Without ``-t``, ``exec`` hands the caller's own stdin (with ``-i``), stdout
and stderr to the command over the socket: nothing is copied. The signals a
terminal sends its foreground (Ctrl-C, Ctrl-\\) and SIGTERM, SIGHUP, SIGUSR1,
SIGUSR2 come here and are relayed to the command's process group.

With ``-t`` (as ``docker exec -t``) the pod makes a new pseudo-terminal for
the command: its controlling terminal, at this terminal's window size. Its
master comes back with the reply; this client copies the pty's output to
stdout and, with ``-i``, the keyboard to the pty, with the caller's terminal
in raw mode, so that every key, Ctrl-C and Ctrl-Z included, reaches the
command's terminal, whose line discipline turns it into the signal for
whatever runs in its foreground: a shell gets job control, and Ctrl-C stops
the program it runs, not the shell. A window size change (SIGWINCH here) is
copied to the pty, which tells its foreground. The caller's terminal
settings are put back when the command ends, however it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import selectors
import signal
import struct
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

from podvisor.init.protocol import plain
from podvisor.supervisor.cli import output as out
from podvisor.supervisor.cli import views
from podvisor.supervisor.cli.captured import Captured
from podvisor.supervisor.control.client import EXEC_ANSWER_TIMEOUT, Client, ask, close_all
from podvisor.supervisor.control.wire import (
    ContainerRow,
    Done,
    Error,
    Exec,
    ExecExited,
    ExecStarted,
    Finished,
    Kill,
    Killed,
    LogLines,
    LogRecord,
    Logs,
    LogsReply,
    Pause,
    Paused,
    PodSummary,
    Reply,
    Request,
    Restart,
    Resume,
    Resumed,
    Signal,
    Status,
    StatusReply,
    Stop,
    Termination,
    as_object,
)
from podvisor.supervisor.errors import EXIT_CONFIG, ControlError

COMMANDS = (
    *("ps", "status", "logs", "exec", "restart", "stop", "kill", "pause", "resume"),
    *("events", "describe", "top", "attach"),
)
EXIT_LOST = 255
#: The signals exec passes on to the command.
RELAYED = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
#: Ignored while the command has the terminal (see the module's header).
IGNORED_ON_A_TERMINAL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
#: After an `exec -t` command ends, how long its last output may take to come through.
DRAIN_SECONDS = 1.0

Command = Callable[[argparse.Namespace], int]

# =============================================================================
# The command line
# =============================================================================


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands to ``podvisor``'s sub-parsers; `dispatch` runs the one chosen."""
    _add_ps(sub)
    _add_status(sub)
    _add_logs(sub)
    _add_exec(sub)
    _add_container_command(sub, "restart", "restart one container of a running pod", restart)
    stop_ = _command(sub, "stop", "stop a pod in order, as SIGTERM to `podvisor run` does", stop)
    stop_.add_argument("pod", metavar="POD")
    stop_.add_argument("--now", action="store_true", help="kill every container at once")
    stop_.add_argument(
        "--no-wait", action="store_true", help="return at once instead of when the pod has stopped"
    )
    _output_flag(stop_)
    kill_ = _add_container_command(sub, "kill", "send a signal to a container's process", kill)
    kill_.add_argument(
        "-s",
        "--signal",
        default="KILL",
        help="a signal name or number (default: KILL, as docker kill)",
    )
    _add_container_command(sub, "pause", "freeze every process of a container", pause)
    _add_container_command(sub, "resume", "thaw a paused container", resume)
    views.add_commands(sub, _command)


def dispatch(args: argparse.Namespace) -> int:
    """Run the command `add_commands` set up; print a failure and return its status."""
    command: Command = args.ctl
    try:
        return command(args)
    except ControlError as exc:
        print(f"podvisor: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `podvisor logs POD | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """These commands alone: ``python -m podvisor.supervisor.cli.commands status POD``."""
    parser = argparse.ArgumentParser(prog="podvisor")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return dispatch(parser.parse_args(argv))


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    run: Command,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(ctl=run)
    return parser


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for scripts",
    )


def _add_container_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, run: Command
) -> argparse.ArgumentParser:
    parser = _command(sub, name, summary, run)
    parser.add_argument("pod", metavar="POD")
    parser.add_argument("container", metavar="CONTAINER")
    _output_flag(parser)
    return parser


def _add_ps(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(sub, "ps", "list the pods running on this host", views.ps)
    parser.add_argument(
        "-a", "--all", action="store_true", help="also list pods found dead (their records go)"
    )
    views.add_watch(parser)
    _output_flag(parser)


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        sub,
        "status",
        "show a pod's containers: state, restarts, last termination, CPU, memory, pids",
        status,
    )
    parser.add_argument("pod", metavar="POD")
    views.add_watch(parser)
    _output_flag(parser)


def _add_logs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        sub,
        "logs",
        "print a pod's recent container log lines (the last 1000 of each instance)",
        logs,
        epilog="Without a container, every container's lines, each with its container's "
        "name.\nExamples: podvisor logs web app --tail 20; podvisor logs web -c app -f",
    )
    parser.add_argument("pod", metavar="POD")
    parser.add_argument(
        "named", nargs="?", metavar="CONTAINER", help="only this container's lines (as -c)"
    )
    parser.add_argument("-c", "--container", help="only this container's lines")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument(
        "-p",
        "--previous",
        action="store_true",
        help="the lines of the container's previous instance (before its last restart)",
    )
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    parser.add_argument(
        "--since", metavar="DURATION", help="only lines newer than this: 10s, 5m, 1h30m"
    )
    parser.add_argument(
        "--timestamps", action="store_true", help="start each line with its time (RFC 3339)"
    )
    _output_flag(parser)


def _add_exec(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        sub,
        "exec",
        "run a command in a running container (its namespaces, cgroup, user and environment)",
        exec_command,
        epilog="Example: podvisor exec -it web -c app -- sh\n"
        "Exit status: the command's; 126 or 127 when it cannot run; 255 when the pod "
        "stops first.",
    )
    parser.add_argument("pod", metavar="POD")
    _exec_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")


def _exec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--container", help="the container (default: the first one)")
    parser.add_argument(
        "-i", "--stdin", action="store_true", help="pass this terminal's or pipe's input on"
    )
    parser.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="a terminal for the command (with -i, your keys reach it)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        help="text: the command's output as it comes (default); json: kept, and printed "
        "at its end in one object with its exit code",
    )


def _split_command(args: argparse.Namespace) -> list[str]:
    """The command after ``--``; options between POD and ``--`` apply to exec.

    argparse's REMAINDER takes everything after POD, so ``exec web -c app -- sh``
    leaves ``-c app`` with the command; they are parsed here (as kubectl takes them).
    """
    rest = list(args.command)
    if "--" not in rest:
        return rest
    cut = rest.index("--")
    if cut:
        late = argparse.ArgumentParser(prog="podvisor exec", add_help=False)
        _exec_options(late)
        found = late.parse_args(rest[:cut])
        args.container = found.container or args.container
        args.stdin = args.stdin or found.stdin
        args.tty = args.tty or found.tty
        args.output = found.output or args.output
    return rest[cut + 1 :]


# =============================================================================
# ps and status
# =============================================================================


Unreachable = views.Unreachable
_ps_table = views.ps_table


def _ready(pod: PodSummary) -> str:
    return f"{pod.ready}/{pod.containers}" if pod.containers is not None else "-"


def status(args: argparse.Namespace) -> int:
    if args.watch:
        return views.status_watch(args, STATUS_HEADERS, _container_row)
    found = ask(args.pod, Status(), StatusReply)
    if args.output == "json":
        print(json.dumps(plain(found), indent=2))
        return 0
    print(_status_text(found, out.Style(sys.stdout), time.time()))
    return 0


def _status_text(found: StatusReply, style: out.Style, now: float) -> str:
    pod = found.pod
    head = [
        f"Pod:       {pod.name}",
        (
            f"Status:    {style.word(pod.status)}   ready {_ready(pod)}   "
            f"restarts {pod.restarts}   up {out.since(pod.start_time, now)}"
        ),
        (
            f"IP:        {pod.pod_ip or '-'}   metrics {pod.metrics or '-'}   "
            f"supervisor pid {pod.supervisor_pid}"
        ),
    ]
    rows = [_container_row(c, now) for c in found.containers]
    notes = [f"{c.name}: {c.message}" for c in found.containers if c.message]
    return "\n".join([*head, "", out.table(STATUS_HEADERS, rows, style), *notes])


STATUS_HEADERS = (
    *("CONTAINER", "KIND", "STATE", "READY", "RESTARTS", "LAST TERMINATION"),
    *("CPU", "MEMORY", "PIDS"),
)


def _container_row(c: ContainerRow, now: float) -> list[out.Cell]:
    state = "paused" if c.paused else c.state
    word = state.capitalize()
    detail = c.reason or ""
    if c.state == "running":
        detail = out.since(c.started_at, now)
    colour = out.WORD_COLOURS.get(detail) or out.WORD_COLOURS.get(state)
    return [
        c.name,
        c.kind,
        (f"{word} {detail}".strip(), colour),
        "yes" if c.ready else "no",
        str(c.restarts),
        _termination(c.last_termination, now),
        *_usage(c),
    ]


def _usage(c: ContainerRow) -> list[out.Cell]:
    """CPU, memory and pids against their limits; nothing for a container not running."""
    if c.state != "running":
        return ["-", "-", "-"]
    return [_cpu(c), _memory(c), out.against(_number(c.pids), _number(c.pids_max))]


def _termination(end: Termination | None, now: float) -> str:
    if end is None:
        return "-"
    code = f"exit {end.exit_code}"
    if end.signal:
        code += f", signal {end.signal}"
    return f"{end.reason} ({code}) {out.since(end.finished_at, now)} ago"


def _cpu(c: ContainerRow) -> str:
    limit = c.cpu_limit_cores
    return out.against(out.cores(c.cpu_cores), out.cores(limit) if limit else None)


def _memory(c: ContainerRow) -> str:
    used, limit = c.memory_bytes, c.memory_limit_bytes
    text = out.against(out.memory(used), out.memory(limit) if limit else None)
    return text + out.percent(used, limit)


def _number(n: int | None) -> str:
    return "-" if n is None else str(n)


# =============================================================================
# logs
# =============================================================================


def logs(args: argparse.Namespace) -> int:
    if args.named is not None and args.container not in (None, args.named):
        print(
            f"podvisor logs: two containers named: {args.named} and -c {args.container}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    container = args.named if args.named is not None else args.container
    since = None
    if args.since:
        try:
            since = time.time() - out.parse_duration(args.since)
        except ValueError as exc:
            print(f"podvisor logs: --since: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    request = Logs(container, args.previous, args.tail, since, args.follow)
    try:
        client = Client.open(args.pod)
    except ControlError:
        from podvisor.supervisor.cli import stored_logs

        if stored_logs.show(args, container, since, _line_writer):  # the pod has ended
            return 0
        raise
    with client:
        names = client.request(request, LogsReply).containers
        client.sock.settimeout(None)  # the lines come when they come
        if (following := getattr(args, "on_following", None)) is not None:
            following()  # attach -i: the keys go once no output can be missed
        # One container's lines go bare, unless asked for as `podvisor run` prints them.
        named = len(names) > 1 or getattr(args, "prefixed", False)
        write = _line_writer(args, max(map(len, names)) if named else 0)
        # Lines until LogEnd, or with follow until the pod stops (end-of-file, or
        # the Error that says it stopped).
        while isinstance(message := client.receive(), LogLines):
            for record in message.lines:
                write(record)
            sys.stdout.flush()
    return 0


def _line_writer(args: argparse.Namespace, width: int) -> Callable[[LogRecord], None]:
    """How one record is printed: text with the container's name when there are several."""
    if args.output == "json":

        def as_json(r: LogRecord) -> None:
            record = plain(r)
            assert isinstance(record, dict)
            print(json.dumps({**record, "time": out.timestamp(r.time)}, ensure_ascii=False))

        return as_json
    partial = False

    def as_text(r: LogRecord) -> None:
        nonlocal partial
        prefix = "" if partial else _prefix(r, width, args.timestamps)
        sys.stdout.write(prefix + r.text + ("" if r.partial else "\n"))
        partial = r.partial

    return as_text


def _prefix(r: LogRecord, width: int, timestamps: bool) -> str:
    prefix = f"{out.timestamp(r.time)} " if timestamps else ""
    return prefix + (f"{r.container:<{width}} | " if width else "")


# =============================================================================
# exec
# =============================================================================


def exec_command(args: argparse.Namespace) -> int:
    argv = _split_command(args)
    if not argv:
        print("podvisor exec: no command given: podvisor exec POD -- COMMAND", file=sys.stderr)
        return EXIT_CONFIG
    as_json = args.output == "json"
    if as_json and args.tty:
        print("podvisor exec: -o json keeps the output, -t shows it: choose one", file=sys.stderr)
        return EXIT_CONFIG
    facing = 0 if args.stdin else 1  # the caller's terminal, as far as -t is concerned
    tty = args.tty and os.isatty(facing)
    if args.tty and not tty:
        stream = "stdin" if args.stdin else "stdout"
        said = f"podvisor exec: -t: {stream} is not a terminal; running without one"
        print(said, file=sys.stderr)
    env = {"TERM": os.environ.get("TERM") or "xterm"} if tty else {}
    size = _window_size(facing) if tty else None
    request = Exec(args.container, tuple(argv), env, tty, size)
    with contextlib.ExitStack() as stack:
        stdin = 0 if args.stdin else _devnull(stack)
        if tty and args.stdin:
            stack.enter_context(_raw_terminal(0))
        # From here on a Ctrl-C waits on the pipe until the command can have it.
        on_terminal = any(os.isatty(fd) for fd in (stdin, 1, 2))
        wakeup = stack.enter_context(_signals_to_pipe(on_terminal))
        client = stack.enter_context(Client.open(args.pod, EXEC_ANSWER_TIMEOUT))
        captured = Captured() if as_json else None
        if captured is not None:
            stack.callback(captured.close)
            client.send(request, (stdin, *captured.write_ends))
            captured.sent()
        else:
            client.send(request, (stdin, 1, 2))
        reply, fds = client.answer(ExecStarted)
        stack.callback(close_all, fds)
        if isinstance(reply, Error):
            print(f"podvisor: {reply.error}", file=sys.stderr)
            return reply.exit_code if reply.exit_code is not None else 1
        client.sock.settimeout(None)  # the command runs as long as it runs
        terminal = None
        if tty:
            if len(fds) != 1:
                print("podvisor: the pod sent no terminal", file=sys.stderr)
                return 1
            terminal = Terminal(fds[0], keyboard=0 if args.stdin else None)
        return _wait_for_exit(client, wakeup, argv, terminal or captured)


def _devnull(stack: contextlib.ExitStack) -> int:
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    stack.callback(os.close, fd)
    return fd


class Terminal:
    """The command's pseudo-terminal (its master) and the caller's, copied both ways.

    Keys go to the pty without ever blocking this loop: what the pty cannot
    take yet waits in `typed`, and the keyboard is not read again until it has
    gone (so a paste into a command that reads nothing holds, and its output,
    its exit and the signals still come through).
    """

    def __init__(self, master: int, keyboard: int | None) -> None:
        os.set_blocking(master, False)
        self.master = master
        self.keyboard = keyboard
        self.typed = bytearray()

    def to_screen(self) -> bool:
        """Copy the command's output to stdout; False once nothing holds the pty open."""
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: every process on the pty has closed it
            return False
        if not data:
            return False
        _write_all(1, data)
        return True

    def drain(self) -> None:
        """What the command wrote before it ended (the pty passes it on a moment later)."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while (left := deadline - time.monotonic()) > 0 and _readable(self.master, left):
            if not self.to_screen():
                return

    def watch(self, selector: selectors.BaseSelector) -> None:
        """Copy in *selector*'s loop: each key's data is what to do with its events."""
        selector.register(self.master, selectors.EVENT_READ, self._master_ready)
        if self.keyboard is not None:
            selector.register(self.keyboard, selectors.EVENT_READ, self._keyboard_ready)

    def _master_ready(self, selector: selectors.BaseSelector, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._type(selector)
        if events & selectors.EVENT_READ and not self.to_screen():
            selector.unregister(self.master)

    def _keyboard_ready(self, selector: selectors.BaseSelector, events: int) -> None:
        assert self.keyboard is not None
        data = os.read(self.keyboard, 4096)
        selector.unregister(self.keyboard)
        if not data:  # the keyboard's end: Ctrl-D, end of input, and no more reading
            self.keyboard = None
        self.typed += data or b"\x04"
        self._type(selector)

    def _type(self, selector: selectors.BaseSelector) -> None:
        """Write what was typed as far as the pty takes it; read keys again once all went."""
        try:
            del self.typed[: os.write(self.master, self.typed)]
        except BlockingIOError:
            pass
        except OSError:  # the pty is gone: the exit is on its way
            self.typed.clear()
        if self.master in selector.get_map():
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.typed else 0)
            selector.modify(self.master, wanted, self._master_ready)
        if not self.typed and self.keyboard is not None:
            selector.register(self.keyboard, selectors.EVENT_READ, self._keyboard_ready)

    def resize(self) -> None:
        source = self.keyboard if self.keyboard is not None else 1
        with contextlib.suppress(OSError):
            fcntl.ioctl(
                self.master, termios.TIOCSWINSZ, fcntl.ioctl(source, termios.TIOCGWINSZ, bytes(8))
            )


def _wait_for_exit(
    client: Client, wakeup: int, argv: list[str], output: Terminal | Captured | None
) -> int:
    """Relay signals (and the output's bytes) until the command's exit comes; its status."""
    with selectors.DefaultSelector() as selector:
        selector.register(client.sock, selectors.EVENT_READ)
        selector.register(wakeup, selectors.EVENT_READ)
        if output is not None:
            output.watch(selector)
        terminal = output if isinstance(output, Terminal) else None
        while True:
            for key, events in selector.select():
                if key.fileobj == wakeup:
                    _relay(client, os.read(wakeup, 256), terminal)
                elif key.fileobj != client.sock:
                    key.data(selector, events)  # the terminal's or the pipes' copying
                elif (message := client.receive()) is None:
                    command = " ".join(argv)
                    print(f"podvisor: the pod stopped before `{command}` ended", file=sys.stderr)
                    return EXIT_LOST
                elif isinstance(message, ExecExited):
                    if output is not None:
                        output.drain()
                    if isinstance(output, Captured):
                        print(json.dumps(output.result(argv, message)))
                    return _exit_status(message)


def _relay(client: Client, signums: bytes, terminal: Terminal | None) -> None:
    for signum in signums:
        if signum == signal.SIGWINCH and terminal is not None:
            terminal.resize()  # the pty tells its foreground itself
            continue
        # Lost only when the connection is: the exit (or end-of-file) says what happened.
        with contextlib.suppress(ControlError):
            client.send(Signal(signum))


def _exit_status(exited: ExecExited) -> int:
    if exited.signal is not None:
        return 128 + exited.signal
    return exited.code or 0


@contextlib.contextmanager
def _signals_to_pipe(on_terminal: bool) -> Iterator[int]:
    """The relayed signals, as bytes on a pipe (the handlers only let them be written)."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous: dict[int, Any] = {s: signal.signal(s, _noted) for s in RELAYED}
    if on_terminal:
        previous |= {s: signal.signal(s, signal.SIG_IGN) for s in IGNORED_ON_A_TERMINAL}
    try:
        yield read_end
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(old_wakeup)
        os.close(read_end)
        os.close(write_end)


def _noted(signum: int, frame: object) -> None:
    """Nothing to do: the wakeup fd has the signal's number already."""


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """The caller's terminal in raw mode, its settings put back however the command ends."""
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _window_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on *fd*; 24x80 when it says nothing."""
    try:
        rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    except OSError:
        return 24, 80
    return (rows or 24), (columns or 80)


def _write_all(fd: int, data: bytes) -> None:
    """All of *data*, waiting while a non-blocking *fd* is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


# =============================================================================
# restart, stop, kill, pause, resume
# =============================================================================


def _act(args: argparse.Namespace, request: Request, kind: type[Reply], done: str) -> int:
    reply = ask(args.pod, request, kind)
    if getattr(args, "output", "text") == "json":
        print(json.dumps(as_object(reply)))
    else:
        print(done)
    return 0


def restart(args: argparse.Namespace) -> int:
    request = Restart(args.container)
    return _act(args, request, Done, f"restarting container {args.container} of pod {args.pod}")


def kill(args: argparse.Namespace) -> int:
    try:
        signum = _signal_number(args.signal)
    except ValueError as exc:
        print(f"podvisor kill: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    reply = ask(args.pod, Kill(args.container, signum), Killed)
    if args.output == "json":
        print(json.dumps(as_object(reply)))
        return 0
    name = signal.Signals(signum).name
    print(f"sent {name} to container {args.container} of pod {args.pod}")
    if reply.paused:
        print(f"note: {args.container} is paused: it gets the signal when resumed")
    return 0


def _signal_number(text: str) -> int:
    """KILL, SIGKILL, kill or 9."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        with contextlib.suppress(KeyError):
            return int(signal.Signals[name])
    raise ValueError(f"not a signal: {text!r} (try TERM, HUP, KILL or a number)")


def pause(args: argparse.Namespace) -> int:
    reply = ask(args.pod, Pause(args.container), Paused)
    if args.output == "json":
        print(json.dumps(as_object(reply)))
        return 0
    print(f"paused container {args.container} of pod {args.pod}")
    if "liveness" in reply.probes:
        print(
            f"note: {args.container} has a liveness probe: it fails while the container is "
            "paused, and restarts the container when it has failed for good"
        )
    return 0


def resume(args: argparse.Namespace) -> int:
    request = Resume(args.container)
    return _act(args, request, Resumed, f"resumed container {args.container} of pod {args.pod}")


def stop(args: argparse.Namespace) -> int:
    with Client.open(args.pod) as client:
        done = client.request(Stop(args.now), Done)
        if args.no_wait:
            said = (
                json.dumps(as_object(done)) if args.output == "json" else f"stopping pod {args.pod}"
            )
            print(said)
            return 0
        client.sock.settimeout(None)  # the pod's grace period bounds it
        finished = client.receive()
    if not isinstance(finished, Finished):  # the connection ended first
        finished = Finished(None, None)
    if args.output == "json":
        print(json.dumps(as_object(finished)))
    elif finished.phase is None:
        print(f"pod {args.pod} stopped")
    else:
        print(f"pod {args.pod} stopped: {finished.phase} (exit status {finished.exit_status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
