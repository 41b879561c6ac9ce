"""persistentVolumeClaim volumes: a folder kept by claim name, found again by the next pod.

`podvisor volume ls` lists it, `podvisor volume rm` removes it, never while a
running pod uses it. The claims live in a folder of the test's own
($PODVISOR_VOLUMES).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.pod.claims import give_to_group
from tests.faults.pods import Supervisor, podvisor_command
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, run_pod, sh
from tests.volumes.conftest import BUSYBOX

CLAIM = """\
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""


@pytest.fixture
def claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "claims"
    monkeypatch.setenv("PODVISOR_VOLUMES", str(root))
    return root


def volume(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podvisor_command(), "volume", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pod_with_claim(image: str, script: str, *, read_only: bool = False) -> str:
    return f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(script)}
            volumeMounts: [{{name: store, mountPath: /var/lib/app}}]
        volumes:
          - name: store
            persistentVolumeClaim: {{claimName: data, readOnly: {str(read_only).lower()}}}
        """


def test_a_claims_data_survives_the_pod_and_the_next_pod_sees_it(
    run_dir: Path, load_image: LoadImage, claims: Path
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    ran = run_pod(
        run_dir,
        "vol-claim-1",
        pod_with_claim(image, "echo kept > /var/lib/app/file; echo ok"),
        objects=CLAIM,
    )
    assert (ran.status, ran.lines) == (0, {"main": ["ok"]}), ran.stderr
    assert (claims / "default" / "data" / "file").read_text() == "kept\n"
    ran = run_pod(
        run_dir,
        "vol-claim-2",
        pod_with_claim(
            image, "cat /var/lib/app/file; (echo x > /var/lib/app/n) 2>&1; true", read_only=True
        ),
        objects=CLAIM,
    )
    assert ran.status == 0, ran.stderr
    said = ran.of("main")
    assert said[0] == "kept"
    assert said[1].endswith("Read-only file system")  # the claim's readOnly, every mount
    listed = json.loads(volume("ls", "-o", "json").stdout)
    assert [(c["namespace"], c["name"], c["inUse"]) for c in listed] == [("default", "data", False)]
    assert listed[0]["bytes"] > 0


def test_rm_refuses_a_claim_a_running_pod_uses_and_removes_it_after(
    run_dir: Path, load_image: LoadImage, claims: Path, tmp_path: Path
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    path = tmp_path / "vol-claim-held.yaml"
    body = pod_with_claim(
        image, "echo x > /var/lib/app/f; echo up; trap 'exit 0' TERM; sleep 60 & wait"
    )
    path.write_text(manifest(body, "vol-claim-held") + CLAIM)
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as sup:
        sup.wait_line("main", "up")
        assert volume("ls").stdout.splitlines() == [
            "NAMESPACE  NAME  SIZE    IN USE",
            "default    data  4.1 kB  yes",
        ]
        refused = volume("rm", "data")
        assert refused.returncode == 1
        assert refused.stderr == (
            "podvisor volume rm: claim default/data is in use by a running pod: stop the pod "
            "first (`podvisor ps` lists the pods)\n"
        )
        sup.signal(signal.SIGTERM)
        assert sup.wait(timeout=60) == 0
    assert (claims / "default" / "data" / "f").exists()
    removed = volume("rm", "default/data")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"removed default/data ({claims / 'default' / 'data'})\n"
    assert not (claims / "default" / "data").exists()
    assert volume("rm", "data").stderr.startswith("podvisor volume rm: no claim default/data")


def test_a_read_write_once_pod_claim_is_one_pods_at_a_time(
    run_dir: Path, load_image: LoadImage, claims: Path, tmp_path: Path
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    only_one = CLAIM.replace("[ReadWriteOnce]", "[ReadWriteOncePod]")
    path = tmp_path / "vol-claim-owner.yaml"
    body = pod_with_claim(image, "echo up; trap 'exit 0' TERM; sleep 60 & wait")
    path.write_text(manifest(body, "vol-claim-owner") + only_one)
    checked = subprocess.run(
        [*podvisor_command(), "check", str(path)], capture_output=True, text=True, check=True
    )
    assert "claim data (1Gi), ReadWriteOncePod: this pod's alone while it runs" in checked.stdout
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as owner:
        owner.wait_line("main", "up")
        second = run_pod(
            run_dir, "vol-claim-second", pod_with_claim(image, "echo ran"), objects=only_one
        )
        shared = run_pod(
            run_dir, "vol-claim-shared", pod_with_claim(image, "echo ran"), objects=CLAIM
        )
        owner.signal(signal.SIGTERM)
        assert owner.wait(timeout=60) == 0
    # Neither started: the claim was the running pod's alone.
    assert (second.status, second.lines) == (2, {}), second.stderr
    assert "claim default/data is ReadWriteOncePod and a running pod uses it" in second.stderr
    assert (shared.status, shared.lines) == (2, {}), shared.stderr
    assert "claim default/data is held by a running pod alone" in shared.stderr
    # Once its pod has ended, the claim is the next pod's.
    after = run_pod(run_dir, "vol-claim-after", pod_with_claim(image, "echo ran"), objects=only_one)
    assert (after.status, after.lines) == (0, {"main": ["ran"]}), after.stderr


def test_a_claim_is_the_pods_fs_group_and_the_next_user_of_that_group_writes_it(
    run_dir: Path, load_image: LoadImage, claims: Path, tmp_path: Path
) -> None:
    """The kubelet's ownership management: files of the claim take the fsGroup, group rw,
    and a later pod of another user with that fsGroup writes them; links are left as they
    are, and what they point to outside the claim never changes."""
    image = load_image("test/busybox:1", BUSYBOX)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (outside / "file").write_text("host's\n")
    os.chmod(outside / "file", 0o600)

    def pod(user: int, script: str) -> str:
        context = f"{{runAsUser: {user}, runAsGroup: {user}, fsGroup: 2000}}"
        return pod_with_claim(image, script) + f"securityContext: {context}\n"

    links = f"ln -s {outside} /var/lib/app/dir-link; ln -s {outside}/file /var/lib/app/link"
    first = pod(1000, f"mkdir /var/lib/app/sub; echo one > /var/lib/app/sub/f; {links}; echo ok")
    ran = run_pod(run_dir, "vol-claim-group-1", first, objects=CLAIM)
    assert (ran.status, ran.lines) == (0, {"main": ["ok"]}), ran.stderr
    folder = claims / "default" / "data"
    made = (folder / "sub" / "f").stat()
    assert (made.st_uid, made.st_gid) == (1000, 2000)  # setgid passed the group on
    assert stat.S_IMODE(folder.stat().st_mode) & 0o2070 == 0o2070
    second = pod(1001, "echo two >> /var/lib/app/sub/f && cat /var/lib/app/sub/f")
    ran = run_pod(run_dir, "vol-claim-group-2", second, objects=CLAIM)
    assert (ran.status, ran.lines) == (0, {"main": ["one", "two"]}), ran.stderr
    assert stat.S_IMODE((folder / "sub" / "f").stat().st_mode) & 0o060 == 0o060
    assert (folder / "link").lstat().st_gid == 2000  # the link itself
    for path in (outside, outside / "file"):
        st = path.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o600 if path.is_file() else 0o700)


def test_on_root_mismatch_walks_a_claim_only_while_its_folder_is_not_the_groups(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "claim"
    folder.mkdir(mode=0o755)
    (folder / "old").write_text("x")
    os.chmod(folder / "old", 0o600)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        give_to_group(fd, 2000, on_root_mismatch=True)  # the folder is not the group's: walked
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2775
        assert (folder / "old").stat().st_gid == 2000
        os.chown(folder / "old", -1, 0)
        os.chmod(folder / "old", 0o600)
        give_to_group(fd, 2000, on_root_mismatch=True)  # the folder is: nothing changes
        kept = (folder / "old").stat()
        assert (kept.st_gid, stat.S_IMODE(kept.st_mode)) == (0, 0o600)
        give_to_group(fd, 2000, read_only=True)  # Always: every file, read-only bits
        old = (folder / "old").stat()
        assert (old.st_gid, stat.S_IMODE(old.st_mode)) == (2000, 0o640)
    finally:
        os.close(fd)
