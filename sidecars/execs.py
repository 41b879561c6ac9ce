"""Commands run inside a container: exec probes and exec hooks.

How this works
--------------
The pod's init spawns the command (it alone forks and reaps in the pod) with
the container's environment, working directory, user and cgroup
(`PodView.process_for`), stdin on /dev/null, and stdout and stderr on one
pipe that this module reads, keeping the first 10 KiB as the kubelet does.
The init client hands back the command's handle, which settles when the init
reports its exit.

A command that outlives its timeout, or whose caller is cancelled (the probe
was stopped), is SIGKILLed with its process group (it leads a session of its
own), and its exit is awaited in a shielded, bounded scope: no command
outlives its caller unnoticed.

Namespaces: a command runs in the pod's namespaces (network, mount, IPC, UTS)
and in the pod's PID namespace, not in the nested one a container gets
without shareProcessNamespace, so `ps` in an exec probe sees the whole pod.
Its cgroup is the container's: it counts against the container's limits,
and killing the container kills it too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from collections.abc import Sequence

import anyio

from podvisor.supervisor.errors import InitDiedError, PodvisorError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Container
from podvisor.supervisor.pod.init_client import InitProcessHandle
from podvisor.supervisor.pod.view import PodView

MAX_OUTPUT = 10 * 1024  # the kubelet keeps this much of an exec probe's output
KILL_WAIT = 10.0  # seconds for a killed command's exit to be reported
CLEANUP_WAIT = 2.0  # the same when the caller was cancelled: it must not hold its owner up


@frozen
class ExecResult:
    """How a command ended."""

    argv: tuple[str, ...]
    code: int | None = None  # the exit code; None when a signal ended it or it never ran
    signal: int | None = None
    output: str = ""  # stdout and stderr together, at most MAX_OUTPUT bytes of them
    timeout: float | None = None  # set when the command ran out of time and was killed
    error: str = ""  # why the command could not be started

    @property
    def succeeded(self) -> bool:
        return self.code == 0 and self.timeout is None and not self.error

    def describe(self) -> str:
        """One line for a probe's or hook's message, ending with the command's output."""
        command = shlex.join(self.argv)
        if self.error:
            # The init's message names the program already ("prog: No such file ...").
            prefix = f"{self.argv[0]}: " if self.argv else ""
            return f"cannot run {command}: {self.error.removeprefix(prefix)}"
        if self.timeout is not None:
            what = f"timed out after {self.timeout:g}s"
        elif self.signal is not None:
            what = f"was killed by signal {self.signal}"
        else:
            what = f"exited with {self.code}"
        output = self.output.strip()
        return f"command {command} {what}" + (f": {output}" if output else "")


class _Output:
    """The read end of a command's output pipe; keeps the first MAX_OUTPUT bytes."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.data = bytearray()

    def read_available(self) -> bool:
        """Read what is there now; False at end-of-file."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.data += chunk[: max(0, MAX_OUTPUT - len(self.data))]

    async def collect(self) -> None:
        """Read until end-of-file, so a chatty command never blocks on a full pipe."""
        while self.read_available():
            await anyio.wait_readable(self.fd)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def close(self) -> None:
        os.close(self.fd)


class Execs:
    """Runs commands in containers through the pod's init."""

    def __init__(self, view: PodView) -> None:
        self._view = view

    async def run(
        self,
        container: Container,
        argv: Sequence[str],
        timeout: float | None,  # noqa: ASYNC109 -- the probe's timeoutSeconds; it kills the command
    ) -> ExecResult:
        """Run *argv* in *container*, kill it after *timeout* seconds; how it ended."""
        command = tuple(argv)
        spawned = await self._spawn(container, command)
        if isinstance(spawned, str):
            return ExecResult(command, error=spawned)
        process, output = spawned
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(output.collect)
                timed_out = await self._wait(process, timeout)
                tg.cancel_scope.cancel()
            output.read_available()  # what came between the exit and the cancel
        finally:
            output.close()
        return ExecResult(
            command,
            code=process.code,
            signal=process.signal,
            output=output.text(),
            timeout=timeout if timed_out else None,
        )

    async def _spawn(
        self, container: Container, argv: tuple[str, ...]
    ) -> tuple[InitProcessHandle, _Output] | str:
        """Start *argv*: its process and output, or why it could not start."""
        init = self._view.init
        spec = self._view.process_for(container, argv)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            spawned = await init.spawn(spec, (null, write_fd, write_fd))
        except PodvisorError as e:
            os.close(read_fd)
            return f"the pod's init did not start it: {e}"
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(null)
            os.close(write_fd)
        if not isinstance(spawned, InitProcessHandle):
            os.close(read_fd)
            return spawned.message
        return spawned, _Output(read_fd)

    async def _wait(self, process: InitProcessHandle, kill_after: float | None) -> bool:
        """Wait for *process* to exit, killed after *kill_after* s; whether it was."""
        try:
            with anyio.move_on_after(kill_after):
                await process.wait()
                return False
            with anyio.move_on_after(KILL_WAIT):
                await self._kill(process.pid)
                await process.wait()
        except InitDiedError:
            return False  # the pod is being torn down; the command went with it
        else:
            return True
        finally:
            if not process.done:  # cancelled, or the kill was not reported in time
                # Bounded even when shielded: during the pod's teardown nobody may
                # read the channel any more, and the init's stop_all and the
                # container's cgroup kill end the command anyway.
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_WAIT):
                    await self._kill(process.pid)
                    with contextlib.suppress(InitDiedError):
                        await process.wait()

    async def _kill(self, pid: int) -> None:
        with contextlib.suppress(PodvisorError):
            await self._view.init.signal(pid, signal.SIGKILL, group=True)
