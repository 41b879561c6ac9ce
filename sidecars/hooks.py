"""Running a container's postStart and preStop hooks: exec, httpGet, sleep.

How this works
--------------
The core emits RunHook when a hook is due (postStart right after the
process starts, preStop before the stop signal) and waits for HookFinished;
what a result means (a failed postStart kills the container, a preStop of
either outcome goes on to the stop signal) is the core's business.

Timing follows Kubernetes. postStart has no timeout of its own: the
container is not Running until it ends. preStop is bounded by the pod's
terminationGracePeriodSeconds, the longest it may take before the
container is killed anyway; an exec hook runs in the container's cgroup, so
that kill ends it too. An httpGet hook connects from inside the pod, to the
pod's IP by default, as a probe does.
"""

from __future__ import annotations

import anyio

from podvisor.sidecars.execs import Execs
from podvisor.sidecars.probes import MAX_MESSAGE, Outcome, http_get
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import (
    Container,
    ExecAction,
    HookHandler,
    HTTPGetAction,
    SleepAction,
)
from podvisor.supervisor.pod.view import PodView


def handler_of(container: Container, hook: lc.Hook) -> HookHandler | None:
    if hook is lc.Hook.POST_START:
        return container.lifecycle.post_start
    return container.lifecycle.pre_stop


def hook_timeout(view: PodView, hook: lc.Hook) -> float | None:
    """How long a hook may run: preStop within the grace period, postStart unbounded."""
    if hook is lc.Hook.PRE_STOP:
        return float(view.pod.spec.termination_grace_period_seconds)
    return None


async def run_hook(view: PodView, execs: Execs, container: Container, hook: lc.Hook) -> None:
    """Run *container*'s *hook* and report HookFinished; a failure is also logged."""
    handler = handler_of(container, hook)
    if handler is None:
        outcome = Outcome(True)
    else:
        outcome = await run_handler(view, execs, container, handler, hook_timeout(view, hook))
    if not outcome.success:
        view.sink.system(f"{container.name}: {hook} hook failed: {outcome.message}")
    view.post(lc.HookFinished(container.name, hook, outcome.success, outcome.message))


async def run_handler(
    view: PodView,
    execs: Execs,
    container: Container,
    handler: HookHandler,
    timeout: float | None,  # noqa: ASYNC109 -- the grace period, for preStop
) -> Outcome:
    match handler:
        case ExecAction(command):
            result = await execs.run(container, command, timeout)
            return Outcome(result.succeeded, result.describe()[:MAX_MESSAGE])
        case HTTPGetAction():
            return await http_get(view, container, handler, timeout)
        case SleepAction(seconds):
            # Cut at the grace period: the container is killed by then anyway.
            with anyio.move_on_after(timeout):
                await anyio.sleep(seconds)
            return Outcome(True)
