"""readOnlyRootFilesystem on an image's root: the root read-only, the rest as Kubernetes has it.

As with runc under containerd, only the container's root becomes read-only:
its volumes stay as their own ``readOnly`` says, and /dev, /dev/shm and the
pod's /etc/hosts (bound, as the kubelet binds it) stay writable. There is no writable /tmp: a program that needs one mounts a volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podvisor.supervisor.manifest.explain import main as check
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, run_pod

#: For each directory, "rw" or why a file cannot be made in it.
WRITES = (
    "pwd; for d in / /etc /tmp /data /dev /dev/shm; do"
    ' if err=$(touch "$d/probe" 2>&1); then echo "$d rw"; else echo "$d ${err##*: }"; fi;'
    " done;"
    ' if echo >> /etc/hosts; then echo "/etc/hosts rw"; fi'
)


def test_the_root_is_read_only_and_volumes_dev_and_shm_are_not(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/ro-root:1", {"Env": ["PATH=/bin"]})
    ran = run_pod(
        run_dir,
        "img-ro-root",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(WRITES)}]
            securityContext: {{readOnlyRootFilesystem: true}}
            workingDir: /srv/work
            volumeMounts: [{{name: data, mountPath: /data}}]
        volumes:
          - name: data
            emptyDir: {{}}
        """,
    )
    assert ran.status == 0, ran.stderr
    # The working directory the image lacks is made before the root is read-only, as
    # runc makes it.
    assert ran.of("main") == [
        "/srv/work",
        "/ Read-only file system",
        "/etc Read-only file system",
        "/tmp Read-only file system",
        "/data rw",
        "/dev rw",
        "/dev/shm rw",
        "/etc/hosts rw",
    ]


def test_without_it_the_root_is_the_containers_to_write(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/ro-root:1", {"Env": ["PATH=/bin"]})
    ran = run_pod(
        run_dir,
        "img-rw-root",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(WRITES.replace(" /data", ""))}]
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == [
        "/",
        "/ rw",
        "/etc rw",
        "/tmp rw",
        "/dev rw",
        "/dev/shm rw",
        "/etc/hosts rw",
    ]


def test_check_says_what_is_read_only_on_an_image_and_in_host_mode(
    tmp_path: Path, load_image: LoadImage, capsys: pytest.CaptureFixture[str]
) -> None:
    image = load_image("test/ro-root:1", {"Env": ["PATH=/bin"]})
    path = tmp_path / "pod.yaml"
    path.write_text(
        manifest(
            f"""
            containers:
              - name: main
                image: {image}
                imagePullPolicy: Never
                securityContext: {{readOnlyRootFilesystem: true}}
              - name: tool
                command: [sh]
                securityContext: {{readOnlyRootFilesystem: true}}
            """,
            "img-ro-check",
        )
    )
    assert check([str(path)]) == 0
    out = capsys.readouterr().out
    main, tool = out.split("container tool")
    assert "readOnlyRootFilesystem: the root read-only; volumes, /dev and /dev/shm not" in main
    assert "readOnlyRootFilesystem: every mount read-only but /dev, /proc and /sys" in tool
