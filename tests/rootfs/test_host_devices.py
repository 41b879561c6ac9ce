"""A privileged container's /dev: the host's devices, as containerd and CRI-O give them.

The pod runs ``podvisor run`` on a busybox image; the user-namespace case
runs `podvisor.init.rootfs` in a forked child with a user and mount namespace
of its own, where the kernel refuses mknod(2), so the host's nodes are bound.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from podvisor.init import rootfs, syscalls
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import run_pod
from tests.volumes.test_init_mounts import in_mount_namespace

pytestmark = pytest.mark.needs_root

#: Character devices that opening does nothing to: one the host has is the test's.
HARMLESS_DEVICES = ("net/tun", "loop-control", "fuse", "kvm")


def _host_device(names: tuple[str, ...], kind: int) -> tuple[str, str] | None:
    """The first of *names* that is a device of *kind* in the host's /dev, with what busybox's
    ``stat -c '%t:%T %a %u:%g'`` says of it (numbers in hex, mode in octal)."""
    for name in names:
        try:
            st = os.lstat(f"/dev/{name}")
        except FileNotFoundError:
            continue
        if stat.S_IFMT(st.st_mode) == kind:
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            mode = stat.S_IMODE(st.st_mode)
            return name, f"{major:x}:{minor:x} {mode:o} {st.st_uid}:{st.st_gid}"
    return None


def test_a_privileged_container_has_the_hosts_devices(run_dir: Path, load_image: LoadImage) -> None:
    """As containerd and CRI-O give them: each host device, its numbers, mode and owner as on
    the host; devpts, the console, /dev/ptmx and /dev/tty stay the container's own."""
    char = _host_device(HARMLESS_DEVICES, stat.S_IFCHR)
    if char is None:
        pytest.skip(f"this host has none of /dev/{', /dev/'.join(HARMLESS_DEVICES)}")
    name, numbers = char
    loops = tuple(sorted(n for n in os.listdir("/dev") if n.startswith("loop")))
    block = _host_device(loops, stat.S_IFBLK)
    script = (
        f"stat -c '%t:%T %a %u:%g' /dev/{name} && : <> /dev/{name} && echo opened; "
        + (f"stat -c '%t:%T %a %u:%g' /dev/{block[0]}; " if block else "")
        + "readlink /dev/ptmx; stat -c '%t:%T' /dev/tty; ls /dev/pts; "
        "test -e /dev/console || echo no-console"
    )
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    ran = run_pod(
        run_dir,
        "img-devices",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
            securityContext: {{privileged: true}}
          - name: plain
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "test -e /dev/{name} && echo has-it || echo none"]
        """,
    )
    own = ["pts/ptmx", "5:0", "ptmx", "no-console"]
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == [numbers, "opened", *([block[1]] if block else []), *own]
    assert ran.of("plain") == ["none"]


def test_in_a_user_namespace_the_hosts_devices_are_bound(tmp_path: Path) -> None:
    """mknod(2) takes CAP_MKNOD of the host's user namespace: the node is the host's,
    bound over an empty file, and opens as the device."""
    char = _host_device(HARMLESS_DEVICES, stat.S_IFCHR)
    if char is None:
        pytest.skip(f"this host has none of /dev/{', /dev/'.join(HARMLESS_DEVICES)}")
    name, _ = char
    host = os.stat(f"/dev/{name}").st_rdev
    root = tmp_path / "root"
    root.mkdir()

    def work() -> str:
        # A root with the host's /dev parked where `rootfs.enter` parks the old root.
        syscalls.mount("tmpfs", str(root), "tmpfs", 0, "mode=755")
        old_dev = f"{root}{rootfs._OLD_ROOT}/dev"
        os.makedirs(old_dev)
        os.mkdir(f"{root}/dev")
        syscalls.mount("/dev", old_dev, None, syscalls.MS_BIND | syscalls.MS_REC)
        os.chroot(root)
        os.chdir("/")
        try:
            os.mknod("/dev/refused", stat.S_IFCHR | 0o600, host)
        except PermissionError:
            refused = "mknod refused"
        else:
            refused = "mknod allowed"
        rootfs._host_devices(f"{rootfs._OLD_ROOT}/dev", "/dev")
        mounted = os.path.ismount(f"/dev/{name}")  # the host's devtmpfs, not the tmpfs
        os.close(os.open(f"/dev/{name}", os.O_RDWR))
        given = os.stat(f"/dev/{name}").st_rdev
        return f"{refused} {mounted} {given == host} {os.path.exists('/dev/pts/ptmx')}"

    assert in_mount_namespace(work, user=True) == "mknod refused True True False"


def test_a_node_a_container_makes_never_opens(run_dir: Path, load_image: LoadImage) -> None:
    """The container keeps CAP_MKNOD, as under runc, whose device cgroup refuses to open
    what it makes: here every place it writes is nodev (its root, its /dev, its volumes),
    while the standard devices work; a privileged container's nodes open."""
    made = {"root": "/made", "dev": "/dev/made", "volume": "/data/made", "tmpfs": "/mem/made"}
    tries = " ".join(
        f"mknod {path} c 1 5 && (head -c 3 {path} | wc -c) 2>&1 | sed 's/^/{where} /';"
        for where, path in made.items()
    )
    script = f"{tries} echo x > /dev/null && head -c 3 /dev/zero | wc -c"
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    mounts = "[{name: data, mountPath: /data}, {name: mem, mountPath: /mem}]"
    ran = run_pod(
        run_dir,
        "img-nodev",
        f"""
        containers:
          - name: plain
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
            volumeMounts: {mounts}
          - name: privileged
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "mknod /made c 1 5 && head -c 3 /made | wc -c"]
            securityContext: {{privileged: true}}
        volumes:
          - {{name: data, emptyDir: {{}}}}
          - {{name: mem, emptyDir: {{medium: Memory}}}}
        """,
    )
    assert ran.status == 0, ran.stderr
    said = ran.of("plain")
    for where in made:
        line = next(line for line in said if line.startswith(f"{where} "))
        assert "Permission denied" in line, said
    assert said[-1] == "3"  # /dev/zero, a standard device, still reads
    assert ran.of("privileged") == ["3"]
