"""The driver on v2-only and legacy-v1 hosts, against a stand-in for the kernel.

This machine is hybrid, so these layouts' paths run against FakeKernel
(fakekernel.py): the samples' mountinfo laid out in a temporary directory, the
kernel's rules for mkdir, cgroup.procs and cgroup.subtree_control emulated,
and the samples' interface files copied in to be read back.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from podvisor.supervisor.cgroups import CgroupDriver, Layout, Limits, cgroupfs, tree
from podvisor.supervisor.errors import CgroupError
from tests.cgroups.fakekernel import FakeKernel

SAMPLES = Path(__file__).parent / "samples"
UID = "7c4e1f3a-0b2d-4c61-9e2a-5d7f8b1c3e90"
LIMITS = Limits(
    memory_bytes=64 << 20,
    cpu_limit_millicores=200,
    cpu_request_millicores=100,
    pids_max=10,
    cpuset="0-1",
)


@pytest.fixture
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeKernel]:
    """The sample named by the test's parameter, under tmp_path, with the seam patched."""
    name = str(request.param)
    kernel = FakeKernel(
        tmp_path,
        (SAMPLES / name / "mountinfo").read_text(),
        (SAMPLES / name / "cgroup").read_text(),
        os.getpid(),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cgroupfs, "make_dir", kernel.make_dir)
        patch.setattr(cgroupfs, "write", kernel.write)
        patch.setattr(cgroupfs, "remove_dir", kernel.remove_dir)
        patch.setattr(tree, "_sigkill", kernel.kill)  # never signal a sample's pid
        yield kernel


def detect(kernel: FakeKernel, sample: str) -> CgroupDriver:
    return CgroupDriver.detect(
        root=str(kernel.root),
        mountinfo=(SAMPLES / sample / "mountinfo").read_text(),
        proc_cgroup=(SAMPLES / sample / "cgroup").read_text(),
    )


def text(path: Path) -> str:
    return path.read_text().strip()


# --- v2 ------------------------------------------------------------------------------

V2_OWN = "sys/fs/cgroup/user.slice/user-0.slice/session-4.scope"


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_moves_us_into_a_leaf_and_enables_controllers(host: FakeKernel) -> None:
    driver = detect(host, "v2")
    assert driver.layout == Layout.V2
    assert driver.warnings == []
    assert not (host.root / V2_OWN / f"podvisor-supervisor-{os.getpid()}").exists()  # not yet
    pod = driver.create_pod("web", UID)
    own = host.root / V2_OWN
    leaf = own / f"podvisor-supervisor-{os.getpid()}"
    assert text(leaf / "cgroup.procs") == str(os.getpid())
    assert text(own / "cgroup.procs") == ""  # no internal process left behind
    assert text(own / "cgroup.subtree_control") == "cpu cpuset io memory pids"
    pod_dir = own / "podvisor-web-7c4e1f3a"
    assert pod.dirs == [str(pod_dir)]
    assert text(pod_dir / "cgroup.subtree_control") == "cpu cpuset io memory pids"
    # hugetlb is offered but not used: not enabled
    assert "hugetlb" in text(own / "cgroup.controllers")
    main = pod.container("main")
    assert main.procs_files() == [str(pod_dir / "main" / "cgroup.procs")]
    pod.remove()
    driver.remove_stale()  # our own leaf holds us: it stays
    assert leaf.is_dir()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_limits_join_read_kill_and_remove(host: FakeKernel) -> None:
    driver = detect(host, "v2")
    pod = driver.create_pod("web", UID)
    main = pod.container("main")
    main.apply_limits(LIMITS)
    directory = host.root / V2_OWN / "podvisor-web-7c4e1f3a" / "main"
    assert text(directory / "cpu.max") == "20000 100000"
    assert text(directory / "cpu.weight") == "17"
    assert text(directory / "memory.max") == str(64 << 20)
    assert text(directory / "pids.max") == "10"
    assert text(directory / "cpuset.cpus") == "0-1"
    main.join(4242)
    assert text(directory / "cgroup.procs") == "4242"
    assert main.pids() == [4242]
    assert main.populated()
    for sample in (SAMPLES / "v2" / "files").iterdir():
        if sample.name != "cgroup.procs":
            shutil.copy(sample, directory / sample.name)
    stats = main.read()
    assert not stats.gone
    assert (stats.cpu_usage_seconds, stats.cpu_user_seconds, stats.cpu_system_seconds) == (
        1.523412,
        1.203011,
        0.320401,
    )
    assert (stats.cpu_periods, stats.cpu_throttled_periods) == (51, 47)
    assert stats.cpu_throttled_seconds == 3.712345
    assert stats.memory_usage_bytes == 41943040
    assert stats.memory_working_set_bytes == 41943040 - 1048576
    assert (stats.memory_rss_bytes, stats.memory_cache_bytes) == (37748736, 3145728)
    assert (stats.memory_swap_bytes, stats.memory_mapped_file_bytes) == (0, 262144)
    assert (stats.memory_max_usage_bytes, stats.memory_failcnt) == (64 << 20, 12)
    assert stats.oom_kills == 1
    assert main.oom_kills() == 1
    assert (stats.processes, stats.pids_current, stats.pids_max) == (1, 3, 10)
    assert (stats.io_read_bytes, stats.io_write_bytes) == (1048576 + 4096, 65536)
    assert (stats.io_read_ops, stats.io_write_ops) == (13, 1)
    assert len(stats.io_devices) == 2
    assert set(stats.pressure) == {"cpu", "memory", "io"}
    assert (stats.memory_limit_bytes, stats.cpu_quota_us, stats.cpu_period_us) == (
        64 << 20,
        20000,
        100000,
    )
    # The sample's weight 4 reads as the last shares of that weight
    assert (stats.cpu_weight, stats.cpu_shares, stats.cpuset_cpus) == (4, 14, "0-1")
    anyio.run(main.kill)
    assert (f"{V2_OWN}/podvisor-web-7c4e1f3a/main/cgroup.kill", "1") in host.writes
    assert not main.populated()
    assert host.killed == []
    pod.remove()
    assert not (host.root / V2_OWN / "podvisor-web-7c4e1f3a").exists()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_no_container_swaps_an_oom_ends_it_whole_and_besteffort_weighs_least(
    host: FakeKernel,
) -> None:
    pod = detect(host, "v2").create_pod("web", UID)
    pod.container("main").apply_limits(LIMITS)
    pod.container("idle").apply_limits(Limits())  # no resources at all: BestEffort
    pod_dir = host.root / V2_OWN / "podvisor-web-7c4e1f3a"
    for name in ("main", "idle"):
        assert text(pod_dir / name / "memory.swap.max") == "0", name
        assert text(pod_dir / name / "memory.oom.group") == "1", name
    assert text(pod_dir / "idle" / "memory.max") == "max"
    assert (text(pod_dir / "main" / "cpu.weight"), text(pod_dir / "idle" / "cpu.weight")) == (
        "17",
        "1",
    )
    # The pod's init is no container: its cgroup keeps the kernel's defaults.
    pod.init()
    assert text(pod_dir / "_init" / "memory.oom.group") == "0"
    assert text(pod_dir / "_init" / "cpu.weight") == "100"
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_a_kernel_without_swap_accounting_or_oom_group_gets_the_other_limits(
    host: FakeKernel,
) -> None:
    host.missing = {"memory.swap.max", "memory.swap.current", "memory.oom.group"}
    driver = detect(host, "v2")
    pod = driver.create_pod("web", UID)
    pod.container("main").apply_limits(LIMITS)
    directory = host.root / V2_OWN / "podvisor-web-7c4e1f3a" / "main"
    assert not (directory / "memory.swap.max").exists()
    assert text(directory / "memory.max") == str(64 << 20)
    assert (text(directory / "cpu.weight"), text(directory / "pids.max")) == ("17", "10")
    assert driver.warnings == []
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_files_the_kernel_lacks_are_looked_for_once(
    host: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """memory.peak is new in Linux 5.19; a pressure file fails EOPNOTSUPP when PSI is off."""
    pod = detect(host, "v2").create_pod("web", UID)
    main = pod.container("main")
    directory = host.root / V2_OWN / "podvisor-web-7c4e1f3a" / "main"
    for sample in (SAMPLES / "v2" / "files").iterdir():
        if sample.name not in ("cgroup.procs", "memory.peak"):
            shutil.copy(sample, directory / sample.name)
    asked: list[str] = []
    real_read = cgroupfs.read

    def old_kernel(path: str) -> str | None:
        asked.append(os.path.basename(path))
        if path.endswith("io.pressure"):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), path)
        return real_read(path)

    monkeypatch.setattr(cgroupfs, "read", old_kernel)
    monkeypatch.setattr(cgroupfs.KeptFiles, "read", lambda _, path: old_kernel(path))
    for _ in range(3):
        stats = main.read()
        assert not stats.gone
        assert stats.memory_max_usage_bytes is None
        assert set(stats.pressure) == {"cpu", "memory"}
        assert stats.memory_usage_bytes == 41943040
    assert (asked.count("memory.peak"), asked.count("io.pressure")) == (1, 1)
    assert asked.count("memory.current") == 3
    monkeypatch.setattr(cgroupfs, "read", real_read)
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_pressure_is_read_anew_when_it_changes(host: FakeKernel) -> None:
    pod = detect(host, "v2").create_pod("web", UID)
    main = pod.container("main")
    pressure = host.root / V2_OWN / "podvisor-web-7c4e1f3a" / "main" / "cpu.pressure"
    line = "{} avg10=0.00 avg60=0.00 avg300=0.00 total={}\n"
    pressure.write_text(line.format("some", 100) + line.format("full", 50))
    first = main.read().pressure["cpu"]
    assert first.some is not None
    assert first.some.total_seconds == 100e-6
    assert main.read().pressure["cpu"] == first
    pressure.write_text(line.format("some", 3_000_000) + line.format("full", 50))
    again = main.read().pressure["cpu"]
    assert again.some is not None
    assert again.some.total_seconds == 3.0
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_with_other_processes_in_our_cgroup_says_how_to_fix_it(host: FakeKernel) -> None:
    procs = host.root / V2_OWN / "cgroup.procs"
    procs.write_text(procs.read_text() + "1234\n")  # our login shell, say
    with pytest.raises(CgroupError, match="Delegate=yes"):
        detect(host, "v2").create_pod("web", UID)


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_v2_missing_controller_is_a_warning_and_an_error_for_its_limit(host: FakeKernel) -> None:
    # What systemd delegates by default to a user's service: no pids, no io.
    (host.root / V2_OWN / "cgroup.controllers").write_text("cpu memory\n")
    driver = detect(host, "v2")
    assert driver.versions == {"cpu": 2, "memory": 2}
    assert len(driver.warnings) == 1
    assert "pids, io" in driver.warnings[0] or "io, pids" in driver.warnings[0]
    pod = driver.create_pod("web", UID)
    main = pod.container("main")
    with pytest.raises(CgroupError, match="'pids'"):
        driver.check(LIMITS)
    with pytest.raises(CgroupError, match="'cpuset'"):
        main.apply_limits(LIMITS)
    main.apply_limits(Limits(memory_bytes=1 << 30, cpu_limit_millicores=500))
    assert main.read().memory_limit_bytes == 1 << 30
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_remove_stale_on_v2_removes_a_dead_supervisors_leaf_and_pod(host: FakeKernel) -> None:
    own = host.root / V2_OWN
    for name in ("podvisor-supervisor-999999", "podvisor-old-0123abcd"):
        host.make_dir(str(own / name))
    host.make_dir(str(own / "podvisor-old-0123abcd" / "main"))
    host.make_dir(str(own / "not-ours"))
    host.make_dir(str(own / "podvisor-busy-89abcdef"))
    (own / "podvisor-busy-89abcdef" / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    removed = detect(host, "v2").remove_stale()
    assert sorted(removed) == [
        str(own / "podvisor-old-0123abcd"),
        str(own / "podvisor-supervisor-999999"),
    ]
    assert (own / "not-ours").is_dir()
    assert (own / "podvisor-busy-89abcdef").is_dir()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_remove_stale_passes_over_a_pod_cgroup_its_supervisor_removes_meanwhile(
    host: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another pod ends between this start's listing and its lock: that pod's
    # supervisor removes its own cgroup first. This pod starts all the same.
    own = host.root / V2_OWN
    host.make_dir(str(own / "podvisor-ending-0123abcd"))
    real_lock = cgroupfs.lock

    def lock_after_the_owner_removed_it(path: str, *, wait: bool) -> int | None:
        shutil.rmtree(path)
        return real_lock(path, wait=wait)

    monkeypatch.setattr(cgroupfs, "lock", lock_after_the_owner_removed_it)
    driver = detect(host, "v2")
    assert driver.remove_stale() == []
    assert driver.warnings == []


# --- Read-only v2 (an unprivileged container) --------------------------------------


@pytest.mark.parametrize("host", ["v2-container"], indirect=True)
def test_read_only_cgroups_skip_limits_with_one_warning(host: FakeKernel) -> None:
    driver = detect(host, "v2-container")
    assert driver.read_only
    assert driver.layout == Layout.V2
    assert len(driver.warnings) == 1
    assert "read-only" in driver.warnings[0]
    pod = driver.create_pod("web", UID)
    main = pod.container("main")
    driver.check(LIMITS)
    main.apply_limits(LIMITS)
    main.join()
    assert pod.dirs == []
    assert main.procs_files() == []
    assert main.pids() == []
    assert not main.populated()
    assert main.oom_kills() == 0
    assert main.read().memory_usage_bytes is None
    anyio.run(main.kill)
    pod.remove()
    assert host.writes == []
    assert driver.remove_stale() == []
    assert len(driver.warnings) == 1


# --- v1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["v1"], indirect=True)
def test_v1_co_mounted_cpu_cpuacct(host: FakeKernel) -> None:
    driver = detect(host, "v1")
    assert driver.layout == Layout.V1
    assert driver.warnings == []
    pod = driver.create_pod("web", UID)
    cgroup = host.root / "sys/fs/cgroup"
    name = "podvisor-web-7c4e1f3a"
    assert sorted(pod.dirs) == sorted(
        str(cgroup / d / name)
        for d in (
            "blkio/user.slice",
            "cpu,cpuacct/user.slice",
            "cpuset",
            "devices/user.slice",
            "freezer",
            "hugetlb",
            "memory/user.slice",
            "net_cls,net_prio",
            "perf_event",
            "pids/user.slice",
        )
    )
    assert not list((cgroup / "systemd").glob("**/podvisor-*"))
    main = pod.container("main")
    # A new v1 cpuset has no cpus and mems: copied from the parent at each level.
    assert text(cgroup / "cpuset" / name / "main" / "cpuset.mems") == "0"
    assert text(cgroup / "cpuset" / name / "main" / "cpuset.cpus") == "0-1"
    main.apply_limits(LIMITS)
    cpu = cgroup / "cpu,cpuacct/user.slice" / name / "main"
    assert (text(cpu / "cpu.cfs_period_us"), text(cpu / "cpu.cfs_quota_us")) == ("100000", "20000")
    assert text(cpu / "cpu.shares") == "102"
    memory = cgroup / "memory/user.slice" / name / "main"
    assert text(memory / "memory.limit_in_bytes") == str(64 << 20)
    main.join(4242)
    assert all(text(Path(f)) == "4242" for f in main.procs_files())
    assert len(main.procs_files()) == 10
    for hierarchy in (SAMPLES / "v1" / "files").iterdir():
        target = next(Path(d) for d in main.dirs if f"/{hierarchy.name}/" in d)
        for sample in hierarchy.iterdir():
            if sample.name != "cgroup.procs":
                shutil.copy(sample, target / sample.name)
    stats = main.read()
    assert stats.cpu_usage_seconds == 0.507455573
    hertz = os.sysconf("SC_CLK_TCK")
    assert (stats.cpu_user_seconds, stats.cpu_system_seconds) == (11 / hertz, 39 / hertz)
    assert (stats.cpu_periods, stats.cpu_throttled_periods) == (26, 25)
    assert stats.memory_usage_bytes == 39006208
    assert stats.memory_failcnt == 95
    assert stats.memory_working_set_bytes == 39006208 - 90112
    assert stats.memory_rss_bytes == 38490112
    assert stats.memory_cache_bytes == 155648
    assert stats.oom_kills == main.oom_kills() == 1
    assert (stats.io_write_bytes, stats.io_write_ops) == (65536, 1)
    assert stats.pressure == {}  # no cgroup2: no pressure files
    assert (stats.memory_limit_bytes, stats.cpu_quota_us) == (64 << 20, 20000)
    # populated() and pids() come from cgroup.procs here
    assert main.populated()
    assert main.pids() == [4242]
    pod.remove()  # kills what is left: the v1 freezer, SIGKILL, thaw
    assert host.killed == [4242]
    freezer = f"sys/fs/cgroup/freezer/{name}/freezer.state"
    assert [w for w in host.writes if w[0] == freezer] == [(freezer, "FROZEN"), (freezer, "THAWED")]
    assert not list(cgroup.glob("**/podvisor-*"))


V1_POD = "podvisor-web-7c4e1f3a"
V1_UNLIMITED = "9223372036854771712"


@pytest.mark.parametrize("host", ["v1"], indirect=True)
def test_v1_swap_is_held_to_the_memory_limit_and_besteffort_gets_two_shares(
    host: FakeKernel,
) -> None:
    pod = detect(host, "v1").create_pod("web", UID)
    pod.container("main").apply_limits(LIMITS)
    pod.container("idle").apply_limits(Limits())
    memory = host.root / "sys/fs/cgroup/memory/user.slice" / V1_POD
    assert text(memory / "main" / "memory.memsw.limit_in_bytes") == str(64 << 20)
    # The fake kernel refuses memsw below the memory limit: the limit went first.
    main_memory = [f.rsplit("/", 1)[1] for f, _ in host.writes if "/main/memory." in f]
    assert main_memory == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    # No memory limit: memory and swap stay unlimited, as the kubelet leaves them.
    assert text(memory / "idle" / "memory.memsw.limit_in_bytes") == V1_UNLIMITED
    cpu = host.root / "sys/fs/cgroup/cpu,cpuacct/user.slice" / V1_POD
    assert (text(cpu / "main" / "cpu.shares"), text(cpu / "idle" / "cpu.shares")) == ("102", "2")
    assert not [f for f, _ in host.writes if "oom.group" in f or "swap" in f]
    pod.remove()


@pytest.mark.parametrize("host", ["v1"], indirect=True)
def test_v1_without_swap_accounting_the_memory_limit_alone_applies(host: FakeKernel) -> None:
    host.missing = {"memory.memsw.limit_in_bytes", "memory.memsw.usage_in_bytes"}
    driver = detect(host, "v1")
    pod = driver.create_pod("web", UID)
    pod.container("main").apply_limits(LIMITS)
    memory = host.root / "sys/fs/cgroup/memory/user.slice" / V1_POD / "main"
    assert text(memory / "memory.limit_in_bytes") == str(64 << 20)
    assert not (memory / "memory.memsw.limit_in_bytes").exists()
    assert driver.warnings == []
    pod.remove()


@pytest.mark.parametrize("host", ["v1-docker"], indirect=True)
def test_v1_bind_mounted_sub_hierarchies_put_pods_at_the_mount_point(host: FakeKernel) -> None:
    driver = detect(host, "v1-docker")
    pod = driver.create_pod("web", UID)
    cgroup = host.root / "sys/fs/cgroup"
    assert str(cgroup / "memory" / "podvisor-web-7c4e1f3a") in pod.dirs
    assert str(cgroup / "cpuset/docker/3f5e0a9b7c1d/podvisor-web-7c4e1f3a") in pod.dirs
    assert not (cgroup / "memory" / "docker").exists()
    pod.remove()


@pytest.mark.parametrize("host", ["v1"], indirect=True)
def test_a_kernel_refusal_is_a_cgroup_error_with_the_reason(
    host: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = detect(host, "v1").create_pod("web", UID)
    main = pod.container("main")

    def refuse(path: str, value: str) -> None:
        if not path.endswith("cpuset.cpus"):
            return host.write(path, value)
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)

    monkeypatch.setattr(cgroupfs, "write", refuse)
    with pytest.raises(CgroupError, match=r"cpuset.cpus = 0-1 .*Invalid argument"):
        main.apply_limits(Limits(cpuset="0-1"))
    monkeypatch.setattr(cgroupfs, "write", host.write)
    pod.remove()


@pytest.mark.parametrize("host", ["v2"], indirect=True)
def test_kill_that_cannot_empty_the_cgroup_names_the_survivors(
    host: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = detect(host, "v2").create_pod("web", UID)
    main = pod.container("main")
    main.join(4242)

    def stuck(path: str, value: str) -> None:  # a process in uninterruptible sleep, say
        if not path.endswith("cgroup.kill"):
            host.write(path, value)

    monkeypatch.setattr(cgroupfs, "write", stuck)
    with pytest.raises(CgroupError, match=r"processes \[4242\] .* still there 0.2 s"):
        anyio.run(main.kill, 0.2)
    monkeypatch.setattr(cgroupfs, "write", host.write)
    pod.remove()
    assert not pod.dirs or not os.path.exists(pod.dirs[0])
