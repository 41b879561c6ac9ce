"""Pod start on an image: podvisor against `podman run --rm` of the same image, and host mode.

One container, busybox-static's `/bin/true`, from an OCI image made here
(tests.images.build) and loaded into a fresh podvisor store and into podman's
storage. Each run is the whole life of one container, from the command to its
exit, as a user waits for it:

* podvisor (image): `podvisor run pod.yaml`, the container on its image's
  overlay, entered with pivot_root, on a private loopback network;
* podvisor (host mode): the same pod with `podvisor.io/rootfs: host`, the
  host's /bin/true;
* podman: `podman run --rm --network none --runtime runc` of the same image
  (Debian's podman, runc on this machine's cgroup layout), with limits it may
  set where podvisor runs without CAP_SYS_RESOURCE.

Targets: podvisor on the image <= 0.5x podman's time, and <= 1.3x its own
host mode. Median of --runs, the three taking turns, after one warm-up run
each; the load average is printed beside the figures.

    sudo .venv/bin/python bench/rootfs.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from podvisor.supervisor.images import ImageStore
from tests.images.build import archive, busybox_layout

IMAGE = "bench/rootfs:1"
PODMAN_IMAGE = "localhost/bench/rootfs:1"
TARGETS = {"podman": 0.5, "podvisor, host mode": 1.3}

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: bench-rootfs
  annotations: {{podvisor.io/network: loopback, podvisor.io/metrics-address: "off"{extra}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      command: [/bin/true]
"""


def timed(ways: dict[str, tuple[list[str], dict[str, str]]], runs: int) -> dict[str, float]:
    """Each way's median time over *runs*, the ways taking turns so that the
    machine's load hits them alike; one unmeasured run of each first."""
    samples: dict[str, list[float]] = {way: [] for way in ways}
    for round_ in range(-1, runs):
        for way, (argv, env) in ways.items():
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, check=False, capture_output=True, text=True)
            if done.returncode != 0:
                tail = " / ".join(done.stderr.strip().splitlines()[-3:])
                raise SystemExit(f"bench/rootfs.py: {way} exited {done.returncode}: {tail}")
            if round_ >= 0:
                samples[way].append(time.perf_counter() - started)
    return {way: statistics.median(times) for way, times in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per way (median)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/rootfs.py: containers on images need root")
        return 2
    podvisor = str(Path(sys.executable).with_name("podvisor"))
    with tempfile.TemporaryDirectory(prefix="podvisor-bench-rootfs-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        layout = busybox_layout(work / "layout", name=IMAGE, config={"Cmd": ["/bin/true"]})
        store = work / "store"
        ImageStore(str(store)).load(str(layout.path))
        env = {
            **os.environ,
            "PODVISOR_IMAGE_STORE": str(store),
            "PODVISOR_RUN_DIR": tmp,
            "PODVISOR_LOG_DIR": str(work / "logs"),  # gone with the rest, not in /var/log/pods
        }
        on_image = work / "image.yaml"
        on_image.write_text(POD.format(image=IMAGE, extra=""))
        on_host = work / "host.yaml"
        on_host.write_text(POD.format(image=IMAGE, extra=", podvisor.io/rootfs: host"))
        ways = {
            "podvisor, image": ([podvisor, "run", str(on_image)], env),
            "podvisor, host mode": ([podvisor, "run", str(on_host)], env),
        }
        if shutil.which("podman"):
            oci = archive(layout.path, work / "image.tar")
            subprocess.run(
                ["podman", "load", "-q", "-i", str(oci)], check=True, capture_output=True
            )
            runtime = ["--runtime", "runc"] if shutil.which("runc") else []
            # Limits podman may set without CAP_SYS_RESOURCE (its defaults raise them).
            limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
            argv = ["podman", "run", "--rm", "--network", "none", *runtime, *limits, PODMAN_IMAGE]
            ways["podman"] = ([*argv, "/bin/true"], dict(os.environ))
        try:
            seconds = timed(ways, args.runs)
        finally:
            if "podman" in ways:
                subprocess.run(
                    ["podman", "rmi", "-f", PODMAN_IMAGE], check=False, capture_output=True
                )
    ours = seconds["podvisor, image"]
    print(f"one container from an image, start to exit, median of {args.runs}:")
    print(f"  (the machine's load average over the last minute: {os.getloadavg()[0]:.2f})")
    failed = False
    for way, s in seconds.items():
        line = f"  {way:<20} {s * 1000:7.1f} ms"
        if way in TARGETS:
            ratio = ours / s
            met = ratio <= TARGETS[way]
            failed |= not met
            line += f"   podvisor on the image: {ratio:.2f}x (target <= {TARGETS[way]}x: "
            line += "met)" if met else "NOT met)"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
