"""Pods on their images' roots: a store of the test's own, images the tests build.

`image_store` is a fresh store (``$PODVISOR_IMAGE_STORE`` for the test and
the podvisor it runs); `load_image` builds an OCI layout from Debian's
busybox-static (`tests.images.build`) with the config given, and loads it.
After each test the store holds no container's files and no temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from podvisor.supervisor.images import ImageStore
from podvisor.supervisor.images.store import ROOT_ENV
from tests.images.build import Entry, Layout, busybox_entries, tar
from tests.security.conftest import run_dir

__all__ = ["run_dir"]

pytestmark = pytest.mark.needs_root

#: The image's users: root, and app (1000) whose group is app (1000).
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1000:\n"

LoadImage = Callable[..., str]


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("containers on images need root (overlayfs, pivot_root)")


@pytest.fixture
def image_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageStore]:
    root = tmp_path / "store"
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv("PODVISOR_PLATFORM", raising=False)
    yield ImageStore(str(root))
    containers = root / "containers"
    assert not containers.exists() or not list(containers.iterdir()), "containers' files left"
    tmp = root / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), "temporary files left"


def image_entries(extra: list[Entry] | None = None) -> list[Entry]:
    """busybox-static with two users, /home/app, and *extra* on top."""
    entries = [e for e in busybox_entries() if e.name != "etc/passwd"]
    entries += [
        Entry("etc/passwd", PASSWD),
        Entry("etc/group", GROUP),
        Entry("home/", kind="dir", mode=0o755),
        Entry("home/app/", kind="dir", mode=0o755, uid=1000, gid=1000),
    ]
    return entries + (extra or [])


@pytest.fixture
def load_image(tmp_path: Path, image_store: ImageStore) -> LoadImage:
    """Build and load an image named *name* with *config*; its name as the manifest gives it."""
    count = 0

    def load(name: str, config: dict[str, Any], extra: list[Entry] | None = None) -> str:
        nonlocal count
        count += 1
        layout = Layout(tmp_path / f"layout{count}")
        layout.tag(layout.image([tar(image_entries(extra))], config=config), name)
        image_store.load(str(layout.path))
        return name

    return load
