"""The init's half of volumes: sources resolved beneath their volume, bound, made read-only.

Each case runs `podvisor.init.volumes` in a forked child with a mount
namespace of its own, as a container's process does: real openat2, real
binds, real EROFS. The host's mount table is the leak fixture's to check.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from podvisor.init import protocol, syscalls, volumes

pytestmark = pytest.mark.needs_root


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")


def in_mount_namespace(work: Callable[[], str], *, user: bool = False) -> str:
    """*work*'s answer, run in a child with a private mount namespace of its own (and,
    with *user*, a user namespace of its own, root mapped to root)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's report is the test's)
        os.close(read_end)
        code = 0
        try:
            syscalls.unshare(syscalls.CLONE_NEWNS | (syscalls.CLONE_NEWUSER if user else 0))
            if user:
                for name, text in (
                    ("setgroups", "deny"),
                    ("gid_map", "0 0 1"),
                    ("uid_map", "0 0 1"),
                ):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            syscalls.make_mounts_private()
            answer = work()
        except volumes.VolumeError as exc:
            answer = f"{exc.stage}: {exc}"
        except BaseException as exc:
            answer, code = f"failed: {exc!r}", 1
        os.write(write_end, answer.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, answer
    return answer


def mount(tmp_path: Path, **given: object) -> protocol.Mount:
    fields: dict[str, object] = {
        "name": "data",
        "source": str(tmp_path / "volume"),
        "target": str(tmp_path / "target"),
    }
    return protocol.Mount(**(fields | given))  # type: ignore[arg-type]


def bind(m: protocol.Mount) -> None:
    volumes.attach((m,), volumes.open_sources((m,)), make_targets=True)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    (tmp_path / "volume" / "sub").mkdir(parents=True)
    (tmp_path / "volume" / "sub" / "file").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    return tmp_path / "volume"


def test_a_volume_is_bound_at_its_target(tmp_path: Path, volume: Path) -> None:
    m = mount(tmp_path)

    def work() -> str:
        bind(m)
        (tmp_path / "target" / "new").write_text("written")
        return (tmp_path / "target" / "sub" / "file").read_text()

    assert in_mount_namespace(work) == "inside"
    assert (volume / "new").read_text() == "written"  # the same files, seen from outside
    assert not (tmp_path / "target" / "sub").exists()  # the bind itself is not


def test_a_sub_path_is_made_beneath_the_volume_and_bound(tmp_path: Path, volume: Path) -> None:
    m = mount(tmp_path, sub_path="made/here")

    def work() -> str:
        bind(m)
        (tmp_path / "target" / "f").write_text("x")
        return "ok"

    assert in_mount_namespace(work) == "ok"
    assert (volume / "made" / "here" / "f").read_text() == "x"


def test_read_only_refuses_writes_with_erofs(tmp_path: Path, volume: Path) -> None:
    m = mount(tmp_path, readonly=True)

    def work() -> str:
        bind(m)
        try:
            (tmp_path / "target" / "new").write_text("x")
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "written"

    assert in_mount_namespace(work) == "EROFS"
    assert not (volume / "new").exists()


@pytest.mark.parametrize("recursive", ["Disabled", "Enabled"])
def test_recursive_read_only_reaches_the_mounts_beneath(
    tmp_path: Path, volume: Path, recursive: str
) -> None:
    m = mount(tmp_path, readonly=True, recursive_readonly=recursive)

    def work() -> str:
        # A mount beneath the volume's directory, as a hostPath of /var may have.
        syscalls.mount("tmpfs", str(volume / "sub"), "tmpfs", 0, "size=64k")
        bind(m)
        try:
            (tmp_path / "target" / "sub" / "new").write_text("x")
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "written"

    assert in_mount_namespace(work) == ("EROFS" if recursive == "Enabled" else "written")


@pytest.mark.parametrize(
    ("link", "sub_path"),
    [
        ("../../secret", "escape"),  # a relative link that climbs out
        ("/", "escape/etc"),  # an absolute one, anywhere on the host
        ("..", "escape/secret"),  # a link to the volume's parent, then down
    ],
)
def test_a_sub_path_through_a_planted_link_is_refused(
    tmp_path: Path, volume: Path, link: str, sub_path: str
) -> None:
    (volume / "sub" / "escape").symlink_to(link)
    (volume / "escape").symlink_to(link)
    m = mount(tmp_path, sub_path=sub_path)

    def work() -> str:
        bind(m)
        return "bound: " + ",".join(sorted(os.listdir(tmp_path / "target")))

    assert in_mount_namespace(work) == (
        f"subpath: volume data: subPath {sub_path!r}: it leads out of the volume"
    )


def test_a_link_that_stays_inside_the_volume_is_followed(tmp_path: Path, volume: Path) -> None:
    (volume / "inner").symlink_to("sub")
    m = mount(tmp_path, sub_path="inner/file")

    def work() -> str:
        bind(m)
        return (tmp_path / "target").read_text()

    assert in_mount_namespace(work) == "inside"


def test_on_the_hosts_files_a_missing_target_is_refused_not_made(
    tmp_path: Path, volume: Path
) -> None:
    m = mount(tmp_path)

    def work() -> str:
        volumes.attach((m,), volumes.open_sources((m,)), make_targets=False)
        return "bound"

    assert in_mount_namespace(work).startswith(
        f"volume: volume data: {tmp_path / 'target'} does not exist on this machine"
    )
    assert not (tmp_path / "target").exists()
