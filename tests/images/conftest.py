"""The image tests: each has a store of its own in a temporary directory, never /var/lib."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from podvisor.supervisor.images import ImageStore
from podvisor.supervisor.images.store import ROOT_ENV


@pytest.fixture(autouse=True)
def _as_root() -> None:
    # Unpacking makes devices, sets owners and trusted.overlay attributes.
    if os.geteuid() != 0:
        pytest.skip("the image store needs root")


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv("PODVISOR_PLATFORM", raising=False)
    return root


@pytest.fixture
def store(store_dir: Path) -> Iterator[ImageStore]:
    yield ImageStore(str(store_dir))
    tmp = store_dir / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), "temporary files were left"
