"""`podvisor image ...` and what `podvisor check` says of each container's image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.images.build import busybox_layout

PODVISOR = Path(sys.executable).with_name("podvisor")


def podvisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PODVISOR), *args], capture_output=True, text=True, timeout=60, check=False
    )


POD = """\
apiVersion: v1
kind: Pod
metadata: {name: images}
spec:
  containers:
  - {name: held, image: "busybox:test", command: [sleep, "1"]}
  - {name: latest, image: busybox, command: [sleep, "1"]}
  - {name: never, image: "busybox:gone", imagePullPolicy: Never, command: [sleep, "1"]}
  - {name: absent, image: "ghcr.io/o/app:1", command: [sleep, "1"]}
"""


def test_load_ls_check_rm_prune(tmp_path: Path, store_dir: Path) -> None:
    busybox_layout(tmp_path / "layout")
    loaded = podvisor("image", "load", str(tmp_path / "layout"))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.endswith(": docker.io/library/busybox:test\n")
    listed = podvisor("image", "ls")
    assert listed.stdout.splitlines()[0].split() == ["IMAGE", "ID", "PLATFORM", "SIZE", "CREATED"]
    assert listed.stdout.splitlines()[1].split()[:3][::2] == ["busybox:test", "linux/amd64"]
    [record] = json.loads(podvisor("image", "ls", "-o", "json").stdout)
    assert record["names"] == ["docker.io/library/busybox:test"]
    assert record["config"]["Cmd"] == ["/bin/sh"]

    (tmp_path / "pod.yaml").write_text(POD)
    check = podvisor("check", str(tmp_path / "pod.yaml"))
    assert check.returncode == 0, check.stderr
    lines = [line.strip() for line in check.stdout.splitlines() if "image: " in line]
    assert lines == [
        (
            f"image: busybox:test (imagePullPolicy IfNotPresent): present: in the store as "
            f"{record['id'][:19]}"
        ),
        (
            "image: busybox (imagePullPolicy Always): would be pulled: imagePullPolicy Always: "
            "docker.io is asked for it at each start"
        ),
        (
            "image: busybox:gone (imagePullPolicy Never): missing: imagePullPolicy Never and not "
            "in the store: load it with podvisor image load"
        ),
        (
            "image: ghcr.io/o/app:1 (imagePullPolicy IfNotPresent): would be pulled: not in the "
            "store; pulled from ghcr.io"
        ),
    ]
    [plan] = json.loads(podvisor("check", "-o", "json", str(tmp_path / "pod.yaml")).stdout)
    assert plan["containers"][0]["image_state"]["state"] == "present"

    missing = podvisor("image", "rm", "busybox:gone")
    assert (missing.returncode, missing.stderr.startswith("podvisor image rm: no image")) == (
        1,
        True,
    )
    assert podvisor("image", "rm", "busybox:test").stdout.splitlines() == [
        "untagged docker.io/library/busybox:test",
        f"deleted {record['id']}",
    ]
    assert podvisor("image", "prune").returncode == 0
    assert podvisor("image", "ls", "-q").stdout == ""
    assert os.listdir(store_dir / "layers/sha256") == []


def test_a_bad_reference_exits_2(store_dir: Path) -> None:
    result = podvisor("image", "pull", "Not/Valid")
    assert result.returncode == 2
    assert "must be lower-case" in result.stderr
