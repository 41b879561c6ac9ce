"""pytest plugin loaded inside the guests (``-p tests.kernels.plugin``).

It says which kernel and cgroup layout the tests ran on, points what would
write into the checkout (which the guest sees read-only) at tmpfs, and runs
async tests on asyncio alone: a layout differs in the kernel, not in the
event loop that asks it, and the host runs both of anyio's backends.
"""

from __future__ import annotations

import os

import pytest

from podvisor.supervisor.cgroups import CgroupDriver


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-backends", action="store_true", help="guests: run async tests on trio too"
    )


def pytest_configure(config: pytest.Config) -> None:
    del config
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir("/tmp/hypothesis")  # not <checkout>/.hypothesis


def pytest_report_header(config: pytest.Config) -> str:
    del config
    layout = CgroupDriver.detect().layout
    return f"guest: Linux {os.uname().release}, cgroup layout {layout}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--all-backends"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_trio = callspec is not None and callspec.params.get("anyio_backend") == "trio"
        (drop if on_trio else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
