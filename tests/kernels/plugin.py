"""pytest plugin loaded inside the guests (``-p tests.kernels.plugin``): says where it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podvisor.supervisor.cgroups import CgroupDriver


def pytest_report_header(config: pytest.Config) -> str:
    del config
    return f"guest: Linux {os.uname().release}, cgroup layout {layout()}"


def layout() -> str:
    driver = CgroupDriver.detect(
        mountinfo=Path("/proc/self/mountinfo").read_text(),
        proc_cgroup=Path("/proc/self/cgroup").read_text(),
    )
    return str(driver.layout)
