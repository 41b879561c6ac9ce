"""pytest plugin loaded inside the guests (``-p tests.kernels.plugin``).

It says which kernel and cgroup layout the tests ran on, and points what
would write into the checkout, which the guest sees read-only, at tmpfs.
"""

from __future__ import annotations

import os

import pytest

from podvisor.supervisor.cgroups import CgroupDriver


def pytest_configure(config: pytest.Config) -> None:
    del config
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir("/tmp/hypothesis")  # not <checkout>/.hypothesis


def pytest_report_header(config: pytest.Config) -> str:
    del config
    layout = CgroupDriver.detect().layout
    return f"guest: Linux {os.uname().release}, cgroup layout {layout}"
