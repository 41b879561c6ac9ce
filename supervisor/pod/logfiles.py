"""Container logs on disk, kept as the kubelet keeps them.

How this works
--------------
Each container instance writes one file in the CRI log format, under the
pod's log folder::

    $PODVISOR_LOG_DIR/NAMESPACE_POD_UID/CONTAINER/N.log     (N: the restart count)

    2026-12-06T03:20:27.123456789Z stdout F a whole line
    2026-12-06T03:20:27.123456789Z stderr P the first part of a long line

The folder is /var/log/pods for root, as the kubelet's, unless
$PODVISOR_LOG_DIR says otherwise, and $XDG_STATE_HOME/podvisor/pods (or
~/.local/state/podvisor/pods) for anyone else. A file that grows past the
size limit (`containerLogMaxSize`, 10 MiB) is rotated: N.log becomes
N.log.1, N.log.1 becomes N.log.2, and so on, keeping at most
`containerLogMaxFiles` (5) files in all. Files of the current and the
previous instance are kept, as the kubelet keeps them; older ones go.

The files stay after the pod has ended, for `podvisor logs`, until the next
pod of that name starts (a new UID, a new folder; the old one goes then).

A write that fails (a full disk: ENOSPC; EIO) drops the line and counts it,
and the sink says so once; the container never waits on its log files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from podvisor.supervisor.frozen import frozen

#: containerLogMaxSize and containerLogMaxFiles, the kubelet's defaults.
MAX_SIZE = 10 * 1024 * 1024
MAX_FILES = 5
ENV_DIR = "PODVISOR_LOG_DIR"


def log_root() -> Path:
    """Where every pod's log folder goes, for whoever we run as."""
    if given := os.environ.get(ENV_DIR):
        return Path(given)
    if os.geteuid() == 0:
        return Path("/var/log/pods")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "podvisor" / "pods"


def pod_folder(root: Path, namespace: str, name: str, uid: str) -> Path:
    return root / f"{namespace}_{name}_{uid}"


@frozen
class Rotation:
    max_size: int = MAX_SIZE
    max_files: int = MAX_FILES


class InstanceFile:
    """One container instance's log file, rotated by size."""

    def __init__(self, folder: Path, instance: int, rotation: Rotation) -> None:
        self.path = folder / f"{instance}.log"
        self.rotation = rotation
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size
        self.pending: list[bytes] = []
        self.pending_size = 0

    def write(self, when: float, stream: str, text: str, partial: bool) -> None:
        """One CRI record, kept until `flush`; raises OSError (ENOSPC, EIO) for the caller."""
        data = f"{cri_time(when)} {stream} {'P' if partial else 'F'} {text}\n".encode(
            "utf-8", errors="replace"
        )
        if self.size + self.pending_size + len(data) > self.rotation.max_size:
            self.flush()
            if self.size:
                self.rotate()
        self.pending.append(data)
        self.pending_size += len(data)

    def flush(self) -> None:
        """Write the records kept so far in one write; dropped (and raised) if it fails."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_size = 0
        written = os.write(self.fd, data)
        self.size += written
        if written < len(data):  # the disk filled up in the middle
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        keep = max(self.rotation.max_files - 1, 0)
        for n in range(keep, 0, -1):
            older = Path(f"{self.path}.{n}")
            if n == keep:
                older.unlink(missing_ok=True)
            elif older.exists():
                older.rename(f"{self.path}.{n + 1}")
        if keep:
            self.path.rename(f"{self.path}.1")
        else:
            self.path.unlink(missing_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                self.flush()
            os.close(self.fd)
            self.fd = -1


class PodLogFiles:
    """The log folder of one pod: a file per container instance."""

    def __init__(self, folder: Path, rotation: Rotation) -> None:
        self.folder = folder
        self.rotation = rotation
        self.files: dict[str, InstanceFile] = {}

    @classmethod
    def create(
        cls, root: Path, namespace: str, name: str, uid: str, rotation: Rotation
    ) -> PodLogFiles:
        """The pod's folder, made fresh; folders of earlier pods of this name go."""
        for old in root.glob(f"{_glob_safe(namespace)}_{_glob_safe(name)}_*"):
            _remove_tree(old)
        folder = pod_folder(root, namespace, name, uid)
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        return cls(folder, rotation)

    def new_instance(self, container: str, instance: int) -> None:
        """Open the file of *container*'s instance *instance*; drop the one before last."""
        self.close_container(container)
        directory = self.folder / container
        directory.mkdir(exist_ok=True)
        for path in directory.glob(f"{instance - 2}.log*"):
            path.unlink(missing_ok=True)
        self.files[container] = InstanceFile(directory, instance, self.rotation)

    def write(self, container: str, when: float, stream: str, text: str, partial: bool) -> None:
        log = self.files.get(container)
        if log is not None:
            log.write(when, stream, text, partial)

    def flush(self, container: str) -> None:
        log = self.files.get(container)
        if log is not None:
            log.flush()

    def close_container(self, container: str) -> None:
        log = self.files.pop(container, None)
        if log is not None:
            log.close()

    def close(self) -> None:
        for name in list(self.files):
            self.close_container(name)


# --- Reading them back -------------------------------------------------------------------


@frozen
class FileRecord:
    time: float
    container: str
    stream: str
    text: str
    partial: bool


def find_pod_folder(root: Path, name: str, namespace: str | None = None) -> Path | None:
    """The newest log folder of a pod named *name* (in *namespace*, if given)."""
    pattern = f"{_glob_safe(namespace) if namespace else '*'}_{_glob_safe(name)}_*"
    found = [p for p in root.glob(pattern) if p.is_dir() and p.name.split("_")[1] == name]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def instances(folder: Path, container: str) -> list[int]:
    """The instance numbers whose files *container* has, oldest first."""
    numbers = {
        int(m.group(1))
        for p in (folder / container).glob("*.log*")
        if (m := re.fullmatch(r"([0-9]+)\.log(\.[0-9]+)?", p.name))
    }
    return sorted(numbers)


def read_instance(folder: Path, container: str, instance: int) -> Iterator[FileRecord]:
    """The records of one instance, rotated files first, oldest first."""
    base = folder / container / f"{instance}.log"
    rotated = sorted(
        (p for p in base.parent.glob(f"{instance}.log.*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    for path in [*rotated, base]:
        with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as f:
            for line in f:
                record = parse_cri(container, line.rstrip("\n"))
                if record is not None:
                    yield record


def parse_cri(container: str, line: str) -> FileRecord | None:
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[2] not in ("P", "F"):
        return None
    when = parse_cri_time(parts[0])
    return FileRecord(
        when, container, parts[1], parts[3] if len(parts) > 3 else "", parts[2] == "P"
    )


def cri_time(when: float) -> str:
    """RFC 3339 with nanoseconds, in UTC, as the CRI's log lines have it."""
    seconds = int(when)
    nanos = round((when - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def parse_cri_time(text: str) -> float:
    import calendar

    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def _remove_tree(path: Path) -> None:
    """Remove a log folder and what it holds (not shutil: the supervisor stays lean)."""
    with contextlib.suppress(OSError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
        for child in path.iterdir():
            _remove_tree(child)
        path.rmdir()


def _glob_safe(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
