"""Layers unpacked for overlayfs: whiteouts, opaque directories, links, owners; nothing escapes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.errors import ImageFormatError, LayerError
from podvisor.supervisor.images import ImageStore
from podvisor.supervisor.images.layers import LayerReader, unpack
from tests.images.build import Entry, Layout, busybox_entries, compress, digest_of, tar, tree


def unpacked(tmp_path: Path, entries: list[Entry], how: str | None = None) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    data = compress(tar(entries), how)
    with open(tmp_path / "blob", "wb") as file:
        file.write(data)
    with open(tmp_path / "blob", "rb") as raw:
        reader = LayerReader(raw)
        unpack(reader, str(root), "test")
        reader.finish()
    assert reader.digest == digest_of(data)
    assert reader.diff_id == digest_of(tar(entries))
    return root


def keeps_user_attributes(directory: Path) -> bool:
    """Whether the file system of *directory* holds user.* extended attributes."""
    probe = directory / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as e:
        if e.errno != errno.EOPNOTSUPP:
            raise
        return False
    finally:
        probe.unlink()
    return True


def overlay(tmp_path: Path, lower: list[str], script: str) -> str:
    """Mount *lower* (lowest first) as a read-only overlay in a private mount namespace and
    run *script* there with $ROOT; the mount ends with the namespace."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    options = "lowerdir=" + ":".join(reversed(lower))
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            f'mount -t overlay overlay -o {options} "$ROOT"; {script}',
        ],
        env={**os.environ, "ROOT": str(mnt)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("how", [None, "gzip", "zstd"])
def test_plain_gzip_and_zstd_layers_unpack_and_hash(tmp_path: Path, how: str | None) -> None:
    root = unpacked(tmp_path, busybox_entries(), how)
    assert (root / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(root / "bin/sh") == "busybox"


def test_modes_owners_times_and_attributes_are_kept(tmp_path: Path) -> None:
    root = unpacked(
        tmp_path,
        [
            Entry("./", kind="dir", mode=0o755),
            Entry("opt/", kind="dir", mode=0o750, uid=7, gid=8, mtime=1_600_000_000),
            Entry("opt/suid", b"x", mode=0o4755, uid=1234, gid=5678),
            Entry("opt/cap", b"y", xattrs={"user.note": "kept", "trusted.overlay.opaque": "y"}),
            Entry("opt/link", kind="symlink", target="/etc/shadow", uid=3, gid=4),
            Entry("opt/hard", kind="hardlink", target="opt/suid"),
            Entry("opt/fifo", kind="fifo", mode=0o600),
            Entry("opt/null", kind="char", device=(1, 3), mode=0o666),
        ],
    )
    opt = os.lstat(root / "opt")
    assert (stat.S_IMODE(opt.st_mode), opt.st_uid, opt.st_gid) == (0o750, 7, 8)
    assert opt.st_mtime == 1_600_000_000  # set after what was made inside
    suid = os.lstat(root / "opt/suid")
    assert (stat.S_IMODE(suid.st_mode), suid.st_uid, suid.st_gid) == (0o4755, 1234, 5678)
    assert suid.st_nlink == 2
    assert os.lstat(root / "opt/hard").st_ino == suid.st_ino
    if keeps_user_attributes(tmp_path):
        assert os.getxattr(root / "opt/cap", "user.note") == b"kept"
    else:  # tmpfs before Linux 6.6: the layer unpacks without them, as Docker's does
        assert "user.note" not in os.listxattr(root / "opt/cap")
    # A layer cannot forge overlayfs' own attributes.
    assert "trusted.overlay.opaque" not in os.listxattr(root / "opt/cap")
    link = os.lstat(root / "opt/link")
    assert (os.readlink(root / "opt/link"), link.st_uid, link.st_gid) == ("/etc/shadow", 3, 4)
    assert stat.S_ISFIFO(os.lstat(root / "opt/fifo").st_mode)
    assert os.lstat(root / "opt/null").st_rdev == os.makedev(1, 3)


def test_whiteouts_and_opaque_directories_as_overlayfs_reads_them(tmp_path: Path) -> None:
    low = tmp_path / "low"
    low.mkdir()
    top = tmp_path / "top"
    top.mkdir()
    lower = unpacked(
        low,
        [
            Entry("a", b"a"),
            Entry("keep", b"k"),
            Entry("d/", kind="dir", mode=0o755),
            Entry("d/old", b"old"),
            Entry("o/", kind="dir", mode=0o755),
            Entry("o/old", b"old"),
            Entry("r/", kind="dir", mode=0o755),
            Entry("r/old", b"old"),
        ],
    )
    upper = unpacked(
        top,
        [
            Entry(".wh.a", b""),
            Entry("d/new", b"new"),
            Entry("o/.wh..wh..opq", b""),
            Entry("o/new", b"new"),
            Entry(".wh.r", b""),
            Entry("r/", kind="dir", mode=0o755),  # made again: the old contents stay gone
            Entry("r/new", b"new"),
            Entry(".wh.keep2", b""),
            Entry("keep2", b"mine"),  # a whiteout never hides its own layer's file
        ],
    )
    assert tree(upper)["a"] == "char:0/0"
    assert os.getxattr(upper / "o", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(upper / "r", "trusted.overlay.opaque") == b"y"
    assert tree(upper)["keep2"] == "file"
    seen = overlay(tmp_path, [str(lower), str(upper)], 'cd "$ROOT"; find . | sort')
    assert seen.split() == [
        ".",
        "./d",
        "./d/new",
        "./d/old",
        "./keep",
        "./keep2",
        "./o",
        "./o/new",
        "./r",
        "./r/new",
    ]


def test_a_later_entry_replaces_an_earlier_one(tmp_path: Path) -> None:
    root = unpacked(
        tmp_path,
        [
            Entry("x", kind="symlink", target="/etc/passwd"),
            Entry("x", b"a file now"),  # replaces the link, never writes through it
            Entry("d/", kind="dir"),
            Entry("d/f", b""),
            Entry("d", b"a file over a directory"),
        ],
    )
    assert (root / "x").read_bytes() == b"a file now"
    assert tree(root) == {"x": "file", "d": "file"}


MALICIOUS = {
    "dot-dot": [Entry("../escaped", b"x")],
    "deep dot-dot": [Entry("a/", kind="dir"), Entry("a/../../escaped", b"x")],
    "absolute": [Entry("/escaped", b"x")],
    "symlink out, then through it": [
        Entry("out", kind="symlink", target="OUTSIDE"),
        Entry("out/escaped", b"x"),
    ],
    "relative symlink out, then through it": [
        Entry("up", kind="symlink", target="../../.."),
        Entry("up/escaped", b"x"),
    ],
    "hard link to a host file": [Entry("passwd", kind="hardlink", target="/etc/passwd")],
    "hard link climbing out": [Entry("passwd", kind="hardlink", target="../../../etc/passwd")],
    "hard link to what the layer lacks": [Entry("p", kind="hardlink", target="etc/passwd")],
    "hard link through a symlink": [
        Entry("etc", kind="symlink", target="/etc"),
        Entry("p", kind="hardlink", target="etc/passwd"),
    ],
    "whiteout through a symlink": [
        Entry("out", kind="symlink", target="OUTSIDE"),
        Entry("out/.wh.victim", b""),
    ],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_layer_that_would_escape_is_refused_and_nothing_is_left(
    tmp_path: Path, store: ImageStore, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("host file")
    entries = [
        Entry(e.name, e.data, e.kind, e.target.replace("OUTSIDE", str(outside)))
        for e in [Entry("ok", b"fine"), *MALICIOUS[case]]
    ]
    layout = Layout(tmp_path / "layout")
    layout.tag(layout.image([tar(entries)]), "evil:1")
    with pytest.raises(LayerError, match="nothing of the layer was kept"):
        store.load(str(tmp_path / "layout"))
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "host file"
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path.parent / "escaped").exists()
    assert os.listdir(f"{store.root}/layers/sha256") == []
    assert os.listdir(f"{store.root}/tmp") == []
    assert store.images() == []


def test_a_layer_whose_digest_is_wrong_is_refused(tmp_path: Path, store: ImageStore) -> None:
    layout = Layout(tmp_path / "layout")
    layout.tag(layout.image([tar(busybox_entries())], compression=None), "busybox:bad")
    blob = next(p for p in (tmp_path / "layout/blobs/sha256").iterdir() if p.stat().st_size > 10**6)
    data = bytearray(blob.read_bytes())
    data[-2000] ^= 1  # a bit flipped in the busybox binary
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match="the image is damaged"):
        store.load(str(tmp_path / "layout"))
    assert os.listdir(f"{store.root}/layers/sha256") == []
    assert store.images() == []
