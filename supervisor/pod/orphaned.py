"""The clean-up of a pod whose supervisor was killed, in the place of its outer init.

`podvisor.init.cleanup` execs this once the pod's processes are gone and its
supervisor is dead, with the host's mount and network namespaces as open
descriptors (and the PID namespace's, for its children and threads) and the
cgroups the outer init started in. It goes back into
those namespaces, leaves the pod's cgroups for where it came from (the
parent of the dead supervisor's leaf, where that is allowed, else the leaf),
and then does what the next `podvisor run` would have done: removes the
cgroups, networks and records whose owner is dead, control sockets
nobody serves, and the pods' directories nobody holds (upper directories,
emptyDirs). What it cannot remove now (a cgroup still busy) is left to
the next run, as before.

    python -m podvisor.supervisor.pod.orphaned MNT_FD NET_FD PID_FD CGROUPS
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

from podvisor.init import syscalls


def main(argv: list[str]) -> int:
    mnt, net, pid, cgroups = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    # The PID namespace for children too: after unshare(CLONE_NEWPID) no thread
    # can be made (clone(2): EINVAL), and the network's code makes threads.
    kinds = (
        (mnt, syscalls.CLONE_NEWNS),
        (net, syscalls.CLONE_NEWNET),
        (pid, syscalls.CLONE_NEWPID),
    )
    for fd, kind in kinds:
        syscalls.setns(fd, kind)
        os.close(fd)
    _leave_the_pods_cgroups(cgroups)
    from podvisor.supervisor.cgroups import CgroupDriver
    from podvisor.supervisor.network import cleanup_stale
    from podvisor.supervisor.pod.rootfs import remove_stale

    status = 0
    parts = (
        cleanup_stale,
        lambda: CgroupDriver.detect().remove_stale(),
        _remove_dead_sockets,
        remove_stale,  # the pod's directory: its containers' upper directories, its emptyDirs
    )
    for part in parts:
        try:  # each part on its own: one failure stops none
            part()
        except Exception as exc:  # said, and left to the next run
            with contextlib.suppress(OSError):  # our stderr may be a pipe nobody reads now
                print(f"podvisor: cleaning up after a killed supervisor: {exc!r}", file=sys.stderr)
            status = 1
    return status


def _leave_the_pods_cgroups(started_in: str) -> None:
    """Into the cgroups we started in, or their parent when that is the supervisor's leaf."""
    from podvisor.supervisor.cgroups.driver import is_supervisor_leaf
    from podvisor.supervisor.cgroups.layout import find_hierarchies

    mountinfo = Path("/proc/self/mountinfo").read_text()
    pid = str(os.getpid())
    for hierarchy in find_hierarchies(mountinfo, started_in).hierarchies:
        if hierarchy.read_only:
            continue
        own = str(hierarchy.own_dir)
        places = [own]
        if hierarchy.version == 2 and is_supervisor_leaf(own):
            places.insert(0, os.path.dirname(own))  # the leaf can go too, if we may
        for place in places:
            try:
                Path(place, "cgroup.procs").write_text(pid)
                break
            except OSError:  # v2's rule: no process beside controllers enabled below
                continue


def _remove_dead_sockets() -> None:
    """Control sockets nobody serves any more (ECONNREFUSED): their supervisors died."""
    from podvisor.supervisor.control.paths import SUFFIX, search_dirs

    for directory in search_dirs():
        for path in directory.glob(f"*{SUFFIX}"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
