"""Tini mode: ``podvisor -- CMD`` and ``podvisor-init CMD``, a drop-in for tini.

How this works
--------------
The init blocks every signal it handles and sleeps in ``sigwaitinfo`` with no
timeout, so an idle init is never woken (tini polls once a second). Each
signal that arrives is either SIGCHLD, on which it reaps every ended child, or
one to pass on to the child (or to the child's process group with ``-g``),
after ``--rewrite`` has had its say. When the child has ended, the init reaps
whatever else has ended by then and exits with the child's status (128+N for
signal N), as tini does: it does not wait for orphans still running. As PID 1
it leaves them, and the zombies not yet reaped, to the kernel, which kills and
reaps them all as the namespace's init exits.

When the init is not PID 1, it makes itself a child subreaper, so orphans of
its child come to it rather than to the real PID 1.

With ``--pid-ns`` the init unshares a PID namespace and forks once: the forked
process is PID 1 of the new namespace, makes a private mount namespace with
its own /proc, and runs the same loop there. The outer process only relays
signals to it and its exit status back; when the inner init exits, the kernel
kills whatever is left in the namespace. The inner init dies with the outer
one (parent-death signal SIGKILL), so nothing outlives ``podvisor``.

The fault signals (SIGSEGV, SIGABRT, SIGSYS, ...) are blocked and forwarded
like the rest when a process sent them (``kill -ABRT``): the kernel still
delivers one the init causes itself, blocked or not. One that the kernel
raised for another reason (a machine check's SIGBUS) concerns the init's
own memory, not the child: it is said, not forwarded.

Standard library only, and only the cheap parts of it: this is the whole of
what ``podvisor -- CMD`` imports (``_signal`` rather than ``signal``, whose
enums cost more than the rest; see process.py). ``syscalls`` loads nothing
until it is called: only an init that is not PID 1 calls it, for prctl(2).
"""

from __future__ import annotations

import os
import sys

from podvisor.init import process, syscalls

TYPE_CHECKING = False  # not typing's: importing typing would slow every start
if TYPE_CHECKING:
    import signal as _signal  # typeshed describes _signal as part of signal
    from collections.abc import Callable, Mapping, Sequence
    from typing import NoReturn
else:
    import _signal

USAGE = """\
Usage: {prog} [OPTIONS] [--] PROGRAM [ARGS...] | --version
{subcommands}
Run PROGRAM as the child of an init that forwards signals to it, reaps
zombies and exits with its status (a drop-in for tini and dumb-init).

Options (they stop at the first non-option or at --):

  --version: Show version and exit.
  -h: Show this help message and exit.
  -s: Register as a process subreaper (done anyway when not PID 1).
  -p SIGNAL: Trigger SIGNAL when parent dies, e.g. "-p SIGKILL".
  -v: Generate more verbose output. Repeat up to 3 times.
  -w: Print a warning when processes are getting reaped.
  -g: Send signals to the child's process group.
  -e EXIT_CODE: Remap EXIT_CODE (from 0 to 255) to 0. Repeatable.
  -l: Show license and exit.
  -r, --rewrite FROM:TO: Rewrite signal FROM to TO before forwarding it;
      TO 0 drops it (as dumb-init). Repeatable.
  --pid-ns: Run PROGRAM in a new PID and mount namespace with its own /proc,
      where the init is PID 1.

Environment variables:

  TINI_SUBREAPER: Register as a process subreaper.
  TINI_VERBOSITY: Set the verbosity level (default: 1).
  TINI_KILL_PROCESS_GROUP: Send signals to the child's process group.
"""

SUBCOMMANDS_LINE = """\
       {prog} COMMAND ...   the pod supervisor's commands: `{prog} help` lists them
"""

LICENSE = "podvisor is licensed under the Apache License, Version 2.0."

#: Options that take a value, short and long.
_SHORT_WITH_VALUE = frozenset("pre")
_SHORT_FLAGS = frozenset("hsvwgl")


class UsageError(Exception):
    """Raised when the command line is not one the init accepts; the message says why."""


class Options:
    """What the command line and the TINI_* variables asked for (immutable).

    A plain class rather than a dataclass or NamedTuple: those import
    ``dataclasses``/``typing``, which would cost every ``podvisor -- CMD``
    start a few milliseconds.
    """

    __slots__ = (
        "action",
        "command",
        "kill_group",
        "parent_death_signal",
        "pid_ns",
        "remap_exit",
        "rewrite",
        "separated",
        "subreaper",
        "verbosity",
        "warn_reaped",
    )

    command: tuple[str, ...]
    #: "run", "help", "version" or "license".
    action: str
    #: 0 fatal only, 1 warnings (the default), 2 info (-v), 3 debug, 4 trace.
    verbosity: int
    #: -s / TINI_SUBREAPER: accepted for tini's sake; not PID 1 implies it.
    subreaper: bool
    #: -g / TINI_KILL_PROCESS_GROUP: forward to the child's process group.
    kill_group: bool
    #: -p SIGNAL: the init's parent-death signal.
    parent_death_signal: int | None
    #: -e CODE: exit statuses reported as 0.
    remap_exit: frozenset[int]
    #: -w: say so for each adopted zombie reaped.
    warn_reaped: bool
    #: --rewrite FROM:TO pairs, applied before forwarding; TO 0 drops.
    rewrite: tuple[tuple[int, int], ...]
    #: --pid-ns: run the command in a new PID + mount namespace.
    pid_ns: bool
    #: Whether ``--`` came before the command (``podvisor`` runs nothing without it).
    separated: bool

    def __init__(
        self,
        *,
        command: tuple[str, ...] = (),
        action: str = "run",
        verbosity: int = 1,
        subreaper: bool = False,
        kill_group: bool = False,
        parent_death_signal: int | None = None,
        remap_exit: frozenset[int] = frozenset(),
        warn_reaped: bool = False,
        rewrite: tuple[tuple[int, int], ...] = (),
        pid_ns: bool = False,
        separated: bool = False,
    ) -> None:
        for name, value in locals().items():
            if name != "self":
                object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Options are immutable (tried to set {name})")

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Options({fields})"


# --- The command line --------------------------------------------------------


def parse_args(args: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Parse tini's command line (getopt with "+": options end at the first operand)."""
    parser = _Parser(environ)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            parser.separated = True
            break
        if arg.startswith("--"):
            index = parser.long_option(arg, args, index)
        elif arg.startswith("-") and arg != "-":
            index = parser.short_options(arg, args, index)
        else:
            index -= 1
            break
    return parser.options(args[index:])


class _Parser:
    """What the options seen so far asked for."""

    __slots__ = (
        "actions",
        "environ",
        "flags",
        "parent_death_signal",
        "remap",
        "rewrite",
        "separated",
        "verbosity",
    )

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.separated = False
        self.verbosity = _env_verbosity(environ)
        self.flags: set[str] = set()
        self.actions: list[str] = []
        self.parent_death_signal: int | None = None
        self.remap: set[int] = set()
        self.rewrite: list[tuple[int, int]] = []

    def long_option(self, arg: str, args: Sequence[str], index: int) -> int:
        name, has_value, value = arg[2:].partition("=")
        if name == "rewrite":
            if not has_value:
                value, index = _value_of(args, index, "rewrite")
            self.rewrite.append(parse_rewrite(value))
        elif name in ("version", "help") and not has_value:
            self.actions.append(name)
        elif name == "pid-ns" and not has_value:
            self.flags.add(name)
        else:
            raise UsageError(f"unrecognized option '{arg}'")
        return index

    def short_options(self, arg: str, args: Sequence[str], index: int) -> int:
        """One cluster such as ``-vvg`` or ``-e143``; returns the next index."""
        for position, letter in enumerate(arg[1:], start=2):
            if letter in _SHORT_WITH_VALUE:
                value = arg[position:]
                if not value:
                    value, index = _value_of(args, index, letter)
                self.value_option(letter, value)
                return index
            if letter not in _SHORT_FLAGS:
                raise UsageError(f"invalid option -- '{letter}'")
            if letter == "v":
                self.verbosity += 1
            elif letter in "hl":
                self.actions.append("help" if letter == "h" else "license")
            else:
                self.flags.add(letter)
        return index

    def value_option(self, letter: str, value: str) -> None:
        if letter == "p":
            self.parent_death_signal = parse_signal(value)
            if self.parent_death_signal is None:
                raise UsageError(f"Not a valid option for -p: {value}")
        elif letter == "e":
            if not value.isdigit() or int(value) > 255:
                raise UsageError(f"Not a valid option for -e: {value}")
            self.remap.add(int(value))
        else:
            self.rewrite.append(parse_rewrite(value))

    def options(self, command: Sequence[str]) -> Options:
        action = self.actions[0] if self.actions else "run"
        if action == "run" and not command:
            raise UsageError("no program to run")
        return Options(
            command=tuple(command),
            action=action,
            verbosity=self.verbosity,
            subreaper="s" in self.flags or "TINI_SUBREAPER" in self.environ,
            kill_group="g" in self.flags or "TINI_KILL_PROCESS_GROUP" in self.environ,
            parent_death_signal=self.parent_death_signal,
            remap_exit=frozenset(self.remap),
            warn_reaped="w" in self.flags,
            rewrite=tuple(self.rewrite),
            pid_ns="pid-ns" in self.flags,
            separated=self.separated,
        )


def _value_of(args: Sequence[str], index: int, option: str) -> tuple[str, int]:
    if index >= len(args):
        raise UsageError(f"option requires an argument -- '{option}'")
    return args[index], index + 1


def parse_signal(text: str) -> int | None:
    """A signal from its number or name ("9", "KILL", "SIGKILL", "SIGRTMIN+3"); None if none."""
    if text.isdigit():
        number = int(text)
        return number if number in process.FORWARDED | {_signal.SIGKILL, _signal.SIGSTOP} else None
    name = text.upper().removeprefix("SIG")
    base, plus, offset = name.partition("+")
    if base in ("RTMIN", "RTMAX"):
        number = _signal.SIGRTMIN if base == "RTMIN" else _signal.SIGRTMAX
        if plus and offset.isdigit():
            number += int(offset)
        elif plus:
            return None
        return number if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX else None
    # The C module's constants: SIGHUP and friends, aliases (SIGIOT) included;
    # SIG_DFL, SIG_BLOCK and the like are not signals.
    constant = None if "_" in name else vars(_signal).get(f"SIG{name}")
    return int(constant) if isinstance(constant, int) else None


def parse_rewrite(text: str) -> tuple[int, int]:
    """dumb-init's FROM:TO, by number or name; TO 0 means "drop it"."""
    source, colon, target = text.partition(":")
    from_signal = parse_signal(source)
    to_signal = 0 if target == "0" else parse_signal(target)
    if not colon or from_signal is None or to_signal is None:
        raise UsageError(f"Not a valid option for --rewrite: {text} (expected FROM:TO, e.g. 15:3)")
    return from_signal, to_signal


def _env_verbosity(environ: Mapping[str, str]) -> int:
    text = environ.get("TINI_VERBOSITY")
    if text is None:
        return 1
    try:
        return int(text)
    except ValueError:
        return 0  # tini uses atoi(3)


# --- Messages ----------------------------------------------------------------


class Log:
    """One line on stderr per message, shown when the verbosity allows it."""

    __slots__ = ("prog", "verbosity")

    def __init__(self, prog: str, verbosity: int) -> None:
        self.prog = prog
        self.verbosity = verbosity

    def say(self, level: int, message: str) -> None:
        """Print at *level*: 0 fatal, 1 warning, 2 info, 3 debug, 4 trace."""
        if level <= self.verbosity or level == 0:
            try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
                os.write(2, f"{self.prog}: {message}\n".encode(errors="replace"))
            except OSError:
                pass  # stderr closed: nowhere to say it


# --- Start-up ------------------------------------------------------------------


def main(
    args: Sequence[str],
    prog: str = "podvisor-init",
    environ: Mapping[str, str] | None = None,
    *,
    separator_required: bool = False,
    before_exec: Callable[[], None] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> int:
    """Tini mode's whole life: parse and run; returns only for usage, help and version.

    With *separator_required* (``podvisor``, whose other first words are
    commands), a program runs only after ``--``: a mistyped command after an
    option must not run as a program. A container's init passes the rest of
    its confinement: *before_exec* runs in the program's child, and
    *after_fork* in the init once the child is forked (`process.spawn`).
    """
    env = os.environ if environ is None else environ
    try:
        options = parse_args(args, env)
    except UsageError as exc:
        sys.stderr.write(f"{prog}: {exc}\n{usage(prog)}")
        return 1
    if separator_required and options.action == "run" and not options.separated:
        options_given = " ".join(args[: len(args) - len(options.command)])
        sys.stderr.write(
            f"{prog}: {options.command[0]!r} is not one of {prog}'s commands; to run it under "
            f"the init, put -- before it: {prog} {options_given} -- {' '.join(options.command)}\n"
        )
        return 2
    if options.action == "help":
        sys.stdout.write(usage(prog))
        return 0
    if options.action == "version":
        sys.stdout.write(f"{prog} version {version()}\n")
        return 0
    if options.action == "license":
        sys.stdout.write(LICENSE + "\n")
        return 0
    log = Log(prog, options.verbosity)
    if options.pid_ns:
        status = run_in_pid_namespace(options, log, env, before_exec, after_fork)
    else:
        status = run(options, log, env, before_exec, after_fork)
    return process.exit_now(status)


def usage(prog: str) -> str:
    if prog != "podvisor":
        return USAGE.format(prog=prog, subcommands="")
    # Its first word may be a command, so a program comes only after --.
    text = USAGE.format(prog=prog, subcommands=SUBCOMMANDS_LINE.format(prog=prog))
    return text.replace("[--] PROGRAM", "-- PROGRAM", 1)


def version() -> str:
    """The installed distribution's version (read only for --version)."""
    from importlib import metadata  # here: slow to import, and only --version needs it

    try:
        return metadata.version("podvisor")
    except metadata.PackageNotFoundError:
        return "unknown"


def run(
    options: Options,
    log: Log,
    environ: Mapping[str, str],
    before_exec: Callable[[], None] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> int:
    """Run the command under this process, as init or as a subreaper."""
    waited = process.block_signals()
    set_parent_death_signal(options, log)
    if os.getpid() != 1:
        become_subreaper(log)
    return run_child(options, log, environ, waited, before_exec=before_exec, after_fork=after_fork)


def run_child(
    options: Options,
    log: Log,
    environ: Mapping[str, str],
    waited: frozenset[int],
    *,
    before_exec: Callable[[], None] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> int:
    """Spawn the command, supervise it, and return the status to exit with."""
    try:
        child = process.spawn(
            options.command,
            environ,
            new_session=False,
            foreground_tty=0 if _in_terminal_foreground(0) else None,
            before_exec=before_exec,
            after_fork=after_fork,
        )
    except process.SpawnError as exc:
        log.say(0, f"cannot run {exc}")
        return process.exec_failure_exit_code(exc) if exc.stage == "exec" else 1
    log.say(2, f"spawned {options.command[0]!r} as pid {child}")
    status = supervise(child, options, log, waited)
    log.say(2, f"child exited with status {status}")
    return 0 if status in options.remap_exit else status


def _in_terminal_foreground(fd: int) -> bool:
    """Whether *fd* is our controlling terminal and our process group owns it.

    Only then is the foreground ours to hand to the child: started in the
    background (``podvisor -- CMD &``), the init leaves the terminal to the shell.
    """
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not a terminal, or not our controlling one
        return False


def set_parent_death_signal(options: Options, log: Log) -> None:
    if options.parent_death_signal is None:
        return
    try:
        syscalls.set_parent_death_signal(options.parent_death_signal)
    except OSError as exc:
        log.say(1, f"cannot set the parent-death signal: {exc}")


def become_subreaper(log: Log) -> bool:
    """Adopt orphans of our descendants, as PID 1 would; say why not if we cannot."""
    try:
        syscalls.set_child_subreaper()
    except OSError as exc:
        log.say(
            1,
            f"not PID 1 and cannot become a child subreaper ({exc}): orphans will go to "
            "the real PID 1 and their zombies may not be reaped; run podvisor as PID 1 "
            "or on Linux >= 3.4",
        )
        return False
    log.say(2, "not PID 1: registered as a child subreaper, so orphans are reaped here")
    return True


# --- The loop ------------------------------------------------------------------


class OrphanCount:
    """The orphans this init has reaped, kept where `podvisor run` reads them.

    A container's init (`podinit._container_init`) is given a file of
    `podvisor run`'s (a memfd, close-on-exec so its program never holds it)
    and writes its running total there, 8 bytes little-endian at offset 0;
    the supervisor reads it when it is scraped, so a leaking container is
    named without a message on the pod's channel, which this init has not.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.total = 0

    def reaped(self) -> None:
        self.total += 1
        if self.fd is None:
            return
        try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
            os.pwrite(self.fd, self.total.to_bytes(8, "little"), 0)
        except OSError:
            pass  # a count lost is better than an init that stops reaping


ORPHANS = OrphanCount()


def supervise(child: int, options: Options, log: Log, waited: frozenset[int]) -> int:
    """Forward signals and reap until *child* ends; return its exit status (or 128+N)."""
    rewrite = dict(options.rewrite)
    ended: list[int] = []

    def on_exit(pid: int, raw_status: int) -> None:
        if pid == child:
            ended.append(raw_status)
            return
        ORPHANS.reaped()
        if options.warn_reaped:
            log.say(1, f"Reaped zombie process with pid={pid}")
        elif log.verbosity >= 3:  # not a message built per orphan for nobody
            log.say(3, f"reaped zombie process with pid={pid}")

    while not ended:
        info = _signal.sigwaitinfo(waited)
        signum = info.si_signo
        if signum == _signal.SIGCHLD:
            process.reap(on_exit, last=child)
        elif is_sent(info):
            forward_signal(child, rewrite.get(signum, signum), options.kill_group, log)
        else:
            log.say(1, f"signal {signum} raised by the kernel for the init itself: not forwarded")
    if os.getpid() != 1:
        process.reap(on_exit)  # what else has ended by now, as tini does
    # As PID 1 the init leaves the zombies still there to the kernel, which reaps
    # them as the namespace's init exits, sooner than a waitpid(2) each from here.
    return process.exit_status(ended[0])


def is_sent(info: _signal.struct_siginfo) -> bool:
    """Whether *info* is a signal to pass on: any but a fault signal the kernel raised.

    si_code is SI_USER (kill), SI_QUEUE (sigqueue), SI_TKILL (tgkill) or
    another value of zero or less when a process sent the signal; above zero
    the kernel did, and for a fault signal that concerns the init itself.
    """
    return info.si_signo not in process.FAULTS or info.si_code <= 0


def forward_signal(child: int, signum: int, group: bool, log: Log) -> None:
    """Pass *signum* on to the child, or its process group; 0 means "dropped"."""
    if signum == 0:
        log.say(3, "dropped a signal (--rewrite to 0)")
        return
    try:
        if group:
            os.killpg(child, signum)
        else:
            os.kill(child, signum)
    except ProcessLookupError:
        pass  # it has just ended; its SIGCHLD is already on its way
    except OSError as exc:
        log.say(1, f"cannot forward signal {signum} to {child}: {exc}")
    else:
        log.say(3, f"forwarded signal {signum} to {'group ' if group else ''}{child}")


# --- --pid-ns ------------------------------------------------------------------


def run_in_pid_namespace(
    options: Options,
    log: Log,
    environ: Mapping[str, str],
    before_exec: Callable[[], None] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> int:
    """Run the command under an inner init that is PID 1 of a new PID namespace."""
    waited = process.block_signals()
    set_parent_death_signal(options, log)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
    except OSError as exc:
        # Degraded, never broken: run here, as a subreaper, and say why.
        log.say(1, f"--pid-ns: cannot make a PID namespace ({exc}); running without one")
        if os.getpid() != 1:
            become_subreaper(log)
        return run_child(
            options, log, environ, waited, before_exec=before_exec, after_fork=after_fork
        )
    alive_read, alive_write = os.pipe()
    inner = os.fork()
    if inner == 0:
        os.close(alive_write)
        _exit_from_fork(
            lambda: _inner_init(
                options,
                log,
                environ,
                waited,
                alive_read,
                before_exec=before_exec,
                after_fork=after_fork,
            )
        )
    os.close(alive_read)
    log.say(2, f"inner init is pid {inner}, PID 1 of a new PID namespace")
    return relay(inner, waited)


def _exit_from_fork(body: Callable[[], int]) -> NoReturn:
    """Run *body* in a forked child and leave by os._exit, whatever happens."""
    code = 1
    try:
        code = body()
    except BaseException as exc:  # the inner init must never return into the outer one
        os.write(2, f"--pid-ns: inner init failed: {exc!r}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def _inner_init(
    options: Options,
    log: Log,
    environ: Mapping[str, str],
    waited: frozenset[int],
    alive: int,
    *,
    before_exec: Callable[[], None] | None,
    after_fork: Callable[[], None] | None,
) -> int:
    """PID 1 of the new namespace: its own /proc, then the usual loop."""
    # Die with the outer init; and if it is already gone, do not start at
    # all (PR_SET_PDEATHSIG only fires for deaths after it is set).
    syscalls.set_parent_death_signal(_signal.SIGKILL)
    os.set_blocking(alive, False)
    try:
        if os.read(alive, 1) == b"":
            return 1
    except BlockingIOError:
        pass
    os.close(alive)
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.make_mounts_private()
        syscalls.mount_proc()
    except OSError as exc:
        log.say(1, f"--pid-ns: cannot mount a private /proc ({exc}): ps shows the host's processes")
    return run_child(options, log, environ, waited, before_exec=before_exec, after_fork=after_fork)


def relay(inner: int, waited: frozenset[int]) -> int:
    """The outer init: pass every signal to the inner one and return its status."""
    while True:
        info = _signal.sigwaitinfo(waited)
        signum = info.si_signo
        if signum == _signal.SIGCHLD:
            pid, raw_status = os.waitpid(inner, os.WNOHANG)
            if pid:
                return process.exit_status(raw_status)
        elif is_sent(info):
            try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
                os.kill(inner, signum)
            except ProcessLookupError:
                pass  # the inner init has just ended
