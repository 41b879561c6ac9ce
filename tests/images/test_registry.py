"""Pulls from a real registry: Debian's docker-registry on 127.0.0.1, images pushed by skopeo."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from podvisor.supervisor.errors import PullError
from podvisor.supervisor.images import ImageStore, PullPolicy
from podvisor.supervisor.images.registry import INSECURE_ENV
from tests.images.build import Layout, busybox_entries, busybox_layout, tar
from tests.images.test_store import run_in

USER, PASSWORD = "puller", "s3cret-word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def registry(tmp_path: Path, auth: bool = False) -> Iterator[str]:
    """A registry on 127.0.0.1 storing into *tmp_path*; its host:port. Stopped afterwards."""
    port = free_port()
    config = [
        "version: 0.1",
        "log: {level: info, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}",
        f"http: {{addr: '127.0.0.1:{port}'}}",
    ]
    if auth:
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (tmp_path / "htpasswd").write_text(htpasswd)
        config.append(f"auth: {{htpasswd: {{realm: test, path: {tmp_path / 'htpasswd'}}}}}")
    (tmp_path / "registry.yml").write_text("\n".join(config) + "\n")
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            ["docker-registry", "serve", str(tmp_path / "registry.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        # It says when it listens; read its log for that, bounded.
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)


def push(source: str, target: str, *options: str) -> None:
    done = subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            *options,
            source,
            f"docker://{target}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def clean_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials from this machine's own files; an auth file the test may fill."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "auth.json"


def test_pull_by_tag_and_by_digest(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch, clean_auth: Path
) -> None:
    busybox_layout(tmp_path / "layout", config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    with registry(tmp_path) as host:
        push(f"oci:{tmp_path / 'layout'}:busybox:test", f"{host}/tools/busybox:1")
        monkeypatch.setenv(INSECURE_ENV, host)
        image = store.pull(f"{host}/tools/busybox:1")
        assert image.names == (f"{host}/tools/busybox:1",)
        assert image.digests == (f"{host}/tools/busybox@{image.manifest}",)
        assert image.config.env == ("PATH=/bin",)
        assert run_in(image.layer_dirs(), tmp_path, "echo pulled") == "pulled\n"
        by_digest = store.pull(f"{host}/tools/busybox@{image.manifest}")
        assert by_digest.id == image.id
        assert store.resolve(f"{host}/tools/busybox@{image.manifest}").id == image.id
        # Always: the registry is asked, and the image it names is the one held.
        assert store.ensure(f"{host}/tools/busybox:1", PullPolicy.ALWAYS).id == image.id
        with pytest.raises(PullError, match="the registry has no such image"):
            store.pull(f"{host}/tools/busybox:2")
    assert len(store.images()) == 1


def test_zstd_layers_pull(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch, clean_auth: Path
) -> None:
    busybox_layout(tmp_path / "layout", compression="zstd")
    with registry(tmp_path) as host:
        push(f"oci:{tmp_path / 'layout'}:busybox:test", f"{host}/busybox:zstd")
        monkeypatch.setenv(INSECURE_ENV, host)
        image = store.pull(f"{host}/busybox:zstd")
    assert run_in(image.layer_dirs(), tmp_path, "echo zstd") == "zstd\n"


def test_pull_with_htpasswd_auth_from_a_file_or_a_pull_secret(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch, clean_auth: Path
) -> None:
    busybox_layout(tmp_path / "layout")
    with registry(tmp_path, auth=True) as host:
        creds = f"--dest-creds={USER}:{PASSWORD}"
        push(f"oci:{tmp_path / 'layout'}:busybox:test", f"{host}/private/busybox:1", creds)
        monkeypatch.setenv(INSECURE_ENV, host)
        with pytest.raises(PullError, match="log in to the registry"):
            store.pull(f"{host}/private/busybox:1")
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        secret = {host: {"auth": token}}
        image = store.pull(f"{host}/private/busybox:1", secrets=[("regcred", secret)])
        assert store.remove(image.id)
        clean_auth.write_text(json.dumps({"auths": {f"https://{host}/v2/": {"auth": token}}}))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(clean_auth))
        assert store.pull(f"{host}/private/busybox:1").id == image.id
    # The credentials were written for skopeo into the store's tmp/, and are gone.
    assert os.listdir(f"{store.root}/tmp") == []


def test_an_index_of_two_platforms_pulls_this_machines(
    tmp_path: Path, store: ImageStore, monkeypatch: pytest.MonkeyPatch, clean_auth: Path
) -> None:
    layout = Layout(tmp_path / "layout")
    amd64 = layout.image([tar(busybox_entries())], config={"Cmd": ["amd64"]})
    arm64 = layout.image([tar(busybox_entries())], config={"Cmd": ["arm64"]}, architecture="arm64")
    layout.tag(layout.index([amd64, arm64]), "multi")
    with registry(tmp_path) as host:
        push(f"oci:{tmp_path / 'layout'}:multi", f"{host}/multi:1", "--all")
        monkeypatch.setenv(INSECURE_ENV, host)
        image = store.pull(f"{host}/multi:1")
        assert image.config.cmd == ("amd64",)
        assert image.manifest == amd64["digest"]
        index_digest = next(d for d in image.digests if not d.endswith(amd64["digest"]))
        assert store.resolve(index_digest).id == image.id
        assert store.pull(index_digest).id == image.id
        monkeypatch.setenv("PODVISOR_PLATFORM", "linux/arm64")
        other = store.pull(f"{host}/multi:1")
    assert (other.config.cmd, other.platform) == (("arm64",), "linux/arm64")
    assert other.names == (f"{host}/multi:1",)
    assert store.resolve(image.id).names == ()  # the tag went to the image pulled last
