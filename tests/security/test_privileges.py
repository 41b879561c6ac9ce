"""Capabilities, identity and no_new_privs: what a container's process holds, read from /proc.

Each expectation is what Kubernetes with containerd shows for the same
securityContext: root gets the runtime's default set in its bounding,
permitted and effective sets; any other uid keeps the bounding set and holds
nothing after its exec; inheritable and ambient sets are empty.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load
from podvisor.supervisor.manifest.capabilities import all_capabilities
from tests.security.conftest import DEFAULT_CAPS, PYTHON, STATUS, run_pod, sh, status

pytestmark = pytest.mark.needs_root


def own_bounding_set() -> int:
    """What this machine lets podvisor give at most (a sandbox may withhold some)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


#: clock_settime(2) to the time it is now: harmless if it ever got through.
SET_CLOCK = (
    f"{PYTHON} -c 'import time; time.clock_settime(time.CLOCK_REALTIME, "
    "time.clock_gettime(time.CLOCK_REALTIME))' && echo clock-set || echo clock-refused"
)


def test_a_default_container_holds_the_runtime_default_capabilities(run_dir: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-default",
        f"""
        containers:
        - name: c
          command: {sh(f"{STATUS}; {SET_CLOCK}")}
        """,
    )
    assert ran.status == 0, ran.stderr
    seen = status(ran.of("c"))
    assert seen["Uid"] == "0 0 0 0"
    assert (seen["CapPrm"], seen["CapEff"], seen["CapBnd"]) == (DEFAULT_CAPS,) * 3
    assert (seen["CapInh"], seen["CapAmb"]) == ("0000000000000000",) * 2
    assert seen["NoNewPrivs"] == "0"
    assert "clock-refused" in ran.of("c")


def test_capabilities_drop_all_leaves_none_and_the_clock_alone(run_dir: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-drop-all",
        f"""
        containers:
        - name: c
          securityContext: {{capabilities: {{drop: [ALL]}}}}
          command: {sh(f"{STATUS}; {SET_CLOCK}")}
        """,
    )
    seen = status(ran.of("c"))
    assert (seen["CapPrm"], seen["CapEff"], seen["CapBnd"]) == ("0000000000000000",) * 3
    assert "clock-refused" in ran.of("c")


def test_capabilities_add_and_drop_by_either_name(run_dir: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-add-drop",
        f"""
        containers:
        - name: c
          securityContext:
            capabilities: {{add: [NET_ADMIN, CAP_SYS_TIME, chown], drop: [CAP_CHOWN, KILL]}}
          command: {sh(f"{STATUS}")}
        - name: all
          securityContext: {{capabilities: {{add: [ALL], drop: [SYS_ADMIN]}}}}
          command: {sh(f"{STATUS}")}
        """,
    )
    expected = (0xA80425FB | 1 << 12 | 1 << 25) & ~(1 << 0 | 1 << 5)
    assert status(ran.of("c"))["CapEff"] == f"{expected:016x}"
    every = all_capabilities() & own_bounding_set()
    assert status(ran.of("all"))["CapBnd"] == f"{every & ~(1 << 21):016x}"


def test_privileged_gets_every_capability_and_no_masks(run_dir: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-privileged",
        f"""
        containers:
        - name: c
          securityContext: {{privileged: true}}
          command: {sh(f'{STATUS}; grep -c " /proc/sys ro," /proc/self/mountinfo; true')}
        """,
    )
    seen = status(ran.of("c"))
    every = f"{all_capabilities() & own_bounding_set():016x}"
    assert (seen["CapPrm"], seen["CapEff"], seen["CapBnd"]) == (every,) * 3
    assert ran.of("c")[-1] == "0"  # /proc/sys is not read-only


def test_run_as_user_keeps_the_pid_namespace_and_drops_everything_at_exec(
    run_dir: Path,
) -> None:
    ran = run_pod(
        run_dir,
        "sec-user",
        f"""
        securityContext: {{supplementalGroups: [4000], fsGroup: 2000}}
        containers:
        - name: c
          securityContext: {{runAsUser: 4242, runAsGroup: 4343}}
          command: {sh(f"{STATUS}; echo pid=$$$$")}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert "cannot make a PID namespace" not in ran.stderr
    seen = status(ran.of("c"))
    assert (seen["Uid"], seen["Gid"]) == ("4242 4242 4242 4242", "4343 4343 4343 4343")
    assert seen["Groups"] == "2000 4000 4343"
    assert (seen["CapPrm"], seen["CapEff"], seen["CapBnd"]) == (
        "0000000000000000",
        "0000000000000000",
        DEFAULT_CAPS,
    )
    assert "pid=2" in ran.of("c")  # its init is PID 1 of the container's own namespace


def test_strict_supplemental_groups_leave_out_etc_group(run_dir: Path) -> None:
    # root is a member of no other group in /etc/group on most machines; daemon (1) is
    # of its own group: Strict keeps only the gid and the listed groups either way.
    ran = run_pod(
        run_dir,
        "sec-strict",
        f"""
        securityContext: {{supplementalGroups: [5000], supplementalGroupsPolicy: Strict}}
        containers:
        - name: c
          securityContext: {{runAsUser: 1, runAsGroup: 1}}
          command: {sh(f"{STATUS}")}
        """,
    )
    assert status(ran.of("c"))["Groups"] == "1 5000"


@pytest.fixture
def setuid_id(shared_tmp: Path) -> Path:
    """A copy of id(1), setuid root: what an attacker finds on a host."""
    program = shared_tmp / "suid-id"
    shutil.copy("/usr/bin/id", program)
    program.chmod(0o4755)
    return program


def test_no_new_privs_stops_a_setuid_program(run_dir: Path, setuid_id: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-nnp",
        f"""
        containers:
        - name: free
          securityContext: {{runAsUser: 4242}}
          command: {sh(f"{STATUS}; {setuid_id} -u")}
        - name: kept
          securityContext: {{runAsUser: 4242, allowPrivilegeEscalation: false}}
          command: {sh(f"{STATUS}; {setuid_id} -u")}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert status(ran.of("free"))["NoNewPrivs"] == "0"
    assert ran.of("free")[-1] == "0"  # euid 0: what Kubernetes allows without the field
    assert status(ran.of("kept"))["NoNewPrivs"] == "1"
    assert ran.of("kept")[-1] == "4242"


def test_run_as_non_root_refuses_root_with_the_kubelets_reason() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          securityContext: {runAsNonRoot: true}
          containers:
          - name: implicit
            command: [sleep, infinity]
          - name: explicit
            command: [sleep, infinity]
            securityContext: {runAsUser: 0}
          - name: fine
            command: [sleep, infinity]
            securityContext: {runAsUser: 1000}
        """
    )
    if os.geteuid() != 0:
        pytest.skip("without a runAsUser a container runs as podvisor's user, root here")
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    messages = [p.message for p in caught.value.problems]
    assert messages[0].startswith(
        "container has runAsNonRoot and image will run as root (container: implicit)"
    )
    assert messages[1] == "container's runAsUser breaks non-root policy (container: explicit)"
    assert len(messages) == 2
