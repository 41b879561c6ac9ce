"""The examples of Kubernetes' "Configure a Security Context for a Pod or Container" task.

Each pod below is the page's example (security-context.yaml, -2 to -6)
rewritten for this machine: the page's images become ``sh`` and the
programs here, and each test asserts what the page says the user sees.
One difference: the page reads the capabilities of the container's PID 1;
in podvisor PID 1 of a container is its init, so the program reads its own
/proc/self/status, which is the process the page means.
"""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

import pytest

from tests.security.conftest import STATUS, run_pod, sh, status

pytestmark = pytest.mark.needs_root

#: What the page's shell commands print, as one program: `id`, then the status lines.
SHOW = f"echo id $(id -u) $(id -g) $(id -G); ps -o uid=,args=; {STATUS}"


def ids(lines: list[str]) -> tuple[str, str, set[str]]:
    """(uid, gid, groups) from SHOW's `id` line."""
    _, uid, gid, *groups = next(line for line in lines if line.startswith("id ")).split()
    return uid, gid, set(groups)


def test_a_pods_security_context_sets_the_user_and_groups(run_dir: Path) -> None:
    """security-context.yaml: processes run as 1000, gid 3000, with fsGroup 2000 among the groups."""
    ran = run_pod(
        run_dir,
        "sc-demo",
        f"""
        securityContext: {{runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}}
        containers:
        - name: sec-ctx-demo
          command: {sh(SHOW)}
          securityContext: {{allowPrivilegeEscalation: false}}
        """,
    )
    assert ran.status == 0, ran.stderr
    lines = ran.of("sec-ctx-demo")
    uid, gid, groups = ids(lines)
    assert (uid, gid) == ("1000", "3000")
    assert "2000" in groups
    listed = [line.split()[0] for line in lines if line.split()[0].isdigit()]  # ps's lines
    assert listed, lines
    assert set(listed) == {"1000"}, lines
    assert status(lines)["NoNewPrivs"] == "1"


def test_fs_group_owns_an_empty_dir_and_the_files_made_in_it(run_dir: Path) -> None:
    """security-context.yaml's volume: the directory and a new file in it have group 2000."""
    ran = run_pod(
        run_dir,
        "sc-demo-volume",
        f"""
        securityContext: {{runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}}
        volumes: [{{name: sec-ctx-vol, emptyDir: {{}}}}]
        containers:
        - name: sec-ctx-demo
          command: {sh("stat -c '%A %g' /mnt; echo hello > /mnt/testfile; stat -c '%u %g' /mnt/testfile")}
          volumeMounts: [{{name: sec-ctx-vol, mountPath: /mnt}}]
          securityContext: {{allowPrivilegeEscalation: false}}
        """,
    )
    assert ran.of("sec-ctx-demo") == ["drwxrwsrwx 2000", "1000 2000"], ran


def test_a_containers_run_as_user_wins_over_the_pods(run_dir: Path) -> None:
    """security-context-2.yaml: the container's runAsUser 2000 over the pod's 1000."""
    ran = run_pod(
        run_dir,
        "sc-demo-2",
        f"""
        securityContext: {{runAsUser: 1000}}
        containers:
        - name: sec-ctx-demo-2
          command: {sh(SHOW)}
          securityContext: {{runAsUser: 2000, allowPrivilegeEscalation: false}}
        """,
    )
    assert status(ran.of("sec-ctx-demo-2"))["Uid"] == "2000 2000 2000 2000", ran


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("{}", "00000000a80425fb"),  # security-context-3.yaml
        ("{capabilities: {add: [NET_ADMIN, SYS_TIME]}}", "00000000aa0435fb"),  # -4
    ],
)
def test_capabilities_as_the_page_shows_them(run_dir: Path, context: str, expected: str) -> None:
    """security-context-3 and -4: the default bitmap, then bits 12 and 25 set as well."""
    ran = run_pod(
        run_dir,
        "sc-demo-caps",
        f"""
        containers:
        - name: sec-ctx
          securityContext: {context}
          command: {sh(SHOW)}
        """,
    )
    seen = status(ran.of("sec-ctx"))
    assert (seen["CapPrm"], seen["CapEff"]) == (expected, expected), ran


def _member() -> tuple[int, int]:
    """A user of this machine listed as a member of a group in /etc/group: (uid, that gid)."""
    for group in grp.getgrall():
        for name in group.gr_mem:
            try:
                user = pwd.getpwnam(name)
            except KeyError:
                continue
            if user.pw_gid != group.gr_gid and user.pw_uid != 0:
                return user.pw_uid, group.gr_gid
    pytest.skip("no user of this machine is a listed member of a group")


@pytest.mark.parametrize("policy", ["Merge", "Strict"])
def test_supplemental_groups_and_their_policy(run_dir: Path, policy: str) -> None:
    """security-context-5 (Merge) and -6 (Strict): the image's groups of the user, or none.

    On the page the image's /etc/group puts uid 1000 in group 50000; here a
    user of this machine's /etc/group plays that part (host mode).
    """
    uid, member_of = _member()
    ran = run_pod(
        run_dir,
        f"sc-demo-{policy.lower()}",
        f"""
        securityContext:
          runAsUser: {uid}
          runAsGroup: 3000
          supplementalGroups: [4000]
          supplementalGroupsPolicy: {policy}
        containers:
        - name: sec-ctx-demo
          command: {sh(SHOW)}
          securityContext: {{allowPrivilegeEscalation: false}}
        """,
    )
    lines = ran.of("sec-ctx-demo")
    uid_seen, gid, groups = ids(lines)
    assert (uid_seen, gid) == (str(uid), "3000"), ran
    expected = {"3000", "4000"} | ({str(member_of)} if policy == "Merge" else set())
    assert groups == expected
    assert set(status(lines)["Groups"].split()) == expected
