"""The cgroup driver on this machine's real hierarchies, with real processes.

Each test asserts what the layout it finds must do: the development machine
is hybrid, and tests/kernels runs the same tests in guests booted with cgroup
v2 only and with v1 only. On a hybrid host, some tests also run with the
cgroup2 mount hidden from the driver, which makes it a legacy v1 host for it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import anyio
import pytest

from podvisor.supervisor.cgroups import CgroupDriver, Layout, Limits, PodCgroup, cgroupfs, tree
from podvisor.supervisor.cgroups.limits import cpu_weight, shares_from_weight
from podvisor.supervisor.cgroups.stats import V1_UNLIMITED
from podvisor.supervisor.errors import CgroupError
from tests.cgroups.conftest import new_pod
from tests.cgroups.helpers import (
    Processes,
    alive,
    controller_dirs,
    expected_layout,
    hierarchy_names,
    read_line,
    real_driver,
    reap,
    wait_until,
)
from tests.conftest import cgroup_bases

pytestmark = pytest.mark.needs_root

MiB = 1 << 20

# Prints "ready" and waits for a line on stdin (or to be killed).
IDLE = "import sys; print('ready', flush=True); sys.stdin.readline()"


# --- Where cgroups go ------------------------------------------------------------------


def test_the_layout_found_is_the_one_the_mounts_show_without_warnings(
    driver: CgroupDriver,
) -> None:
    assert driver.layout == expected_layout()
    assert driver.warnings == []
    version = 2 if driver.layout == Layout.V2 else 1
    for controller in ("cpu", "memory", "pids", "cpuset"):
        assert driver.versions[controller] == version, controller
    if version == 1:
        assert driver.versions["cpuacct"] == driver.versions["freezer"] == 1
    else:
        assert driver.versions.keys() >= {"io"}


def test_pod_cgroups_go_beneath_our_own_in_every_hierarchy_but_systemd(pod: PodCgroup) -> None:
    own = {d for d in cgroup_bases() if "systemd" not in str(d)}
    assert {Path(d).parent for d in pod.dirs} == own
    assert all(Path(d).name == pod.path_name for d in pod.dirs)
    assert not any("systemd" in d for d in pod.dirs)
    container = pod.container("main")
    assert [Path(d).parent for d in container.dirs] == [Path(d) for d in pod.dirs]
    assert container.procs_files() == [f"{d}/cgroup.procs" for d in container.dirs]


SUPERVISOR_DIRS = """
import sys, uuid
from podvisor.supervisor.cgroups import CgroupDriver
pod = CgroupDriver.detect().create_pod(sys.argv[1], str(uuid.uuid4()))
print(*pod.dirs)
pod.remove()
"""


def test_every_run_makes_its_cgroups_where_the_first_did(pod: PodCgroup) -> None:
    """On v2 the first run moved this process into a leaf of its own; a second run in
    this process, or a podvisor it starts (which inherits the leaf), must not make
    its cgroups inside that leaf, one level deeper each time."""
    first = sorted(str(Path(d).parent) for d in pod.dirs)
    again = new_pod(real_driver())
    try:
        assert sorted(str(Path(d).parent) for d in again.dirs) == first
    finally:
        again.remove()
    child = subprocess.run(
        [sys.executable, "-c", SUPERVISOR_DIRS, f"test-{os.getpid()}-child"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert sorted(str(Path(d).parent) for d in child.stdout.split()) == first


SHARED_CGROUP_RUN = """
import sys, uuid
from podvisor.supervisor.cgroups import CgroupDriver
from podvisor.supervisor.errors import CgroupError
try:
    CgroupDriver.detect().create_pod("shared", str(uuid.uuid4()))
except CgroupError as e:
    print(e)
"""


def test_on_v2_a_podvisor_that_shares_its_cgroup_is_refused_and_leaves_no_cgroup(
    driver: CgroupDriver,
) -> None:
    """A shell in a cgroup starts podvisor and stays: the cgroup cannot both hold the
    shell and hand controllers to podvisor's pods. podvisor says how to fix it, and
    the leaf it moved into on the way is gone."""
    if driver.layout != Layout.V2:
        pytest.skip("only a cgroup v2 hierarchy with controllers has the rule")
    [base] = [d for d in cgroup_bases() if (d / "cgroup.type").exists()]
    shared = base / f"pv-shared-{os.getpid()}"
    shared.mkdir()
    try:
        # "; exit" keeps the shell from exec'ing python: it must stay in the cgroup.
        script = f'echo $$ > {shared}/cgroup.procs && "$0" -c "$1"; exit $?'
        ran = subprocess.run(
            ["sh", "-c", script, sys.executable, SHARED_CGROUP_RUN],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert "other processes share podvisor's cgroup" in ran.stdout, ran
        assert "Start podvisor in a cgroup of its own" in ran.stdout
        assert cgroupfs.subdirs(str(shared)) == []
    finally:
        for child in cgroupfs.subdirs(str(shared)):
            (shared / child).rmdir()
        shared.rmdir()


#: The files a memory limit of 64 MiB, a CPU limit of 250m and a request of 100m set.
LIMIT_FILES = {
    1: {
        ("memory", "memory.limit_in_bytes"): f"{64 * MiB}",
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("cpu", "cpu.cfs_quota_us"): "25000",
        ("cpu", "cpu.shares"): "102",
    },
    2: {
        ("memory", "memory.max"): f"{64 * MiB}",
        ("cpu", "cpu.max"): "25000 100000",
        ("cpu", "cpu.weight"): str(cpu_weight(102)),
        ("memory", "memory.oom.group"): "1",
    },
}
#: Written where the kernel accounts swap (the file exists): NoSwap, the kubelet's default.
SWAP_FILES = {
    1: ("memory.memsw.limit_in_bytes", f"{64 * MiB}"),
    2: ("memory.swap.max", "0"),
}


def test_limits_are_written_with_kubernetes_conversions(
    driver: CgroupDriver, pod: PodCgroup
) -> None:
    container = pod.container("main")
    container.apply_limits(
        Limits(
            memory_bytes=64 * MiB,
            cpu_limit_millicores=250,
            cpu_request_millicores=100,
            pids_max=20,
            cpuset="0",
        )
    )
    files = controller_dirs(container.dirs)
    version = driver.versions["memory"]
    for (controller, name), value in LIMIT_FILES[version].items():
        assert (files[controller] / name).read_text() == f"{value}\n", name
    swap, value = SWAP_FILES[version]
    if (files["memory"] / swap).exists():
        assert (files["memory"] / swap).read_text() == f"{value}\n", swap
    assert (files["pids"] / "pids.max").read_text() == "20\n"
    assert (files["cpuset"] / "cpuset.cpus").read_text() == "0\n"
    if version == 1:  # v1 cpusets start empty: the driver copied the parent's memory nodes
        parent_mems = (files["cpuset"].parents[1] / "cpuset.mems").read_text()
        assert (files["cpuset"] / "cpuset.mems").read_text() == parent_mems
    stats = container.read()
    assert (stats.memory_limit_bytes, stats.cpu_quota_us, stats.cpu_period_us) == (
        64 * MiB,
        25000,
        100000,
    )
    # On v2, shares are derived from cpu.weight: the 102 asked for, given back.
    shares = 102 if version == 1 else shares_from_weight(cpu_weight(102))
    assert shares == 102
    assert (stats.cpu_shares, stats.pids_max, stats.cpuset_cpus) == (shares, 20, "0")


def test_a_container_without_a_cpu_request_weighs_least_as_besteffort(
    driver: CgroupDriver, pod: PodCgroup
) -> None:
    container = pod.container("main")
    container.apply_limits(Limits())
    cpu = controller_dirs(container.dirs)["cpu"]
    if driver.versions["cpu"] == 1:
        assert (cpu / "cpu.shares").read_text() == "2\n"
    else:
        assert (cpu / "cpu.weight").read_text() == "1\n"
    assert container.read().cpu_shares == 2


def test_a_second_supervisor_cannot_take_a_running_pod(
    driver: CgroupDriver, pod: PodCgroup
) -> None:
    uid_hex = pod.path_name.rsplit("-", 1)[1]
    name = pod.path_name.removeprefix("podvisor-").rsplit("-", 1)[0]
    with pytest.raises(CgroupError, match="already"):
        real_driver().create_pod(name, uid_hex)


# --- Limits, with processes that hit them ------------------------------------------


def test_memory_limit_turns_an_allocation_past_it_into_an_oom_kill(
    driver: CgroupDriver, pod: PodCgroup, processes: Processes
) -> None:
    container = pod.container("main")
    container.apply_limits(Limits(memory_bytes=64 * MiB))
    # The child is in the cgroup before it runs a line (preexec joins it).
    hog = processes.start(
        container, "import sys; print('ready', flush=True); b = bytearray(b'x') * (256 << 20)"
    )
    assert read_line(hog) == "ready"
    assert hog.wait(timeout=30) == -signal.SIGKILL
    # On v2 the kernel counts the victim once more as it kills the victim's group
    # (memory.oom.group): 2 there for one process, as on a Kubernetes node.
    kills = container.oom_kills()
    assert kills in ((1,) if driver.versions["memory"] == 1 else (1, 2))
    assert container.read().oom_kills == kills


# A worker pool: the parent forks a worker, which waits for a line and then
# allocates past the limit; the parent says how the worker ended, and waits.
POOL = """
import os, sys
worker = os.fork()
if worker == 0:
    sys.stdin.readline()
    hog = bytearray(b'x') * (256 << 20)
    os._exit(0)
print('ready', flush=True)
_, status = os.waitpid(worker, 0)
print('worker', os.waitstatus_to_exitcode(status), flush=True)
sys.stdin.readline()
"""


def test_an_oom_kill_ends_the_whole_container_on_v2_and_one_process_on_v1(
    driver: CgroupDriver, pod: PodCgroup, processes: Processes
) -> None:
    """As the kubelet asks on v2 (memory.oom.group), and as v1 can only do."""
    container = pod.container("main")
    container.apply_limits(Limits(memory_bytes=64 * MiB))
    pool = processes.start(container, POOL)
    assert read_line(pool) == "ready"
    assert pool.stdin is not None
    pool.stdin.write("go\n")
    pool.stdin.flush()
    if driver.versions["memory"] == 2:
        assert pool.wait(timeout=30) == -signal.SIGKILL
        assert container.oom_kills() >= 1
        wait_until(lambda: not container.populated(), what="an empty cgroup")
    else:
        assert read_line(pool, timeout=30) == f"worker {-signal.SIGKILL}"
        assert pool.poll() is None
        assert container.oom_kills() == 1
        pool.stdin.write("done\n")
        pool.stdin.flush()
        assert pool.wait(timeout=10) == 0


def test_cpu_limit_of_200m_throttles_a_busy_loop(pod: PodCgroup, processes: Processes) -> None:
    container = pod.container("main")
    container.apply_limits(Limits(cpu_limit_millicores=200))
    processes.start(container, "print('ready', flush=True)\nwhile True: pass")
    # The interpreter starts on a fifth of a CPU: five times its start-up, which
    # takes seconds on an emulated machine.
    assert read_line(processes.started[0], timeout=120) == "ready"

    def throttled() -> bool:
        # throttled_time grows when a throttled period ends, a period after the count
        stats = container.read()
        return (stats.cpu_throttled_periods or 0) > 0 and (stats.cpu_throttled_seconds or 0) > 0

    wait_until(throttled, what="throttled periods")
    stats = container.read()
    assert stats.cpu_quota_us == 20_000
    assert stats.cpu_period_us == 100_000
    assert stats.cpu_periods is not None
    assert stats.cpu_throttled_periods is not None
    assert stats.cpu_periods >= stats.cpu_throttled_periods > 0
    assert stats.cpu_throttled_seconds is not None
    assert stats.cpu_throttled_seconds > 0


FORK_BOMB = """
import errno, os, sys
r, w = os.pipe()
forked = 0
failure = "none"
for _ in range(50):  # bounded: the test must stop even if the limit does not
    try:
        pid = os.fork()
    except OSError as e:
        failure = errno.errorcode[e.errno]
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # until the parent goes
        os._exit(0)
    forked += 1
print(forked, failure, flush=True)
sys.stdin.readline()
"""

FORK_ON_REQUEST = """
import os, sys
print('ready', flush=True)
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    os._exit(7)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
sys.stdin.readline()
"""


def test_pids_limit_contains_a_fork_bomb_while_the_rest_of_the_pod_runs_on(
    pod: PodCgroup, processes: Processes
) -> None:
    bomb_cgroup, other_cgroup = pod.container("bomb"), pod.container("other")
    bomb_cgroup.apply_limits(Limits(pids_max=5))
    other = processes.start(other_cgroup, FORK_ON_REQUEST)
    assert read_line(other) == "ready"
    bomb = processes.start(bomb_cgroup, FORK_BOMB)
    assert read_line(bomb) == "4 EAGAIN"  # the bomb itself and four children: 5
    assert bomb_cgroup.read().pids_current == 5
    assert other.poll() is None
    assert other.stdin is not None
    other.stdin.write("fork\n")
    other.stdin.flush()
    assert read_line(other) == "7"  # the other container still forks
    children = [pid for pid in bomb_cgroup.pids() if pid != bomb.pid]
    anyio.run(bomb_cgroup.kill)
    assert bomb.wait(timeout=10) == -signal.SIGKILL
    for pid in children:  # orphans of the bomb, now ours to reap
        assert os.WTERMSIG(reap(pid)) == signal.SIGKILL


# --- Kill and freeze ----------------------------------------------------------------

# Leaves a grandchild in its own session that ignores SIGTERM; prints its pid.
DOUBLE_FORK = """
import os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(os.getpid(), flush=True)
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
"""


def driver_with(freezer: str) -> CgroupDriver:
    """The driver whose freezer is `freezer`: "cgroup2" (cgroup.kill and cgroup.freeze)
    or "v1" (the freezer hierarchy, cgroup2 hidden); skipped where this kernel has none."""
    if freezer == "v1":
        return real_driver(hide_cgroup2=True)
    driver = real_driver()
    if driver.layout == Layout.V1:
        pytest.skip("no cgroup2 hierarchy on this kernel (cgroup v1 only)")
    return driver


@pytest.mark.parametrize(
    ("freezer", "use_cgroup_kill", "expected_file"),
    [
        ("cgroup2", True, "cgroup.kill"),
        ("cgroup2", False, "cgroup.freeze"),
        ("v1", False, "freezer.state"),
    ],
    ids=["cgroup.kill", "v2-freeze-fallback", "v1-freezer-fallback"],
)
@pytest.mark.anyio
async def test_kill_ends_a_double_forked_setsid_process_that_ignores_term(
    freezer: str, use_cgroup_kill: bool, expected_file: str, processes: Processes
) -> None:
    """The v1 case has no cgroup2 at all, so cgroup.kill is absent whatever the flag."""
    pod = new_pod(driver_with(freezer))
    try:
        container = pod.container("main")
        parent = processes.start(container, DOUBLE_FORK)
        escaped = int(read_line(parent))
        assert parent.wait(timeout=10) == 0
        os.kill(escaped, signal.SIGTERM)
        assert alive(escaped)
        assert container.pids() == [escaped]
        written: list[str] = []
        real_write = cgroupfs.write

        def spy(path: str, value: str) -> None:
            written.append(os.path.basename(path))
            real_write(path, value)

        with (
            mock.patch.object(tree, "HAVE_CGROUP_KILL", new=use_cgroup_kill),
            mock.patch.object(cgroupfs, "write", spy),
        ):
            await container.kill(timeout=10)
        assert expected_file in written
        assert ("cgroup.kill" in written) == use_cgroup_kill
        assert not container.populated()
        assert container.pids() == []
        assert os.WTERMSIG(reap(escaped)) == signal.SIGKILL
        assert not container.frozen()  # the fallback thawed it
    finally:
        pod.remove()


COUNTER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
count = 0
while True:
    count += 1
    os.pwrite(fd, b"%020d" % count, 0)
    if count == 1:
        print("ready", flush=True)
    time.sleep(0.001)
"""


@pytest.mark.parametrize("freezer", ["cgroup2", "v1"])
@pytest.mark.anyio
async def test_freeze_stops_a_counter_and_thaw_resumes_it(
    freezer: str, processes: Processes, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"

    def count() -> int:
        return int(counter.read_text() or 0)

    pod = new_pod(driver_with(freezer))
    try:
        container = pod.container("main")
        processes.start(container, COUNTER, str(counter))
        assert read_line(processes.started[0]) == "ready"
        first = count()
        wait_until(lambda: count() > first, what="the counter to advance")
        container.freeze()
        await container.wait_frozen(timeout=10)
        assert container.frozen()
        frozen_at = count()
        await anyio.sleep(0.3)  # an observation window, not a synchronisation
        assert count() == frozen_at
        container.thaw()
        wait_until(lambda: count() > frozen_at, what="the counter to resume")
        assert not container.frozen()
    finally:
        pod.remove()


# --- Reading -------------------------------------------------------------------------

WORKLOAD = """
import mmap, os, sys, time
memory = bytearray(b"x") * (32 << 20)
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
except OSError:  # tmpfs before Linux 6.6 refuses O_DIRECT
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
page = mmap.mmap(-1, 65536)
page.write(b"y" * 65536)
os.write(fd, page)
os.close(fd)
end = time.process_time() + 0.3
while time.process_time() < end:  # user time: the clock is read once per 100000 adds
    sum(range(100000))
print("ready", flush=True)
sys.stdin.readline()
"""


def test_read_gives_sane_figures_for_a_running_process(
    driver: CgroupDriver, pod: PodCgroup, processes: Processes, tmp_path: Path
) -> None:
    container = pod.container("main")
    proc = processes.start(container, WORKLOAD, str(tmp_path / "written"))
    assert read_line(proc) == "ready"
    stats = container.read()
    assert not stats.gone
    assert stats.cpu_usage_seconds is not None
    assert stats.cpu_usage_seconds >= 0.2
    assert stats.cpu_user_seconds is not None
    assert stats.cpu_system_seconds is not None
    assert stats.cpu_user_seconds > 0.1
    # user and system split the same nanoseconds that usage counts
    split = stats.cpu_user_seconds + stats.cpu_system_seconds
    assert abs(split - stats.cpu_usage_seconds) < 0.05 + 0.2 * stats.cpu_usage_seconds
    assert stats.cpu_periods == stats.cpu_throttled_periods == 0  # no quota set
    assert stats.memory_usage_bytes is not None
    assert stats.memory_usage_bytes >= 32 * MiB
    assert stats.memory_rss_bytes is not None
    assert stats.memory_rss_bytes >= 32 * MiB
    assert stats.memory_working_set_bytes is not None
    assert 32 * MiB <= stats.memory_working_set_bytes <= stats.memory_usage_bytes
    assert stats.memory_max_usage_bytes is not None
    assert stats.memory_max_usage_bytes >= stats.memory_usage_bytes
    assert stats.memory_cache_bytes is not None
    assert stats.memory_cache_bytes >= 0
    assert stats.memory_swap_bytes == 0  # this machine has no swap
    assert stats.memory_failcnt == 0
    assert stats.oom_kills == 0
    assert stats.memory_limit_bytes is None  # no limit (the kernel says 2**63 - 4096)
    assert stats.processes == 1
    assert stats.pids_current == 1
    assert stats.pids_max is None
    # v1 blkio counts only on a queue with a throttle rule (Linux 6.x): present, maybe 0.
    assert stats.io_write_bytes is not None
    assert stats.io_write_bytes >= 0
    assert stats.io_read_ops is not None
    assert stats.io_write_ops is not None
    assert stats.cpu_quota_us is None
    assert stats.cpu_period_us == 100_000
    assert stats.memory_usage_bytes < V1_UNLIMITED
    if driver.layout == Layout.V1:  # pressure is cgroup2's alone
        assert stats.pressure == {}
        return
    assert set(stats.pressure) == {"cpu", "memory", "io"}
    cpu_pressure = stats.pressure["cpu"].some
    assert cpu_pressure is not None
    assert cpu_pressure.total_seconds >= 0
    if driver.layout == Layout.V2:  # the default cpu.weight, 100, in cAdvisor's shares
        assert (stats.cpu_weight, stats.cpu_shares) == (100, shares_from_weight(100))
    else:
        assert stats.cpu_shares == 1024


def test_read_of_a_removed_cgroup_is_not_an_error(pod: PodCgroup) -> None:
    container = pod.container("main")
    container.remove()
    stats = container.read()
    assert stats.gone
    assert stats.memory_usage_bytes is None
    assert stats.cpu_usage_seconds is None
    assert container.pids() == []
    assert not container.populated()


def test_kept_files_read_what_the_kernel_says_now_and_let_go_of_a_removed_cgroup(
    pod: PodCgroup, processes: Processes
) -> None:
    container = pod.container("main")
    memory_dir = controller_dirs(container.dirs)["memory"]
    v2 = memory_dir == controller_dirs(container.dirs).get("unified")
    usage = str(memory_dir / ("memory.current" if v2 else "memory.usage_in_bytes"))
    files = cgroupfs.KeptFiles()
    assert files.read(usage) == "0\n"  # empty: nothing charged yet
    grow = "import sys; b = bytearray(32 << 20); b[::4096] = b'x' * (8 << 10); " + IDLE
    assert read_line(processes.start(container, grow)) == "ready"
    text = files.read(usage)
    assert text is not None
    assert int(text) >= 32 * MiB  # the same descriptor, read again at offset 0
    held = cgroupfs.KeptFiles.kept
    container.remove()  # kills the process first
    assert files.read(usage) is None  # ENODEV: let go ...
    assert cgroupfs.KeptFiles.kept == held - 1
    assert files.read(usage) is None  # ... and the path is gone too
    files.close()


def test_limits_are_read_back_as_the_kernel_set_them_after_each_apply(pod: PodCgroup) -> None:
    container = pod.container("main")
    assert container.read().memory_limit_bytes is None
    # Not a whole number of pages: the kernel rounds it down, and read says what it set.
    container.apply_limits(Limits(memory_bytes=100_000_000, cpu_limit_millicores=500))
    stats = container.read()
    page = os.sysconf("SC_PAGE_SIZE")
    assert stats.memory_limit_bytes == 100_000_000 // page * page
    assert stats.cpu_quota_us == 50_000
    container.apply_limits(Limits(memory_bytes=32 * MiB))
    stats = container.read()
    assert stats.memory_limit_bytes == 32 * MiB
    assert stats.cpu_quota_us == 50_000  # left as the first apply set it


# What a read opens once the limits are known, on each layout: one file per
# figure, nothing else (a v1 hierarchy is named by its controllers).
SCRAPE_FILES = {
    Layout.HYBRID: [
        "cpuacct/cpuacct.usage",
        "cpuacct/cpuacct.stat",
        "cpu/cpu.stat",
        "memory/memory.usage_in_bytes",
        "memory/memory.stat",
        "memory/memory.max_usage_in_bytes",
        "memory/memory.failcnt",
        "memory/memory.oom_control",
        "pids/pids.current",
        "blkio/blkio.throttle.io_service_bytes_recursive",
        "blkio/blkio.throttle.io_serviced_recursive",
        "unified/cpu.pressure",
        "unified/memory.pressure",
        "unified/io.pressure",
        "unified/cgroup.procs",  # last: it tells whether the cgroup went meanwhile
    ],
    Layout.V2: [
        "unified/cpu.stat",  # usage and throttling both
        "unified/memory.current",
        "unified/memory.stat",
        "unified/memory.events",
        "unified/memory.swap.current",
        "unified/memory.peak",
        "unified/pids.current",
        "unified/io.stat",
        "unified/cpu.pressure",
        "unified/memory.pressure",
        "unified/io.pressure",
        "unified/cgroup.procs",
    ],
    Layout.V1: [
        "cpu,cpuacct/cpuacct.usage",
        "cpu,cpuacct/cpuacct.stat",
        "cpu,cpuacct/cpu.stat",
        "memory/memory.usage_in_bytes",
        "memory/memory.stat",
        "memory/memory.max_usage_in_bytes",
        "memory/memory.failcnt",
        "memory/memory.oom_control",
        "pids/pids.current",
        "blkio/blkio.throttle.io_service_bytes_recursive",
        "blkio/blkio.throttle.io_serviced_recursive",
        "blkio/cgroup.procs",  # no cgroup2: the first v1 hierarchy's
    ],
}


def test_a_read_opens_only_the_files_whose_figures_change(
    driver: CgroupDriver, pod: PodCgroup, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = pod.container("main")
    # Started before the CPU limit: at 100m, an interpreter's start would take
    # ten times its CPU time, which a slow machine (an emulated guest) runs out of.
    assert read_line(processes.start(container, IDLE)) == "ready"
    container.apply_limits(Limits(memory_bytes=64 * MiB, cpu_limit_millicores=100))
    container.read()  # the first read also reads the limits
    hierarchy = hierarchy_names(container.dirs)
    opened: list[str] = []
    real_read = cgroupfs.read

    def spy(path: str) -> str | None:
        directory, name = os.path.split(path)
        opened.append(f"{hierarchy[directory]}/{name}")
        return real_read(path)

    def no_stat(path: object) -> bool:
        raise AssertionError(f"read() looked at {path}")

    with monkeypatch.context() as patch:
        patch.setattr(cgroupfs, "read", spy)
        patch.setattr(cgroupfs.KeptFiles, "read", lambda _, path: spy(path))
        patch.setattr(os.path, "isdir", no_stat)
        patch.setattr(os.path, "exists", no_stat)
        stats = container.read()
    assert opened == SCRAPE_FILES[driver.layout]
    assert not stats.gone
    assert (stats.memory_limit_bytes, stats.cpu_quota_us, stats.cpu_period_us) == (
        64 * MiB,
        10_000,
        100_000,
    )
    assert (stats.processes, stats.pids_current) == (1, 1)


def test_a_cgroup_removed_during_a_read_reads_as_gone(
    pod: PodCgroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = pod.container("main")
    real_read = cgroupfs.read
    removed = False

    def remove_after_the_first_file(path: str) -> str | None:
        nonlocal removed
        text = real_read(path)
        if not removed:
            removed = True
            container.remove()
        return text

    monkeypatch.setattr(cgroupfs, "read", remove_after_the_first_file)
    monkeypatch.setattr(
        cgroupfs.KeptFiles, "read", lambda _, path: remove_after_the_first_file(path)
    )
    stats = container.read()
    assert removed
    assert stats.gone
    assert stats.cpu_usage_seconds is not None  # read before it went
    assert stats.memory_usage_bytes is None


# --- Cleanup ---------------------------------------------------------------------------


def test_a_crashed_container_cgroup_is_removed_and_made_again(
    pod: PodCgroup, processes: Processes
) -> None:
    container = pod.container("main")
    crashed = processes.start(container, "raise SystemExit(3)")
    assert crashed.wait(timeout=10) == 3
    assert not container.populated()
    container.remove()
    assert not any(os.path.exists(d) for d in container.dirs)
    again = pod.container("main")
    assert again is not container
    assert all(os.path.isdir(d) for d in again.dirs)


def test_pod_remove_kills_what_is_left_and_removes_every_cgroup(
    driver: CgroupDriver, processes: Processes
) -> None:
    pod = new_pod(driver)
    main, sidecar, init = pod.container("main"), pod.container("sidecar"), pod.init()
    for container in (main, sidecar, init):
        proc = processes.start(container, IDLE)
        assert read_line(proc) == "ready"
    escaped = processes.start(main, DOUBLE_FORK)
    grandchild = int(read_line(escaped))
    pod.remove()
    assert all(proc.wait(timeout=10) < 0 for proc in processes.started if proc is not escaped)
    assert os.WTERMSIG(reap(grandchild)) == signal.SIGKILL
    every = pod.dirs + main.dirs + sidecar.dirs + init.dirs
    assert every
    assert not any(os.path.exists(d) for d in every)


SUPERVISOR = """
import subprocess, sys, uuid
from podvisor.supervisor.cgroups import CgroupDriver
pod = CgroupDriver.detect().create_pod(sys.argv[1], str(uuid.uuid4()))
container = pod.container("main")
child = subprocess.Popen(["sleep", "600"], preexec_fn=container.join)
print(child.pid, *pod.dirs, flush=True)
sys.stdin.readline()
"""


def test_remove_stale_removes_dead_pods_and_leaves_live_ones(
    driver: CgroupDriver, pod: PodCgroup
) -> None:
    """Two supervisors are SIGKILLed: one pod's process is gone, the other's still runs."""
    base = f"test-{os.getpid()}-stale"
    trees = {}
    for name in ("gone", "running"):
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, f"{base}-{name}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        sleeper, *dirs = read_line(supervisor).split()
        supervisor.kill()  # a crashed supervisor: its cgroups stay behind
        supervisor.wait(timeout=10)
        assert supervisor.stdin is not None
        assert supervisor.stdout is not None
        supervisor.stdin.close()
        supervisor.stdout.close()
        trees[name] = (int(sleeper), dirs)
    try:
        gone_pid, gone_dirs = trees["gone"]
        os.kill(gone_pid, signal.SIGKILL)
        reap(gone_pid)
        removed = driver.remove_stale()
        assert set(gone_dirs) <= set(removed)
        assert not any(os.path.exists(d) for d in gone_dirs)
        running_pid, running_dirs = trees["running"]
        assert all(os.path.isdir(d) for d in running_dirs)
        assert not set(running_dirs) & set(removed)
        assert all(os.path.isdir(d) for d in pod.dirs)  # ours: held, though empty
        os.kill(running_pid, signal.SIGKILL)
        reap(running_pid)
        assert set(running_dirs) <= set(driver.remove_stale())
    finally:
        for pid, _ in trees.values():
            try:
                os.kill(pid, signal.SIGKILL)
                reap(pid)
            except (ProcessLookupError, ChildProcessError):
                pass
        driver.remove_stale()


def test_join_fails_with_the_kernels_reason_for_a_process_that_is_gone(pod: PodCgroup) -> None:
    container = pod.container("main")
    with pytest.raises(CgroupError, match="No such process") as raised:
        container.join(2**22 + 1)  # above pid_max's largest value: never a process
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ESRCH
