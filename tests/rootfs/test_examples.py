"""The examples on images run unchanged, as a new user runs them after `make images`.

Each test builds the examples' images with the code `make images` runs
(`tests.images.build.example_images`), loads them into a store of its own
with `podvisor image load`, and runs the example's file, untouched, with
`podvisor run`: what the pod prints is what its Kubernetes documentation task
says it shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from podvisor.supervisor.images import ImageStore
from tests.control.conftest import REPO
from tests.faults.pods import Supervisor, podvisor_command
from tests.images.build import EXAMPLE_BUSYBOX, EXAMPLE_HTTPD, example_images
from tests.manifest.test_examples import EXEC_LIVENESS

pytestmark = pytest.mark.needs_root

EXAMPLES = REPO / "examples"
#: The examples that run on the images `make images` loads; tests/control's
#: generic run of every example leaves them to this file.
ON_IMAGES = (
    "security-context.yaml",
    "downward-api.yaml",
    "termination-message.yaml",
    "shared-volume.yaml",
    "site.yaml",
)


@pytest.fixture
def loaded(tmp_path: Path, image_store: ImageStore) -> list[str]:
    """The examples' images, built and loaded as `make images` does; their names."""
    names = []
    for name, archive in example_images(tmp_path / "images").items():
        said = podvisor("image", "load", str(archive))
        assert said.endswith(f": {name}"), said
        names.append(name)
    return names


def podvisor(*args: str, run_dir: Path | None = None) -> str:
    """What `podvisor ARGS` prints; it must succeed."""
    env = {**os.environ, **({"PODVISOR_RUN_DIR": str(run_dir)} if run_dir else {})}
    done = subprocess.run(
        [*podvisor_command(), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, f"podvisor {' '.join(args)}: {done.stderr}"
    return done.stdout.rstrip()


def run(example: Path, run_dir: Path) -> Supervisor:
    return Supervisor(example, env={"PODVISOR_RUN_DIR": str(run_dir)})


def test_the_images_are_what_the_examples_name(loaded: list[str], image_store: ImageStore) -> None:
    assert loaded == [EXAMPLE_BUSYBOX, EXAMPLE_HTTPD]
    busybox = image_store.find("busybox")
    httpd = image_store.find(EXAMPLE_HTTPD)
    assert busybox is not None
    assert httpd is not None
    # The web server's image is busybox's layer and one more, unpacked once.
    assert httpd.layer_dirs()[0] == busybox.layer_dirs()[0]
    assert (httpd.config.entrypoint, httpd.config.cmd) == (
        ("httpd", "-f", "-v"),
        ("-p", "80", "-h", "/var/www"),
    )


@pytest.mark.usefixtures("loaded")
def test_the_security_context_example_runs_as_its_user_and_groups(run_dir: Path) -> None:
    with run(EXAMPLES / "security-context.yaml", run_dir) as pod:
        assert pod.wait() == 0, pod.err.text()
    said = pod.out.of("demo")
    ids = re.fullmatch(r"uid=(\d+) gid=(\d+) groups=([\d,]+)", said[0])
    assert ids is not None, said
    assert (ids[1], ids[2]) == ("1000", "3000")
    assert "2000" in ids[3].split(",")
    # fsGroup: the volume is group 2000 and set-group-ID, so what is written there is too.
    assert said[1:] == [
        "/data/demo owner 0 group 2000 mode 2777",
        "/data/demo/greeting owner 1000 group 2000 mode 644",
    ]


@pytest.mark.usefixtures("loaded")
def test_the_downward_api_example_reads_the_pod_from_files(run_dir: Path) -> None:
    with run(EXAMPLES / "downward-api.yaml", run_dir) as pod:
        assert pod.wait() == 0, pod.err.text()
    assert pod.out.of("reader") == [
        "name:",
        "podinfo-demo",
        "labels:",
        'app="podinfo"',
        'tier="demo"',
        "annotations:",
        'owner="docs-team"',
        'revision="7"',
        "memory-limit:",
        "32",
    ]


@pytest.mark.usefixtures("loaded")
def test_the_termination_message_example_says_why_it_failed(run_dir: Path) -> None:
    with run(EXAMPLES / "termination-message.yaml", run_dir) as pod:
        assert pod.wait() == 1, pod.err.text()
    assert pod.out.of("worker") == ["checking the input"]
    last = pod.err.snapshot()[-1].text
    assert last == (
        "pod Failed (exit 1): its main containers ended; "
        "worker exited 1 (its message: input file /data/input.csv is missing)"
    )


@pytest.mark.usefixtures("loaded")
def test_the_shared_volume_example_serves_with_its_images_entrypoint(run_dir: Path) -> None:
    page = "<p>written by the writer of pod shared-volume-demo</p>"
    with run(EXAMPLES / "shared-volume.yaml", run_dir) as pod:
        pod.wait_line("writer", page)
        status = podvisor("status", "shared-volume-demo", run_dir=run_dir)
        pod.signal(signal.SIGINT)  # what Ctrl-C does, as the example says
        assert pod.wait() == 143, pod.err.text()
    server = next(line for line in status.splitlines() if line.startswith("server"))
    assert "Running" in server, status
    # The server ran what its image says (httpd -f -v logs each answer on its stderr).
    served = [line for line in pod.err.of("server") if line.endswith("response:200")]
    assert served, pod.err.text()
    assert pod.err.snapshot()[-1].text == (
        "pod Failed (exit 143): stopped on request: SIGINT; "
        "server exited 143 after SIGTERM; writer exited 0"
    )


def test_the_documentations_exec_liveness_pod_runs_as_it_is(
    tmp_path: Path, image_store: ImageStore, run_dir: Path
) -> None:
    """The probe page's pod has args and no command: busybox, loaded under its name, runs them."""
    [archive] = [a for n, a in example_images(tmp_path / "images").items() if n == EXAMPLE_BUSYBOX]
    podvisor("image", "load", "--name", "registry.k8s.io/busybox:1.27.2", str(archive))
    manifest = tmp_path / "exec-liveness.yaml"
    manifest.write_text(EXEC_LIVENESS)
    with run(manifest, run_dir) as pod:
        pod.err.wait_line("podvisor", "Normal Started liveness: Started container liveness", 60)
        # The args touch /tmp/healthy first, which the liveness probe reads.
        wait = "until [ -e /tmp/healthy ]; do sleep 0.1; done; echo healthy"
        said = podvisor(
            "exec", "liveness-exec", "--", "timeout", "30", "sh", "-c", wait, run_dir=run_dir
        )
        assert said == "healthy"
        status = podvisor("status", "liveness-exec", "-o", "json", run_dir=run_dir)
        pod.signal(signal.SIGINT)
        assert pod.wait() == 143, pod.err.text()
    [liveness] = json.loads(status)["containers"]
    assert (liveness["name"], liveness["state"], liveness["restarts"]) == ("liveness", "running", 0)
    assert "Unhealthy" not in pod.err.text()


@pytest.mark.usefixtures("loaded")
def test_the_site_example_serves_a_configmaps_page_behind_a_secrets_password(
    run_dir: Path,
) -> None:
    with run(EXAMPLES / "site.yaml", run_dir) as pod:
        page = _wget(run_dir, "http://admin:s3cret@127.0.0.1:8080/")
        refused = _wget(run_dir, "http://127.0.0.1:8080/")
        pod.signal(signal.SIGINT)  # what Ctrl-C does
        assert pod.wait() == 143, pod.err.text()
    assert page.stdout == "<h1>hello</h1>"
    assert refused.returncode != 0
    assert "401 Unauthorized" in refused.stderr


def _wget(run_dir: Path, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`wget URL` in the site's server, as its comment says, once the server answers."""
    command = [
        *podvisor_command(),
        "exec",
        "site",
        "-c",
        "server",
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    ]
    env = {**os.environ, "PODVISOR_RUN_DIR": str(run_dir)}
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        # Before the server is up: no pod yet, no running container, or no listener.
        answered = done.returncode == 0 or "HTTP/1." in done.stderr
        if answered or time.monotonic() > deadline:
            return done
        time.sleep(0.2)
