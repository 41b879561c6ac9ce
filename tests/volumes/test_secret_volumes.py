"""Where configMap and secret volumes' files live: a Secret's on a tmpfs of the pod, never on disk.

The files themselves are `volume_files`' (tests/volumes/test_content.py);
here is their placing. While the pod runs, the host's copy of the pod's
directory holds the ConfigMap's files and none of the Secret's: those were
written by the pod's init into a tmpfs of the pod's own mount namespace.
Every such volume is read-only in the container, and a Secret's file of mode
0400 is not readable by another user of the pod. The ConfigMap's files are on
the file system of the store, whatever that is (a disk on a host, a tmpfs in
the kernel tests' guests): the container sees its device, the Secret's is one
of its own.
"""

from __future__ import annotations

import signal
from pathlib import Path

from podvisor.supervisor.images import ImageStore
from tests.faults.pods import Supervisor
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, sh
from tests.volumes.conftest import BUSYBOX

OBJECTS = """\
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: not-on-any-disk}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: debug}
"""
SHOW = (
    "stat -f -c 'secret %T' /etc/secret; stat -c '%d' /etc/secret /etc/config; "
    "cat /etc/secret/password; echo; (echo x > /etc/config/new) 2>&1; echo up; sleep 60"
)


def test_a_secret_is_on_the_pods_tmpfs_and_a_config_map_on_disk_both_read_only(
    tmp_path: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    body = f"""
        containers:
          - name: app
            image: {image}
            imagePullPolicy: Never
            command: {sh(SHOW)}
            volumeMounts:
              - {{name: secret, mountPath: /etc/secret}}
              - {{name: config, mountPath: /etc/config}}
          - name: peek
            image: {image}
            imagePullPolicy: Never
            securityContext: {{runAsUser: 1000}}
            command: {sh("cat /etc/secret/password 2>&1; echo up; sleep 60")}
            volumeMounts: [{{name: secret, mountPath: /etc/secret}}]
        volumes:
          - {{name: secret, secret: {{secretName: db, defaultMode: 0400}}}}
          - {{name: config, configMap: {{name: settings}}}}
        """
    path = tmp_path / "vol-secret.yaml"
    path.write_text(manifest(body, "vol-secret") + OBJECTS)
    with Supervisor(path) as sup:
        sup.wait_line("app", "up")
        sup.wait_line("peek", "up")
        (pod,) = (Path(image_store.root) / "containers").iterdir()
        on_disk = {
            p.relative_to(pod / "volumes").as_posix()
            for p in (pod / "volumes").rglob("*")
            if not p.is_dir() or p.is_symlink()
        }
        sup.signal(signal.SIGTERM)
        sup.wait(timeout=60)
    store_device = str(Path(image_store.root).stat().st_dev)
    said = sup.out.of("app")
    assert said[0] == "secret tmpfs", sup.err.text()
    assert said[1] != store_device, "the Secret's files are on the store's file system"
    assert said[2] == store_device, "the ConfigMap's files are not in the pod's directory"
    assert said[3:5] == [
        "not-on-any-disk",
        "sh: can't create /etc/config/new: Read-only file system",
    ], sup.err.text()
    assert sup.out.of("peek")[0] == "cat: can't open '/etc/secret/password': Permission denied"
    # The ConfigMap's layout is in the pod's directory on disk; the Secret's is not.
    assert {p for p in on_disk if p.startswith("config/")} >= {"config/..data", "config/level"}
    assert not {p for p in on_disk if p.startswith("secret/")}
