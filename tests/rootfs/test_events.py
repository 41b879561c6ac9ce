"""A container on its image's root: its events say the image was there, as the kubelet's do."""

from __future__ import annotations

from pathlib import Path

from tests.rootfs.conftest import LoadImage
from tests.security.conftest import run_pod

CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo up"], "Env": ["PATH=/bin"]}


def test_pulled_comes_before_created_and_started(run_dir: Path, load_image: LoadImage) -> None:
    image = load_image("test/events:1", CONFIG)
    ran = run_pod(
        run_dir,
        "img-events",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
        """,
    )
    assert ran.status == 0, ran.stderr
    said = [line for line in ran.stderr.splitlines() if " main: " in line]
    assert said[:3] == [
        f'podvisor | Normal Pulled main: Container image "{image}" already present on machine',
        "podvisor | Normal Created main: Created container: main",
        "podvisor | Normal Started main: Started container main",
    ]
    assert ran.stderr.splitlines()[-1] == (
        "podvisor | pod Succeeded (exit 0): its main containers ended; main exited 0"
    )
