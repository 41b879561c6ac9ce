"""The pod's lifecycle as a pure state machine: `(state, event, now) -> (state, effects)`.

How this works
--------------
`begin(plan, now)` makes the first `PodState`; after that the runner feeds
every event (a process started or exited, a hook or probe finished, a timer
fired, a stop was asked for) to `handle(state, event, now)` and carries out
the effects it returns (start a container, run a hook, send a signal, arm a
timer, ...), in order. `now` is monotonic seconds; the runner maps it to wall
clock for display with one offset. No IO, no clock reads: the tests drive
this module with plain calls and synthetic time.

Each container is in one `Step` (finer than Kubernetes' Waiting / Running /
Terminated, which the status fields show); the legal moves are data
(`_LEGAL`) and every move is checked. After each event the pod-level rules
(3, 11-15) look at the whole pod again, like a reconciler (`_reconcile`).

Timers have names: "stop", "active-deadline", and "restart/<container>",
"kill/<container>", "watchdog/<container>". The runner arms, moves, cancels
and reports them without looking inside. Probes are run by the runner on
their period; it reports every result and the core does the counting.

The rules
---------
Rule 1: everything that decides a container's or the pod's fate lives in this
    file. The runner executes effects and reports what happened; it decides
    nothing. Effects are returned in the order they must be carried out.
Rule 2: an event that does not fit the container's step is stale and is
    ignored, as is a timer that is not armed: probe results, hook results and
    timers race with the core's own cancellations. Nothing happens once the
    pod has finished.
Rule 3 (order): init entries (plain init containers and sidecars, i.e. init
    containers with restartPolicy Always) start one at a time, in manifest
    order: the next starts when a plain init container has exited 0, or when
    a sidecar counts as started (rule 5). Then the pod is Initialized for
    good and the main containers start in manifest order: the kubelet starts
    them one by one, and a container's start returns only after its
    postStart hook. So a main container with a postStart hook holds back the
    ones after it until the hook has ended, well or not, or the container
    could not start; the others go together (the runner spawns them in the
    order of the effects, one after the other). A restart holds nobody back.
Rule 4 (postStart): a started process with a postStart hook stays Waiting
    (ContainerCreating) until the hook finishes; a failed hook stops the
    container (rule 9), which then restarts by its policy (rule 7).
Rule 5 (started, ready): a running container counts as started at once,
    unless it has a startupProbe or waits for READY=1 on its NOTIFY_SOCKET:
    then when the first of the two says so. Liveness and readiness probes start
    when it is started. `ready` follows the readiness probe, or `started`
    without one; READY=1 makes it ready too, STOPPING=1 unready.
Rule 6 (probes): the core counts results: failureThreshold failures or
    successThreshold successes in a row decide. A startup probe that fails
    for good, a liveness probe that fails for good or a missed watchdog
    (WATCHDOG=1 not sent in time) stops the container (rule 9) with the
    probe's terminationGracePeriodSeconds or the pod's. Probes run only
    between StartProbe and StopProbe: all stop when the container starts to
    stop or exits.
Rule 7 (restart policy): sidecars restart always; plain init containers
    restart on failure, unless the pod's policy is Never; main containers
    follow the pod's policy: Always on any exit, OnFailure on a non-zero one,
    Never not at all. Nothing restarts while the pod stops. A Job's pod
    (backoff_limit set) restarts failed containers under Never too, where a
    cluster would make a new pod; once restarts in all reach backoffLimit, a
    failure ends the pod (reason BackoffLimitExceeded).
Rule 8 (back-off): restarts in a row wait `BackOffPolicy.delay` (0, 10, 20,
    ..., 300 s) in Waiting / CrashLoopBackOff; a run of `reset_after` seconds
    starts the count again. restartCount counts restarts that happened.
Rule 9 (stopping one container): its probes stop, it is unready, its preStop
    hook runs if it has one and the grace period is not 0, then it gets its
    stop signal, also when the hook failed or ran out of time (it is cut
    short when the grace period ends). It is killed when the grace period
    ends, but never sooner than MINIMUM_GRACE_SECONDS after its stop signal:
    the kubelet always leaves a program that long to stop (its
    minimumGracePeriodInSeconds, after the preStop hook). A container
    stopped on its own (rules 4, 6, 16) has its own grace period; during a
    pod stop the pod's single deadline applies instead (rule 12).
Rule 10 (termination): an exit makes the container Terminated: Completed
    (0), OOMKilled, or Error; exitCode is the code or 128+N for signal N. A
    start failure is Terminated with the runner's reason (ContainerCannotRun,
    StartError) and code (127 not found, 126 not executable).
Rule 11 (the pod ends): on StopRequested, at activeDeadlineSeconds (reason
    DeadlineExceeded), when evicted (reason Evicted, the pod Failed), when
    every main container has terminated for good, or when a plain init
    container has failed for good (policy Never). An eviction stops the pod
    with a grace period of 0, as the kubelet evicts a pod past its local
    storage: the deadline is now, so no preStop hook runs and every container
    gets its stop signal at once, then SIGKILL MINIMUM_GRACE_SECONDS later
    (rule 9); a stop already under way is held to that deadline.
Rule 12 (stop order): one deadline, now + terminationGracePeriodSeconds.
    Pending back-offs are cancelled and nothing new starts. Main and plain
    init containers stop at once; when none is left, sidecars stop one at a
    time in reverse manifest order. Every sidecar's preStop hook runs at
    once, as the kubelet runs them all when the pod's termination begins;
    its stop signal waits for its turn (and for its hook). At the deadline whoever still waits for
    its turn stops at once (rule 9: its stop signal, SIGKILL
    MINIMUM_GRACE_SECONDS later); a container already stopping on its own is
    held to the deadline too.
Rule 13 (kill): on StopRequested(immediate=True) (podvisor's own force: a
    second Ctrl-C, SIGQUIT, `podvisor stop --now`) and when the init died,
    every container left is killed at once (KillContainer: the whole cgroup),
    with no stop signal first.
Rule 14 (init died): every container is killed and counted as killed by
    SIGKILL; the pod fails at once with reason InitDied.
Rule 15 (result): when no container is left alive the pod finishes
    (PodFinished). Exit status: 125 if init died; 124 if the active deadline
    passed (as timeout(1) exits); a failed plain init container's code; else
    the first main container's last exitCode (128+N for a signal, so 137
    for OOMKilled); 128 + the stop signal if no main container ever ended,
    or if the stop asked for it (SIGQUIT: 131, whatever the containers did).
    Phase Succeeded when every main container last exited 0 and none of the
    failures above applies, else Failed. Before that the phase is Pending
    until a main container runs, then Running. Ready and ContainersReady:
    every main and sidecar container is ready and the pod has not finished.
Rule 16 (restart on request): RestartRequested (`podvisor restart`) stops a
    running container as rule 9 does, with the pod's grace period, and starts
    it again as soon as it has exited, whatever the restart policy and
    without back-off: a restart asked for is not a crash, and it starts the
    back-off count again. restartCount counts it. A container waiting in
    back-off starts at once. Anything else (not started yet, already
    stopping, terminated for good, the pod stopping) is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from podvisor.supervisor.lifecycle.effects import (
    CancelTimer,
    Effect,
    KillContainer,
    PodFinished,
    RunHook,
    SetTimer,
    SignalContainer,
    StartContainer,
    StartProbe,
    StopProbe,
)
from podvisor.supervisor.lifecycle.events import (
    Event,
    Evicted,
    Exited,
    HookFinished,
    InitDied,
    Notified,
    ProbeResult,
    RestartRequested,
    Started,
    StartFailed,
    StopRequested,
    TimerFired,
)
from podvisor.supervisor.lifecycle.plan import (
    ContainerSpec,
    PodPlan,
    ProbePlan,
)
from podvisor.supervisor.lifecycle.status import (
    ContainerStatus,
    PodState,
    Termination,
)
from podvisor.supervisor.lifecycle.words import (
    DEADLINE_TIMER,
    LIVE,
    MINIMUM_GRACE_SECONDS,
    STOP_TIMER,
    STOPPING,
    UP,
    ContainerKind,
    Hook,
    PodPhase,
    ProbeKind,
    Reason,
    RestartPolicy,
    State,
    Step,
)

# --- Legal moves: a container's step changes only as this table allows ------------------

_EXIT = frozenset({Step.DONE, Step.BACK_OFF, Step.CREATING})  # where an exit leads
_LEGAL: Mapping[Step, frozenset[Step]] = {
    Step.PENDING: frozenset({Step.CREATING}),
    Step.CREATING: frozenset({Step.POST_START, Step.STARTING, Step.RUNNING, Step.KILLED}) | _EXIT,
    Step.POST_START: frozenset({Step.STARTING, Step.RUNNING}) | STOPPING | _EXIT,
    Step.STARTING: frozenset({Step.RUNNING}) | STOPPING | _EXIT,
    Step.RUNNING: STOPPING | _EXIT,
    Step.PRE_STOP: frozenset({Step.SIGNALLED, Step.KILLED}) | _EXIT,
    Step.SIGNALLED: frozenset({Step.KILLED}) | _EXIT,
    Step.KILLED: _EXIT,
    Step.BACK_OFF: frozenset({Step.CREATING, Step.DONE}),
    Step.DONE: frozenset(),
}


def _timer(kind: str, name: str) -> str:
    # Container names are DNS labels, so "/" cannot occur in them.
    return f"{kind}/{name}"


# --- Entry points ----------------------------------------------------------------------


def begin(plan: PodPlan, now: float) -> tuple[PodState, list[Effect]]:
    """The pod's first state, and the effects that start it."""
    statuses = tuple(ContainerStatus(c.name, c.kind) for c in plan.containers)
    tx = _Tx(PodState(plan=plan, containers=statuses, start_time=now))
    if plan.active_deadline_seconds is not None:
        tx.set_timer(DEADLINE_TIMER, now + plan.active_deadline_seconds)
    _reconcile(tx, now)
    return tx.pod, tx.effects


def handle(state: PodState, event: Event, now: float) -> tuple[PodState, list[Effect]]:
    """Apply one event; return the new state and the effects to carry out, in order."""
    if state.finished:
        return state, []  # rule 2
    tx = _Tx(state)
    match event:
        case Started():
            _on_started(tx, event, now)
        case StartFailed():
            _on_start_failed(tx, event, now)
        case Exited():
            _on_exited(tx, event, now)
        case HookFinished():
            _on_hook_finished(tx, event, now)
        case ProbeResult():
            _on_probe_result(tx, event, now)
        case Notified():
            _on_notified(tx, event, now)
        case TimerFired():
            _on_timer(tx, event, now)
        case StopRequested():
            _on_stop_requested(tx, event, now)
        case InitDied():
            _on_init_died(tx, event, now)
        case Evicted():
            _on_evicted(tx, event, now)
        case RestartRequested():
            _on_restart_requested(tx, event, now)
    _reconcile(tx, now)
    return tx.pod, tx.effects


class _Tx:
    """One call's work: the pod as it evolves, and the effects so far.

    States stay immutable; this is the one mutable thing, owned by a single
    `begin` or `handle` call.
    """

    def __init__(self, pod: PodState) -> None:
        self.pod = pod
        self.effects: list[Effect] = []

    def get(self, name: str) -> ContainerStatus:
        return self.pod.container(name)

    def spec(self, name: str) -> ContainerSpec:
        return self.pod.plan.spec(name)

    def update(self, name: str, **changes: Any) -> ContainerStatus:
        new = replace(self.get(name), **changes)
        self.pod = replace(
            self.pod, containers=tuple(new if c.name == name else c for c in self.pod.containers)
        )
        return new

    def move(self, name: str, step: Step, **changes: Any) -> ContainerStatus:
        old = self.get(name).step
        if step not in _LEGAL[old]:
            raise AssertionError(f"illegal move of container {name}: {old} -> {step}")
        return self.update(name, step=step, **changes)

    def emit(self, *effects: Effect) -> None:
        self.effects.extend(effects)

    def set_timer(self, key: str, at: float) -> None:
        self.emit(SetTimer(key, at))
        self.pod = replace(self.pod, timers=self.pod.timers | {key})

    def cancel_timer(self, key: str) -> None:
        if key in self.pod.timers:
            self.emit(CancelTimer(key))
            self.pod = replace(self.pod, timers=self.pod.timers - {key})

    def fired(self, key: str) -> bool:
        """Whether `key` was armed; it is not any more."""
        armed = key in self.pod.timers
        self.pod = replace(self.pod, timers=self.pod.timers - {key})
        return armed


# --- Events, one container at a time ---------------------------------------------------------


def _on_started(tx: _Tx, ev: Started, now: float) -> None:
    step = tx.get(ev.name).step
    if step is Step.KILLED:  # rule 13: the kill may have come before the process
        tx.update(ev.name, pid=ev.pid, started_at=now)
        tx.emit(KillContainer(ev.name))
    elif step is not Step.CREATING:
        return  # rule 2
    elif tx.pod.stopping:  # rule 12: no hooks or probes; _stop_waves stops it in turn
        tx.move(ev.name, Step.RUNNING, state=State.RUNNING, reason=None, pid=ev.pid, started_at=now)
    elif tx.spec(ev.name).has_post_start:  # rule 4
        tx.move(ev.name, Step.POST_START, pid=ev.pid, started_at=now)
        tx.emit(RunHook(ev.name, Hook.POST_START))
    else:
        tx.update(ev.name, pid=ev.pid, started_at=now)
        _on_running(tx, ev.name, now)


def _on_running(tx: _Tx, name: str, now: float) -> None:
    """Rule 5: the process runs (and its postStart hook, if any, is done)."""
    spec = tx.spec(name)
    c = tx.move(name, Step.STARTING, state=State.RUNNING, reason=None, message="")
    if spec.kind is ContainerKind.MAIN and tx.pod.phase is PodPhase.PENDING:
        tx.pod = replace(tx.pod, phase=PodPhase.RUNNING)  # rule 15
    if spec.watchdog_seconds is not None:
        tx.set_timer(_timer("watchdog", name), now + spec.watchdog_seconds)
    if c.notified_ready or (spec.startup_probe is None and not spec.notify_ready):
        _mark_started(tx, name, ready=c.notified_ready)
    elif spec.startup_probe is not None:
        _start_probe(tx, name, ProbeKind.STARTUP)


def _mark_started(tx: _Tx, name: str, *, ready: bool = False) -> None:
    """Rule 5: the container counts as started; the next init entry may go."""
    spec = tx.spec(name)
    tx.move(name, Step.RUNNING, started=True, ready=ready or spec.readiness_probe is None)
    _stop_probes(tx, name)  # the startup probe, if it ran
    for kind in (ProbeKind.LIVENESS, ProbeKind.READINESS):
        if spec.probe(kind) is not None:
            _start_probe(tx, name, kind)


def _start_probe(tx: _Tx, name: str, kind: ProbeKind) -> None:
    c = tx.get(name)
    tx.update(name, probing=c.probing | {kind}, streaks={**c.streaks, kind: 0})
    tx.emit(StartProbe(name, kind))


def _stop_probes(tx: _Tx, name: str) -> None:
    c = tx.get(name)
    tx.emit(*(StopProbe(name, kind) for kind in sorted(c.probing)))
    tx.update(name, probing=frozenset(), streaks={})


def _on_hook_finished(tx: _Tx, ev: HookFinished, now: float) -> None:
    step = tx.get(ev.name).step
    if ev.hook is Hook.POST_START and step is Step.POST_START:
        if ev.success:
            _on_running(tx, ev.name, now)
        else:  # rule 4
            cause = f"postStart hook failed: {ev.message}"
            _stop_one(tx, ev.name, now, cause, tx.pod.plan.grace_seconds)
    elif ev.hook is Hook.PRE_STOP and step is Step.PRE_STOP:
        if tx.get(ev.name).waits_turn:
            tx.update(ev.name, pre_stop_ended=True)  # rule 12: _stop_waves signals it
        else:
            _signal(tx, ev.name, now)  # rule 9: a failed preStop still goes on to the signal


def _on_probe_result(tx: _Tx, ev: ProbeResult, now: float) -> None:
    """Rule 6."""
    c = tx.get(ev.name)
    probe = tx.spec(ev.name).probe(ev.kind)
    if ev.kind not in c.probing or probe is None:
        return  # rule 2
    old = c.streaks.get(ev.kind, 0)
    streak = max(old, 0) + 1 if ev.success else min(old, 0) - 1
    tx.update(ev.name, streaks={**c.streaks, ev.kind: streak})
    failed = -streak >= probe.failure_threshold
    if ev.kind is ProbeKind.READINESS:
        if streak >= probe.success_threshold or failed:
            tx.update(ev.name, ready=not failed)
    elif ev.kind is ProbeKind.STARTUP and ev.success:
        _mark_started(tx, ev.name)
    elif failed:
        what = "Startup" if ev.kind is ProbeKind.STARTUP else "Liveness"
        _stop_one(tx, ev.name, now, f"{what} probe failed: {ev.message}", _grace(tx, probe))


def _grace(tx: _Tx, probe: ProbePlan | None) -> float:
    if probe is not None and probe.termination_grace_seconds is not None:
        return probe.termination_grace_seconds
    return tx.pod.plan.grace_seconds


def _on_notified(tx: _Tx, ev: Notified, now: float) -> None:
    """Rule 5 and 6, from NOTIFY_SOCKET."""
    c = tx.get(ev.name)
    if c.step not in UP:
        return  # rule 2
    if ev.status is not None:
        tx.update(ev.name, notify_status=ev.status)
    if ev.ready:
        tx.update(ev.name, notified_ready=True)
        if c.step is Step.STARTING:
            _mark_started(tx, ev.name, ready=True)
        elif c.step is Step.RUNNING:
            tx.update(ev.name, ready=True)
    if ev.stopping:
        tx.update(ev.name, ready=False)
    seconds = tx.spec(ev.name).watchdog_seconds
    if ev.watchdog and seconds is not None and c.step is not Step.POST_START:
        tx.set_timer(_timer("watchdog", ev.name), now + seconds)


def _on_exited(tx: _Tx, ev: Exited, now: float) -> None:
    """Rule 10."""
    c = tx.get(ev.name)
    if c.step not in LIVE:
        return  # rule 2
    code = 128 + ev.signal if ev.signal is not None else ev.exit_code or 0
    reason = Reason.COMPLETED if code == 0 else Reason.ERROR
    reason = Reason.OOM_KILLED if ev.oom_killed else reason
    killed = c.step is Step.KILLED
    end = Termination(code, reason, ev.message or c.message, ev.signal, c.started_at, now, killed)
    _terminate(tx, ev.name, end, now)


def _on_start_failed(tx: _Tx, ev: StartFailed, now: float) -> None:
    if tx.get(ev.name).step is Step.CREATING:  # rule 2
        end = Termination(ev.exit_code, ev.reason, ev.message, None, None, now)
        _terminate(tx, ev.name, end, now)


def _terminate(tx: _Tx, name: str, end: Termination, now: float) -> None:
    """Rules 7 and 10: record the end of an instance; restart it or not."""
    _stop_probes(tx, name)
    tx.cancel_timer(_timer("watchdog", name))
    tx.cancel_timer(_timer("kill", name))
    spec = tx.spec(name)
    requested = tx.get(name).restart_requested
    tx.update(
        name,
        state=State.TERMINATED,
        reason=end.reason,
        message=end.message,
        terminated=end,
        ready=False,
        started=False,
        pid=None,
        restart_requested=False,
        grace_ends=None,
        signalled_at=None,
        waits_turn=False,
        pre_stop_ended=False,
    )
    if tx.pod.stopping or not (requested or _restarts(_policy(tx.pod.plan, spec), end.exit_code)):
        tx.move(name, Step.DONE)
        if spec.kind is ContainerKind.INIT and end.exit_code != 0 and not tx.pod.stopping:
            tx.pod = replace(tx.pod, failed_init=name)  # rule 11
    elif requested:  # rule 16
        tx.update(name, restarts_in_a_row=0)
        _start(tx, name)
    elif _backoff_limit_reached(tx.pod):  # rule 7
        tx.move(name, Step.DONE)
        if spec.kind is ContainerKind.INIT:
            tx.pod = replace(tx.pod, failed_init=name)
        limit = tx.pod.plan.backoff_limit
        _begin_stop(tx, now, Reason.BACKOFF_LIMIT_EXCEEDED, f"Job has reached backoffLimit {limit}")
    else:
        _restart(tx, name, now)


def _policy(plan: PodPlan, spec: ContainerSpec) -> RestartPolicy:
    if spec.kind is ContainerKind.SIDECAR:
        return RestartPolicy.ALWAYS
    policy = plan.restart_policy
    if plan.backoff_limit is not None and policy is RestartPolicy.NEVER:
        policy = RestartPolicy.ON_FAILURE  # rule 7: a Job retries its failed pod
    if spec.kind is ContainerKind.INIT and policy is not RestartPolicy.NEVER:
        return RestartPolicy.ON_FAILURE
    return policy


def _backoff_limit_reached(pod: PodState) -> bool:
    """Rule 7: a Job's pod has restarted failed containers backoffLimit times in all."""
    limit = pod.plan.backoff_limit
    return limit is not None and sum(c.restart_count for c in pod.containers) >= limit


def _restarts(policy: RestartPolicy, exit_code: int) -> bool:
    if policy is RestartPolicy.ON_FAILURE:
        return exit_code != 0
    return policy is RestartPolicy.ALWAYS


def _restart(tx: _Tx, name: str, now: float) -> None:
    """Rule 8."""
    c = tx.get(name)
    policy = tx.pod.plan.backoff
    ran_for = 0.0 if c.started_at is None else now - c.started_at
    in_a_row = 0 if policy.resets(ran_for) else c.restarts_in_a_row
    delay = policy.delay(in_a_row)
    tx.update(name, restarts_in_a_row=in_a_row + 1)
    if delay == 0:
        _start(tx, name)
        return
    message = f"back-off {delay:g}s restarting failed container={name}"
    waiting = {"state": State.WAITING, "reason": Reason.CRASH_LOOP_BACK_OFF, "message": message}
    tx.move(name, Step.BACK_OFF, started_at=None, **waiting)
    tx.set_timer(_timer("restart", name), now + delay)


def _start(tx: _Tx, name: str) -> ContainerStatus:
    c = tx.get(name)
    if c.terminated is not None:  # a restart: the old instance's end becomes lastState
        tx.update(name, previous=c.terminated, terminated=None, restart_count=c.restart_count + 1)
    tx.move(
        name,
        Step.CREATING,
        state=State.WAITING,
        reason=Reason.CONTAINER_CREATING,
        message="",
        started_at=None,
        notified_ready=False,
    )
    tx.emit(StartContainer(name))
    return tx.get(name)


def _stop_one(tx: _Tx, name: str, now: float, cause: str, grace: float | None) -> None:
    """Rule 9. `grace` is None during a pod stop: the pod's deadline applies."""
    _stop_probes(tx, name)
    tx.cancel_timer(_timer("watchdog", name))
    ends = [now + grace] if grace is not None else []
    if tx.pod.stop_deadline is not None:  # the pod stops: its deadline holds (rule 12)
        ends.append(tx.pod.stop_deadline)
    c = tx.update(name, ready=False, message=cause or tx.get(name).message, grace_ends=min(ends))
    if tx.spec(name).has_pre_stop and c.grace_ends is not None and c.grace_ends > now:
        tx.set_timer(_timer("kill", name), c.grace_ends)  # where the hook is cut short
        tx.move(name, Step.PRE_STOP)
        tx.emit(RunHook(name, Hook.PRE_STOP))
    else:
        _signal(tx, name, now)


def _signal(tx: _Tx, name: str, now: float) -> None:
    """Rule 9: the stop signal; SIGKILL at the end of the grace period, not sooner
    than the kubelet's minimum after the signal."""
    c = tx.move(name, Step.SIGNALLED, signalled_at=now)
    tx.emit(SignalContainer(name, tx.spec(name).stop_signal))
    tx.set_timer(_timer("kill", name), _kill_time(c))


def _kill_time(c: ContainerStatus) -> float:
    assert c.grace_ends is not None
    assert c.signalled_at is not None
    return max(c.grace_ends, c.signalled_at + MINIMUM_GRACE_SECONDS)


def _kill(tx: _Tx, name: str) -> None:
    _stop_probes(tx, name)
    tx.cancel_timer(_timer("watchdog", name))
    tx.move(name, Step.KILLED, ready=False)
    tx.emit(KillContainer(name))


def _on_timer(tx: _Tx, ev: TimerFired, now: float) -> None:
    if not tx.fired(ev.key):
        return  # rule 2
    if ev.key == STOP_TIMER:
        tx.pod = replace(tx.pod, grace_over=True)  # rule 12: _stop_waves stops everyone left
        return
    if ev.key == DEADLINE_TIMER:
        message = "Pod was active on the node longer than the specified deadline"
        _begin_stop(tx, now, Reason.DEADLINE_EXCEEDED, message)  # rule 11
        return
    kind, _, name = ev.key.partition("/")
    step = tx.get(name).step
    if kind == "restart" and step is Step.BACK_OFF:
        _start(tx, name)  # rule 8
    elif kind == "kill" and step is Step.PRE_STOP:
        _signal(tx, name, now)  # rule 9: the hook ran out of time; the signal still goes
    elif kind == "kill" and step is Step.SIGNALLED:
        _kill(tx, name)  # rule 9
    elif kind == "watchdog" and step in UP:  # rule 6
        grace = _grace(tx, tx.spec(name).liveness_probe)
        _stop_one(tx, name, now, "watchdog timeout: no WATCHDOG=1 in time", grace)


# --- Events for the whole pod -----------------------------------------------------------------


def _on_stop_requested(tx: _Tx, ev: StopRequested, now: float) -> None:
    if not tx.pod.stopping:
        _begin_stop(tx, now, stop_signal=ev.signal)
        tx.pod = replace(tx.pod, stop_requested=True)
    if ev.immediate:
        tx.pod = replace(tx.pod, killing=True)  # rule 13
    if ev.status_from_signal:
        tx.pod = replace(tx.pod, status_from_signal=True, stop_signal=ev.signal)  # rule 15


def _on_restart_requested(tx: _Tx, ev: RestartRequested, now: float) -> None:
    """Rule 16."""
    step = tx.get(ev.name).step
    if tx.pod.stopping:
        return  # rule 12: nothing starts any more
    if step in UP:
        tx.update(ev.name, restart_requested=True)
        _stop_one(tx, ev.name, now, "restart requested", tx.pod.plan.grace_seconds)
    elif step is Step.BACK_OFF:
        tx.cancel_timer(_timer("restart", ev.name))
        tx.update(ev.name, restarts_in_a_row=0)
        _start(tx, ev.name)


def _on_init_died(tx: _Tx, ev: InitDied, now: float) -> None:
    """Rule 14: nobody is left to report exits, so count every process as killed."""
    if not tx.pod.stopping:
        _begin_stop(tx, now)
    tx.pod = replace(tx.pod, killing=True, reason=Reason.INIT_DIED, message=ev.message)
    for c in tx.pod.containers:
        if c.step in LIVE:
            tx.emit(KillContainer(c.name))
            message = f"killed: the pod's init died ({ev.message})"
            end = Termination(137, Reason.ERROR, message, 9, c.started_at, now)
            _terminate(tx, c.name, end, now)


def _on_evicted(tx: _Tx, ev: Evicted, now: float) -> None:
    """Rule 11: evicted, the pod fails and stops with a grace period of 0."""
    if not tx.pod.stopping:
        _begin_stop(tx, now, Reason.EVICTED, ev.message)
    elif tx.pod.reason is None:
        tx.pod = replace(tx.pod, reason=Reason.EVICTED, message=ev.message)
    _end_grace(tx, now)


def _end_grace(tx: _Tx, now: float) -> None:
    """Rule 12 with a deadline of now: nobody waits for a turn, and a container
    already stopping is held to it."""
    deadline = now if tx.pod.stop_deadline is None else min(now, tx.pod.stop_deadline)
    tx.cancel_timer(STOP_TIMER)
    tx.pod = replace(tx.pod, stop_deadline=deadline, grace_over=True)
    for c in tx.pod.containers:
        if c.step in STOPPING and c.grace_ends is not None and c.grace_ends > deadline:
            _hold_to(tx, c.name, deadline)


def _begin_stop(
    tx: _Tx, now: float, reason: Reason | None = None, message: str = "", stop_signal: int = 15
) -> None:
    """Rules 11 and 12: from here on nothing starts and the one deadline runs."""
    deadline = now + tx.pod.plan.grace_seconds
    tx.pod = replace(
        tx.pod,
        stopping=True,
        stop_began=now,
        stop_deadline=deadline,
        stop_signal=stop_signal,
        reason=reason,
        message=message,
    )
    tx.set_timer(STOP_TIMER, deadline)
    tx.cancel_timer(DEADLINE_TIMER)
    for c in tx.pod.containers:
        if c.step in STOPPING and c.grace_ends is not None and c.grace_ends > deadline:
            _hold_to(tx, c.name, deadline)  # rule 12
        if c.step is Step.BACK_OFF:  # what it waited after is its end for good
            assert c.terminated is not None
            tx.cancel_timer(_timer("restart", c.name))
            end = c.terminated
            ended = {"state": State.TERMINATED, "reason": end.reason, "message": end.message}
            tx.move(c.name, Step.DONE, started_at=end.started_at, **ended)


def _hold_to(tx: _Tx, name: str, deadline: float) -> None:
    """Rule 12: a container stopping on its own with a longer grace period gets the pod's."""
    c = tx.update(name, grace_ends=deadline)
    if c.step is Step.PRE_STOP:
        tx.set_timer(_timer("kill", name), deadline)
    elif c.step is Step.SIGNALLED:
        tx.set_timer(_timer("kill", name), _kill_time(c))


# --- The pod-level rules, run after every event ------------------------------------------------


def _reconcile(tx: _Tx, now: float) -> None:
    _advance_init(tx)
    _advance_mains(tx)
    _end_when_done(tx, now)
    if tx.pod.stopping:
        if tx.pod.killing:
            for c in tx.pod.containers:  # rule 13
                if c.step in LIVE and c.step is not Step.KILLED:
                    _kill(tx, c.name)
        else:
            _stop_waves(tx, now)
        if not any(c.step in LIVE for c in tx.pod.containers):
            _finish(tx)


def _advance_init(tx: _Tx) -> None:
    """Rule 3."""
    pod = tx.pod
    if pod.initialized or pod.stopping:
        return
    entries = [c for c in pod.containers if c.kind is not ContainerKind.MAIN]
    gate = pod.gate
    while gate < len(entries):
        c = tx.get(entries[gate].name)
        completed = c.step is Step.DONE and c.exit_code == 0
        if c.started if c.kind is ContainerKind.SIDECAR else completed:
            gate += 1
            continue
        tx.pod = replace(tx.pod, gate=gate)
        if c.step is Step.PENDING:
            _start(tx, c.name)
        return
    tx.pod = replace(tx.pod, gate=gate, initialized=True)


def _advance_mains(tx: _Tx) -> None:
    """Rule 3: main containers start in order; a postStart hook holds back the ones after it."""
    if not tx.pod.initialized or tx.pod.stopping:
        return
    for c in tx.pod.containers:
        if c.kind is ContainerKind.MAIN:
            started = _start(tx, c.name) if c.step is Step.PENDING else c
            if _holds_back(tx, started):
                return


def _holds_back(tx: _Tx, c: ContainerStatus) -> bool:
    """Whether *c*'s first start has a postStart hook that has not ended yet."""
    first = c.restart_count == 0
    return first and tx.spec(c.name).has_post_start and c.step in (Step.CREATING, Step.POST_START)


def _end_when_done(tx: _Tx, now: float) -> None:
    """Rule 11: the pod ends on its own."""
    if tx.pod.stopping:
        return
    mains = [c for c in tx.pod.containers if c.kind is ContainerKind.MAIN]
    if tx.pod.failed_init or all(c.step is Step.DONE for c in mains):
        _begin_stop(tx, now)


def _stop_waves(tx: _Tx, now: float) -> None:
    """Rule 12: main and plain init containers at once, then sidecars one by one, last first."""
    first = [c.name for c in tx.pod.containers if c.kind is not ContainerKind.SIDECAR]
    for name in first:
        if tx.get(name).step in UP:
            _stop_one(tx, name, now, "", None)
    waits = not tx.pod.grace_over  # past the deadline nobody waits for a turn
    sidecars = [c.name for c in reversed(tx.pod.containers) if c.kind is ContainerKind.SIDECAR]
    deadline = tx.pod.stop_deadline
    if waits and deadline is not None and deadline > now:
        for name in sidecars:  # every sidecar's preStop hook now; its signal at its turn
            if tx.get(name).step in UP and tx.spec(name).has_pre_stop:
                tx.update(name, waits_turn=True)
                _stop_one(tx, name, now, "", None)
    if waits and any(tx.get(name).step in LIVE for name in first):
        return
    for c in map(tx.get, sidecars):
        if c.step in LIVE:
            if c.step in UP:
                _stop_one(tx, c.name, now, "", None)
            elif c.step is Step.PRE_STOP and c.pre_stop_ended:
                _signal(tx, c.name, now)
            if waits:
                return  # this one first: wait for its hook and its exit


def _finish(tx: _Tx) -> None:
    """Rule 15."""
    phase, status = _result(tx.pod)
    for key in sorted(tx.pod.timers):
        tx.cancel_timer(key)
    tx.pod = replace(tx.pod, phase=phase, exit_status=status)
    tx.emit(PodFinished(status, phase))


def _result(pod: PodState) -> tuple[PodPhase, int]:
    """Rule 15: the pod's phase and podvisor's exit status."""
    if pod.reason is Reason.INIT_DIED:
        return PodPhase.FAILED, 125
    if pod.reason is Reason.DEADLINE_EXCEEDED:
        return PodPhase.FAILED, 124
    if pod.reason is Reason.EVICTED:
        codes = [c.exit_code for c in pod.containers if c.kind is ContainerKind.MAIN]
        return PodPhase.FAILED, 137 if codes[0] is None else codes[0]
    if pod.failed_init is not None:
        code = pod.container(pod.failed_init).exit_code
        return PodPhase.FAILED, 1 if code is None else code
    codes = [c.exit_code for c in pod.containers if c.kind is ContainerKind.MAIN]
    first = codes[0]
    status = 128 + pod.stop_signal if first is None or pod.status_from_signal else first
    return (PodPhase.SUCCEEDED if all(c == 0 for c in codes) else PodPhase.FAILED), status
