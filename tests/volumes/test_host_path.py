"""hostPath volumes: every type checked as the kubelet checks it, before anything starts.

A failed check is the kubelet's message, and the pod does not start (exit 2):
podvisor's config errors all end so. A passed one mounts the path in the
container, which sees it for what it is.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.pods import podvisor_command
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, run_pod, sh
from tests.volumes.conftest import BUSYBOX


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """One path of each kind a hostPath type names, and one that is not there."""
    directory = tmp_path / "dir"
    directory.mkdir()
    file = tmp_path / "file"
    file.write_text("a file")
    sock = tmp_path / "sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    block = tmp_path / "block"
    os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    try:
        yield {
            "Directory": directory,
            "File": file,
            "Socket": sock,
            "CharDevice": Path("/dev/null"),
            "BlockDevice": block,
            "missing": tmp_path / "missing",
        }
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("kind", "given", "what"),
    [
        ("Directory", "File", "a directory"),
        ("Directory", "missing", "a directory"),
        ("DirectoryOrCreate", "File", "a directory"),
        ("File", "Directory", "a file"),
        ("File", "missing", "a file"),
        ("FileOrCreate", "Directory", "a file"),
        ("Socket", "File", "a socket file"),
        ("CharDevice", "BlockDevice", "a character device"),
        ("BlockDevice", "CharDevice", "a block device"),
    ],
)
def test_a_failed_check_is_the_kubelets_message_and_nothing_starts(
    run_dir: Path, paths: dict[str, Path], kind: str, given: str, what: str
) -> None:
    path = paths[given]
    pod = run_dir / "pod.yaml"
    started = run_dir / "started"
    pod.write_text(
        manifest(
            f"""
            containers:
              - name: main
                command: {sh(f"touch {started}")}
                volumeMounts: [{{name: host, mountPath: /mnt}}]
            volumes:
              - name: host
                hostPath: {{path: {path}, type: {kind}}}
            """,
            "vol-host-fails",
        )
    )
    done = subprocess.run(
        [*podvisor_command(), "run", "--metrics-address", "off", str(pod)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PODVISOR_RUN_DIR": str(run_dir)},
    )
    assert done.returncode == 2
    assert (
        f'MountVolume.SetUp failed for volume "host" : hostPath type check failed: {path} is '
        f"not {what}. Nothing was started"
    ) in done.stderr
    assert not started.exists()
    assert not paths["missing"].exists()  # Directory and File make nothing


def test_every_type_that_passes_is_mounted_as_what_it_is(
    run_dir: Path, load_image: LoadImage, paths: dict[str, Path], tmp_path: Path
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    made_dir, made_file = tmp_path / "made" / "dir", tmp_path / "made-file"
    kinds = {
        "plain": (paths["Directory"], "", "-d"),
        "directory": (paths["Directory"], "Directory", "-d"),
        "directory-or-create": (made_dir, "DirectoryOrCreate", "-d"),
        "file": (paths["File"], "File", "-f"),
        "file-or-create": (made_file, "FileOrCreate", "-f"),
        "socket": (paths["Socket"], "Socket", "-S"),
        "char-device": (paths["CharDevice"], "CharDevice", "-c"),
        "block-device": (paths["BlockDevice"], "BlockDevice", "-b"),
    }
    script = "; ".join(f"test {t} /mnt/{name} && echo {name}" for name, (_, _, t) in kinds.items())
    mounts = [{"name": name, "mountPath": f"/mnt/{name}"} for name in kinds]
    volumes = [
        {"name": name, "hostPath": {"path": str(path), "type": kind}}
        for name, (path, kind, _) in kinds.items()
    ]
    ran = run_pod(
        run_dir,
        "vol-host-types",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(script + "; cat /mnt/file")}
            volumeMounts: {json.dumps(mounts)}
        volumes: {json.dumps(volumes)}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == [*kinds, "a file"]
    # Made as the kubelet makes them: a directory 0755 (and its parents), an empty file 0644.
    assert stat.S_IMODE(made_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(made_file.stat().st_mode) == 0o644
    assert made_file.read_text() == ""
