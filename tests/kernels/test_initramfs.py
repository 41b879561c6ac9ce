"""The guests' initramfs, read back by busybox's cpio (no qemu needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kernels import initramfs, run


def unpack(archive: bytes, into: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox (apt-get install busybox-static)")
    subprocess.run(
        [busybox, "cpio", "-i", "-d", "-m"],
        input=archive,
        cwd=into,
        check=True,
        capture_output=True,
    )


def test_an_archive_holds_its_directories_files_and_links(tmp_path: Path) -> None:
    archive = initramfs.Archive()
    archive.file("a/b/data", b"odd length", 0o640)
    archive.symlink("a/link", "b/data")
    archive.directory("empty/dir")
    unpack(archive.bytes(), tmp_path)
    assert (tmp_path / "a/b/data").read_bytes() == b"odd length"
    assert (tmp_path / "a/b/data").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "a/link").readlink() == Path("b/data")
    assert (tmp_path / "empty/dir").is_dir()


def test_the_initramfs_carries_the_boot_modules_after_what_they_need(tmp_path: Path) -> None:
    try:
        release = run.kernel_release()
    except run.GuestError as e:
        pytest.skip(str(e))
    archive = initramfs.build(release)
    (tmp_path / "root").mkdir()
    unpack(archive, tmp_path / "root")
    order = (tmp_path / "root/modules/order").read_text().split()
    for needed, then in [("virtio.ko", "virtio_pci.ko"), ("9pnet.ko", "9pnet_virtio.ko")]:
        assert order.index(needed) < order.index(then)
    assert order[-1] == "9p.ko"
    assert all((tmp_path / "root/modules" / m).stat().st_size > 0 for m in order)
    assert (tmp_path / "root/init").read_bytes() == initramfs.INIT.read_bytes()
    assert (tmp_path / "root/bin/sh").readlink() == Path("busybox")
