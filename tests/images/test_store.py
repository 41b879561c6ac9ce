"""The image store: loading layouts and archives (ours and skopeo's), names, rm, prune, leases."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.errors import ImageInUseError, ImageNotFoundError
from podvisor.supervisor.images import ImageState, ImageStore, PullPolicy
from tests.images.build import (
    Entry,
    Layout,
    archive,
    busybox_entries,
    busybox_layout,
    docker_archive,
    tar,
)

BUSYBOX = "docker.io/library/busybox:test"


def run_in(image_dirs: tuple[str, ...], tmp_path: Path, command: str) -> str:
    """Run *command* with busybox's sh in a root made of *image_dirs*, as a container's
    would be: an overlay (read-only here) in a private mount namespace, then chroot."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    empty = tmp_path / "empty"  # overlayfs without an upper directory takes two lowers at least
    empty.mkdir(exist_ok=True)
    lower = ":".join([*reversed(image_dirs), str(empty)])
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            (
                f'mount -t overlay overlay -o lowerdir={lower} "$ROOT"; '
                f'exec chroot "$ROOT" /bin/sh -c "$COMMAND"'
            ),
        ],
        env={**os.environ, "ROOT": str(mnt), "COMMAND": command},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_oci_layout_loads_and_its_image_runs(tmp_path: Path, store: ImageStore) -> None:
    busybox_layout(
        tmp_path / "layout",
        config={
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hi"],
            "Env": ["PATH=/bin", "GREETING=hello"],
            "WorkingDir": "/tmp",
            "User": "65534:65534",
            "StopSignal": "SIGQUIT",
        },
    )
    [image] = store.load(str(tmp_path / "layout"))
    assert image.names == (BUSYBOX,)
    assert image.manifest is not None
    assert image.digests == (f"docker.io/library/busybox@{image.manifest}",)
    config = image.config
    assert config.entrypoint == ("/bin/sh", "-c")
    assert config.cmd == ("echo hi",)
    assert config.env == ("PATH=/bin", "GREETING=hello")
    assert (config.working_dir, config.user, config.stop_signal) == (
        "/tmp",
        "65534:65534",
        "SIGQUIT",
    )
    assert image.platform == "linux/amd64"
    # Found by each of its names, its ID, a prefix of the ID, and its digest.
    for text in ("busybox:test", BUSYBOX, image.id, image.id[7:19], f"busybox@{image.manifest}"):
        assert store.resolve(text) == image, text
    assert run_in(image.layer_dirs(), tmp_path, "echo $(cat /etc/passwd | head -1)") == (
        "root:x:0:0:root:/root:/bin/sh\n"
    )


def test_an_oci_archive_and_a_docker_archive_load(tmp_path: Path, store: ImageStore) -> None:
    busybox_layout(tmp_path / "layout", name="registry.example:5000/tools/busybox:1")
    [from_oci] = store.load(str(archive(tmp_path / "layout", tmp_path / "oci.tar")))
    assert from_oci.names == ("registry.example:5000/tools/busybox:1",)

    base = tar(busybox_entries())
    change = tar([Entry("etc/.wh.passwd", b""), Entry("etc/motd", b"welcome\n")])
    docker = docker_archive(tmp_path / "docker.tar", [base, change], ["app:2"], ["/bin/sh"])
    [from_docker] = store.load(str(docker))
    assert from_docker.names == ("docker.io/library/app:2",)
    assert from_docker.manifest is None
    assert len(from_docker.layer_dirs()) == 2
    # The base layer is the same tar as the OCI image's: unpacked once, shared.
    assert from_docker.layer_dirs()[0] == from_oci.layer_dirs()[0]
    shown = run_in(from_docker.layer_dirs(), tmp_path, "ls /etc; cat /etc/motd")
    assert shown == "motd\nwelcome\n"


@pytest.mark.parametrize(
    ("transport", "compression"),
    [("docker-archive", "gzip"), ("oci-archive", "zstd"), ("oci", "zstd")],
)
def test_what_skopeo_writes_loads(
    tmp_path: Path, store: ImageStore, transport: str, compression: str
) -> None:
    busybox_layout(tmp_path / "layout", compression=compression)
    target = tmp_path / ("copy.tar" if transport != "oci" else "copy")
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "oci:" + str(tmp_path / "layout") + ":busybox:test",
            f"{transport}:{target}:busybox:skopeo",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    [image] = store.load(str(target))
    assert image.names == ("docker.io/library/busybox:skopeo",)
    assert run_in(image.layer_dirs(), tmp_path, "echo ok") == "ok\n"


def test_a_layout_tagged_only_latest_is_named_by_name(tmp_path: Path, store: ImageStore) -> None:
    busybox_layout(tmp_path / "layout", name="latest")
    [unnamed] = store.load(str(tmp_path / "layout"))
    assert unnamed.names == ()
    [named] = store.load(str(tmp_path / "layout"), name="tools/busybox:1")
    assert named.id == unnamed.id
    assert named.names == ("docker.io/tools/busybox:1",)


def test_a_name_moves_to_the_image_loaded_last(tmp_path: Path, store: ImageStore) -> None:
    busybox_layout(tmp_path / "one", config={"Cmd": ["one"]})
    busybox_layout(tmp_path / "two", config={"Cmd": ["two"]})
    [first] = store.load(str(tmp_path / "one"))
    [second] = store.load(str(tmp_path / "two"))
    assert store.resolve("busybox:test").id == second.id
    assert store.resolve(first.id).names == ()
    # Both share their one layer.
    assert first.layer_dirs() == second.layer_dirs()
    pruned = store.prune()
    assert pruned[0] == f"deleted {first.id}"
    assert f"removed blob {first.id}" in pruned  # its config (and its manifest)
    assert [i.id for i in store.images()] == [second.id]
    assert os.path.isdir(second.layer_dirs()[0])


def test_rm_untags_then_deletes_and_keeps_what_others_use(
    tmp_path: Path, store: ImageStore
) -> None:
    busybox_layout(tmp_path / "layout")
    [image] = store.load(str(tmp_path / "layout"))
    store.load(str(tmp_path / "layout"), name="other:1")
    assert store.remove("other:1") == ["untagged docker.io/library/other:1"]
    with pytest.raises(ImageNotFoundError):
        store.remove("other:1")
    with store.lease(image):
        with pytest.raises(ImageInUseError, match="stop the pod first"):
            store.remove("busybox:test")
        assert store.prune() == []
    assert store.remove("busybox:test") == [f"untagged {BUSYBOX}", f"deleted {image.id}"]
    assert store.images() == []
    for sub in ("layers/sha256", "blobs/sha256", "leases", "tmp"):
        assert os.listdir(f"{store.root}/{sub}") == [], sub


def test_state_and_ensure_follow_image_pull_policy(tmp_path: Path, store: ImageStore) -> None:
    busybox_layout(tmp_path / "layout", name="registry.invalid/busybox:1")
    busybox_layout(tmp_path / "latest", name="registry.invalid/busybox:latest")
    assert store.state("registry.invalid/busybox:1").state is ImageState.WOULD_PULL
    missing = store.state("registry.invalid/busybox:1", PullPolicy.NEVER)
    assert missing.state is ImageState.MISSING
    with pytest.raises(ImageNotFoundError, match="imagePullPolicy is Never"):
        store.ensure("registry.invalid/busybox:1", PullPolicy.NEVER)
    [image] = store.load(str(tmp_path / "layout"))
    store.load(str(tmp_path / "latest"))
    # Present: IfNotPresent (the default for a tag) and Never take it, asking no registry.
    assert store.state("registry.invalid/busybox:1").state is ImageState.PRESENT
    assert store.ensure("registry.invalid/busybox:1").id == image.id
    assert store.ensure("registry.invalid/busybox:1", PullPolicy.NEVER).id == image.id
    # :latest (or no tag) means Always: present, and asked for again at the registry.
    latest = store.state("registry.invalid/busybox")
    assert (latest.state, latest.policy) == (ImageState.WOULD_PULL, PullPolicy.ALWAYS)
    assert store.state("registry.invalid/busybox", PullPolicy.IF_NOT_PRESENT).state is (
        ImageState.PRESENT
    )


def test_an_index_in_a_layout_gives_this_machines_image(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(tmp_path / "layout")
    amd64 = layout.image([tar(busybox_entries())], config={"Cmd": ["amd64"]})
    arm64 = layout.image([tar(busybox_entries())], config={"Cmd": ["arm64"]}, architecture="arm64")
    layout.tag(layout.index([amd64, arm64]), "multi:1")
    [image] = store.load(str(tmp_path / "layout"))
    assert image.config.cmd == ("amd64",)
    monkeypatch.setenv("PODVISOR_PLATFORM", "linux/arm64")
    [image] = store.load(str(tmp_path / "layout"))
    assert (image.config.cmd, image.platform) == (("arm64",), "linux/arm64")
    monkeypatch.setenv("PODVISOR_PLATFORM", "linux/s390x")
    with pytest.raises(Exception, match=r"no image for this machine \(linux/s390x\)"):
        store.load(str(tmp_path / "layout"))
