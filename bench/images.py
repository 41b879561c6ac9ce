"""Layer unpack throughput: podvisor's store against `tar -x` and `umoci unpack`, same layers.

Two gzip layers, made here: busybox-static (one 2 MB binary and links) and
/usr/lib/python3.11 (about 1,500 files, 50 MB: many small files, as in a
language runtime's image). Each is unpacked into a fresh directory on the
same file system by

* podvisor: `ImageStore.load` of an OCI layout holding the layer (the
  digests checked on the way, whiteouts and the escape checks, the rename
  into place), the layer removed between runs;
* tar: `tar --xattrs --same-owner -xpzf` (GNU tar with gzip, no checks);
* umoci: `umoci unpack` of the same OCI layout (its digest checks, and the
  runtime bundle it writes beside the root).

Throughput is the layer's uncompressed size over the median wall time;
the ratio is podvisor's throughput over the peer's (target: >= 0.8x).

    sudo .venv/bin/python bench/images.py [--runs N]
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from podvisor.supervisor.images import ImageStore
from tests.images.build import Layout, busybox_entries, tar

TARGET = 0.8


def python_layer() -> bytes:
    done = subprocess.run(
        ["tar", "--xattrs", "-C", "/usr/lib", "-cf", "-", "python3.11"],
        capture_output=True,
        check=True,
    )
    return done.stdout


def timed(action: Callable[[], None], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(name: str, layer: bytes, work: Path, runs: int) -> dict[str, float]:
    layout_dir = work / f"{name}-layout"
    layout = Layout(layout_dir)
    layout.tag(layout.image([layer], compression="gzip"), f"bench/{name}:1")
    blob = next(p for p in (layout_dir / "blobs/sha256").iterdir() if p.stat().st_size > 100_000)
    store = ImageStore(str(work / "store"))
    target = work / "target"

    def podvisor() -> None:
        store.load(str(layout_dir))
        store.remove(f"bench/{name}:1")

    def gnu_tar() -> None:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        subprocess.run(
            ["tar", "--xattrs", "--same-owner", "-xpzf", str(blob), "-C", str(target)], check=True
        )

    def umoci() -> None:
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout_dir}:bench/{name}:1", str(target)],
            check=True,
            capture_output=True,
        )

    seconds = {"podvisor": timed(podvisor, runs), "tar -x": timed(gnu_tar, runs)}
    if shutil.which("umoci"):
        seconds["umoci unpack"] = timed(umoci, runs)
    shutil.rmtree(target, ignore_errors=True)
    megabytes = len(layer) / 1e6
    return {tool: megabytes / s for tool, s in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per tool and layer (median)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/images.py: unpacking keeps owners and makes devices: run it as root")
        return 2
    layers = {"busybox": tar(busybox_entries()), "python3.11": python_layer()}
    failed = False
    with tempfile.TemporaryDirectory(prefix="podvisor-bench-images-", dir="/var/tmp") as tmp:
        for name, layer in layers.items():
            rates = measure(name, layer, Path(tmp), args.runs)
            print(f"{name} layer, {len(layer) / 1e6:.1f} MB as tar, median of {args.runs}:")
            for tool, rate in rates.items():
                line = f"  {tool:<13} {rate:7.1f} MB/s"
                if tool != "podvisor":
                    ratio = rates["podvisor"] / rate
                    met = ratio >= TARGET
                    failed |= not met
                    verdict = "met" if met else "NOT met"
                    line += f"   podvisor: {ratio:.2f}x (target >= {TARGET}x: {verdict})"
                print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
