"""Starting, signalling and reaping the init's children.

How this works
--------------
The init blocks every signal it cares about (``block_signals``) and waits for
them with ``sigwaitinfo``: no handler ever runs, so nothing can interrupt the
init half-way through its own bookkeeping, and an idle init sleeps in one
system call without periodic wake-ups. ``SIGCHLD`` is one of those signals;
on it the init drains ``waitpid(-1, WNOHANG)`` (``reap``), because the kernel
merges SIGCHLDs: one may stand for many dead children.

A child must not start with the init's signal state. ``prepare_child`` runs
between ``fork`` and ``exec`` and gives back what the init itself inherited:
the signal mask, and the set of ignored signals, both captured when this
module was imported. Python ignores SIGPIPE and SIGXFSZ at start-up before any
of our code runs, so whether the init's parent had ignored those two cannot
be seen; the child gets them at their default, as ``subprocess`` does with
``restore_signals=True``.

``spawn`` forks and execs with the few steps a container runtime does in the
child (session, terminal, stdio, caller's hook, signals). Errors in the child
come back over a close-on-exec pipe, as ``subprocess`` does: end-of-file means
the exec succeeded, bytes mean it failed, and the parent raises ``SpawnError``.
With ``run`` the child calls a function of this interpreter instead of
exec'ing a program (a container's init, forked from the pod's: no second
interpreter to start, its pages shared with the parent's); it first closes
every close-on-exec descriptor, as an exec would, the error pipe among them.

Standard library only: the init imports this on its start-up path. It uses
``_signal``, the C module under ``signal``: the same functions, with plain
ints where ``signal`` builds ``enum`` classes, which would cost every start
of tini mode more than the rest of its imports together.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing would slow every start
if TYPE_CHECKING:
    import signal as _signal  # typeshed describes _signal as part of signal
    from collections.abc import Callable, Mapping, Sequence
    from typing import NoReturn
else:
    import _signal

# --- The signal state the init inherited --------------------------------------

#: Every signal number there is: 1-31 and the real-time SIGRTMIN..SIGRTMAX
#: (glibc keeps 32 and 33 for itself).
_VALID = frozenset(int(s) for s in _signal.valid_signals())

#: Python sets these to SIG_IGN during start-up, so a parent's choice is lost.
_PYTHON_IGNORES = frozenset({_signal.SIGPIPE, _signal.SIGXFSZ})

#: Signals no process can catch, block or ignore.
_UNCATCHABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

#: The fault signals. When the init itself faults, the kernel raises one at
#: it even while it is blocked (it unblocks it and restores its default
#: action): so one that ``sigwaitinfo`` returns was sent, most often by a
#: process (``kill -ABRT``), and is forwarded like any other (tini leaves
#: them unblocked, and dies of them). Its ``si_code`` tells who sent it.
FAULTS = frozenset(
    {
        _signal.SIGSEGV,
        _signal.SIGBUS,
        _signal.SIGILL,
        _signal.SIGFPE,
        _signal.SIGABRT,
        _signal.SIGTRAP,
        _signal.SIGSYS,
    }
)


def _ignored_at_start() -> frozenset[int]:
    """The signals ignored when the init started, from /proc/self/status SigIgn."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigIgn:"):
                    bits = int(line.split()[1], 16)
                    found = {n for n in range(1, 65) if bits >> (n - 1) & 1}
                    return frozenset(found & _VALID) - _PYTHON_IGNORES
    except OSError:
        pass
    # No /proc (an early-boot container): the signal module recorded each
    # disposition when it was initialised, which is just as good.
    found = {n for n in _VALID if _signal.getsignal(n) == _signal.SIG_IGN}
    return frozenset(found) - _PYTHON_IGNORES


#: The signal mask the init was started with; its children get it back.
INHERITED_MASK: frozenset[int] = frozenset(
    int(s) for s in _signal.pthread_sigmask(_signal.SIG_BLOCK, [])
)

#: The signals ignored when the init was started (less SIGPIPE and SIGXFSZ,
#: see the module docstring); its children start with these ignored too.
INHERITED_IGNORED: frozenset[int] = _ignored_at_start()

#: Every signal the init passes on to its child: everything it can catch,
#: real-time signals and the fault signals included, except SIGCHLD (its own).
#: SIGTTIN and SIGTTOU are here too: while they are blocked the kernel never
#: sends them to the init for its own terminal use (a blocked SIGTTOU lets the
#: write through), so one that arrives was sent on purpose, and is passed on
#: as dumb-init does (tini drops them).
FORWARDED: frozenset[int] = _VALID - _UNCATCHABLE - {_signal.SIGCHLD}

#: What each signal is reset to in a child before it execs.
_CHILD_DISPOSITIONS: tuple[tuple[int, int], ...] = tuple(
    (n, _signal.SIG_IGN if n in INHERITED_IGNORED else _signal.SIG_DFL)
    for n in sorted(_VALID - _UNCATCHABLE)
)


def block_signals() -> frozenset[int]:
    """Block every forwarded signal and SIGCHLD; return the set for sigwaitinfo.

    SIGCHLD goes back to its default first: a parent that ignored it would
    otherwise make the kernel reap our children for us, and their exit
    statuses would be lost. SIGTTIN and SIGTTOU are also ignored, so that the
    init can never be stopped by its terminal even where they are unblocked.
    """
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.signal(_signal.SIGTTIN, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTTOU, _signal.SIG_IGN)
    waited = FORWARDED | {_signal.SIGCHLD}
    _signal.pthread_sigmask(_signal.SIG_BLOCK, waited)
    return waited


def prepare_child() -> None:
    """In a forked child: restore the signal state the init inherited.

    Dispositions first, mask last, so a signal the mask lets through finds
    its default action and not a handler of the init's.
    """
    for signum, handler in _CHILD_DISPOSITIONS:
        _signal.signal(signum, handler)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, INHERITED_MASK)


# --- Reaping --------------------------------------------------------------------


def reap(on_exit: Callable[[int, int], None], last: int | None = None) -> int:
    """Wait for every child that has ended; call ``on_exit(pid, raw_status)`` each.

    With *last*, stop as soon as that child has been reaped. Returns how many
    were reaped. Never blocks.
    """
    count = 0
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return count
        if pid == 0:
            return count
        count += 1
        on_exit(pid, status)
        if pid == last:
            return count


def exit_status(raw_status: int) -> int:
    """The shell's view of a wait status: the exit code, or 128+N after signal N."""
    if os.WIFSIGNALED(raw_status):
        return 128 + os.WTERMSIG(raw_status)
    return os.WEXITSTATUS(raw_status)


def exit_now(status: int) -> NoReturn:
    """End this process without tearing the interpreter down.

    For a process whose work is done: its atexit handlers run and its
    standard streams are flushed, but its modules are not taken apart one
    object at a time, which is all the interpreter's own exit would add, and
    whoever waits for this process (a shell, the supervisor) would wait for.
    """
    atexit = sys.modules.get("atexit")
    if atexit is not None:  # else nothing was registered: nothing imported it
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
            stream.flush()
        except (OSError, ValueError):
            pass  # closed: nothing to flush
    os._exit(status)


# --- Spawning -------------------------------------------------------------------


class SpawnError(OSError):
    """Raised when a forked child fails before its program runs.

    ``stage`` says which step failed: ``"exec"`` (then ``filename`` is the
    program), ``"chdir"`` (``filename`` is the directory), or the name of an
    earlier step such as ``"before_exec"``.
    """

    stage: str

    def __init__(self, stage: str, err: int, message: str, filename: str | None = None) -> None:
        super().__init__(err, message, filename)
        self.stage = stage

    def __str__(self) -> str:
        # One line that names the program: "prog: No such file or directory".
        return f"{self.filename}: {self.strerror}" if self.filename else str(self.strerror)


def exec_failure_exit_code(error: OSError) -> int:
    """The exit status a shell uses when it cannot run a program: 127 or 126."""
    return 127 if error.errno in (errno.ENOENT, errno.ENOTDIR) else 126


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str | None = None,
    fds: Sequence[int] = (0, 1, 2),
    new_session: bool = True,
    foreground_tty: int | None = None,
    before_exec: Callable[[], None] | None = None,
    run: Callable[[], int] | None = None,
    new_pid_namespace: bool = False,
    after_fork: Callable[[], None] | None = None,
) -> int:
    """Start *argv* as a child and return its pid once its program runs.

    In the child, in order: a new session (``new_session``) or else a new
    process group; the foreground of the terminal on fd ``foreground_tty``
    (skipped quietly when it is not our controlling terminal, as tini does);
    ``fds`` duplicated onto 0, 1, 2; ``before_exec()``; ``prepare_child()``;
    exec, searching ``PATH`` from *env* as execvp(3) does -- or, with *run*,
    the close-on-exec descriptors closed and ``os._exit(run())`` (*argv* then
    only names the child in errors). A terminal's foreground needs a process
    group in the init's session, so pass ``new_session=False`` with
    ``foreground_tty``.

    A *run* child is an init of its own: it keeps this one's signal mask
    (``prepare_child()`` is for what it execs), so no signal finds it at its
    default action before it waits for them. With *new_pid_namespace* it is
    born PID 1 of a new PID namespace (where none can be made, in ours).
    ``after_fork()`` runs here once the child is forked, before its exec is
    awaited: a child's ``before_exec`` may wait for what it does.

    Raises ``SpawnError`` (an ``OSError`` with the child's errno) when any of
    that fails; the failed child has then been reaped.
    """
    if not argv:
        raise ValueError("spawn: empty argv")
    if len(fds) > 3:
        raise ValueError("spawn: at most three fds (stdin, stdout, stderr)")
    # Everything the child needs is computed here, so the child runs as
    # little Python as possible (the parent may have other threads).
    plan = _Plan(
        candidates=_candidates(argv[0], env),
        args=[os.fsencode(a) for a in argv],
        env={os.fsencode(k): os.fsencode(v) for k, v in env.items()},
        cwd=cwd,
        fds=tuple(fds),
        new_session=new_session,
        foreground_tty=foreground_tty,
        before_exec=before_exec,
        run=run,
    )
    if run is not None:
        freeze_before_fork()  # the child lives on as a fork of this process
    read_end, write_end = _error_pipe()
    own_pid_namespace = _children_in_a_new_pid_namespace() if new_pid_namespace else None
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _run_child(plan, write_end)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    finally:
        if own_pid_namespace is not None:
            _children_in_our_pid_namespace(own_pid_namespace)
    os.close(write_end)
    if after_fork is not None:
        after_fork()
    report = _read_all(read_end)
    if not report:
        return pid
    os.waitpid(pid, 0)
    raise _decode_error(report, argv[0], cwd)


def freeze_before_fork() -> None:
    """Keep what this process has made out of the collector's reach, before a fork
    whose child lives on without an exec.

    Such a child (the pod's PID 1, a container's init) shares this process's
    pages until either of them writes to one, and a full collection of the
    cyclic garbage collector, in either, writes to every object it tracks.
    Frozen objects are never visited again (``gc.freeze``, as Python's
    documentation of the gc module advises before such a fork). The garbage
    there is now is collected first, so that none is kept for good.
    """
    import gc  # here: tini mode never forks without an exec

    gc.collect()
    gc.freeze()


def _children_in_a_new_pid_namespace() -> int | None:
    """Have the next child born PID 1 of a new PID namespace; returns how to come back.

    unshare(CLONE_NEWPID) moves the caller's children, not the caller, into
    the new namespace (its first child becomes its PID 1), so the caller
    returns with setns(2) to its own, which /proc/self/ns/pid still names.
    None when no namespace can be made (no CAP_SYS_ADMIN): the child is
    then born in ours.
    """
    from podvisor.init import syscalls

    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
    except OSError:
        os.close(own)
        return None
    return own


def _children_in_our_pid_namespace(own: int) -> None:
    from podvisor.init import syscalls

    try:
        syscalls.setns(own, syscalls.CLONE_NEWPID)
    finally:
        os.close(own)


class _Plan:
    """The child's orders, fully prepared in the parent."""

    __slots__ = (
        "args",
        "before_exec",
        "candidates",
        "cwd",
        "env",
        "fds",
        "foreground_tty",
        "new_session",
        "run",
    )

    def __init__(
        self,
        *,
        candidates: list[bytes],
        args: list[bytes],
        env: dict[bytes, bytes],
        cwd: str | None,
        fds: tuple[int, ...],
        new_session: bool,
        foreground_tty: int | None,
        before_exec: Callable[[], None] | None,
        run: Callable[[], int] | None = None,
    ) -> None:
        self.candidates = candidates
        self.args = args
        self.env = env
        self.cwd = cwd
        self.fds = fds
        self.new_session = new_session
        self.foreground_tty = foreground_tty
        self.before_exec = before_exec
        self.run = run


def _candidates(program: str, env: Mapping[str, str]) -> list[bytes]:
    """The paths execvp(3) would try, in order (an empty PATH entry is ".")."""
    if "/" in program:
        return [os.fsencode(program)]
    # Not os.get_exec_path(env), which imports warnings for a case (bytes keys)
    # that this str mapping cannot have.
    directories = env.get("PATH", os.defpath).split(os.pathsep)
    return [os.fsencode(os.path.join(d or ".", program)) for d in directories]


def _error_pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose ends are above 2, so dup2 onto 0-2 cannot clobber them."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if read_end <= 2 or write_end <= 2:  # the init was started with stdio closed
        high = _dup_above_stdio(read_end), _dup_above_stdio(write_end)
        os.close(read_end)
        os.close(write_end)
        read_end, write_end = high
    return read_end, write_end


def _dup_above_stdio(fd: int) -> int:
    """A close-on-exec copy of *fd* numbered 3 or more (F_DUPFD without fcntl's import)."""
    held = []
    copy = os.dup(fd)
    while copy <= 2:
        held.append(copy)
        copy = os.dup(fd)
    for low in held:
        os.close(low)
    return copy


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _decode_error(report: bytes, program: str, cwd: str | None) -> SpawnError:
    stage, err_text, message = report.decode(errors="replace").split("\0", 2)
    err = int(err_text)
    if stage == "exec":
        return SpawnError(stage, err, os.strerror(err), program)
    if stage == "chdir":
        return SpawnError(stage, err, os.strerror(err), cwd)
    return SpawnError(stage, err, f"{stage} failed: {message}")


# --- In the child, between fork and exec ----------------------------------------


def _run_child(plan: _Plan, error_fd: int) -> NoReturn:
    """Never returns: execs the program, or reports why not and exits 255."""
    stage = "setup"
    try:
        stage = "setsid" if plan.new_session else "setpgid"
        if plan.new_session:
            os.setsid()
        else:
            os.setpgid(0, 0)
        if plan.foreground_tty is not None:
            stage = "tcsetpgrp"
            _take_foreground(plan.foreground_tty)
        stage = "dup2"
        _install_fds(plan.fds)
        if plan.cwd is not None:
            stage = "chdir"
            os.chdir(plan.cwd)
        if plan.before_exec is not None:
            stage = "before_exec"
            plan.before_exec()
        if plan.run is None:
            stage = "signals"
            prepare_child()
        else:
            stage = "run"
            _close_on_exec_descriptors()  # the error pipe too: end-of-file, started
            _run_instead_of_exec(plan.run)
        stage = "exec"
        _exec(plan)
    except BaseException as exc:
        code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        text = str(exc) or type(exc).__name__
        # A step that names itself more precisely (a volume's mount) is reported so.
        stage = getattr(exc, "stage", None) or stage
        try:
            os.write(error_fd, f"{stage}\0{code}\0{text}".encode(errors="replace"))
        finally:
            os._exit(255)
    os._exit(255)  # not reached: _exec either execs or raises


def _close_on_exec_descriptors() -> None:
    """Close what an exec would: every descriptor marked close-on-exec."""
    import fcntl  # here: only a forked container init comes this way

    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every number the limit allows (at most 65,536)
        import resource

        fds = list(range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)))
    for fd in fds:
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                os.close(fd)
        except OSError:
            pass  # not open (the listing's own descriptor, closed already)


def _run_instead_of_exec(run: Callable[[], int]) -> NoReturn:
    """The child's life without an exec: *run*, then exit with its status.

    The error pipe is closed by now (the parent took the start as a success),
    so what goes wrong goes to the child's own stderr, and the exit says 255.
    """
    code = 255
    try:
        code = run()
    except BaseException as exc:  # never back into the parent's code
        try:  # noqa: SIM105 (contextlib is an import the start-up path avoids)
            os.write(2, f"podvisor-init: {exc!r}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _take_foreground(tty: int) -> None:
    # A background process group that calls tcsetpgrp gets SIGTTOU unless it
    # blocks it; prepare_child() restores the mask afterwards.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTTOU})
    try:
        os.tcsetpgrp(tty, os.getpgrp())
    except OSError as exc:
        # Not our controlling terminal (ENOTTY), or no terminal (ENXIO):
        # tini carries on too.
        if exc.errno not in (errno.ENOTTY, errno.ENXIO, errno.EBADF):
            raise


def _install_fds(fds: tuple[int, ...]) -> None:
    """Make ``fds[i]`` the child's fd i, whatever the overlaps between them."""
    # Move every source out of the way first: a plan like (1, 0) would
    # otherwise overwrite fd 0 before it is copied to 1.
    moved = [fd if fd == target else _dup_above_stdio(fd) for target, fd in enumerate(fds)]
    for target, fd in enumerate(moved):
        if fd == target:
            os.set_inheritable(fd, True)
        else:
            os.dup2(fd, target, inheritable=True)


def _exec(plan: _Plan) -> None:
    """Try each candidate as execvp(3) does; raise the error that explains failure best."""
    saw_eacces = False
    last: OSError | None = None
    for path in plan.candidates:
        try:
            os.execve(path, plan.args, plan.env)  # noqa: S606 (no shell, as execvp)
        except OSError as exc:
            last = exc
            if exc.errno == errno.EACCES:
                saw_eacces = True
            elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV):
                raise
    if saw_eacces:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    raise last or OSError(errno.ENOENT, os.strerror(errno.ENOENT))
