"""A stand-in for the kernel's cgroup file systems, in a temporary directory.

The development machine is hybrid, so the v2-only and legacy-v1 paths of the
driver run here against this: a tree of plain directories laid out as a
sample's mountinfo says, where `make_dir`, `write` and `remove_dir` (patched
into podvisor.supervisor.cgroups.cgroupfs) behave as the kernel does in the
ways the driver relies on:

* mkdir fills a cgroup with its interface files: on v1 by the hierarchy's
  controllers (a new cpuset has no cpus and mems), on v2 by the controllers
  its parent enabled in cgroup.subtree_control;
* a pid written to cgroup.procs leaves its other cgroup in that hierarchy;
  v2 refuses it where controllers are enabled for children, v1 cpuset where
  cpus or mems are empty (ENOSPC);
* cgroup.subtree_control takes only offered controllers, and refuses while
  the cgroup (not a hierarchy's root) holds a process (no-internal-processes);
* cgroup.kill empties the cgroup, and so does `kill` (patched in for the
  driver's SIGKILL, so that no pid of a sample ever reaches a real process);
  rmdir removes a cgroup's files with it and refuses a populated one;
* a write to a file the kernel did not make fails with ENOENT (`missing`
  leaves files out, as a kernel without swap accounting has no memsw or swap
  files);
* v1 keeps memory.memsw.limit_in_bytes at or above memory.limit_in_bytes and
  refuses a write that would break it (EINVAL).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from podvisor.supervisor.cgroups.layout import parse_mountinfo, parse_proc_cgroup

V1_CONTROLLERS = frozenset(
    [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
    ]
)
V2_OFFERED = "cpuset cpu io memory hugetlb pids rdma misc"

V1_FILES = {
    "cpu": {
        "cpu.cfs_period_us": "100000\n",
        "cpu.cfs_quota_us": "-1\n",
        "cpu.shares": "1024\n",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {"cpuacct.usage": "0\n", "cpuacct.stat": "user 0\nsystem 0\n"},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n"},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.stat": "",
        "memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.usage_in_bytes": "0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {"blkio.throttle.io_service_bytes_recursive": "Total 0\n"},
}
V2_CORE = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_FILES = {
    "cpu": {"cpu.max": "max 100000\n", "cpu.weight": "100\n"},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n"},
    "io": {"io.stat": ""},
    "memory": {
        "memory.max": "max\n",
        "memory.current": "0\n",
        "memory.events": "oom_kill 0\n",
        "memory.swap.max": "max\n",
        "memory.swap.current": "0\n",
        "memory.oom.group": "0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}


MEMSW_ORDER = frozenset({"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"})


def _error(code: int, path: str | Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


class FakeKernel:
    """The cgroup mounts of a sample's mountinfo, under `root`, with us in our cgroups."""

    def __init__(self, root: Path, mountinfo: str, proc_cgroup: str, pid: int) -> None:
        self.root = root
        self.pid = pid
        self.writes: list[tuple[str, str]] = []  # (path below root, value)
        self.killed: list[int] = []
        #: interface files this kernel does not make in new cgroups
        self.missing: set[str] = set()
        #: each mount's directory here -> its controllers (None: cgroup2)
        self.mounts: dict[Path, frozenset[str] | None] = {}
        own = parse_proc_cgroup(proc_cgroup)
        for mount in parse_mountinfo(mountinfo):
            top = root / mount.mountpoint.lstrip("/")
            if mount.fstype == "cgroup2":
                controllers = None
                path = own.get(frozenset(), "/")
            else:
                controllers = mount.super_options & V1_CONTROLLERS
                path = next((p for c, p in own.items() if c and c <= mount.super_options), "/")
            self.mounts[top] = controllers
            self._make_root(top, controllers)
            self._make_own(top, mount.root, path)

    # --- Building the tree ---------------------------------------------------------

    def _make_root(self, top: Path, controllers: frozenset[str] | None) -> None:
        top.mkdir(parents=True)
        if controllers is None:
            files = {**V2_CORE, "cgroup.controllers": V2_OFFERED + "\n"}
        else:
            files = {"cgroup.procs": ""}
            for controller in controllers:
                files.update(V1_FILES.get(controller, {}))
            if "cpuset" in controllers:
                files.update({"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"})
        for name, text in files.items():
            (top / name).write_text(text)

    def _make_own(self, top: Path, mount_root: str, path: str) -> None:
        """Make our cgroup as its manager would have (v2: controllers delegated to it)."""
        relative = path[len(mount_root) :] if mount_root != "/" else path
        here = top
        for part in [p for p in relative.split("/") if p]:
            if self.mounts[top] is None:
                offered = (here / "cgroup.controllers").read_text().split()
                (here / "cgroup.subtree_control").write_text(" ".join(offered) + "\n")
            here = here / part
            self.make_dir(str(here))
            for name in ("cpuset.cpus", "cpuset.mems"):  # as the manager set them up
                if self.mounts[top] is not None and (here / name).exists():
                    (here / name).write_text((here.parent / name).read_text())
        (here / "cgroup.procs").write_text(f"{self.pid}\n")

    def mount_of(self, path: Path) -> Path:
        return max((m for m in self.mounts if path == m or m in path.parents), key=len_of)

    # --- The kernel's side of the seam --------------------------------------------------

    def make_dir(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir()
        controllers = self.mounts[self.mount_of(directory)]
        if controllers is None:
            enabled = (directory.parent / "cgroup.subtree_control").read_text().split()
            files = {**V2_CORE, "cgroup.controllers": " ".join(enabled) + "\n"}
            for controller in enabled:
                files.update(V2_FILES.get(controller, {}))
        else:
            files = {"cgroup.procs": ""}
            for controller in controllers:
                files.update(V1_FILES.get(controller, {}))
        for name, text in files.items():
            if name not in self.missing:
                (directory / name).write_text(text)

    def write(self, path: str, value: str) -> None:
        file = Path(path)
        if not file.is_file():
            raise _error(errno.ENOENT, path)
        if file.name in MEMSW_ORDER and not self._memsw_holds(file, int(value)):
            raise _error(errno.EINVAL, path)
        self.writes.append((str(file.relative_to(self.root)), value))
        if file.name == "cgroup.procs":
            self._move(file.parent, int(value) or self.pid)
        elif file.name == "cgroup.subtree_control":
            self._enable(file.parent, value.split())
        elif file.name == "cgroup.kill":
            for procs in file.parent.rglob("cgroup.procs"):
                procs.write_text("")
            self._refresh_events(self.mount_of(file.parent))
        else:
            file.write_text(value + "\n")

    def kill(self, pid: int) -> None:
        """SIGKILL: the process leaves every cgroup at once."""
        self.killed.append(pid)
        for top in self.mounts:
            for procs in top.rglob("cgroup.procs"):
                pids = [p for p in procs.read_text().split() if p != str(pid)]
                procs.write_text("".join(f"{p}\n" for p in pids))
            self._refresh_events(top)

    def remove_dir(self, path: str) -> None:
        directory = Path(path)
        if not directory.is_dir():
            raise _error(errno.ENOENT, path)
        if (directory / "cgroup.procs").read_text().split():
            raise _error(errno.EBUSY, path)
        if any(p.is_dir() for p in directory.iterdir()):
            raise _error(errno.EBUSY, path)
        shutil.rmtree(directory)  # the interface files go with the cgroup

    def _move(self, directory: Path, pid: int) -> None:
        top = self.mount_of(directory)
        subtree_control = directory / "cgroup.subtree_control"
        if directory != top and subtree_control.exists() and subtree_control.read_text().split():
            raise _error(errno.EBUSY, directory)  # v2: no internal processes
        cpuset = directory / "cpuset.mems"
        if self.mounts[top] and cpuset.exists() and not cpuset.read_text().strip():
            raise _error(errno.ENOSPC, directory)
        for procs in top.rglob("cgroup.procs"):
            pids = [p for p in procs.read_text().split() if p != str(pid)]
            procs.write_text("".join(f"{p}\n" for p in pids))
        procs = directory / "cgroup.procs"
        procs.write_text(procs.read_text() + f"{pid}\n")
        self._refresh_events(top)

    def _memsw_holds(self, file: Path, value: int) -> bool:
        """Whether v1's memory + swap limit stays at or above the memory limit."""
        memsw = file.parent / "memory.memsw.limit_in_bytes"
        if not memsw.exists():
            return True
        if file.name == "memory.limit_in_bytes":
            return value <= int(memsw.read_text())
        return value >= int((file.parent / "memory.limit_in_bytes").read_text())

    def _refresh_events(self, top: Path) -> None:
        """v2's cgroup.events: populated while any process is in the cgroup or beneath."""
        for events in top.rglob("cgroup.events"):
            populated = any(p.read_text().split() for p in events.parent.rglob("cgroup.procs"))
            events.write_text(f"populated {int(populated)}\nfrozen 0\n")

    def _enable(self, directory: Path, tokens: list[str]) -> None:
        offered = (directory / "cgroup.controllers").read_text().split()
        enabled = set((directory / "cgroup.subtree_control").read_text().split())
        for token in tokens:
            if token[1:] not in offered:
                raise _error(errno.ENOENT, directory)
        is_root = directory == self.mount_of(directory)
        if (directory / "cgroup.procs").read_text().split() and not is_root:
            raise _error(errno.EBUSY, directory)
        for token in tokens:
            (enabled.add if token[0] == "+" else enabled.discard)(token[1:])
        (directory / "cgroup.subtree_control").write_text(" ".join(sorted(enabled)) + "\n")


def len_of(path: Path) -> int:
    return len(path.parts)
