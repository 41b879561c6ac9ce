"""/status: the pod's status in Kubernetes' JSON shape, and what it must never show."""

from __future__ import annotations

from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.manifest.model import (
    ContainerKind,
    EnvVar,
    ExecAction,
    HTTPGetAction,
    Lifecycle,
    Probe,
    Resources,
)
from podvisor.supervisor.metrics import PodMetrics
from podvisor.supervisor.metrics.status import (
    REDACTED,
    Json,
    Redactor,
    pod_status,
    qos_class,
    rfc3339,
    secrets_of,
)
from tests.metrics.conftest import OFFSET, T0, Driver, container, make_pod


def status_of(driver: Driver, metrics: PodMetrics | None = None, pod_ip: str | None = None) -> Json:
    return pod_status(
        driver.pod,
        driver.state,
        pod_ip=pod_ip,
        wall_time=lambda t: None if t is None else t + OFFSET,
        conditions=metrics.conditions if metrics else {},
        redact=Redactor(()),
    )


def test_times_are_rfc3339_utc_to_the_second() -> None:
    assert rfc3339(0.9) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_700_000_000.5) == "2023-11-14T22:13:20Z"
    assert rfc3339(None) is None


def test_a_restarted_container_shows_its_last_termination() -> None:
    driver = Driver(make_pod(container("main")))
    driver.start_all()
    driver.restart("main", code=3)
    status = status_of(driver, pod_ip="10.88.0.2")
    [main] = status["containerStatuses"]
    assert main["restartCount"] == 1
    assert main["ready"] is True
    assert main["started"] is True
    assert set(main["state"]) == {"running"}
    last = main["lastState"]["terminated"]
    assert last["exitCode"] == 3
    assert last["reason"] == "Error"
    assert last["startedAt"] == rfc3339(T0 + 1 + OFFSET)
    assert last["finishedAt"] == rfc3339(T0 + 2 + OFFSET)
    assert status["podIP"] == "10.88.0.2"
    assert status["startTime"] == rfc3339(T0 + OFFSET)
    assert "initContainerStatuses" not in status


def test_back_off_is_waiting_with_kubernetes_reason_and_message() -> None:
    driver = Driver(make_pod(container("main")))
    driver.start_all()
    driver.restart("main")
    driver.feed(lc.Exited("main", signal=9))
    [main] = status_of(driver)["containerStatuses"]
    assert main["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert main["state"]["waiting"]["message"].startswith("back-off 10s restarting failed")
    assert main["lastState"]["terminated"]["exitCode"] == 137
    assert main["lastState"]["terminated"]["signal"] == 9


def test_a_finished_pod() -> None:
    driver = Driver(make_pod(container("main")))
    driver.start_all()
    driver.feed(lc.StopRequested())
    driver.feed(lc.Exited("main", signal=15))
    status = status_of(driver)
    assert status["phase"] == "Failed"
    [main] = status["containerStatuses"]
    assert main["state"]["terminated"]["exitCode"] == 143
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready == {
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": rfc3339(T0 + OFFSET),
        "reason": "PodCompleted",
    }


def test_conditions_say_what_holds_the_pod_back_and_since_when() -> None:
    pod = make_pod(container("setup", ContainerKind.INIT), container("main"))
    driver = Driver(pod)
    metrics = PodMetrics(pod)
    metrics.observe(driver.state, driver.now)
    status = status_of(driver, metrics)
    assert status["phase"] == "Pending"
    initialized = status["conditions"][0]
    assert initialized["status"] == "False"
    assert initialized["reason"] == "ContainersNotInitialized"
    assert initialized["message"] == "containers with incomplete status: [setup]"
    driver.start_all()
    driver.feed(lc.Exited("setup", 0))
    driver.start_all()
    metrics.observe(driver.state, driver.now)
    status = status_of(driver, metrics)
    assert [c["status"] for c in status["conditions"]] == ["True", "True", "True", "True"]
    assert status["conditions"][1]["lastTransitionTime"] == rfc3339(driver.now + OFFSET)
    [setup] = status["initContainerStatuses"]
    assert setup["state"]["terminated"]["reason"] == "Completed"


def test_qos_class_follows_kubernetes() -> None:
    same = Resources(500, 500, 2**20, 2**20)
    assert qos_class(make_pod(container("a"))) == "BestEffort"
    assert qos_class(make_pod(container("a", resources=same))) == "Guaranteed"
    assert qos_class(make_pod(container("a", resources=Resources(None, 500)))) == "Burstable"
    mixed = make_pod(container("a", resources=same), container("b"))
    assert qos_class(mixed) == "Burstable"


def test_secrets_are_env_values_and_arguments_of_containers_probes_and_hooks() -> None:
    main = container(
        "main",
        args=("--password=pa55word",),
        env=(EnvVar("A", "value-a"), EnvVar("IP", field_path="status.podIP")),
        readiness_probe=Probe(HTTPGetAction("/", 80, headers=(("Authorization", "Bearer tok"),))),
        lifecycle=Lifecycle(pre_stop=ExecAction(("sh", "-c", "curl -d 'drain now' host"))),
    )
    found = secrets_of(make_pod(main))
    assert {"60", "--password=pa55word", "value-a", "Bearer tok"} <= found
    assert "curl -d 'drain now' host" in found
    assert "'curl -d '\"'\"'drain now'\"'\"' host'" in found  # as shlex quotes it
    assert {"curl", "drain", "host"} <= found
    assert "sleep" not in found  # the program's name is not an argument
    assert "-d" not in found  # a short word of a script is left alone


def test_redactor_blanks_longest_first() -> None:
    redact = Redactor({"abc", "abcdef"})
    assert redact("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"
    assert Redactor(())("unchanged") == "unchanged"
