"""Which cgroup hierarchies this process sees, and where its own cgroup is in each.

How this works: `/proc/self/cgroup` lists every hierarchy the kernel has
(``id:controllers:path``; the v2 one is ``0::path``) with our cgroup's path in
it. `/proc/self/mountinfo` says where each hierarchy is mounted and which part
of it the mount shows: its *root* field is ``/`` for a whole hierarchy and,
for instance, ``/docker/<id>`` when a container runtime bind-mounted only our
own sub-tree. Our directory in a hierarchy is then::

    mountpoint / (our path with the mount's root taken off the front)

A v1 line is matched to its mount by its controller names, which appear in the
mount's super options (``rw,cpu,cpuacct`` or ``rw,xattr,name=systemd``), so no
controller list and no path is hard-coded. Named hierarchies without a
controller (``name=systemd``) belong to the init system and are left alone.

Everything here is pure: it takes the two files' texts, so captured samples of
each layout test it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePosixPath

from podvisor.supervisor.frozen import frozen


class Layout(StrEnum):
    """How the host's cgroup hierarchies are arranged."""

    V2 = "v2"  # unified: one cgroup2 hierarchy holds every controller
    V1 = "v1"  # legacy: one cgroup (v1) hierarchy per controller or co-mounted group
    HYBRID = "hybrid"  # v1 controllers, plus a cgroup2 hierarchy for kill, freeze, pressure
    NONE = "none"  # no usable hierarchy is mounted: nothing can be limited


@frozen
class Mount:
    """One line of /proc/self/mountinfo, the fields this module needs."""

    root: str  # the part of the file system shown at the mount point
    mountpoint: str
    options: frozenset[str]  # per-mount options: "ro" lives here after a ro bind
    fstype: str
    super_options: frozenset[str]  # cgroup v1 lists its controllers here


@frozen
class Hierarchy:
    """One cgroup hierarchy: where it is mounted and where our cgroup is in it."""

    version: int  # 1 or 2
    #: v1: the controllers bound to it (from /proc/self/cgroup); v2: empty here,
    #: the driver reads them from cgroup.controllers.
    controllers: frozenset[str]
    mountpoint: str
    own_path: str  # our cgroup, relative to the mount ("/" when we are at its top)
    read_only: bool
    at_root: bool  # our cgroup is the hierarchy's own root (as /proc/self/cgroup shows it)

    @property
    def own_dir(self) -> PurePosixPath:
        """The directory of our own cgroup in this hierarchy."""
        return PurePosixPath(self.mountpoint) / self.own_path.lstrip("/")

    @property
    def name(self) -> str:
        """A short name for messages: "cpu,cpuacct", "memory" or "unified"."""
        return ",".join(sorted(self.controllers)) if self.version == 1 else "unified"


@frozen
class Hierarchies:
    """What `find_hierarchies` found: the layout, the hierarchies, and what is amiss."""

    layout: Layout
    hierarchies: tuple[Hierarchy, ...]
    warnings: tuple[str, ...]

    @property
    def v2(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def v1(self) -> tuple[Hierarchy, ...]:
        return tuple(h for h in self.hierarchies if h.version == 1)


# --- Parsing the two files ---------------------------------------------------------

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (a space in a path is written \\040)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts of a /proc/PID/mountinfo text, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")  # optional fields end at a lone "-" (proc(5))
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2") or len(fields) < sep + 4:
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]),
                options=frozenset(fields[5].split(",")),
                fstype=fstype,
                super_options=frozenset(fields[sep + 3].split(",")),
            )
        )
    return mounts


def parse_proc_cgroup(text: str) -> dict[frozenset[str], str]:
    """Our cgroup path per hierarchy, keyed by its controllers (empty set: cgroup2)."""
    paths: dict[frozenset[str], str] = {}
    for line in text.splitlines():
        if line.count(":") < 2:
            continue
        hierarchy_id, controllers, path = line.split(":", 2)
        if hierarchy_id == "0" and not controllers:
            paths[frozenset()] = path
        elif controllers:
            paths[frozenset(controllers.split(","))] = path
    return paths


# --- Matching them -------------------------------------------------------------------


def _relative(path: str, root: str) -> str | None:
    """`path` as seen below a mount of `root`, or None when the mount does not show it."""
    if root == "/":
        return path
    if path == root:
        return "/"
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) :]
    return None


def _hierarchy(version: int, controllers: frozenset[str], path: str, mount: Mount) -> Hierarchy:
    relative = _relative(path, mount.root)
    assert relative is not None
    return Hierarchy(
        version=version,
        controllers=controllers,
        mountpoint=mount.mountpoint,
        own_path=relative,
        read_only="ro" in mount.options or "ro" in mount.super_options,
        at_root=path == "/",
    )


def _find_mount(mounts: list[Mount], controllers: frozenset[str], path: str) -> Mount | None:
    """The first mount of the hierarchy of `controllers` (none: cgroup2) showing `path`."""
    for mount in mounts:
        if controllers:
            fits = mount.fstype == "cgroup" and controllers <= mount.super_options
        else:
            fits = mount.fstype == "cgroup2"
        if fits and _relative(path, mount.root) is not None:
            return mount
    return None


def _layout(v1: list[Hierarchy], v2: Hierarchy | None) -> Layout:
    if v1 and v2:
        return Layout.HYBRID
    if v1:
        return Layout.V1
    return Layout.V2 if v2 else Layout.NONE


def find_hierarchies(mountinfo: str, proc_cgroup: str) -> Hierarchies:
    """The layout and our place in each hierarchy, from the two files' texts."""
    mounts = parse_mountinfo(mountinfo)
    warnings: list[str] = []
    v1: list[Hierarchy] = []
    v2: Hierarchy | None = None
    for controllers, path in parse_proc_cgroup(proc_cgroup).items():
        real = frozenset(c for c in controllers if not c.startswith("name="))
        if controllers and not real:
            continue  # name=systemd and the like: the init system's, not ours
        if path.startswith("/.."):
            warnings.append(_outside_namespace(controllers, path))
            continue
        mount = _find_mount(mounts, controllers, path)
        if mount is None:
            if controllers:
                warnings.append(_not_mounted(controllers, path))
            continue
        if controllers:
            v1.append(_hierarchy(1, real, path, mount))
        else:
            v2 = _hierarchy(2, frozenset(), path, mount)
    hierarchies = tuple(sorted(v1, key=lambda h: h.mountpoint)) + ((v2,) if v2 else ())
    return Hierarchies(_layout(v1, v2), hierarchies, tuple(warnings))


def _not_mounted(controllers: frozenset[str], path: str) -> str:
    names = ",".join(sorted(controllers))
    return (
        f"cgroup controller(s) {names} are not mounted where podvisor can see our cgroup "
        f"({path}): limits and metrics that need them are not available; mount the "
        f"hierarchy (or run the container with a cgroup namespace) to use them"
    )


def _outside_namespace(controllers: frozenset[str], path: str) -> str:
    names = ",".join(sorted(controllers)) or "unified"
    return (
        f"our cgroup in the {names} hierarchy ({path}) lies outside our cgroup namespace: "
        f"podvisor cannot make cgroups there; start podvisor inside the namespace's root"
    )
