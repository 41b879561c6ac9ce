"""Run a pytest selection inside a distribution kernel booted under qemu, per cgroup layout.

    .venv/bin/python -m tests.kernels.run                  # both layouts, the default selection
    .venv/bin/python -m tests.kernels.run --layout v1 -- tests/cgroups -x

How this works: the installed Debian kernel (``/boot/vmlinuz-*``) boots with
an initramfs made for the run (`initramfs.build`) and ``init.sh`` as PID 1.
The guest sees the host's ``/usr`` and ``/etc``, the checkout and its virtual
environment over virtio-9p, read-only, at their own paths, so Python and
podvisor run there unchanged; everything it writes goes to tmpfs, except
what it hands back (the command's output, exit status and JUnit file) in the
run's scratch directory. Layouts:

* ``v2``: cgroup v2 only (``cgroup_no_v1=all``), as Debian 12, Ubuntu 22.04
  and later, Fedora and RHEL 9 boot;
* ``v1``: every controller in a v1 hierarchy and no cgroup2, as older
  distributions boot.

The guests run side by side, each in its own qemu (``--one-at-a-time`` boots
them in turn): most of a guest's time is one pytest process on one virtual
CPU, so two guests keep a two-core machine busy where one leaves a core
idle. KVM is used where it boots; where the guest prints nothing within
`KVM_BOOT_SECONDS` (nested KVM can hang at boot), it is booted again under
TCG, which is slower but works everywhere. The first guest finds out which
accelerator boots; the others start once it knows, with that one alone.
What each guest handed back is
kept in ``build/kernels/<layout>/`` (the repository ignores ``build/``).
Nothing else is left: qemu is killed at the run's deadline, and the scratch
directory is removed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.kernels import initramfs

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "kernels"

#: Kernel command-line words of each layout.
LAYOUTS = {"v2": ["cgroup_no_v1=all"], "v1": []}
DESCRIPTIONS = {"v2": "cgroup v2 only", "v1": "cgroup v1 only"}

#: What CI runs in each guest: what the kernel and its cgroup layout decide.
#: The cgroup driver on the real hierarchies; a pod's life end to end (limits,
#: OOM kills, kill, freeze, namespaces, networks); confinement (a cgroup
#: namespace and the container's cgroup mount, masks, capabilities, seccomp,
#: sysctls); container roots on overlayfs from images loaded or pulled from a
#: registry on the guest's loopback; volumes where the kernel has its say
#: (tmpfs sized by the pod's memory limits, storage evictions measuring
#: overlay upper directories, a Secret's tmpfs, a subPath's escape refused,
#: hostPath's sockets and devices, mount propagation, the init's clean-up
#: after a killed supervisor); live scrapes by promtool and Prometheus.
#: Tests that no kernel decides (manifests, the pure core, restart timing, the
#: event loop's choice, stand-ins for the cgroup files) run on the host alone.
SELECTION = [
    "tests/cgroups/test_real.py",
    "tests/supervisor/test_pod.py",
    *("--deselect", "tests/supervisor/test_pod.py::test_on_failure_restarts_until_success"),
    *("--deselect", "tests/supervisor/test_pod.py::test_always_restarts_a_completed_container"),
    *("--deselect", "tests/supervisor/test_pod.py::test_podvisor_run_is_on_asyncio_unless_told"),
    *("--deselect", "tests/supervisor/test_pod.py::test_podvisor_run_reads_the_manifest_from"),
    "tests/network/test_pod_network.py",
    "tests/network/test_nat.py",
    "tests/faults/test_oom.py",
    "tests/faults/test_fork_bomb.py",
    "tests/security/test_escapes.py",
    "tests/security/test_privileges.py::test_a_default_container_holds_the_runtime_default_capabilities",
    "tests/security/test_privileges.py::test_run_as_user_keeps_the_pid_namespace_and_drops_everything_at_exec",
    "tests/security/test_seccomp.py::test_the_runtime_default_filter_is_every_containers",
    "tests/security/test_sysctls.py::test_a_pod_sets_safe_sysctls_in_its_own_namespaces",
    "tests/rootfs/test_rootfs.py::test_the_root_is_the_image_and_the_host_is_out_of_reach",
    "tests/rootfs/test_rootfs.py::test_writes_land_in_the_upper_directory_and_vanish_on_restart",
    "tests/rootfs/test_rootfs.py::test_after_a_sigkilled_supervisor_nothing_is_mounted_and_its_init_cleans_up",
    "tests/images/test_layers.py",
    "tests/images/test_registry.py::test_pull_by_tag_and_by_digest",
    "tests/volumes/test_empty_dir.py::test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit",
    "tests/volumes/test_empty_dir.py::test_a_memory_volume_is_no_larger_than_the_pods_memory_limit",
    "tests/volumes/test_empty_dir.py::test_a_sub_path_through_a_link_a_container_planted_is_refused",
    "tests/volumes/test_empty_dir.py::test_an_empty_dir_on_disk_past_its_size_limit_evicts_the_pod",
    "tests/volumes/test_empty_dir.py::test_a_container_past_its_ephemeral_storage_limit_evicts_the_pod",
    "tests/volumes/test_empty_dir.py::test_a_container_past_its_own_limit_within_the_pods_total_evicts_the_pod",
    "tests/volumes/test_host_path.py::test_every_type_that_passes_is_mounted_as_what_it_is",
    "tests/volumes/test_secret_volumes.py",
    "tests/volumes/test_propagation.py",
    "tests/volumes/test_cleanup.py::test_after_a_killed_supervisor_its_init_removes_the_empty_dirs",
    "tests/metrics/test_live.py",
    "tests/metrics/test_dashboard_pod.py",
]

#: How long the whole run may take in one guest, boot included: a bound for a
#: guest that hangs, well above the selection's time under TCG (about ten
#: times slower than the host) on a loaded machine.
TIMEOUT_SECONDS = 1500
#: The per-test bound inside a guest, for pytest-timeout (the host's is 120 s).
TEST_TIMEOUT_SECONDS = 600
KVM_BOOT_SECONDS = 15
#: Virtual CPUs of each guest when guests run side by side. Under TCG each
#: virtual CPU is a host thread, and a TLB flush on one stops them all until
#: every one has run: two guests of one CPU each keep a two-core machine's cores
#: busy without making a guest's CPUs wait for each other's turn on a core.
SIDE_BY_SIDE_CPUS = 1
BOOTED = "guest: "  # the init's first words on the console
OUT = "/run/kernel-out"  # where the guest mounts the run's scratch directory
_SUMMARY = re.compile(r"\b(passed|failed|errors?|skipped|no tests ran)\b.* in [0-9.]+s")


@dataclass
class Result:
    """What one guest handed back."""

    layout: str
    release: str
    accel: str
    status: int | None  # the command's exit status; None when the guest never said
    summary: str  # pytest's last line
    seconds: float  # wall time, boot to power-off
    results: Path  # output.log, console.log, junit.xml

    def line(self) -> str:
        status = "no status" if self.status is None else f"exit {self.status}"
        return (
            f"{self.layout} ({DESCRIPTIONS[self.layout]}), Linux {self.release}, "
            f"{self.accel}: {self.summary or '(no pytest summary)'}; {status}, "
            f"{self.seconds:.0f} s wall"
        )


class GuestError(Exception):
    """Raised when a guest cannot be booted on this machine (no qemu, no kernel)."""


def kernel_release() -> str:
    """The newest kernel in /boot whose modules are installed (linux-image-amd64's)."""
    found = [
        p.name.removeprefix("vmlinuz-")
        for p in Path("/boot").glob("vmlinuz-*")
        if (Path("/lib/modules") / p.name.removeprefix("vmlinuz-") / "modules.dep").exists()
    ]
    if not found:
        raise GuestError(
            "no kernel with its modules in /boot and /lib/modules: "
            "apt-get install linux-image-amd64 (scripts/setup does)"
        )
    return max(found, key=lambda r: [int(n) if n.isdigit() else 0 for n in re.split(r"[.-]", r)])


def qemu() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise GuestError(
            "no qemu-system-x86_64: apt-get install qemu-system-x86 (scripts/setup does)"
        )
    return path


def shares(out: Path) -> dict[str, tuple[Path, bool]]:
    """9p tag -> (host directory, writable): the host's programs, the checkout, the
    virtual environment and the Python it was made from (pyenv's, say), the run's own."""
    found = {"usr": (Path("/usr"), False), "etc": (Path("/etc"), False), "src": (ROOT, False)}
    for tag, prefix in (("venv", sys.prefix), ("python", sys.base_prefix)):
        path = Path(prefix).resolve()
        if not any(path.is_relative_to(p) for p, _ in found.values()):
            found[tag] = (path, False)
    found["out"] = (out, True)
    return found


def qemu_command(
    release: str, initrd: Path, layout: str, out: Path, accel: str, *, cpus: int = 2
) -> list[str]:
    where = {tag: (OUT if tag == "out" else str(path)) for tag, (path, _) in shares(out).items()}
    append = [
        "console=ttyS0",
        "panic=-1",
        "loglevel=4",
        "clocksource=tsc",
        "tsc=reliable",
        f"podvisor.layout={layout}",
        "podvisor.shares=" + ",".join(f"{tag}:{path}" for tag, path in where.items()),
        *LAYOUTS[layout],
    ]
    command = [
        qemu(),
        *("-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"),
        *("-machine", "q35", "-smp", str(cpus), "-m", "2048"),
        *(
            ["-accel", "kvm", "-cpu", "host"]
            if accel == "kvm"
            else ["-accel", "tcg", "-cpu", "max"]
        ),
        *("-kernel", f"/boot/vmlinuz-{release}", "-initrd", str(initrd)),
        *("-append", " ".join(append)),
        *("-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"),
    ]
    for tag, (path, writable) in shares(out).items():
        mode = "" if writable else ",readonly=on"
        command += [
            *("-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap{mode}"),
            *("-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"),
        ]
    return command


def pytest_command(args: list[str]) -> str:
    """The guest's command: pytest from the checkout, reporting into the run's directory."""
    python = Path(sys.prefix) / "bin" / "python"
    pytest = [
        str(python),
        *("-m", "pytest", "-p", "tests.kernels.plugin"),
        *("-o", f"timeout={TEST_TIMEOUT_SECONDS}"),
        *("-o", f"faulthandler_timeout={TEST_TIMEOUT_SECONDS - 10}"),
        f"--junitxml={OUT}/junit.xml",
        *args,
    ]
    # PYTHONPATH: the processes the tests start import this tree too, before the
    # editable install's path entry (which may name another checkout).
    root = shlex.quote(str(ROOT))
    return f"cd {root} && PYTHONPATH={root} exec {shlex.join(pytest)}\n"


class Console:
    """qemu's serial console: kept in a file, echoed with the layout in front, watched."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, layout: str, echo: bool) -> None:
        self.booted = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(proc, log, layout, echo))
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[bytes], log: Path, layout: str, echo: bool) -> None:
        assert proc.stdout is not None
        with log.open("wb") as kept:
            for raw in proc.stdout:
                kept.write(raw)
                kept.flush()  # so that a run can be followed with tail -f
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith(BOOTED):
                    self.booted.set()
                if echo:
                    print(f"[{layout}] {line}", flush=True)

    def join(self) -> None:
        self._thread.join()


def _ignore(accel: str) -> None:
    del accel


class Running:
    """The qemu processes running now, so that a signal to the runner ends them all."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)
            if self.stopped.is_set():
                proc.kill()

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self, signum: int, frame: object) -> None:
        """A signal handler: kill every guest; each thread then cleans up after its own."""
        del signum, frame
        with self._lock:
            self.stopped.set()
            for proc in self._procs:
                proc.kill()


RUNNING = Running()


@dataclass
class Guest:
    """One guest's boot: its layout, kernel, initramfs and where its files go."""

    layout: str
    release: str
    initrd: Path
    out: Path  # shared with the guest, writable
    results: Path  # kept after the run
    echo: bool
    cpus: int

    def run(
        self, accels: list[str], timeout: float, chosen: Callable[[str], None] = _ignore
    ) -> str:
        """Run qemu to the guest's power-off (or the deadline); the accelerator that booted.

        With more than one accelerator, each but the last must show the
        guest's first console line within `KVM_BOOT_SECONDS`. `chosen` is told
        the accelerator as soon as it is known to boot (or is the last left).
        """
        for accel in accels:
            command = qemu_command(
                self.release, self.initrd, self.layout, self.out, accel, cpus=self.cpus
            )
            with subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ) as proc:
                RUNNING.add(proc)
                console = Console(proc, self.results / "console.log", self.layout, self.echo)
                try:
                    if accel != accels[-1] and not console.booted.wait(KVM_BOOT_SECONDS):
                        self.say(f"nothing on the console under {accel} in {KVM_BOOT_SECONDS} s")
                        continue
                    chosen(accel)
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.say(f"the guest ran past {timeout:.0f} s: stopped")
                finally:
                    proc.kill()
                    proc.wait()
                    RUNNING.discard(proc)
                    console.join()
            return accel
        raise GuestError("no accelerator booted the guest")

    def say(self, text: str) -> None:
        print(f"[{self.layout}] {text}", flush=True)


def boot(
    layout: str,
    command: str,
    *,
    accels: list[str],
    timeout: float,
    echo: bool,
    cpus: int = 2,
    chosen: Callable[[str], None] = _ignore,
) -> Result:
    """Boot one guest, run `command` in it, and collect what it handed back."""
    release = kernel_release()
    results = RESULTS / layout
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="podvisor-kernels-") as scratch:
        out = Path(scratch) / "out"
        out.mkdir()
        (out / "command").write_text(command)
        initrd = Path(scratch) / "initramfs.cpio"
        initrd.write_bytes(initramfs.build(release))
        guest = Guest(layout, release, initrd, out, results, echo, cpus)
        started = time.monotonic()
        accel = guest.run(accels, timeout, chosen)
        seconds = time.monotonic() - started
        for name in ("output.log", "junit.xml", "status"):
            if (out / name).exists():
                shutil.copyfile(out / name, results / name)
    status = _read(results / "status").strip()
    output = _read(results / "output.log").splitlines()
    summary = next((ln.strip("= ") for ln in reversed(output) if _SUMMARY.search(ln)), "")
    return Result(
        layout, release, accel, int(status) if status.isdigit() else None, summary, seconds, results
    )


def boot_all(
    layouts: list[str],
    command: str,
    *,
    accels: list[str],
    timeout: float,
    echo: bool,
    side_by_side: bool,
) -> list[Result]:
    """Run `command` in a guest of each layout, side by side or in turn; their results.

    The first guest finds out which accelerator boots (KVM may hang); each
    later one starts when that is known, with that accelerator alone. Side by
    side, each guest has `SIDE_BY_SIDE_CPUS` virtual CPUs, in turn two.
    """
    cpus = SIDE_BY_SIDE_CPUS if side_by_side and len(layouts) > 1 else 2
    results: dict[str, Result] = {}
    errors: list[GuestError] = []
    known = threading.Event()
    usable = list(accels)

    def chosen(accel: str) -> None:
        usable[:] = [accel]
        known.set()

    def one(layout: str, accels: list[str]) -> None:
        try:
            results[layout] = boot(
                layout,
                command,
                accels=accels,
                timeout=timeout,
                echo=echo,
                cpus=cpus,
                chosen=chosen,
            )
        except GuestError as e:
            errors.append(GuestError(f"{layout}: {e}"))
        finally:
            known.set()

    threads: list[threading.Thread] = []
    for layout in layouts:
        if errors or RUNNING.stopped.is_set():
            break
        thread = threading.Thread(target=one, args=(layout, list(usable)), name=layout)
        thread.start()
        threads.append(thread)
        if side_by_side:
            known.wait()
        else:
            thread.join()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[layout] for layout in layouts if layout in results]


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def accelerators(asked: str) -> list[str]:
    """What to try, in order: KVM where /dev/kvm is ours to use, then TCG."""
    if asked != "auto":
        return [asked]
    return ["kvm", "tcg"] if os.access("/dev/kvm", os.R_OK | os.W_OK) else ["tcg"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--layout", action="append", choices=sorted(LAYOUTS), help="repeatable; default: all"
    )
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="seconds per guest")
    parser.add_argument("--quiet", action="store_true", help="do not echo the guests' consoles")
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="boot the guests in turn, not side by side"
    )
    parser.add_argument("--shell", metavar="COMMAND", help="run this sh command instead of pytest")
    parser.add_argument(
        "pytest_args", nargs="*", help="after --: pytest's arguments (default: the CI selection)"
    )
    args = parser.parse_args(argv)
    command = pytest_command(args.pytest_args or ["-q", *SELECTION])
    if args.shell:
        command = f"cd {shlex.quote(str(ROOT))} && PYTHONPATH=. {args.shell}\n"
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, RUNNING.stop)
    started = time.monotonic()
    try:
        results = boot_all(
            args.layout or list(LAYOUTS),
            command,
            accels=accelerators(args.accel),
            timeout=args.timeout,
            echo=not args.quiet,
            side_by_side=not args.one_at_a_time,
        )
    except GuestError as e:
        print(f"kernels: {e}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    for result in results:
        if result.status != 0 and args.quiet:  # what went wrong, without the kernel's lines
            print(f"--- {result.layout}: {result.results / 'output.log'}")
            print(_read(result.results / "output.log"), end="", flush=True)
    how = "side by side" if not args.one_at_a_time and len(results) > 1 else "in turn"
    print(f"kernels: {len(results)} guest(s), {how}, {seconds:.0f} s wall in all:")
    for result in results:
        print(f"  {result.line()}")
    if RUNNING.stopped.is_set():
        print("kernels: stopped by a signal", file=sys.stderr)
        return 1
    return 0 if all(r.status == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
