"""seccompProfile: the runtime default filter, a Localhost profile, Unconfined; and a read-only root."""

from __future__ import annotations

import json
import platform
import textwrap
from pathlib import Path

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load, seccomp
from tests.security.conftest import PYTHON, STATUS, run_pod, sh, status

pytestmark = pytest.mark.needs_root

#: keyctl(2) by number: glibc has no wrapper for it.
KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())

#: What a container tries that the runtime default refuses: a user namespace, the keyring.
ATTEMPTS = (
    f"{PYTHON} -c '"
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    'print("unshare", libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))\n'
    f'print("keyctl", libc.syscall({KEYCTL or -1}, 0, 0, 0, 0, 0), os.strerror(ctypes.get_errno()))\n'
    "'"
)


def test_the_runtime_default_filter_is_every_containers(run_dir: Path) -> None:
    if KEYCTL is None:
        pytest.skip(f"no keyctl number known for {platform.machine()}")
    ran = run_pod(
        run_dir,
        "sec-seccomp",
        f"""
        containers:
        - name: default
          command: {sh(f"{STATUS}; {ATTEMPTS}")}
        - name: unconfined
          securityContext: {{seccompProfile: {{type: Unconfined}}}}
          command: {sh(STATUS)}
        - name: privileged
          securityContext: {{privileged: true}}
          command: {sh(STATUS)}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert status(ran.of("default"))["Seccomp"] == "2"
    assert "unshare -1 Operation not permitted" in ran.of("default")
    assert "keyctl -1 Operation not permitted" in ran.of("default")
    assert status(ran.of("unconfined"))["Seccomp"] == "0"
    assert status(ran.of("privileged"))["Seccomp"] == "0"


def test_a_localhost_profile_from_the_manifests_directory(run_dir: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["a_call_of_a_later_kernel"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    (run_dir / "profiles").mkdir()
    (run_dir / "profiles" / "no-mkdir.json").write_text(json.dumps(profile))
    ran = run_pod(
        run_dir,
        "sec-localhost",
        f"""
        securityContext:
          seccompProfile: {{type: Localhost, localhostProfile: profiles/no-mkdir.json}}
        containers:
        - name: c
          command: {sh(f"{STATUS}; mkdir /tmp/pv-sec-never 2>&1 || true")}
        """,
    )
    assert status(ran.of("c"))["Seccomp"] == "2"
    assert ran.of("c")[-1].endswith("Permission denied"), ran


def test_a_localhost_profile_that_cannot_be_read_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"defaultAction": "SCMP_ACT_MAYBE"}))
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          containers:
          - name: web
            command: [sleep, infinity]
            securityContext:
              seccompProfile: {type: Localhost, localhostProfile: bad.json}
          - name: gone
            command: [sleep, infinity]
            securityContext:
              seccompProfile: {type: Localhost, localhostProfile: missing.json}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load(str(tmp_path / "pod.yaml"), text)
    first, second = caught.value.problems
    assert (first.line, first.path) == (9, "spec.containers[0].securityContext.seccompProfile")
    assert "'SCMP_ACT_MAYBE' is not one of SCMP_ACT_ALLOW" in first.message
    assert second.line == 13
    assert "cannot read the seccomp profile" in second.message


def test_each_distinct_filter_is_compiled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[int] = []
    compile_one = seccomp._compile

    def counted(profile: dict[str, object], capabilities: int) -> str:
        compiled.append(capabilities)
        return compile_one(profile, capabilities)

    monkeypatch.setattr(seccomp, "_compiled", {})
    monkeypatch.setattr(seccomp, "_compile", counted)
    text = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: web}
        spec:
          containers:
          - {name: one, command: [sleep, infinity]}
          - {name: two, command: [sleep, infinity]}
          - name: admin
            command: [sleep, infinity]
            securityContext: {capabilities: {add: [SYS_ADMIN]}}
        """
    )
    containers = load(str(tmp_path / "pod.yaml"), text).pod.spec.containers
    filters = [c.security_context.seccomp_filter for c in containers]
    assert len(compiled) == 2  # the default set once, the set with SYS_ADMIN once
    assert filters[0] == filters[1] != filters[2]
    assert all(filters)


def test_read_only_root_filesystem(run_dir: Path, shared_tmp: Path) -> None:
    ran = run_pod(
        run_dir,
        "sec-rofs",
        f"""
        containers:
        - name: c
          securityContext: {{readOnlyRootFilesystem: true}}
          command: {sh(f"touch {shared_tmp}/x 2>&1; echo ok > /dev/null && echo devices-writable")}
        """,
    )
    assert ran.of("c")[0].endswith("Read-only file system"), ran
    assert ran.of("c")[1] == "devices-writable"
    assert not (shared_tmp / "x").exists()
