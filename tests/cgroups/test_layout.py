"""Layout detection against captured /proc/self/mountinfo and /proc/self/cgroup samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from podvisor.supervisor.cgroups.layout import (
    Hierarchies,
    Layout,
    find_hierarchies,
    parse_mountinfo,
    parse_proc_cgroup,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Hierarchies:
    here = SAMPLES / name
    return find_hierarchies((here / "mountinfo").read_text(), (here / "cgroup").read_text())


def own_dirs(found: Hierarchies) -> dict[str, str]:
    return {h.name: str(h.own_dir) for h in found.hierarchies}


def test_hybrid_this_machine() -> None:
    found = sample("hybrid")
    memory_path = next(
        line.split(":", 2)[2]
        for line in (SAMPLES / "hybrid" / "cgroup").read_text().splitlines()
        if ":memory:" in line
    )
    assert found.layout == Layout.HYBRID
    assert found.warnings == ()
    assert own_dirs(found) == {
        "blkio": "/sys/fs/cgroup/blkio",
        "cpu": "/sys/fs/cgroup/cpu",  # cpu and cpuacct apart
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "cpuset": "/sys/fs/cgroup/cpuset",
        "devices": "/sys/fs/cgroup/devices",
        "freezer": "/sys/fs/cgroup/freezer",
        "memory": f"/sys/fs/cgroup/memory{memory_path}",
        "pids": "/sys/fs/cgroup/pids",
        "unified": "/sys/fs/cgroup/unified",
    }
    assert memory_path.startswith("/process_api/")
    assert found.v2 is not None
    assert found.v2.at_root
    assert not any(h.read_only for h in found.hierarchies)


def test_v1_with_cpu_and_cpuacct_co_mounted() -> None:
    found = sample("v1")
    assert found.layout == Layout.V1
    assert found.v2 is None
    dirs = own_dirs(found)
    assert dirs["cpu,cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/user.slice"
    assert dirs["net_cls,net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert dirs["memory"] == "/sys/fs/cgroup/memory/user.slice"
    assert "cpu" not in dirs
    assert "cpuacct" not in dirs
    assert not any("systemd" in d for d in dirs.values())  # name=systemd: left alone
    co_mounted = next(h for h in found.v1 if h.name == "cpu,cpuacct")
    assert co_mounted.controllers == {"cpu", "cpuacct"}


def test_v1_in_a_container_with_bind_mounted_sub_hierarchies() -> None:
    found = sample("v1-docker")
    assert found.layout == Layout.V1  # the 0:: line has no cgroup2 mount here
    dirs = own_dirs(found)
    # The mount shows /docker/<id> at its mount point: our cgroup is the mount's top.
    assert dirs["memory"] == "/sys/fs/cgroup/memory"
    assert dirs["cpu,cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    memory = next(h for h in found.v1 if h.name == "memory")
    assert memory.own_path == "/"
    assert not memory.at_root
    # cpuset is mounted whole: our cgroup lies beneath its mount point.
    assert dirs["cpuset"] == "/sys/fs/cgroup/cpuset/docker/3f5e0a9b7c1d"


def test_v2_host() -> None:
    found = sample("v2")
    assert found.layout == Layout.V2
    assert own_dirs(found) == {"unified": "/sys/fs/cgroup/user.slice/user-0.slice/session-4.scope"}
    assert found.v2 is not None
    assert not found.v2.at_root
    assert not found.v2.read_only


def test_v2_unprivileged_container_is_read_only() -> None:
    found = sample("v2-container")
    assert found.layout == Layout.V2
    assert found.v2 is not None
    assert found.v2.read_only
    assert found.v2.at_root
    assert str(found.v2.own_dir) == "/sys/fs/cgroup"


def test_v2_bind_mounted_from_our_own_scope() -> None:
    found = sample("v2-bind")
    assert found.v2 is not None
    assert str(found.v2.own_dir) == "/sys/fs/cgroup"
    assert found.v2.own_path == "/"
    assert not found.v2.at_root  # not the hierarchy's root, though the mount's top


def test_a_mount_that_does_not_show_our_cgroup_is_skipped_with_a_warning() -> None:
    mountinfo = (
        "30 24 0:26 /other /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 24 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
    )
    found = find_hierarchies(mountinfo, "4:memory:/mine\n3:pids:/mine\n0::/\n")
    assert own_dirs(found) == {"pids": "/sys/fs/cgroup/pids/mine"}
    assert len(found.warnings) == 1
    assert "memory" in found.warnings[0]
    assert found.layout == Layout.V1


def test_a_cgroup_outside_our_namespace_is_skipped_with_a_warning() -> None:
    mountinfo = "26 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    found = find_hierarchies(mountinfo, "0::/../../elsewhere\n")
    assert found.layout == Layout.NONE
    assert "outside our cgroup namespace" in found.warnings[0]


def test_no_cgroup_mount_at_all() -> None:
    found = find_hierarchies("27 1 254:0 / / rw - ext4 /dev/vda rw\n", "0::/\n")
    assert found.layout == Layout.NONE
    assert found.hierarchies == ()


def test_mountinfo_escapes_and_optional_fields() -> None:
    line = (
        "40 31 0:37 /a\\040b /sys/fs/cgroup/my\\040mem rw,relatime shared:9 master:2 "
        "- cgroup cgroup ro,memory\n"
    )
    (mount,) = parse_mountinfo(line)
    assert mount.root == "/a b"
    assert mount.mountpoint == "/sys/fs/cgroup/my mem"
    assert mount.super_options == {"ro", "memory"}
    found = find_hierarchies(line, "4:memory:/a b/c\n")
    assert str(found.hierarchies[0].own_dir) == "/sys/fs/cgroup/my mem/c"
    assert found.hierarchies[0].read_only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/a/b\n", {frozenset(): "/a/b"}),
        ("5:cpuacct,cpu:/x\n", {frozenset({"cpu", "cpuacct"}): "/x"}),
        ("1:name=systemd:/s\n", {frozenset({"name=systemd"}): "/s"}),
        ("3:pids:/with:colon\n", {frozenset({"pids"}): "/with:colon"}),
        ("garbage\n", {}),
    ],
)
def test_parse_proc_cgroup(text: str, expected: dict[frozenset[str], str]) -> None:
    assert parse_proc_cgroup(text) == expected
