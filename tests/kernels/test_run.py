"""The runner's order of boots, with a stand-in for qemu (the guests themselves need minutes)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.kernels import run

Chosen = Callable[[str], None]


class FakeBoots:
    """Stands in for `run.boot`: records who started when, with which accelerators."""

    def __init__(self, boots_under: str) -> None:
        self.boots_under = boots_under
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.v1_started = threading.Event()

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def boot(
        self,
        layout: str,
        command: str,
        *,
        accels: list[str],
        timeout: float,
        echo: bool,
        cpus: int,
        chosen: Chosen,
    ) -> run.Result:
        del command, timeout, echo
        self.note(f"{layout} starts with {','.join(accels)} on {cpus} CPU(s)")
        for accel in accels:
            if accel == self.boots_under or accel == accels[-1]:
                chosen(accel)
                break
        if layout == "v2":
            # Side by side, v1 starts while v2 still runs; in turn, it cannot.
            self.v1_started.wait(timeout=0.5)
        else:
            self.v1_started.set()
        self.note(f"{layout} ends")
        return run.Result(layout, "6.1", accel, 0, "1 passed in 1s", 1.0, Path("."))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBoots:
    boots = FakeBoots(boots_under="tcg")
    monkeypatch.setattr(run, "boot", boots.boot)
    return boots


def test_side_by_side_the_second_guest_starts_with_what_the_first_found(fake: FakeBoots) -> None:
    results = run.boot_all(
        ["v2", "v1"], "true", accels=["kvm", "tcg"], timeout=60, echo=False, side_by_side=True
    )
    assert [r.layout for r in results] == ["v2", "v1"]
    assert fake.events == [
        "v2 starts with kvm,tcg on 1 CPU(s)",
        "v1 starts with tcg on 1 CPU(s)",
        "v1 ends",
        "v2 ends",
    ]


def test_in_turn_each_guest_waits_for_the_one_before(fake: FakeBoots) -> None:
    run.boot_all(
        ["v2", "v1"], "true", accels=["kvm", "tcg"], timeout=60, echo=False, side_by_side=False
    )
    assert fake.events == [
        "v2 starts with kvm,tcg on 2 CPU(s)",
        "v2 ends",
        "v1 starts with tcg on 2 CPU(s)",
        "v1 ends",
    ]


def test_a_guest_that_cannot_boot_fails_the_run_and_starts_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []

    def no_qemu(layout: str, command: str, **options: object) -> run.Result:
        del command, options
        started.append(layout)
        raise run.GuestError("no qemu-system-x86_64")

    monkeypatch.setattr(run, "boot", no_qemu)
    with pytest.raises(run.GuestError, match="v2: no qemu"):
        run.boot_all(
            ["v2", "v1"], "true", accels=["tcg"], timeout=60, echo=False, side_by_side=True
        )
    assert started == ["v2"]


def test_every_test_the_guests_select_exists() -> None:
    """The selection names single tests: one renamed must fail here, on the host,
    rather than stop both guests with "not found" minutes into CI."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *run.SELECTION],
        cwd=run.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
