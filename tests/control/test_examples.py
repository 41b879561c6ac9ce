"""Every pod manifest in examples/ runs, and a newcomer's commands work on it.

The generic test runs each examples/*.yaml with the real runner and its
control socket until the pod is ready or done, checks that `podvisor ps` and
`status` show it, and stops it. The others follow a newcomer's walk-through on
the examples the README names: the bundle (`make example`), the batch job, and
the web server with its sidecars (exec into it, read a sidecar's logs).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.conftest import REPO, control_pod
from tests.rootfs.test_examples import ON_IMAGES

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

EXAMPLES = REPO / "examples"
MANIFESTS = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}


def example(name: str) -> str:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"examples/{name} is not there")
    return path.read_text()


@pytest.fixture
def host_tmp() -> Iterator[None]:
    """The examples share /tmp with the host (no mount isolation): remove what they write."""
    yield
    for made in ("podvisor-job", "podvisor-web"):
        shutil.rmtree(Path("/tmp") / made, ignore_errors=True)


@pytest.mark.usefixtures("host_tmp")
@pytest.mark.parametrize("manifest", MANIFESTS)
async def test_example_runs(manifest: str, run_dir: Path) -> None:
    """A service (restartPolicy Always) shows in ps and status and stops; a job ends with 0."""
    if manifest in ON_IMAGES:
        pytest.skip(
            f"examples/{manifest} runs on the images make images loads: "
            "tests/rootfs/test_examples.py builds them and runs it with podvisor run"
        )
    async with control_pod(MANIFESTS[manifest], run_dir) as pod:
        if pod.runner.pod.spec.restart_policy.value != "Always":
            assert await pod.finished() == 0, pod.log.getvalue()
            return
        await pod.until("the pod is ready", lambda: pod.state.ready)
        [listed] = await pod.json("ps")
        assert (listed["name"], listed["status"]) == (pod.name, "Running")
        found = await pod.json("status", pod.name)
        names = [c.name for c in pod.runner.pod.spec.all_containers]
        assert [c["name"] for c in found["containers"]] == names
        stopped = await pod.ctl("stop", pod.name)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith(f"pod {pod.name} stopped: ")
        await pod.finished()
        assert pod.socket is not None
        assert not pod.socket.exists()


async def test_the_bundle_runs_to_its_end(run_dir: Path) -> None:
    async with control_pod(example("bundle.yaml"), run_dir) as pod:
        await pod.until(
            "app runs", lambda: pod.container("app").pid is not None or pod.done.is_set()
        )
        status = await pod.ctl("status", "bundle")
        assert status.returncode == 0 or pod.done.is_set(), status.stderr
        assert await pod.finished() == 0
    asked = [line for line in pod.log.lines if "app asked api the time:" in line]
    assert len(asked) == 5
    assert pod.log.count("app", "app done") == 1


@pytest.mark.usefixtures("host_tmp")
async def test_the_job_prepares_its_input_then_sums_it(run_dir: Path) -> None:
    async with control_pod(example("job.yaml"), run_dir) as pod:
        assert await pod.finished() == 0
    assert pod.log.count("sum", "sum-job: 100 numbers, sum 5050") == 1


@pytest.mark.usefixtures("host_tmp")
async def test_the_web_example_serves_and_its_sidecar_ships_the_log(run_dir: Path) -> None:
    get = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').read().decode())"
    async with control_pod(example("web.yaml"), run_dir) as pod:
        await pod.until("the pod is ready", lambda: pod.state.ready)
        page = await pod.ctl("exec", "web", "-c", "web", "--", "python3", "-c", get)
        assert page.returncode == 0, page.stderr
        assert "<h1>Hello from pod web</h1>" in page.stdout
        await pod.log.said_in("log-tailer", '"GET / HTTP/1.1" 200')
        shipped = await pod.ctl("logs", "web", "-c", "log-tailer")
        assert '"GET / HTTP/1.1" 200' in shipped.stdout
        stopped = await pod.ctl("stop", "web")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith("pod web stopped: ")
