"""What a default container must not do to the host or to another pod.

Each test is an attack from inside a container with no securityContext, as
root (the default): it must fail, and the host must be as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from podvisor.init import syscalls
from tests.control.conftest import control_pod, serving_pod
from tests.faults.pods import podvisor_command
from tests.security.conftest import PYTHON, manifest, run_pod, sh

pytestmark = pytest.mark.needs_root


@pytest.fixture
def host_tmpfs() -> Iterator[Path]:
    """A tmpfs of the host's, writable, as /dev/shm or /run would be.

    Named outside podvisor's prefixes: it is the test's, not podvisor's, and a
    leak check of another test run on the machine must not take it for one.
    """
    path = Path(tempfile.mkdtemp(prefix="sectest-tmpfs-", dir="/tmp"))
    syscalls.mount("tmpfs", str(path), "tmpfs", 0, "size=64k")
    try:
        yield path
    finally:
        syscalls.umount(str(path), syscalls.MNT_DETACH)
        path.rmdir()


def test_a_container_cannot_remount_a_host_file_system(run_dir: Path, host_tmpfs: Path) -> None:
    ran = run_pod(
        run_dir,
        "esc-remount",
        f"""
        containers:
        - name: c
          command: {sh(f"mount -o remount,ro {host_tmpfs} && echo remounted || echo refused")}
        """,
    )
    assert "refused" in ran.of("c"), ran
    (host_tmpfs / "still-writable").write_text("yes")


def test_a_container_cannot_write_the_hosts_sysctls(run_dir: Path) -> None:
    # The value it has: harmless should the write ever get through.
    setting = "/proc/sys/vm/overcommit_ratio"
    ran = run_pod(
        run_dir,
        "esc-sysctl",
        f"""
        containers:
        - name: c
          command: {sh(f"cat {setting} > {setting} && echo written || echo refused")}
        """,
    )
    assert ran.of("c")[-1] == "refused", ran
    assert "Read-only file system" in ran.stderr


def test_a_container_sees_its_cgroup_as_root_and_cannot_leave_it(run_dir: Path) -> None:
    script = (
        "cat /proc/self/cgroup; "
        "for procs in $(find /sys/fs/cgroup -maxdepth 2 -name cgroup.procs); do "
        "  echo $$$$ > $procs 2>/dev/null && echo moved:$procs; "
        "done; echo tried"
    )
    ran = run_pod(
        run_dir,
        "esc-cgroup",
        f"""
        containers:
        - name: c
          command: {sh(script)}
        """,
    )
    lines = ran.of("c")
    assert lines[-1] == "tried", ran
    assert not [line for line in lines if line.startswith("moved:")]
    memberships = lines[:-1]
    assert memberships
    assert all(line.endswith(":/") for line in memberships), memberships


def test_masked_and_read_only_paths(run_dir: Path) -> None:
    script = (
        "wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
        "for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /sys; do "
        '  grep -q " $p ro," /proc/self/mountinfo && echo ro:$p; done'
    )
    ran = run_pod(
        run_dir,
        "esc-masks",
        f"""
        containers:
        - name: c
          command: {sh(script)}
        """,
    )
    lines = ran.of("c")
    assert lines[:3] == ["0", "0", "0"], ran
    paths = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/sys")
    assert set(lines[3:]) == {f"ro:{p}" for p in paths if Path(p).exists()}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_another_pods_namespace_and_socket_are_out_of_reach(run_dir: Path) -> None:
    async with control_pod(serving_pod("esc-victim"), run_dir) as victim:
        await victim.serving()
        netns = victim.view.network.netns_path if victim.view.network else None
        assert netns is not None
        podvisor = " ".join(podvisor_command())
        script = (
            f"ls -A /run/netns {run_dir} | grep -v : ; "
            f"nsenter --net={netns} true && echo entered; "
            f"{podvisor} stop esc-victim; echo stop=$?"
        )
        path = run_dir / "esc-attacker.yaml"
        body = f"""
            containers:
            - name: c
              env: [{{name: PODVISOR_RUN_DIR, value: "{run_dir}"}}]
              command: {sh(script)}
            """
        path.write_text(manifest(body, "esc-attacker"))
        env = {**os.environ, "PODVISOR_RUN_DIR": str(run_dir)}
        done = await anyio.run_process(
            [*podvisor_command(), "run", "--metrics-address", "off", str(path)],
            env=env,
            check=False,
        )
        said = [
            line.partition(" | ")[2] for line in done.stdout.decode().splitlines() if " | " in line
        ]
        assert "entered" not in said, said
        assert [line for line in said if line.strip()][-1] != "stop=0", said
        assert not [line for line in said if line.startswith("pv-")], said
        assert victim.container("app").step.name == "RUNNING"


#: Sends READY=1 to $NOTIFY_SOCKET and says whether the kernel let it.
NOTIFY = (
    "import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); print('sent', flush=True)"
)


def test_the_notify_socket_is_the_pods_containers_alone(run_dir: Path) -> None:
    """A container of any uid reaches the socket through its own mounts.

    The host's users do not: `tests/faults/test_notify_flood.py` floods it as one.
    """
    ran = run_pod(
        run_dir,
        "esc-notify",
        f"""
        containers:
        - name: c
          securityContext: {{runAsUser: 4242}}
          command: ["{PYTHON}", "-c", "{NOTIFY}"]
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("c") == ["sent"], ran.stderr


def test_every_pods_files_are_out_of_reach_in_host_mode(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image store (every pod's emptyDirs and upper directories), the claims and the
    logs are covered, as the control sockets are; the container's own emptyDir, which
    comes from the store, still works."""
    state = Path(tempfile.mkdtemp(prefix="sectest-state-", dir="/tmp"))
    try:
        for folder, variable in (
            ("store", "PODVISOR_IMAGE_STORE"),
            ("claims", "PODVISOR_VOLUMES"),
            ("logs", "PODVISOR_LOG_DIR"),
        ):
            (state / folder / "another-pods").mkdir(parents=True)
            monkeypatch.setenv(variable, str(state / folder))
        mine = tmp_path / "mine"
        mine.mkdir()
        script = (
            f"ls -A {state}/store {state}/claims {state}/logs | grep -v -e : -e '^$' ; "
            f"echo kept > {mine}/f && cat {mine}/f"
        )
        ran = run_pod(
            run_dir,
            "esc-state",
            f"""
            containers:
            - name: c
              command: {sh(script)}
              volumeMounts: [{{name: own, mountPath: {mine}}}]
            - name: shipper
              command: {sh(f"ls {state}/logs")}
              volumeMounts: [{{name: logs, mountPath: {state}/logs, readOnly: true}}]
            volumes:
            - {{name: own, emptyDir: {{}}}}
            - {{name: logs, hostPath: {{path: {state}/logs}}}}
            """,
        )
        assert ran.status == 0, ran.stderr
        assert ran.of("c") == ["kept"], ran.stderr
        # A hostPath over the logs asks for them, as a log shipper does.
        assert "another-pods" in ran.of("shipper"), ran.stderr
        assert not list(mine.iterdir())  # the emptyDir was bound over it, in the container only
    finally:
        shutil.rmtree(state, ignore_errors=True)
