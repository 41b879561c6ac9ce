"""``podvisor run -d``: start the pod in the background, return once it runs, print its name.

How this works
--------------
The manifest is read here first, for the pod's name (a manifest with
problems is refused here, exit 2, as `run` refuses it). Then the same
`podvisor run`, without ``-d``, starts as a child in a session of its own
(no terminal's signals reach it), its stdin and stdout on /dev/null and its
stderr in a file of its own under the run directory. This command waits
until the pod's control socket answers for that child (the pod's init
serves and its containers start), removes the file (the child's later lines
are its events, which `podvisor events` shows), prints the pod's name and
exits 0; if the child ends first, its stderr is shown and its status
returned. `podvisor attach POD` then follows the containers' output, and
`podvisor stop POD` stops it.

Standard library only, but for the manifest's reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from podvisor.supervisor.control.client import Client
from podvisor.supervisor.control.paths import run_dir
from podvisor.supervisor.control.wire import Ps, PsReply
from podvisor.supervisor.errors import EXIT_CONFIG, ConfigError, PodvisorError

#: How long the pod may take to serve its control socket.
START_WAIT = 120.0
#: How often to look for it meanwhile.
POLL_SECONDS = 0.1
DETACH_FLAGS = ("-d", "--detach")
#: The `podvisor` command, whatever installed it.
ENTRY = "import sys; from podvisor.init.entry import main; sys.exit(main())"


def run_detached(argv: list[str]) -> int:
    """*argv*: ``run ... -d ... MANIFEST``, as given."""
    plain = [a for a in argv if a not in DETACH_FLAGS]
    name = _pod_name(plain)
    if isinstance(name, int):
        return name
    command = [sys.executable, "-c", ENTRY, *plain]
    err, stderr_path = _stderr_file(name)
    with os.fdopen(err, "wb") as err_file, open(os.devnull, "r+b") as null:
        child = subprocess.Popen(
            command,
            stdin=null,
            stdout=null,
            stderr=err_file,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            sys.stderr.write(stderr_path.read_text(errors="replace"))
            stderr_path.unlink(missing_ok=True)
            return code
        if _serves(name, child.pid):
            # Its own lines from here on are its events: `podvisor events` has them.
            stderr_path.unlink(missing_ok=True)
            print(name)
            return 0
        time.sleep(POLL_SECONDS)  # the child says nothing when it serves: look again
    print(
        f"podvisor: pod {name!r} did not start in {START_WAIT:g}s; see {stderr_path}",
        file=sys.stderr,
    )
    return 1


def _pod_name(argv: list[str]) -> str | int:
    """The pod's name from the manifest `run` would read; an exit status if it cannot be read."""
    from podvisor.supervisor.cli.main import _read

    try:
        read = _read(argv)
    except PodvisorError as exc:
        print(f"podvisor: {exc}", file=sys.stderr)
        return exc.exit_status
    if isinstance(read, int):
        return read
    args, loaded = read
    if args.manifest == "-":
        print("podvisor: run -d cannot read the manifest from stdin", file=sys.stderr)
        return EXIT_CONFIG
    if loaded is None:
        return EXIT_CONFIG
    return loaded.pod.name


def _stderr_file(name: str) -> tuple[int, Path]:
    """A file of its own for the child's stderr, until it runs (its lines then go unread)."""
    directory = run_dir() / "detached"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot write in {directory}: {exc.strerror}") from exc
    return fd, Path(path)


def _serves(name: str, pid: int) -> bool:
    try:
        with Client.open(name, timeout=2.0) as client:
            return client.request(Ps(), PsReply).pod.supervisor_pid == pid
    except PodvisorError:
        return False
