"""The cgroup driver: a cgroup per pod and per container, on v1, v2 and hybrid hosts.

Where cgroups go. In every hierarchy, beneath the cgroup podvisor was started
in (``<own>``), never higher::

    <own>/podvisor-<pod>-<8 hex of the pod's uid>/<container>
    <own>/podvisor-<pod>-<8 hex of the pod's uid>/_init      (the pod's init)

On cgroup v2, a cgroup may either hold processes or hand controllers to its
children, not both (the no-internal-processes rule). Before enabling a
controller in ``<own>/cgroup.subtree_control``, podvisor therefore moves
itself into a leaf, ``<own>/podvisor-supervisor-<pid>``, and then enables the
controllers it uses (cpu, cpuset, io, memory, pids: those the host offers) in
``<own>`` and in each pod cgroup; container cgroups are leaves. Only podvisor
itself is moved: if other processes share its cgroup, enabling fails and the
error says how to start podvisor in a cgroup of its own (podvisor moves back
and removes its leaf first). The supervisor's leaf holds podvisor until it
exits, so the next start's `remove_stale` removes it.
A process that finds itself in such a leaf already (one that runs a second
pod, or a podvisor started by a supervisor, which inherits its cgroup) was
started in the leaf's parent: it makes its cgroups there, so leaves never
nest one run deeper each time.
In the hybrid layout the v2 hierarchy offers no controller podvisor uses, so
nothing is enabled and nothing moves: it serves cgroup.kill, cgroup.freeze,
cgroup.events and the pressure files.

Stale cgroups. A live supervisor holds an flock on each of its pod cgroup
directories; the kernel drops it however the supervisor dies. `remove_stale`
removes ``podvisor-*`` cgroups beneath ``<own>`` that nobody holds and that no
process is left in, and never touches one that a live supervisor owns.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from podvisor.supervisor.cgroups import cgroupfs
from podvisor.supervisor.cgroups.layout import Hierarchies, Hierarchy, Layout, find_hierarchies
from podvisor.supervisor.cgroups.limits import Limits, plan_limits
from podvisor.supervisor.cgroups.tree import CgroupTree, Place
from podvisor.supervisor.errors import CgroupError

if TYPE_CHECKING:
    from podvisor.supervisor.cgroups.stats import CgroupStats, StatsReader

PREFIX = "podvisor-"
INIT_CONTAINER = "_init"  # the pod's init; container names (DNS labels) cannot clash
#: The v2 controllers podvisor enables for its pods, where the host offers them.
V2_CONTROLLERS = frozenset({"cpu", "cpuset", "io", "memory", "pids"})
#: What metrics read, by the name of the controller that provides it on v1 / v2.
_METRIC_CONTROLLERS = {"cpu": "cpu", "memory": "memory", "pids": "pids", "blkio": "io"}
_SUPERVISOR_LEAF = re.compile(r"podvisor-supervisor-[0-9]+")
_STALE_NAME = re.compile(rf"podvisor-.+-[0-9a-f]{{8}}|{_SUPERVISOR_LEAF.pattern}")


class CgroupDriver:
    """Makes and removes podvisor's cgroups on the host's layout.

    `detect()` reads /proc/self/mountinfo and /proc/self/cgroup; pass `root`
    (and the two texts) to run it against a directory of sample files.
    """

    def __init__(self, found: Hierarchies, places: list[Place], warnings: list[str]) -> None:
        self.layout: Layout = found.layout
        self.warnings: list[str] = warnings
        self._places = places
        self._prepared = False
        self._leaf_lock: int | None = None
        self._pods: dict[str, PodCgroup] = {}

    @classmethod
    def detect(
        cls, *, root: str = "/", mountinfo: str | None = None, proc_cgroup: str | None = None
    ) -> CgroupDriver:
        """The driver for this process's cgroups; read-only hosts get one that skips limits."""
        if mountinfo is None:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        if proc_cgroup is None:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        found = find_hierarchies(mountinfo, proc_cgroup)
        places = [_place(h, root) for h in found.hierarchies]
        writable = [
            p
            for h, p in zip(found.hierarchies, places, strict=True)
            if not h.read_only and os.access(p.base, os.W_OK)
        ]
        warnings = [*found.warnings, *_writability_warnings(places, writable)]
        driver = cls(found, writable, warnings)
        driver.warnings += driver._missing_warnings()
        return driver

    @property
    def read_only(self) -> bool:
        """True when podvisor can make no cgroup here: pods run without limits."""
        return not self._places

    @property
    def versions(self) -> dict[str, int]:
        """Each controller podvisor can use, with the cgroup version that provides it."""
        return {c: p.version for p in self._places for c in p.controllers}

    def check(self, limits: Limits) -> None:
        """CgroupError when the host cannot apply `limits` (say it before anything starts)."""
        if not self.read_only:
            plan_limits(limits, self.versions)

    def _missing_warnings(self) -> list[str]:
        if self.read_only:
            return []
        versions = self.versions
        missing = [
            v2 if self.layout == Layout.V2 else v1
            for v1, v2 in _METRIC_CONTROLLERS.items()
            if v1 not in versions and v2 not in versions
        ]
        warnings = []
        if missing:
            warnings.append(
                f"cgroup controller(s) {', '.join(missing)} are not available here: their "
                "metrics are not collected and limits that need them are refused at start"
            )
        if "freezer" not in versions and all(p.version == 1 for p in self._places):
            warnings.append(
                "neither cgroup.kill nor the freezer controller is available: stopping a "
                "container signals each of its processes in turn, which one forking fast "
                "can outrun (mount the v1 freezer hierarchy)"
            )
        return warnings

    # --- Pods ---------------------------------------------------------------------

    def create_pod(self, pod_name: str, pod_uid: str) -> PodCgroup:
        """Make the pod's cgroup in every hierarchy (and a leaf for ourselves on v2)."""
        name = pod_dir_name(pod_name, pod_uid)
        if name in self._pods:
            raise CgroupError(f"pod {pod_name} ({pod_uid}) already has cgroup {name}")
        if self.read_only:
            return PodCgroup(self, name, [], [])
        self._prepare()
        dirs: list[tuple[Place, str]] = []
        locks: list[int] = []
        try:
            for place in self._places:
                path = os.path.join(place.base, name)
                locks.append(_make_locked(place, path, f"pod {pod_name}"))
                dirs.append((place, path))
                _init_cgroup(place, path, parent=place.base)
                if place.version == 2:
                    _enable_controllers(path, place.controllers)
        except BaseException:
            CgroupTree(name, dirs).remove_dirs()
            for fd in locks:
                os.close(fd)
            raise
        pod = PodCgroup(self, name, dirs, locks)
        self._pods[name] = pod
        return pod

    def _forget(self, name: str) -> None:
        self._pods.pop(name, None)

    def _warn_once(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

    def _prepare(self) -> None:
        """On v2, move ourselves into a leaf and enable our controllers in <own>."""
        if self._prepared:
            return
        for place in self._places:
            if place.version != 2 or not place.controllers:
                continue
            enabled = set(
                (cgroupfs.read(_join(place.base, "cgroup.subtree_control")) or "").split()
            )
            if place.controllers <= enabled:
                continue
            leaf = _join(place.base, f"{PREFIX}supervisor-{os.getpid()}")
            self._leaf_lock = _make_locked(place, leaf, "the supervisor")
            _write(_join(leaf, "cgroup.procs"), str(os.getpid()))
            try:
                _enable_controllers(place.base, place.controllers)
            except CgroupError:
                self._leave_leaf(place, leaf)
                raise
        self._prepared = True

    def _leave_leaf(self, place: Place, leaf: str) -> None:
        """Back to <own>, the leaf removed: a podvisor refused for sharing its cgroup
        leaves nothing behind. <own> takes us back because no controller was enabled."""
        try:
            _write(_join(place.base, "cgroup.procs"), str(os.getpid()))
            cgroupfs.remove_dir(leaf)
        except (CgroupError, OSError):
            pass  # still in the leaf: the next start's remove_stale removes it
        if self._leaf_lock is not None:
            os.close(self._leaf_lock)
            self._leaf_lock = None

    # --- Stale cgroups --------------------------------------------------------------

    def remove_stale(self) -> list[str]:
        """Remove podvisor-* cgroups beneath ours whose supervisor and processes are gone."""
        names = {
            n for p in self._places for n in cgroupfs.subdirs(p.base) if _STALE_NAME.fullmatch(n)
        }
        removed = []
        for name in sorted(names - self._pods.keys()):
            try:
                removed += self._remove_if_stale(name)
            except FileNotFoundError:
                pass  # its own supervisor removed it meanwhile, as a pod's end does
            except CgroupError as exc:
                # Its last process may be exiting right now (EBUSY): the next
                # start tries again. Never a reason not to start this pod.
                self.warnings.append(f"left a stale cgroup for later: {exc}")
        return removed

    def _remove_if_stale(self, name: str) -> list[str]:
        dirs = [(p, _join(p.base, name)) for p in self._places]
        dirs = [(p, d) for p, d in dirs if cgroupfs.exists(d)]
        locks = []
        try:
            for _, directory in dirs:
                fd = cgroupfs.lock(directory, wait=False)
                if fd is None:
                    return []  # a live supervisor owns it
                locks.append(fd)
            tree = CgroupTree(f"stale cgroup {name}", dirs)
            if tree.populated():
                return []
            tree.remove_dirs()
        finally:
            for fd in locks:
                os.close(fd)
        return [d for _, d in dirs]


class PodCgroup:
    """A pod's cgroup in every hierarchy; its containers' cgroups are its children."""

    def __init__(
        self, driver: CgroupDriver, path_name: str, dirs: list[tuple[Place, str]], locks: list[int]
    ) -> None:
        self.path_name = path_name
        self._driver = driver
        self._dirs = dirs
        self._locks = locks
        self._containers: dict[str, ContainerCgroup] = {}

    @property
    def dirs(self) -> list[str]:
        """The pod's directory in each hierarchy (empty when cgroups are read-only)."""
        return [d for _, d in self._dirs]

    def container(self, name: str) -> ContainerCgroup:
        """The container's cgroup, made in every hierarchy (the same one on a second call)."""
        if name in self._containers:
            return self._containers[name]
        _check_name(name, "container")
        dirs = []
        for place, pod_dir in self._dirs:
            path = os.path.join(pod_dir, name)
            try:
                cgroupfs.make_dir(path)
            except FileExistsError:
                pass  # made by an earlier call of this pod: reuse it
            except OSError as e:
                raise CgroupError(f"cannot make cgroup {path}: {e.strerror}") from e
            dirs.append((place, path))
            _init_cgroup(place, path, parent=pod_dir)
        cgroup = ContainerCgroup(self, name, dirs)
        self._containers[name] = cgroup
        return cgroup

    def init(self) -> ContainerCgroup:
        """The cgroup of the pod's init (and infrastructure), `INIT_CONTAINER`."""
        return self.container(INIT_CONTAINER)

    def remove(self) -> None:
        """Kill whatever is left in the pod, then rmdir its containers and itself."""
        tree = CgroupTree(f"pod cgroup {self.path_name}", self._dirs)
        if tree.populated():
            tree.kill_blocking()
        for container in self._containers.values():
            container.close_files()
        tree.remove_dirs()
        self._containers.clear()
        for fd in self._locks:
            os.close(fd)
        self._locks = []
        self._driver._forget(self.path_name)

    def _forget(self, name: str) -> None:
        self._containers.pop(name, None)


class ContainerCgroup(CgroupTree):
    """One container's cgroup: limits, processes, kill, freeze, OOM count and statistics.

    Inherited from `CgroupTree`: ``pids()``, ``populated()``, ``freeze()``,
    ``thaw()``, ``frozen()``, ``async wait_frozen(timeout)`` and
    ``async kill(timeout)``.
    """

    def __init__(self, pod: PodCgroup, name: str, dirs: list[tuple[Place, str]]) -> None:
        super().__init__(f"container {name} of {pod.path_name}", dirs)
        self.name = name
        self._pod = pod
        self._procs_files = [os.path.join(d, "cgroup.procs") for _, d in dirs]
        # Made by the first `read` (a scrape, `podvisor status`): a pod nobody
        # asks about does not keep stats.py's code as long as it runs.
        self._stats: StatsReader | None = None

    def procs_files(self) -> list[str]:
        """Every cgroup.procs a new process must be written into, one per hierarchy."""
        return list(self._procs_files)

    def join(self, pid: int = 0) -> None:
        """Move `pid` (0: the calling process) into this cgroup in every hierarchy.

        Safe in a forked child before exec: it only opens and writes files.
        """
        for path in self._procs_files:
            _write(path, str(pid))

    def apply_limits(self, limits: Limits) -> None:
        """Write `limits` to the cgroup files; CgroupError when the host cannot apply one."""
        if self._pod._driver.read_only:
            return  # said once at start (CgroupDriver.warnings)
        if self._stats is not None:
            self._stats.forget_limits()  # read what the kernel made of them at the next read
        for write in plan_limits(limits, self._pod._driver.versions):
            directory = self._v1.get(write.controller) or self._v2
            assert directory is not None  # plan_limits checked the controller
            path = os.path.join(directory, write.file)
            try:
                cgroupfs.write(path, write.value)
            except OSError as e:
                if e.errno == errno.EROFS:
                    self._pod._driver._warn_once(_read_only_warning(self._pod._driver._places))
                    return
                if e.errno == errno.ENOENT and write.if_present:
                    continue  # this kernel does not account swap, or predates oom.group
                raise CgroupError(
                    f"cannot set {write.file} = {write.value} for {self._label}: {e.strerror}"
                ) from e

    def oom_kills(self) -> int:
        """How many processes of it the OOM killer has killed since it was made."""
        if "memory" in self._v1:
            text = cgroupfs.read(_join(self._v1["memory"], "memory.oom_control"))
        elif self._v2 and "memory" in self._v2_controllers:
            text = cgroupfs.read(_join(self._v2, "memory.events"))
        else:
            return 0
        return cgroupfs.parse_flat(text).get("oom_kill", 0)

    def read(self) -> CgroupStats:
        """Its statistics now; `gone` is set when the cgroup vanished during the read."""
        from podvisor.supervisor.cgroups.stats import CgroupStats, StatsReader

        if not self._dirs:
            return CgroupStats()
        if self._stats is None:
            self._stats = StatsReader(self._v1, self._v2, self._v2_controllers)
        return self._stats.read()

    def remove(self) -> None:
        """Kill whatever is left in it, then rmdir it in every hierarchy."""
        if self.populated():
            self.kill_blocking()
        self.close_files()
        self.remove_dirs()
        self._pod._forget(self.name)

    def close_files(self) -> None:
        """Close the statistics files kept open between reads (`read`)."""
        if self._stats is not None:
            self._stats.close()


# --- Helpers -------------------------------------------------------------------------


def pod_dir_name(pod_name: str, pod_uid: str) -> str:
    """podvisor-<pod>-<8 hex>: the uid's first hex digits, or a hash of it."""
    _check_name(pod_name, "pod")
    short = re.sub(r"[^0-9a-f]", "", pod_uid.lower())[:8]
    if len(short) < 8:
        import hashlib  # here: its OpenSSL set-up would stay in the supervisor for good

        short = hashlib.sha256(pod_uid.encode()).hexdigest()[:8]
    return f"{PREFIX}{pod_name}-{short}"


def is_supervisor_leaf(directory: str) -> bool:
    """Whether `directory` is the leaf a supervisor moved itself into (see the header)."""
    return _SUPERVISOR_LEAF.fullmatch(os.path.basename(directory.rstrip("/"))) is not None


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or name in (".", "..") or len(name) > 200:
        raise CgroupError(f"{what} name {name!r} cannot name a cgroup directory")


def _join(directory: str, name: str) -> str:
    return os.path.join(directory, name)


def _place(hierarchy: Hierarchy, root: str) -> Place:
    base = os.path.join(root, str(hierarchy.own_dir).lstrip("/"))
    controllers = hierarchy.controllers
    if hierarchy.version == 2 and not hierarchy.at_root and is_supervisor_leaf(base):
        base = os.path.dirname(base.rstrip("/"))  # where that supervisor was started
    if hierarchy.version == 2:
        offered = (cgroupfs.read(_join(base, "cgroup.controllers")) or "").split()
        controllers = V2_CONTROLLERS & frozenset(offered)
    return Place(hierarchy.version, controllers, base, hierarchy.name)


def _writability_warnings(places: list[Place], writable: list[Place]) -> list[str]:
    if not places:
        none = (
            "no cgroup file system is mounted: limits are skipped and metrics come "
            "from /proc (mount cgroup2 at /sys/fs/cgroup to get them)"
        )
        return [none]
    if not writable:
        return [_read_only_warning(places)]
    if len(writable) < len(places):
        names = ", ".join(p.name for p in places if p not in writable)
        return [f"cgroup hierarchies {names} are read-only: podvisor skips them"]
    return []


def _read_only_warning(places: list[Place]) -> str:
    where = ", ".join(sorted({os.path.dirname(p.base.rstrip("/")) or "/" for p in places}))
    return (
        f"the cgroup file system is read-only ({where}): podvisor runs the pod without "
        f"cgroup limits and takes metrics from /proc. To grant it, run the container with "
        f"a writable cgroup mount (`docker run --cgroupns=private` on a cgroup v2 host, "
        f"or --privileged), or run podvisor as root on the host"
    )


def _write(path: str, value: str) -> None:
    try:
        cgroupfs.write(path, value)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def _make_locked(place: Place, path: str, owner: str) -> int:
    """mkdir `path` and hold its lock; a stale one of the same name is replaced."""
    for _ in range(3):
        try:
            cgroupfs.make_dir(path)
        except FileExistsError:
            fd = cgroupfs.lock(path, wait=False)
            if fd is None:
                raise CgroupError(
                    f"cgroup {path} is held by another running podvisor: is {owner} already "
                    f"running? Stop it first, or give this pod another name or uid"
                ) from None
            _remove_stale_tree(place, path, fd, owner)
            continue
        except OSError as e:
            raise CgroupError(f"cannot make cgroup {path}: {e.strerror}") from e
        # Waiting is safe: only a `remove_stale` can hold a lock on a new cgroup,
        # for a few syscalls. If it removed the cgroup meanwhile, make it again.
        fd = cgroupfs.lock(path, wait=True)
        assert fd is not None
        if cgroupfs.same_dir(fd, path):
            return fd
        os.close(fd)
    raise CgroupError(f"cannot make cgroup {path}: it keeps being removed")


def _remove_stale_tree(place: Place, path: str, fd: int, owner: str) -> None:
    try:
        tree = CgroupTree(f"stale cgroup {path}", [(place, path)])
        if tree.pids():
            raise CgroupError(
                f"an earlier run of {owner} left processes {tree.pids()} in cgroup {path}; "
                f"kill them (`cat {path}/cgroup.procs`) and start again"
            )
        tree.remove_dirs()
    finally:
        os.close(fd)


def _init_cgroup(place: Place, path: str, parent: str) -> None:
    """What a new cgroup needs before a process may join it."""
    if place.version == 1 and "cpuset" in place.controllers:
        # A v1 cpuset starts with no CPUs and no memory nodes (unless the parent
        # has cgroup.clone_children set), and then refuses every process (ENOSPC).
        for file in ("cpuset.cpus", "cpuset.mems"):
            if not (cgroupfs.read(_join(path, file)) or "").strip():
                _write(_join(path, file), (cgroupfs.read(_join(parent, file)) or "").strip())


def _enable_controllers(path: str, controllers: frozenset[str]) -> None:
    """Hand `controllers` to the children of a v2 cgroup (it must hold no process)."""
    if not controllers:
        return
    value = " ".join(f"+{c}" for c in sorted(controllers))
    try:
        cgroupfs.write(_join(path, "cgroup.subtree_control"), value)
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise CgroupError(
                f"cannot enable {value} in {path}: other processes share podvisor's cgroup, "
                f"and cgroup v2 lets a cgroup hold processes or give controllers to its "
                f"children, not both. Start podvisor in a cgroup of its own, e.g. "
                f"`systemd-run --scope -p Delegate=yes podvisor run ...`, or in a container"
            ) from e
        raise CgroupError(f"cannot enable {value} in {path}: {e.strerror}") from e
