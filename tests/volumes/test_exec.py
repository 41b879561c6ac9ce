"""A container's probes and `podvisor exec` see its volumes, on its image or the host's files.

On the host's files every process of the container gets the volumes anew in
a mount namespace of its own (the same subPath, resolved again); on an image
it enters the program's. readOnlyRootFilesystem leaves the volumes writable.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.faults.pods import Supervisor, podvisor_command
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, sh
from tests.volumes.conftest import BUSYBOX


def podvisor_exec(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podvisor_command(), "exec", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PODVISOR_RUN_DIR": str(run_dir)},
        check=False,
    )


def test_probes_and_exec_see_the_volumes(
    run_dir: Path, tmp_path: Path, load_image: LoadImage
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    host = tmp_path / "data"
    host.mkdir()
    # The program says up once its startup probe has seen its file in the volume.
    write = (
        "echo {who} > {at}/file; until [ -e {at}/probed ]; do sleep 0.1; done; "
        "echo up; exec sleep 60"
    )
    probe = "{{exec: {{command: [sh, -c, 'test -s {at}/file && touch {at}/probed']}}, periodSeconds: 2}}"
    body = f"""
        containers:
          - name: on-host
            command: {sh(write.format(who="host", at=host))}
            securityContext: {{readOnlyRootFilesystem: true}}
            startupProbe: {probe.format(at=host)}
            volumeMounts: [{{name: data, mountPath: {host}, subPath: host}}]
          - name: on-image
            image: {image}
            imagePullPolicy: Never
            command: {sh(write.format(who="image", at="/data"))}
            startupProbe: {probe.format(at="/data")}
            volumeMounts: [{{name: data, mountPath: /data, subPath: image}}]
        volumes: [{{name: data, emptyDir: {{}}}}]
        """
    path = tmp_path / "vol-exec.yaml"
    path.write_text(manifest(body, "vol-exec"))
    with Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)}) as sup:
        sup.wait_line("on-host", "up")
        sup.wait_line("on-image", "up")
        on_host = podvisor_exec(run_dir, "vol-exec", "-c", "on-host", "--", "cat", f"{host}/file")
        on_image = podvisor_exec(run_dir, "vol-exec", "-c", "on-image", "--", "cat", "/data/file")
        sup.signal(signal.SIGTERM)
        sup.wait(timeout=60)
    assert (on_host.returncode, on_host.stdout) == (0, "host\n"), on_host.stderr
    assert (on_image.returncode, on_image.stdout) == (0, "image\n"), on_image.stderr
    assert not list(host.iterdir())  # the host's path itself was never written
