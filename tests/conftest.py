"""Fixtures shared by every test: each test leaves the machine as it found it.

The pytest process makes itself a child subreaper, so any process a test
started, however it forked or called setsid, ends up as our child if it
outlives its parent. After each test, the `no_leaks` fixture checks that no
child of ours is left, and that no cgroup, network namespace, veth or mount
that podvisor makes is left either; it removes what it finds and fails the
test that left it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podvisor.init import syscalls
from podvisor.supervisor.cgroups.driver import V2_CONTROLLERS, is_supervisor_leaf
from podvisor.supervisor.network import records
from podvisor.supervisor.network.model import DEFAULT_BRIDGE

PREFIXES = ("podvisor-", "pv-", "pvh", "pvp")
#: Where the shared bridges' records are: a bridge without one is nobody's.
BRIDGES = records.BRIDGES_DIR


def pytest_configure(config: pytest.Config) -> None:
    syscalls.set_child_subreaper()
    if os.geteuid() == 0:
        # As `ip netns add` does once per boot: /run/netns becomes a mount of
        # its own. Done now, so that the first pod on a freshly booted host is
        # not judged to have left a mount behind.
        from podvisor.supervisor.network import netns

        netns.ensure_netns_dir()
    # Pods' log folders go to the session's own directory, never /var/log/pods,
    # where another session's pod of the same name could be running.
    if "PODVISOR_LOG_DIR" not in os.environ:
        import tempfile

        _log_dir_made[0] = tempfile.mkdtemp(prefix="podvisor-logs-")
        os.environ["PODVISOR_LOG_DIR"] = _log_dir_made[0]
    _subtree_control_at_start.update(
        (d, (d / "cgroup.subtree_control").read_text().split())
        for d in cgroup_bases()
        if (d / "cgroup.subtree_control").exists()
    )
    if os.geteuid() == 0:
        enter_supervisor_leaf()


def pytest_unconfigure(config: pytest.Config) -> None:
    leave_supervisor_leaf()
    if _log_dir_made[0]:
        import shutil

        shutil.rmtree(_log_dir_made[0], ignore_errors=True)


#: The session's log folder, when it made one (removed at its end).
_log_dir_made: list[str] = [""]


# --- Our cgroup ---------------------------------------------------------------------
# On cgroup v2, the first pod run in this process moves it into a leaf,
# podvisor-supervisor-<pid>, and enables controllers in the cgroup it left
# (supervisor/cgroups/driver.py); the supervisor stays there while it lives.
# The test session, which runs many pods in one process, puts both back.

_subtree_control_at_start: dict[Path, list[str]] = {}


def enter_supervisor_leaf() -> None:
    """Where cgroup v2 offers controllers, do at once what the session's first pod run
    in this process would do: move into the leaf and hand the controllers to the
    children of the cgroup it left. A podvisor that a test starts as a child then
    finds that cgroup holding no process, as a podvisor started as a service of its
    own does, rather than refusing to share it with the session."""
    for own in own_cgroup_dirs():
        control = own / "cgroup.subtree_control"
        if not control.exists() or not (own / "cgroup.type").exists():
            continue  # a v1 hierarchy, or the root cgroup, which may do both
        if is_supervisor_leaf(str(own)):
            continue
        offered = set((own / "cgroup.controllers").read_text().split()) & V2_CONTROLLERS
        if not offered:
            continue  # the hybrid layout's empty v2 hierarchy: nothing moves
        leaf = own / f"podvisor-supervisor-{os.getpid()}"
        try:
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            control.write_text(" ".join(f"+{c}" for c in sorted(offered)))
        except OSError as e:  # others share the session's cgroup: the tests will say so
            print(f"conftest: stays in cgroup {own}: {e}")
            with contextlib.suppress(OSError):
                (own / "cgroup.procs").write_text(str(os.getpid()))
                leaf.rmdir()


def leave_supervisor_leaf() -> None:
    for leaf in own_cgroup_dirs():
        if leaf.name != f"podvisor-supervisor-{os.getpid()}":
            continue
        parent = leaf.parent
        control = parent / "cgroup.subtree_control"
        before = _subtree_control_at_start.get(parent, [])
        try:
            for controller in control.read_text().split():
                if controller not in before:
                    control.write_text(f"-{controller}")
            (parent / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
        except OSError as e:  # another session's pods hold the controllers: theirs to end
            print(f"conftest: left cgroup {leaf} as it is: {e}")


def children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def state_of(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def own_cgroup_dirs() -> list[Path]:
    """Our own cgroup in each hierarchy, found from mountinfo and /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, mountpoint, root = fields[sep + 1], fields[4], fields[3]
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            opts = fields[sep + 3].split(",")
            key = next((o for o in opts if o in own), "")
            if not key:
                continue
        else:
            continue
        rel = own.get(key, "/")
        if root != "/" and rel.startswith(root):
            rel = rel[len(root) :]
        dirs.append(Path(mountpoint) / rel.lstrip("/"))
    return dirs


def cgroup_bases() -> list[Path]:
    """Where podvisor makes its cgroups when run in this process: our own cgroup in
    each hierarchy, or the parent of the supervisor's leaf we were moved into."""
    return [d.parent if is_supervisor_leaf(str(d)) else d for d in own_cgroup_dirs()]


def leftover_cgroups() -> list[Path]:
    found = []
    ours = set(own_cgroup_dirs())  # the supervisor's leaf we are in, which stays
    for base in cgroup_bases():
        if base.is_dir():
            found += [
                p
                for p in base.iterdir()
                if p.is_dir() and p.name.startswith(PREFIXES) and p not in ours
            ]
    return found


def leftover_netns() -> list[str]:
    run = Path("/run/netns")
    return (
        sorted(p.name for p in run.iterdir() if p.name.startswith(PREFIXES)) if run.is_dir() else []
    )


def leftover_links() -> list[str]:
    """podvisor's links, and its default bridge when no record says a pod still uses it."""
    found = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(PREFIXES))
    bridge = DEFAULT_BRIDGE
    if Path(f"/sys/class/net/{bridge}").exists() and not (BRIDGES / f"{bridge}.json").exists():
        found.append(bridge)
    return found


# --- Whose is it? -------------------------------------------------------------------
# Several test sessions may share this machine. A leftover that a live process
# outside our own process tree holds (a network record's owner, a cgroup's
# flock) belongs to another session, and is not ours to report.


def _ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))
    return found


def _foreign(pid: int) -> bool:
    """A live process that is neither us nor one of our descendants."""
    return Path(f"/proc/{pid}").exists() and os.getpid() not in _ancestors(pid)


def _network_owners() -> dict[str, int]:
    """The owner pid named by each pod network record, by every name the record holds."""
    owners: dict[str, int] = {}
    for record in Path("/run/podvisor/pods").glob("*/network.json"):
        try:
            text = record.read_text()
            pid = int(json.loads(text)["owner"]["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for word in re.findall(r"[A-Za-z0-9_.-]+", text):
            if word.startswith(PREFIXES):
                owners[word] = pid
    return owners


def _lock_holders() -> dict[tuple[int, int, int], int]:
    """(major, minor, inode) -> pid of every flock on this machine (/proc/locks)."""
    holders: dict[tuple[int, int, int], int] = {}
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK":
            major, minor, inode = fields[5].split(":")
            holders[int(major, 16), int(minor, 16), int(inode)] = int(fields[4])
    return holders


def _ours_cgroups(paths: set[Path]) -> set[Path]:
    holders = _lock_holders()
    mine = set()
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        holder = holders.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
        if holder is None or not _foreign(holder):
            mine.add(path)
    return mine


def _ours_names(names: set[str]) -> set[str]:
    owners = _network_owners()
    return {n for n in names if n not in owners or not _foreign(owners[n])}


def mounts() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _end(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pids.discard(pid)
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before_children = children()
    before_cgroups = set(leftover_cgroups())
    before_netns = set(leftover_netns())
    before_links = set(leftover_links())
    before_mounts = mounts()
    yield
    problems = []
    # A process that was told to stop may need a moment to be reaped: allow
    # it, bounded, before calling it a leak.
    deadline = time.monotonic() + 5
    while True:
        extra = children() - before_children
        alive = {pid for pid in extra if state_of(pid) not in ("Z", "gone")}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if alive:
        problems.append(f"processes left running: {sorted(alive)}")
    _end(extra)
    cgroups = _ours_cgroups(set(leftover_cgroups()) - before_cgroups)
    if cgroups:
        problems.append(f"cgroups left: {sorted(map(str, cgroups))}")
    netns = _ours_names(set(leftover_netns()) - before_netns)
    if netns:
        problems.append(f"network namespaces left: {sorted(netns)}")
    links = _ours_names(set(leftover_links()) - before_links)
    if links:
        problems.append(f"links left: {sorted(links)}")
    after_mounts = set(mounts())
    changed = after_mounts ^ set(before_mounts)
    # A named network namespace is a mount under /run/netns: judged like the
    # netns. One that went away during the test was another session's pod
    # ending (this test's own are made and undone within it).
    netns_mounts = {m for m in changed if m.startswith("/run/netns/")}
    changed -= netns_mounts
    appeared = {m[11:] for m in netns_mounts if m in after_mounts}
    changed |= {f"/run/netns/{n}" for n in _ours_names(appeared)}
    if changed:
        problems.append(f"mounts changed: {sorted(changed)}")
    if problems:
        pytest.fail("the test left things behind:\n" + "\n".join(problems))
