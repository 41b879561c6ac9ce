"""Where the life of bench/rootfs.py's pod on its image goes, step by step.

The same pod as bench/rootfs.py (one container, busybox-static's
`/bin/true`, on an image loaded into a fresh store, a loopback network), run
under a light strace: `strace -f --seccomp-bpf` stops only at the few system
calls that mark a step, and takes each one's time. Every step is one system
call of one of the pod's processes (the supervisor, the manifest's reader,
the pod's outer init and PID 1, the container's init, its program), from the
launch of `podvisor run` to the supervisor's exit. The table gives, over
--runs runs after one unmeasured run, the median time of each step since the
launch and the median time since the step before it; the strace's stops add
a little to each step.

    sudo .venv/bin/python bench/rootfs_steps.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# `bench` is a folder, not an installed package: reach it from the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.rootfs import IMAGE, POD
from podvisor.supervisor.images import ImageStore
from tests.images.build import busybox_layout

CALLS = "clone,vfork,execve,exit_group,sendmsg,write,mount,pivot_root,umount2,unlink"
FORKED = re.compile(r"^(?:<\.\.\. )?(?:clone|vfork)\b.*= (\d+)(?: <[\d.]+>)?$")
SPENT = re.compile(r"<([\d.]+)>$")
PROCS_WRITE = re.compile(r'write\(\d+, "0", 1\)')  # a pid into cgroup.procs: "0", itself


@dataclass(frozen=True)
class Call:
    pid: int
    ms: float  # since the launch
    text: str  # the call and its result, as strace prints them


class Trace:
    """One run's system calls, and the pod's processes among them."""

    def __init__(self, path: Path) -> None:
        calls = []
        for line in path.read_text().splitlines():
            pid, stamp, text = line.split(None, 2)
            calls.append((int(pid), float(stamp), text))
        start = calls[0][1]
        self.calls = [Call(pid, (t - start) * 1000, text) for pid, t, text in calls]
        self.supervisor = self.calls[0].pid
        forks: dict[int, list[int]] = {}
        for c in self.calls:
            if m := FORKED.match(c.text):
                forks.setdefault(c.pid, []).append(int(m.group(1)))
        self.reader = forks[self.supervisor][1]  # after the network's maker
        self.init = self.first(lambda c: "podvisor.init" in c.text and "execve" in c.text).pid
        self.pid_1 = forks[self.init][0]
        self.container = self.first(lambda c: c.text.startswith("pivot_root")).pid
        self.program = self.first(lambda c: c.text.startswith('execve("/bin/true"')).pid

    def first(self, wanted: Callable[[Call], bool]) -> Call:
        return next(c for c in self.calls if wanted(c))

    def call(self, pid: int, prefix: str) -> Call:
        return self.first(lambda c: c.pid == pid and c.text.startswith(prefix))

    def joins_cgroups(self, pid: int) -> Call:
        """*pid*'s first write of "0": its first cgroup.procs, the one that may wait."""
        return self.first(lambda c: c.pid == pid and PROCS_WRITE.match(c.text) is not None)

    def gone(self, pid: int) -> float:
        return self.first(lambda c: c.pid == pid and c.text.startswith("+++")).ms

    def steps(self) -> Iterator[tuple[str, float]]:
        yield (
            "the manifest's reader forked",
            self.first(
                lambda c: c.pid == self.supervisor and f"= {self.reader} " in c.text + " "
            ).ms,
        )
        yield "the pod's init launched", self.first(lambda c: c.pid == self.init).ms
        yield "the manifest read: the reader exits", self.gone(self.reader)
        yield (
            "the plan sent to the init",
            self.first(lambda c: c.text.startswith("sendmsg") and "plan" in c.text).ms,
        )
        yield "the init joins its cgroups", self.joins_cgroups(self.init).ms
        yield "PID 1 forked", self.call(self.init, "clone").ms
        yield "the container's init forked", self.call(self.pid_1, "clone").ms
        yield "the container joins its cgroups", self.joins_cgroups(self.container).ms
        yield "the overlay mounted", self.call(self.container, 'mount("overlay"').ms
        yield "pivot_root", self.call(self.container, "pivot_root").ms
        yield "the old root detached", self.call(self.container, "umount2").ms
        yield "the program forked", self.call(self.container, "clone").ms
        yield "the program execs /bin/true", self.call(self.program, "execve").ms
        yield "the program exits", self.gone(self.program)
        yield "the container's init gone", self.gone(self.container)
        yield "PID 1 gone", self.gone(self.pid_1)
        yield "the outer init gone", self.gone(self.init)
        yield (
            "the network namespace unmounted",
            self.first(lambda c: c.text.startswith('umount2("/run/netns')).ms,
        )
        yield (
            "the supervisor's owner lock removed (atexit)",
            self.first(
                lambda c: c.pid == self.supervisor and "owners/" in c.text and "unlink" in c.text
            ).ms,
        )
        yield "the supervisor gone", self.gone(self.supervisor)

    def cgroup_waits(self) -> tuple[float, float]:
        """How long the init's and the container's first cgroup.procs writes took."""
        init, container = (
            SPENT.search(self.joins_cgroups(pid).text) for pid in (self.init, self.container)
        )
        return (
            float(init.group(1)) * 1000 if init else 0.0,
            float(container.group(1)) * 1000 if container else 0.0,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs (median)")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("strace"):
        print("bench/rootfs_steps.py: needs root and strace")
        return 2
    podvisor = str(Path(sys.executable).with_name("podvisor"))
    with tempfile.TemporaryDirectory(prefix="podvisor-bench-steps-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        layout = busybox_layout(work / "layout", name=IMAGE, config={"Cmd": ["/bin/true"]})
        ImageStore(str(work / "store")).load(str(layout.path))
        env = {
            **os.environ,
            "PODVISOR_IMAGE_STORE": str(work / "store"),
            "PODVISOR_RUN_DIR": tmp,
            "PODVISOR_LOG_DIR": str(work / "logs"),
        }
        pod = work / "image.yaml"
        pod.write_text(POD.format(image=IMAGE, extra=""))
        traced = ["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-e", f"trace={CALLS}"]
        runs: list[Trace] = []
        for run in range(args.runs + 1):
            out = work / "trace.txt"
            argv = [*traced, "-o", str(out), podvisor, "run", str(pod)]
            subprocess.run(argv, env=env, check=True, capture_output=True)
            if run > 0:  # the first fills the page cache
                runs.append(Trace(out))
    steps = [dict(t.steps()) for t in runs]
    print(f"the pod's life on its image, step by step, median of {args.runs} runs")
    print(f"  (the machine's load average over the last minute: {os.getloadavg()[0]:.2f})")
    print(f"  {'ms':>7} {'+ms':>7}  step")
    names = list(steps[0])
    for i, name in enumerate(names):
        at = statistics.median(s[name] for s in steps)
        since = statistics.median(s[name] - (s[names[i - 1]] if i else 0.0) for s in steps)
        print(f"  {at:7.1f} {since:7.1f}  {name}")
    init, container = zip(*(t.cgroup_waits() for t in runs), strict=True)
    print(
        "  the first cgroup.procs write took (median, min..max ms): "
        f"the init's {statistics.median(init):.1f} ({min(init):.1f}..{max(init):.1f}), "
        f"the container's {statistics.median(container):.1f} "
        f"({min(container):.1f}..{max(container):.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
