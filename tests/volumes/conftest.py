"""Pods with volumes: a store of the test's own and busybox images, as `tests.rootfs` has them.

Each test's pods keep their claims in a folder of the test's own
(``$PODVISOR_VOLUMES``); after each test the store holds no pod's directory,
so no emptyDir is left behind.
"""

from __future__ import annotations

from tests.rootfs.conftest import image_store, load_image
from tests.security.conftest import run_dir

__all__ = ["BUSYBOX", "image_store", "load_image", "run_dir"]

#: The config of the busybox image the volumes' pods run on (`load_image`'s second argument).
BUSYBOX = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["true"], "Env": ["PATH=/bin"]}
