"""The files of configMap, secret, downwardAPI and projected volumes in running pods.

A file of several documents (a ConfigMap, a Secret, a Deployment) runs with
`podvisor run`, on a busybox image: each container finds the files with the
modes asked for, in the kubelet's layout (`..data`, the links through it),
the downward API's lines quoted as the kubelet quotes them. `optional: true`
gives no file (or an empty volume) where its object or key is missing;
without it, the pod is refused before anything starts, naming the key.
Where the files are placed (a Secret's tmpfs) is tests/volumes/test_secret_volumes.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from podvisor.supervisor.images import ImageStore
from tests.faults.pods import Supervisor
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import manifest, sh
from tests.supervisor.conftest import podvisor_command
from tests.volumes.conftest import BUSYBOX

OBJECTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  app.conf: "level=debug\\n"
  greeting: hello
binaryData:
  blob.bin: AAEC
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2, user: admin}
---
"""

#: Each file of each volume with its mode, the layout's links, then what some hold.
SHOW = """\
for d in /etc/config /etc/secret /etc/info /etc/all; do
  (cd $d/..data && find . -type f | sort) | while read f; do
    echo "mode $d/${f#./} $(stat -c %a $d/..data/$f)"
  done
done
echo "link $(readlink /etc/config/..data | cut -c1-3) $(readlink /etc/config/greeting) \
$(readlink /etc/secret/db)"
echo "bytes $(cat /etc/config/greeting) $(od -An -tx1 /etc/config/blob.bin | tr -d ' ') \
$(cat /etc/secret/db/password) $(cat /etc/all/greeting) $(cat /etc/all/creds/user)"
echo "name $([ "$(cat /etc/info/name)" = "$POD_NAME" ] && echo as-in-env) \
$(cat /etc/all/podname)"
echo "memory $(cat /etc/info/memory)"
cat /etc/info/labels; echo
cat /etc/info/annotations; echo
echo ready
exec sleep 600
"""

VOLUMES = [
    {"name": "config", "configMap": {"name": "app-config", "defaultMode": 0o640}},
    {
        "name": "secret",
        "secret": {
            "secretName": "db",
            "defaultMode": 0o400,
            "items": [{"key": "password", "path": "db/password"}],
        },
    },
    {
        "name": "info",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
                {
                    "path": "memory",
                    "resourceFieldRef": {
                        "containerName": "app",
                        "resource": "limits.memory",
                        "divisor": "1Mi",
                    },
                },
            ]
        },
    },
    {
        "name": "all",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {
                    "configMap": {
                        "name": "app-config",
                        "items": [{"key": "greeting", "path": "greeting"}],
                    }
                },
                {
                    "secret": {
                        "name": "db",
                        "items": [{"key": "user", "path": "creds/user", "mode": 0o440}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [{"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}}]
                    }
                },
            ],
        },
    },
]
MOUNTS = [{"name": v["name"], "mountPath": f"/etc/{v['name']}"} for v in VOLUMES]


def deployment(image: str) -> str:
    """The objects, and a Deployment whose pod template mounts them all."""
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", SHOW],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"memory": "64Mi"}},
        "volumeMounts": MOUNTS,
    }
    template = {
        "metadata": {
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"podvisor.io/network": "loopback", "note": 'say "hi"\tthen\\go'},
        },
        "spec": {"terminationGracePeriodSeconds": 3, "containers": [container], "volumes": VOLUMES},
    }
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    document = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    return OBJECTS + json.dumps(document | {"spec": spec}, indent=1) + "\n"


def test_a_deployment_with_its_configmap_and_secret_runs_with_their_files(
    tmp_path: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    path = tmp_path / "app.yaml"
    path.write_text(deployment(image))
    with Supervisor(path) as sup:
        sup.wait_line("app", "ready")
        sup.signal(signal.SIGTERM)
        sup.wait(timeout=60)
    said = sup.out.of("app")
    modes = {line.split()[1]: line.split()[2] for line in said if line.startswith("mode ")}
    assert modes == {
        "/etc/config/app.conf": "640",
        "/etc/config/blob.bin": "640",
        "/etc/config/greeting": "640",
        "/etc/secret/db/password": "400",
        "/etc/info/labels": "644",
        "/etc/info/annotations": "644",
        "/etc/info/name": "600",
        "/etc/info/memory": "644",
        "/etc/all/greeting": "444",
        "/etc/all/creds/user": "440",
        "/etc/all/podname": "444",
    }, sup.err.text()
    rest = [line for line in said if not line.startswith("mode ")]
    assert rest[:4] == [
        "link ..2 ..data/greeting ..data/db",
        "bytes hello 000102 hunter2 hello admin",
        f"name as-in-env {_pod_name(said)}",
        "memory 64",
    ]
    # Sorted key="value" lines, Go's quoting, no newline after the last line.
    assert rest[4:] == [
        'app="web"',
        'tier="front"',
        'note="say \\"hi\\"\\tthen\\\\go"',
        'podvisor.io/network="loopback"',
        "ready",
    ]


def _pod_name(said: list[str]) -> str:
    """The pod's name as the projected volume wrote it (its env said the same)."""
    [line] = [line for line in said if line.startswith("name as-in-env ")]
    name = line.rsplit(" ", 1)[1]
    assert name.startswith("web")
    return name


def test_optional_sources_and_keys_that_are_missing_give_no_file(
    tmp_path: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    show = "ls -A /etc/absent | cut -c1-3; echo --; ls /etc/some; echo --; ls /etc/both"
    body = f"""
        containers:
          - name: app
            image: {image}
            imagePullPolicy: Never
            command: {sh(show)}
            volumeMounts:
              - {{name: absent, mountPath: /etc/absent}}
              - {{name: some, mountPath: /etc/some}}
              - {{name: both, mountPath: /etc/both}}
        volumes:
          - {{name: absent, configMap: {{name: nowhere, optional: true}}}}
          - name: some
            secret:
              secretName: db
              optional: true
              items: [{{key: token, path: token}}, {{key: user, path: user}}]
          - name: both
            projected:
              sources:
                - secret: {{name: gone, optional: true}}
                - configMap: {{name: app-config, items: [{{key: greeting, path: greeting}}]}}
        """
    path = tmp_path / "optional.yaml"
    path.write_text(OBJECTS + manifest(body, "vol-optional"))
    with Supervisor(path) as sup:
        status = sup.wait(timeout=60)
    assert status == 0, sup.err.text()
    # An empty volume still has the kubelet's layout: the timestamped directory and ..data.
    assert sup.out.of("app") == ["..2", "..d", "--", "user", "--", "greeting"]


def test_fs_group_owns_the_files_and_its_members_read_them(
    tmp_path: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    show = (
        "for f in /etc/config/..data/greeting /etc/secret/..data/password /etc/config/..data/.; "
        "do echo \"$(stat -c '%a %u:%g' $f)\"; done; "
        "cat /etc/config/greeting /etc/secret/password; echo"
    )
    body = f"""
        securityContext: {{runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}}
        containers:
          - name: app
            image: {image}
            imagePullPolicy: Never
            command: {sh(show)}
            volumeMounts:
              - {{name: config, mountPath: /etc/config}}
              - {{name: secret, mountPath: /etc/secret}}
        volumes:
          - {{name: config, configMap: {{name: app-config, defaultMode: 0400}}}}
          - {{name: secret, secret: {{secretName: db, defaultMode: 0400}}}}
        """
    path = tmp_path / "fs-group.yaml"
    path.write_text(OBJECTS + manifest(body, "vol-fs-group"))
    with Supervisor(path) as sup:
        status = sup.wait(timeout=60)
    assert status == 0, sup.err.text()
    # The group's read bit added, the group the pod's fsGroup, directories setgid.
    assert sup.out.of("app") == ["440 0:2000", "440 0:2000", "2755 0:2000", "hellohunter2"]


@pytest.mark.parametrize(
    ("volume", "said"),
    [
        (
            "{name: conf, configMap: {name: app-config, items: [{key: level, path: level}]}}",
            (
                "spec.volumes[0].configMap.items[0].key: ConfigMap default/app-config has no "
                "key level: the kubelet cannot set up the volume"
            ),
        ),
        (
            "{name: conf, secret: {secretName: db, items: [{key: token, path: token}]}}",
            (
                "spec.volumes[0].secret.items[0].key: Secret default/db has no key token: the "
                "kubelet cannot set up the volume"
            ),
        ),
        (
            "{name: conf, projected: {sources: [{secret: {name: tls}}]}}",
            (
                'spec.volumes[0].projected.sources[0].secret.name: secret "tls" not found: the '
                "kubelet cannot set up the volume"
            ),
        ),
    ],
)
def test_a_missing_key_or_object_is_refused_before_anything_starts(
    tmp_path: Path, volume: str, said: str
) -> None:
    marker = tmp_path / "started"
    body = f"""
        containers:
          - name: app
            command: [touch, {marker}]
            volumeMounts: [{{name: conf, mountPath: /etc/conf}}]
        volumes:
          - {volume}
        """
    path = tmp_path / "missing.yaml"
    path.write_text(OBJECTS + manifest(body, "vol-missing"))
    run = subprocess.run(
        [*podvisor_command(), "run", "--metrics-address", "off", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert said in run.stderr
    assert run.stderr.endswith("; nothing was started\n")
    assert not marker.exists()
