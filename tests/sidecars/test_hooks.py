"""postStart and preStop hooks against real processes in a real pod, without the runner."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import (
    ExecAction,
    HookHandler,
    HTTPGetAction,
    Lifecycle,
    SleepAction,
)
from podvisor.supervisor.network import NetworkMode
from tests.sidecars.support import (
    HTTP_SERVER,
    PY,
    FakeHost,
    make_container,
    make_pod,
    sandboxed_pod,
    spawn_server,
)

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

POST_START, PRE_STOP = lc.Hook.POST_START, lc.Hook.PRE_STOP


async def finished(host: FakeHost) -> lc.HookFinished:
    event = await host.next_event()
    assert isinstance(event, lc.HookFinished), event
    return event


async def run(handler: HookHandler, hook: lc.Hook, *, grace: int = 5) -> lc.HookFinished:
    """Run *handler* as *hook* of a container; what the hook posted."""
    lifecycle = Lifecycle(post_start=handler) if hook is POST_START else Lifecycle(pre_stop=handler)
    c = make_container(lifecycle=lifecycle)
    async with sandboxed_pod(make_pod(c, grace=grace)) as (host, actions):
        await actions.hook(c, hook)
        return await finished(host)


async def test_an_exec_hook_runs_in_the_pod(tmp_path: Path) -> None:
    out = tmp_path / "hostname"
    done = await run(ExecAction(("sh", "-c", f"hostname > {out}")), POST_START)
    assert done == lc.HookFinished("app", POST_START, True, done.message)
    assert out.read_text() == "pv-sidecars\n"


async def test_a_failing_exec_hook_reports_its_output() -> None:
    c = make_container(
        lifecycle=Lifecycle(post_start=ExecAction(("sh", "-c", "echo no db; exit 3")))
    )
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        await actions.hook(c, POST_START)
        done = await finished(host)
    assert not done.success
    assert done.message == "command sh -c 'echo no db; exit 3' exited with 3: no db"
    assert host.recorded.lines == [f"app: postStart hook failed: {done.message}"]


async def test_a_pre_stop_hook_is_cut_at_the_grace_period() -> None:
    command = (PY, "-c", "import time; print('draining', flush=True); time.sleep(1000)")
    began = anyio.current_time()
    done = await run(ExecAction(command), PRE_STOP, grace=1)
    assert not done.success
    assert done.message.endswith("timed out after 1s: draining")
    assert anyio.current_time() - began >= 1.0


async def test_a_post_start_hook_has_no_timeout_of_its_own() -> None:
    # Longer than the grace period, which bounds only preStop.
    command = (PY, "-c", "import time; time.sleep(2)")
    assert (await run(ExecAction(command), POST_START, grace=1)).success


async def test_a_sleep_hook_sleeps() -> None:
    began = anyio.current_time()
    done = await run(SleepAction(1), PRE_STOP)
    assert done.success
    assert anyio.current_time() - began >= 1.0


async def test_an_http_hook_calls_the_pod() -> None:
    c = make_container()
    async with sandboxed_pod(make_pod(c), network=NetworkMode.LOOPBACK) as (host, actions):
        port = int(await spawn_server(host, HTTP_SERVER))
        for path, success in [("/status/200", True), ("/status/503", False)]:
            hooked = make_container(lifecycle=Lifecycle(pre_stop=HTTPGetAction(path, port)))
            await actions.hook(hooked, PRE_STOP)
            assert (await finished(host)).success is success


async def test_a_container_without_that_hook_finishes_at_once() -> None:
    c = make_container()
    async with sandboxed_pod(make_pod(c)) as (host, actions):
        await actions.hook(c, PRE_STOP)
        assert await finished(host) == lc.HookFinished("app", PRE_STOP, True, "")
