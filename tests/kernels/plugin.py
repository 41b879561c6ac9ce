"""pytest plugin loaded inside the guests (``-p tests.kernels.plugin``).

It says which kernel and cgroup layout the tests ran on, points what would
write into the checkout (which the guest sees read-only) at tmpfs, and runs
async tests on asyncio alone where they also run on trio: a layout differs in
the kernel, not in the event loop that asks it, and the host runs both of
anyio's backends. A test written for trio alone runs on trio.
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
    on_asyncio = {_without_backend(item) for item in items if _backend(item) == "asyncio"}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        twin = _backend(item) == "trio" and _without_backend(item) in on_asyncio
        (drop if twin else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    backend = None if callspec is None else callspec.params.get("anyio_backend")
    return backend if isinstance(backend, str) else None


def _without_backend(item: pytest.Item) -> tuple[str, str]:
    """The test and its parameters but the backend: the same for both backends' runs."""
    callspec = getattr(item, "callspec", None)
    params = {} if callspec is None else callspec.params
    rest = sorted((k, repr(v)) for k, v in params.items() if k != "anyio_backend")
    return item.nodeid.partition("[")[0], repr(rest)
