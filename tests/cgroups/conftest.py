"""Fixtures for the cgroup tests: drivers on this machine's real hierarchies.

Every pod a test makes is named ``test-<pid>-<n>`` so that tests running at
the same time on this machine cannot collide, and is removed after the test
even when the test fails; the top-level `no_leaks` fixture then checks that
no podvisor-* cgroup is left beneath our own cgroup in any hierarchy.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import pytest

from podvisor.supervisor.cgroups import CgroupDriver, PodCgroup
from tests.cgroups.helpers import Processes, real_driver

_names = itertools.count()


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver() -> CgroupDriver:
    return real_driver()


def new_pod(driver: CgroupDriver) -> PodCgroup:
    return driver.create_pod(f"test-{os.getpid()}-{next(_names)}", str(uuid.uuid4()))


@pytest.fixture
def pod(driver: CgroupDriver) -> Iterator[PodCgroup]:
    made = new_pod(driver)
    yield made
    made.remove()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.end()
