"""runAsNonRoot on an image, as the kubelet checks it: the image's User decides.

With no runAsUser the kubelet takes the image's User as the runtime reports
it: none or uid 0 is root, a name cannot be verified; both are refused
(CreateContainerConfigError) before the container starts. Here that is a
configuration error: exit 2, nothing started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podvisor.supervisor.manifest.explain import main as check
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import Ran, manifest, run_pod

#: What the container runs when it is allowed to: who it is.
WHO = json.dumps(["/bin/sh", "-c", "echo uid=$(id -u)"])


def run_non_root(run_dir: Path, load_image: LoadImage, user: str, name: str) -> Ran:
    config = {"Cmd": json.loads(WHO), "Env": ["PATH=/bin"]}
    if user:
        config["User"] = user
    image = load_image(f"test/{name}:1", config)
    return run_pod(
        run_dir,
        name,
        f"""
        securityContext: {{runAsNonRoot: true}}
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
        """,
    )


@pytest.mark.parametrize("user", ["", "0", "0:1000"])
def test_an_image_of_root_is_refused_before_anything_starts(
    run_dir: Path, load_image: LoadImage, user: str
) -> None:
    ran = run_non_root(run_dir, load_image, user, "nonroot-root")
    assert ran.status == 2, ran.stderr
    assert "CreateContainerConfigError: container has runAsNonRoot and image will run as root" in (
        ran.stderr
    )
    assert '(pod: "nonroot-root_default(' in ran.stderr
    assert "container: main): set the container's runAsUser" in ran.stderr
    assert ran.of("main") == []


@pytest.mark.parametrize("user", ["1000", "1000:root"])
def test_an_image_of_a_numeric_user_other_than_root_runs(
    run_dir: Path, load_image: LoadImage, user: str
) -> None:
    ran = run_non_root(run_dir, load_image, user, "nonroot-numeric")
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == ["uid=1000"]


@pytest.mark.parametrize("user", ["app", "root", "app:app"])
def test_an_image_of_a_named_user_is_refused_as_unverifiable(
    run_dir: Path, load_image: LoadImage, user: str
) -> None:
    ran = run_non_root(run_dir, load_image, user, "nonroot-named")
    name = user.partition(":")[0]
    assert ran.status == 2, ran.stderr
    assert (
        f"container has runAsNonRoot and image has non-numeric user ({name}), "
        "cannot verify user is non-root"
    ) in ran.stderr
    assert ran.of("main") == []


def test_run_as_user_wins_over_the_images_root(run_dir: Path, load_image: LoadImage) -> None:
    image = load_image("test/nonroot-override:1", {"Cmd": json.loads(WHO), "Env": ["PATH=/bin"]})
    ran = run_pod(
        run_dir,
        "nonroot-override",
        f"""
        securityContext: {{runAsNonRoot: true}}
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            securityContext: {{runAsUser: 4242}}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == ["uid=4242"]


def test_check_says_the_image_will_be_refused(
    tmp_path: Path, load_image: LoadImage, capsys: pytest.CaptureFixture[str]
) -> None:
    image = load_image("test/nonroot-check:1", {"Cmd": json.loads(WHO), "User": "app"})
    path = tmp_path / "pod.yaml"
    body = f"""
        securityContext: {{runAsNonRoot: true}}
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
        """
    path.write_text(manifest(body, "nonroot-check"))
    assert check([str(path)]) == 0
    assert (
        "refused at its start (CreateContainerConfigError): container has runAsNonRoot and "
        "image has non-numeric user (app), cannot verify user is non-root: set runAsUser"
    ) in capsys.readouterr().out
