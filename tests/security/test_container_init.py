"""A container's PID 1, its own init, once its program runs: what it still holds.

The init only waits, reaps and forwards signals then. It keeps the
container's bounding set, CAP_KILL when its program is or may become another
user (kill(2) compares uids), nothing else, and no_new_privs; the program
holds what it held before. Each expectation is read from /proc/1/status by
the container's own program, which starts only after the init has dropped.
"""

from __future__ import annotations

import json
import re
import signal
import textwrap
from pathlib import Path

import pytest

from tests.faults.pods import Supervisor
from tests.security.conftest import DEFAULT_CAPS, PYTHON, STATUS, manifest, run_pod, sh, status

pytestmark = pytest.mark.needs_root

INIT_STATUS = STATUS.replace("/proc/self/status", "/proc/1/status")
#: The container's program prints its init's status, this line, then its own.
BETWEEN = "-- own --"
START = "-- started --"
NONE = "0000000000000000"
KILL = f"{1 << 5:016x}"


def init_and_own(lines: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    assert BETWEEN in lines, lines
    at = lines.index(BETWEEN)
    return status(lines[:at]), status(lines[at + 1 :])


def test_a_containers_init_keeps_only_cap_kill_and_its_program_the_default_set(
    run_dir: Path,
) -> None:
    both = sh(f"{INIT_STATUS}; echo '{BETWEEN}'; {STATUS}")
    ran = run_pod(
        run_dir,
        "sec-init-caps",
        f"""
        containers:
        - name: default
          command: {both}
        - name: other-user
          securityContext: {{runAsUser: 4242, capabilities: {{drop: [ALL]}}}}
          command: {both}
        - name: root-for-good
          securityContext: {{capabilities: {{drop: [SETUID]}}}}
          command: {both}
        """,
    )
    assert ran.status == 0, ran.stderr
    init, own = init_and_own(ran.of("default"))
    assert (init["CapPrm"], init["CapEff"], init["CapBnd"]) == (KILL, KILL, DEFAULT_CAPS)
    assert (init["CapInh"], init["CapAmb"], init["NoNewPrivs"]) == (NONE, NONE, "1")
    assert (own["CapPrm"], own["CapEff"], own["CapBnd"]) == (DEFAULT_CAPS,) * 3
    assert (own["CapInh"], own["CapAmb"], own["NoNewPrivs"]) == (NONE, NONE, "0")

    init, own = init_and_own(ran.of("other-user"))
    assert (init["CapPrm"], init["CapEff"], init["CapBnd"]) == (KILL, KILL, NONE)
    assert (own["Uid"], own["CapEff"], own["CapBnd"]) == ("4242 4242 4242 4242", NONE, NONE)

    # Root that cannot become another user: the init (root too) signals it without CAP_KILL.
    init, own = init_and_own(ran.of("root-for-good"))
    without_setuid = f"{int(DEFAULT_CAPS, 16) & ~(1 << 7):016x}"
    assert (init["CapPrm"], init["CapEff"], init["CapBnd"]) == (NONE, NONE, without_setuid)
    assert (own["CapEff"], own["CapBnd"]) == (without_setuid, without_setuid)


def run_with(run_dir: Path, name: str, body: str, **changed: str) -> Supervisor:
    """`podvisor run` on the tests' manifest with the header's *changed* fields."""
    text = manifest(body, name, {"podvisor.io/backoff-initial": "0.1s"})
    for key, value in changed.items():
        text = re.sub(rf"^  {key}: .*$", f"  {key}: {value}", text, count=1, flags=re.MULTILINE)
    path = run_dir / f"{name}.yaml"
    path.write_text(text)
    return Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)})


@pytest.mark.timeout(90)
def test_a_restarted_containers_new_init_drops_too(run_dir: Path, shared_tmp: Path) -> None:
    marker = shared_tmp / "ran-once"  # the run directory is podvisor's: hidden from containers
    once = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1"
    body = f"""
        containers:
        - name: c
          command: {sh(f"echo '{START}'; {INIT_STATUS}; echo '{BETWEEN}'; {STATUS}; {once}")}
        """
    with run_with(run_dir, "sec-init-restart", body, restartPolicy="OnFailure") as sup:
        assert sup.wait(timeout=60) == 0, sup.err.text()
    runs = "\n".join(sup.out.of("c")).split(START)[1:]
    assert len(runs) == 2, sup.err.text() + sup.out.text()
    for run in runs:
        init, own = init_and_own(run.splitlines())
        assert (init["CapEff"], init["NoNewPrivs"], own["CapEff"]) == (KILL, "1", DEFAULT_CAPS)


#: A program of another user that says when it is ready and when TERM has come.
TERM_WAITER = textwrap.dedent(
    """\
    import signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("up", flush=True)
    signal.sigwait({signal.SIGTERM})
    print("TERM", flush=True)
    """
)


@pytest.mark.timeout(90)
def test_the_init_still_forwards_a_stop_to_a_program_of_another_user(run_dir: Path) -> None:
    body = f"""
        containers:
        - name: c
          securityContext: {{runAsUser: 4242, capabilities: {{drop: [ALL]}}}}
          command: {json.dumps([PYTHON, "-c", TERM_WAITER])}
        """
    # The KILL at the grace period's end would end it without a word.
    with run_with(run_dir, "sec-init-forward", body) as sup:
        sup.wait_line("c", "up")
        sup.signal(signal.SIGTERM)
        sup.wait(timeout=60)
    assert sup.out.of("c") == ["up", "TERM"], sup.err.text()
