"""Capture this machine's cgroup file formats into tests/cgroups/samples/<name>/.

Run as root on a host whose layout you want samples of:

    .venv/bin/python tests/cgroups/samples/capture.py hybrid

It copies /proc/self/mountinfo and /proc/self/cgroup, makes a pod cgroup with
a container limited to 64 MiB and 0.2 CPU, OOM-kills one process in it, runs a
workload (32 MiB, a CPU spin, 64 KiB of O_DIRECT writes) and copies every
readable cgroup file of the container, per hierarchy, into files/<hierarchy>/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from podvisor.supervisor.cgroups import CgroupDriver, Limits

WORKLOAD = """
import mmap, os, sys, time
memory = b"x" * (32 << 20)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
buffer = mmap.mmap(-1, 65536)
buffer.write(b"y" * 65536)
os.write(fd, buffer)
os.close(fd)
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("ready", flush=True)
sys.stdin.readline()
"""


def capture(name: str) -> None:
    here = Path(__file__).parent / name
    here.mkdir(exist_ok=True)
    shutil.copy("/proc/self/mountinfo", here / "mountinfo")
    shutil.copy("/proc/self/cgroup", here / "cgroup")
    pod = CgroupDriver.detect().create_pod("capture", "00000000-0000-0000-0000-000000000000")
    try:
        container = pod.container("main")
        container.apply_limits(Limits(memory_bytes=64 << 20, cpu_limit_millicores=200))
        oom = [sys.executable, "-c", "b'x' * (256 << 20)"]
        subprocess.run(oom, preexec_fn=container.join, check=False)
        with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
            workload = subprocess.Popen(
                [sys.executable, "-c", WORKLOAD, f"{scratch}/file"],
                preexec_fn=container.join,  # noqa: PLW1509 (join, then exec)
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert workload.stdout is not None
            assert workload.stdin is not None
            workload.stdout.readline()
            _copy_files(container.dirs, here / "files")
            workload.stdin.close()
            workload.wait()
    finally:
        pod.remove()


def _copy_files(dirs: list[str], into: Path) -> None:
    for directory in dirs:
        # /sys/fs/cgroup/<hierarchy>/...: v1 and hybrid mount each hierarchy there.
        target = into / Path(directory).parts[4]
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(Path(directory).iterdir()):
            try:
                text = file.read_text()
            except OSError:
                continue  # write-only files (cgroup.kill) and ones the kernel refuses
            (target / file.name).write_text(text)


if __name__ == "__main__":
    capture(sys.argv[1])
