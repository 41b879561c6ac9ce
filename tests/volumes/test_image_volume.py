"""image volumes: an OCI image's files from the store, mounted read-only.

The pod's init mounts the image's layers as an overlay without an upper
directory in the pod's mount namespace; each container binds it where its
volumeMounts say, read-only whatever they say, on an image or on the host's files.
"""

from __future__ import annotations

import json
from pathlib import Path

from podvisor.supervisor.images import ImageStore
from tests.images.build import Entry, Layout, tar
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import run_pod, sh
from tests.volumes.conftest import BUSYBOX

DATA = [Entry("models/", kind="dir", mode=0o755), Entry("models/weights", b"from the image\n")]
READ = "cat {at}/models/weights; (echo x > {at}/new) 2>&1; true"


def test_an_image_volume_is_the_images_files_read_only(
    run_dir: Path, load_image: LoadImage, tmp_path: Path, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    data = load_image("test/data:1", {"Cmd": ["true"]}, extra=DATA)
    host = tmp_path / "models"
    host.mkdir()
    ran = run_pod(
        run_dir,
        "vol-image",
        f"""
        containers:
          - name: on-image
            image: {image}
            imagePullPolicy: Never
            command: {sh(READ.format(at="/models"))}
            volumeMounts: [{{name: models, mountPath: /models}}]
          - name: on-host
            command: {sh(READ.format(at=host))}
            volumeMounts: [{{name: models, mountPath: {host}}}]
        volumes:
          - name: models
            image: {{reference: {data}, pullPolicy: Never}}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("on-image") == [
        "from the image",
        "sh: can't create /models/new: Read-only file system",
    ]
    assert ran.of("on-host")[0] == "from the image"
    assert ran.of("on-host")[1].endswith("Read-only file system")
    assert not list(host.iterdir())


def test_an_image_volume_whose_image_is_not_there_stops_the_pod_before_it_starts(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    ran = run_pod(
        run_dir,
        "vol-image-absent",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh("echo started")}
            volumeMounts: [{{name: models, mountPath: /models}}]
        volumes: {json.dumps([{"name": "models", "image": {"reference": "test/absent:1", "pullPolicy": "Never"}}])}
        """,
    )
    assert ran.status == 2
    assert ran.of("main") == []
    assert (
        'MountVolume.SetUp failed for volume "models" : cannot have the image test/absent:1'
        in ran.stderr
    )


def test_an_image_of_several_layers_is_their_overlay(
    run_dir: Path, load_image: LoadImage, tmp_path: Path, image_store: ImageStore
) -> None:
    """A later layer replaces a file and deletes another (a whiteout), as in the image."""
    image = load_image("test/busybox:1", BUSYBOX)
    layout = Layout(tmp_path / "layers")
    first = tar([*DATA, Entry("models/old", b"deleted later\n")])
    second = tar([Entry("models/", kind="dir", mode=0o755), Entry("models/weights", b"v2\n"),
                  Entry("models/.wh.old", b"")])  # fmt: skip
    layout.tag(layout.image([first, second], config={"Cmd": ["true"]}), "test/layers:1")
    image_store.load(str(layout.path))
    ran = run_pod(
        run_dir,
        "vol-image-layers",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh("cat /models/models/weights; ls /models/models")}
            volumeMounts: [{{name: models, mountPath: /models}}]
        volumes:
          - name: models
            image: {{reference: test/layers:1, pullPolicy: Never}}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == ["v2", "weights"]
