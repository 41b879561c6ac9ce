"""The guests' initramfs: Debian's static busybox, the kernel's own modules, and our init.

How this works: the kernel unpacks a "newc" cpio archive into its first root
file system and runs ``/init`` from it. Debian's kernel builds virtio's PCI
transport and 9p as modules, so the archive carries those ``.ko`` files (with
what ``modules.dep`` says they need, in load order) for the init to `insmod`
before it can mount the host's directories. Everything else the guest loads
later with the host's own modprobe, once ``/usr`` is mounted.

The archive is written here rather than with cpio(1), so no tool beyond
busybox-static is needed, and it is small (about 3 MB), so it is made anew
for every run in the run's scratch directory: nothing is cached that a kernel
upgrade or an edit of the init could make stale.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

#: What the init needs to mount the host's directories: virtio's PCI transport and 9p.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")

INIT = Path(__file__).with_name("init.sh")
BUSYBOX = Path("/bin/busybox")


class Archive:
    """A newc cpio archive being written: directories, files, symlinks, device nodes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._inode = 0
        self._made: set[str] = set()

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self._inode += 1
        fields = (
            self._inode,
            mode,
            0,
            0,
            1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(name) + 1,
            0,
        )
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._parts += [header, name.encode() + b"\0", _pad(len(header) + len(name) + 1)]
        self._parts += [data, _pad(len(data))]

    def directory(self, name: str) -> None:
        """Make `name` and its parents (each once)."""
        path = PurePosixPath(name)
        for parent in [*reversed(path.parents[:-1]), path]:
            if str(parent) not in self._made:
                self._made.add(str(parent))
                self._entry(str(parent), stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.directory(str(PurePosixPath(name).parent))
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self.directory(str(PurePosixPath(name).parent))
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self.directory(str(PurePosixPath(name).parent))
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self) -> bytes:
        trailer = Archive()
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._parts + trailer._parts)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def module_paths(release: str, names: Iterable[str]) -> list[str]:
    """The .ko files of `names` and what they depend on, relative to the release's
    module directory, each after its dependencies; built-in modules need none."""
    directory = Path("/lib/modules") / release
    depends: dict[str, list[str]] = {}
    for line in (directory / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        depends[module] = needs.split()
    by_name = {PurePosixPath(m).name.removesuffix(".ko").replace("-", "_"): m for m in depends}
    builtin = {
        PurePosixPath(m).name.removesuffix(".ko").replace("-", "_")
        for m in (directory / "modules.builtin").read_text().split()
    }
    order: list[str] = []

    def add(module: str) -> None:
        for need in depends[module]:
            add(need)
        if module not in order:
            order.append(module)

    for name in names:
        if name in builtin:
            continue
        if name not in by_name:
            raise LookupError(f"kernel {release} has no module {name} (modules.dep)")
        add(by_name[name])
    return order


def build(release: str) -> bytes:
    """The initramfs for kernel `release`: busybox, the boot modules and our init."""
    archive = Archive()
    archive.char_device("dev/console", 5, 1)  # the kernel opens it for the init's stdio
    for name in ("proc", "sys", "newroot"):
        archive.directory(name)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", INIT.read_bytes(), 0o755)
    modules = module_paths(release, BOOT_MODULES)
    for module in modules:
        archive.file(
            f"modules/{PurePosixPath(module).name}",
            (Path("/lib/modules") / release / module).read_bytes(),
        )
    archive.file("modules/order", "".join(f"{PurePosixPath(m).name}\n" for m in modules).encode())
    return archive.bytes()
