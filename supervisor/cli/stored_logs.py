"""`podvisor logs` for a pod that has ended: its container log files.

A running pod answers `podvisor logs` from its ring of recent lines; once it
has ended, its log folder (`pod.logfiles`) still holds every line of the
last two instances of each container, rotated files included. This reads
them as the ring would have answered: the last instance (or the one before,
with --previous), the last --tail lines, newer than --since.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable, Iterable

from podvisor.supervisor.control.wire import LogRecord
from podvisor.supervisor.pod import logfiles


def show(
    args: argparse.Namespace,
    container: str | None,
    since: float | None,
    writer: Callable[[argparse.Namespace, int], Callable[[LogRecord], None]],
) -> bool:
    """Print the stored lines of pod *args.pod*; False if it has no log folder."""
    folder = logfiles.find_pod_folder(logfiles.log_root(), args.pod)
    if folder is None:
        return False
    names = [container] if container else sorted(p.name for p in folder.iterdir() if p.is_dir())
    write = writer(args, max(map(len, names)) if len(names) > 1 else 0)
    for name in names:
        numbers = logfiles.instances(folder, name)
        wanted = -2 if args.previous else -1
        if len(numbers) < -wanted:
            continue
        records: Iterable[logfiles.FileRecord] = logfiles.read_instance(
            folder, name, numbers[wanted]
        )
        if since is not None:
            records = (r for r in records if r.time >= since)
        if args.tail is not None:
            records = collections.deque(records, maxlen=max(args.tail, 0))
        for r in records:
            write(LogRecord(r.time, r.container, r.stream, r.text, r.partial))
    return True
