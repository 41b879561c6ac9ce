"""Stand-ins for the pod runner, as the metrics package sees it (`PodView`).

Pods are built from the manifest model directly and driven through the real
lifecycle core with synthetic time, so a test states the exact status it
wants; cgroup figures come from `CgroupStats` values, or from real cgroups
in the tests that need the kernel's own numbers.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from podvisor.init import protocol
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.cgroups import CgroupStats
from podvisor.supervisor.manifest.model import Container, ContainerKind, Pod, PodSpec
from podvisor.supervisor.metrics import PodMetrics
from podvisor.supervisor.metrics.collector import pod_registry
from podvisor.supervisor.pod.init_client import InitProcessHandle
from podvisor.supervisor.pod.logs import LogSink
from podvisor.supervisor.pod.view import CgroupView, PodView

#: Synthetic monotonic time of the tests' pods; wall clock = this + OFFSET.
T0 = 1000.0
OFFSET = 1_700_000_000.0


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_pod(*containers: Container, name: str = "web") -> Pod:
    init = tuple(c for c in containers if c.kind is not ContainerKind.MAIN)
    main = tuple(c for c in containers if c.kind is ContainerKind.MAIN)
    return Pod(
        name=name,
        namespace="default",
        uid="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        labels={},
        annotations={},
        spec=PodSpec(containers=main, init_containers=init),
    )


def container(name: str, kind: ContainerKind = ContainerKind.MAIN, **fields: object) -> Container:
    return Container(name, kind, ("sleep", "60"), **fields)  # type: ignore[arg-type]


def plan_of(pod: Pod) -> lc.PodPlan:
    specs = tuple(lc.ContainerSpec(c.name, c.kind) for c in pod.spec.all_containers)
    return lc.PodPlan(specs, backoff=lc.BackOffPolicy(10.0, 300.0, 600.0))


class Driver:
    """The lifecycle core fed by hand: `state` is what a scrape would see."""

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        self.now = T0
        self.state, self.effects = lc.begin(plan_of(pod), self.now)

    def feed(self, event: lc.Event, *, after: float = 1.0) -> list[lc.Effect]:
        self.now += after
        self.state, self.effects = lc.handle(self.state, event, self.now)
        return self.effects

    def start_all(self) -> None:
        """Start every container the core asks for, until none is left to start."""
        pid = 100
        while starts := [e for e in self.effects if isinstance(e, lc.StartContainer)]:
            effects: list[lc.Effect] = []
            for start in starts:
                pid += 1
                effects += self.feed(lc.Started(start.name, pid))
            self.effects = effects

    def restart(self, name: str, code: int = 1) -> None:
        """*name* exits with *code*, waits out its back-off, and runs again."""
        self.feed(lc.Exited(name, code))
        for effect in self.effects:
            if isinstance(effect, lc.SetTimer):
                self.feed(lc.TimerFired(effect.key), after=effect.at - self.now)
        if any(isinstance(e, lc.StartContainer) for e in self.effects):
            self.feed(lc.Started(name, 999))


class FakeCgroup:
    """A container's cgroup that only has figures to give."""

    def __init__(self, stats: CgroupStats) -> None:
        self.stats = stats

    def read(self) -> CgroupStats:
        return self.stats

    def pids(self) -> list[int]:
        return []

    def freeze(self) -> None:
        raise AssertionError("the metrics never freeze")

    def thaw(self) -> None:
        raise AssertionError("the metrics never thaw")

    def frozen(self) -> bool:
        return False

    async def wait_frozen(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        raise AssertionError("the metrics never freeze")


@dataclass
class FakeProcess:
    pid: int = 1
    returncode: int | None = None


@dataclass
class FakeSandbox:
    """The pod's init as the metrics read it: where its namespaces are, whether it lives."""

    host_pid: int
    process: FakeProcess = field(default_factory=FakeProcess)

    async def spawn(
        self, spec: protocol.Process, fds: Sequence[int] = ()
    ) -> InitProcessHandle | protocol.SpawnFailed:
        raise AssertionError("the metrics never spawn")

    async def signal(self, pid: int, signum: int, *, group: bool = False) -> int:
        raise AssertionError("the metrics never signal")


@dataclass
class FakeNetwork:
    netns_path: str | None = "/run/netns/pv-test"
    pod_ip: str | None = "10.88.0.5"


class FakeView(PodView):
    """A pod's view as the metrics see it, from stand-ins; `state` is set when the core has begun."""

    def __init__(
        self,
        pod: Pod,
        state: lc.PodState | None = None,
        cgroups: Mapping[str, CgroupView] | None = None,
        network: FakeNetwork | None = None,
        sandbox: FakeSandbox | None = None,
    ) -> None:
        super().__init__(
            pod,
            LogSink("web"),
            cgroups=cgroups or {},
            network=network,
            init=sandbox or FakeSandbox(0),
            post=_no_events,
            process_for=_no_processes,
            clock_offset=OFFSET,
        )
        self.state = state


def _no_events(event: lc.Event) -> None:
    raise AssertionError(f"the metrics post no events: {event}")


def _no_processes(c: Container, argv: Sequence[str] | None) -> protocol.Process:
    raise AssertionError("the metrics start no processes")


def full_stats(**changes: object) -> CgroupStats:
    """A container's figures with every field set, as a v2 host with PSI gives them."""
    from podvisor.supervisor.cgroups import DeviceIo, Pressure, ResourcePressure

    pressure = ResourcePressure(Pressure(1.0, 2.0, 3.0, 4.5), Pressure(0.5, 1.0, 1.5, 2.25))
    stats = CgroupStats(
        cpu_usage_seconds=12.5,
        cpu_user_seconds=10.0,
        cpu_system_seconds=2.5,
        cpu_periods=100,
        cpu_throttled_periods=7,
        cpu_throttled_seconds=0.75,
        memory_usage_bytes=50_000_000,
        memory_working_set_bytes=40_000_000,
        memory_rss_bytes=30_000_000,
        memory_cache_bytes=10_000_000,
        memory_swap_bytes=0,
        memory_mapped_file_bytes=1_000_000,
        memory_max_usage_bytes=60_000_000,
        memory_failcnt=3,
        oom_kills=2,
        processes=4,
        pids_current=9,
        pids_max=100,
        io_devices=(DeviceIo(8, 0, read_bytes=4096, write_bytes=8192, read_ops=1, write_ops=2),),
        pressure={"cpu": pressure, "memory": pressure, "io": pressure},
        memory_limit_bytes=134_217_728,
        cpu_quota_us=50_000,
        cpu_period_us=100_000,
        cpu_shares=512,
    )
    for key, value in changes.items():
        setattr(stats, key, value)
    return stats


# --- Reading a scrape ---------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """A scrape parsed back: sample name and labels -> value, and family types."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        matches = self.find(name, **labels)
        assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
        return matches[0]

    def find(self, name: str, **labels: str) -> list[float]:
        wanted = set(labels.items())
        return [v for (n, ls), v in self.samples.items() if n == name and wanted <= ls]

    def names(self) -> set[str]:
        return {n for n, _ in self.samples}

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for n, ls in self.samples if n == name]


def parse(text: str) -> Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(text, samples, types)


def scrape(view: FakeView, metrics: PodMetrics | None = None) -> Scrape:
    metrics = metrics or PodMetrics(view.pod)
    return parse(generate_latest(pod_registry(view, metrics)).decode())


def promtool_findings(text: str | bytes) -> str:
    """What `promtool check metrics` says of an exposition; "" when it has no finding."""
    data = text.encode() if isinstance(text, str) else text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=data, capture_output=True, timeout=60, check=False
    )
    findings = (result.stdout + result.stderr).decode().strip()
    return findings if findings or result.returncode == 0 else f"exit {result.returncode}"
