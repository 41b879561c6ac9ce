"""Pod Security Standards: each control of baseline and restricted, as the admission controller.

A pod that meets restricted passes both levels; each case below breaks one
control and must be refused at its field's line, at the level that forbids
it and above, and pass below.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load
from tests.faults.pods import podvisor_command
from tests.security.conftest import web_pod

#: A container that meets restricted, written out, as the standard wants it.
RESTRICTED_CONTEXT = """\
securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  allowPrivilegeEscalation: false
  seccompProfile: {type: RuntimeDefault}
  capabilities: {drop: [ALL]}
"""


def pod(spec: str = "", container: str = RESTRICTED_CONTEXT, annotations: str = "") -> str:
    """`web_pod`, its container restricted unless the case says otherwise."""
    return web_pod(spec, container, annotations)


def violations(text: str, level: str) -> list[str]:
    try:
        load("pod.yaml", text, pod_security=level)
    except ConfigError as error:
        return [str(p) for p in error.problems]
    return []


def test_a_restricted_pod_passes_every_level() -> None:
    for level in ("privileged", "baseline", "restricted"):
        assert violations(pod(), level) == []


def _with(extra: str) -> str:
    return RESTRICTED_CONTEXT + textwrap.indent(extra, "  ")


#: (case, a word on the field's line, the manifest, the lowest level that forbids it, the
#: field, the admission's words)
CASES = [
    ("hostNetwork", "hostNetwork", pod(spec="hostNetwork: true\n"), "baseline", "spec.hostNetwork",
     "host namespaces (hostNetwork=true)"),
    ("hostPID", "hostPID", pod(spec="hostPID: true\n"), "baseline", "spec.hostPID",
     "host namespaces (hostPID=true)"),
    ("hostIPC", "hostIPC", pod(spec="hostIPC: true\n"), "baseline", "spec.hostIPC",
     "host namespaces (hostIPC=true)"),
    ("privileged", "privileged: true", pod(container=_with("privileged: true\n").replace(
        "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")), "baseline",
     "spec.containers[0].securityContext.privileged",
     'privileged (container "web" must not set securityContext.privileged=true)'),
    ("capabilities", "SYS_TIME", pod(container=RESTRICTED_CONTEXT.replace(
        "{drop: [ALL]}", "{drop: [ALL], add: [SYS_TIME]}")), "baseline",
     "spec.containers[0].securityContext.capabilities.add",
     ('non-default capabilities (container "web" must not include "SYS_TIME" in '
     "securityContext.capabilities.add)")),
    ("hostPath", "hostPath", pod(spec="volumes: [{name: h, hostPath: {path: /tmp}}]\n"), "baseline",
     "spec.volumes[0].hostPath", 'hostPath volumes (volume "h")'),
    ("hostPort", "hostPort", pod(container=RESTRICTED_CONTEXT + "ports: [{containerPort: 80, hostPort: 80}]\n"),
     "baseline", "spec.containers[0].ports[0].hostPort",
     'hostPort (container "web" uses hostPort 80)'),
    ("appArmor", "Unconfined", pod(spec="securityContext: {appArmorProfile: {type: Unconfined}}\n"), "baseline",
     "spec.securityContext.appArmorProfile.type",
     'forbidden AppArmor profile (pod must not set appArmorProfile.type to "Unconfined")'),
    ("seLinux", "spc_t", pod(container=_with("seLinuxOptions: {type: spc_t}\n")), "baseline",
     "spec.containers[0].securityContext.seLinuxOptions.type",
     ('seLinuxOptions (container "web" set forbidden securityContext.seLinuxOptions: type '
     '"spc_t")')),
    ("procMount", "Unmasked", pod(container=_with("procMount: Unmasked\n")), "baseline",
     "spec.containers[0].securityContext.procMount",
     'procMount (container "web" must not set securityContext.procMount to "Unmasked")'),
    ("seccomp", "Unconfined", pod(container=RESTRICTED_CONTEXT.replace("RuntimeDefault", "Unconfined")),
     "baseline", "spec.containers[0].securityContext.seccompProfile.type",
     ('seccompProfile (container "web" must not set securityContext.seccompProfile.type to '
     '"Unconfined")')),
    ("sysctls", "somaxconn, value", pod(spec="securityContext:\n  sysctls: [{name: net.core.somaxconn, value: '1'}]\n",
                    annotations="podvisor.io/allowed-unsafe-sysctls: net.core.somaxconn"),
     "baseline", "spec.securityContext.sysctls[0].name",
     "forbidden sysctls (net.core.somaxconn)"),
    ("probe host", "10.0.0.1", pod(container=RESTRICTED_CONTEXT
                       + "livenessProbe: {tcpSocket: {port: 80, host: 10.0.0.1}}\n"),
     "baseline", "spec.containers[0].livenessProbe.tcpSocket.host",
     'probe or lifecycle host (container "web" uses probe or lifecycle host "10.0.0.1")'),
    ("volume type", "hostPath", pod(spec="volumes: [{name: h, hostPath: {path: /tmp}}]\n"), "restricted",
     "spec.volumes[0].hostPath",
     'restricted volume types (volume "h" uses restricted volume type "hostPath")'),
    ("escalation", "securityContext", pod(container=RESTRICTED_CONTEXT.replace(
        "  allowPrivilegeEscalation: false\n", "")), "restricted",
     "spec.containers[0].securityContext.allowPrivilegeEscalation",
     ('allowPrivilegeEscalation != false (container "web" must set '
     "securityContext.allowPrivilegeEscalation=false)")),
    ("runAsNonRoot", "runAsNonRoot", pod(container=RESTRICTED_CONTEXT.replace("runAsNonRoot: true",
                                                              "runAsNonRoot: false")),
     "restricted", "spec.containers[0].securityContext.runAsNonRoot",
     'runAsNonRoot != true (pod or container "web" must set securityContext.runAsNonRoot=true)'),
    ("runAsUser", "runAsUser", pod(container=RESTRICTED_CONTEXT.replace("runAsUser: 1000", "runAsUser: 0")),
     "restricted", "spec.containers[0].securityContext.runAsUser",
     'runAsUser=0 (container "web" must not set runAsUser=0)'),
    ("seccomp unset", "securityContext", pod(container=RESTRICTED_CONTEXT.replace(
        "  seccompProfile: {type: RuntimeDefault}\n", "")), "restricted",
     "spec.containers[0].securityContext.seccompProfile.type",
     ('seccompProfile (pod or container "web" must set securityContext.seccompProfile.type to '
     '"RuntimeDefault" or "Localhost")')),
    ("drop ALL", "NET_RAW", pod(container=RESTRICTED_CONTEXT.replace("{drop: [ALL]}", "{drop: [NET_RAW]}")),
     "restricted", "spec.containers[0].securityContext.capabilities.drop",
     ('unrestricted capabilities (container "web" must set securityContext.capabilities.drop='
     '["ALL"])')),
    ("add", "CHOWN", pod(container=RESTRICTED_CONTEXT.replace(
        "{drop: [ALL]}", "{drop: [ALL], add: [CHOWN]}")), "restricted",
     "spec.containers[0].securityContext.capabilities.add",
     ('unrestricted capabilities (container "web" must not include "CHOWN" in '
     "securityContext.capabilities.add)")),
    ("AppArmor annotation", "unconfined",
     pod(annotations="container.apparmor.security.beta.kubernetes.io/web: unconfined"),
     "baseline", "metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]",
     'forbidden AppArmor profile (container.apparmor.security.beta.kubernetes.io/web="unconfined")'),
    ("seLinux user", "system_u", pod(spec="securityContext:\n  seLinuxOptions: {user: system_u}\n"),
     "baseline", "spec.securityContext.seLinuxOptions.user",
     'seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: user "system_u")'),
    ("hostProcess", "hostProcess", pod(container=_with("windowsOptions: {hostProcess: true}\n")),
     "baseline", "spec.containers[0].securityContext.windowsOptions.hostProcess",
     'hostProcess (container "web" must not set securityContext.windowsOptions.hostProcess=true)'),
]  # fmt: skip


@pytest.mark.parametrize(("marker", "text", "lowest", "path", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_control_is_enforced_from_its_level_on(
    marker: str, text: str, lowest: str, path: str, words: str
) -> None:
    line = next(n for n, s in enumerate(text.splitlines(), 1) if marker in s)
    levels = ("privileged", "baseline", "restricted")
    for level in levels:
        said = f'{path}: violates PodSecurity "{level}:latest": {words}'
        found = [p for p in violations(text, level) if p.endswith(said)]
        if levels.index(level) < levels.index(lowest):
            assert found == [], level
        else:
            assert len(found) == 1, (level, violations(text, level))
            assert found[0].startswith(f"pod.yaml:{line}:")


def test_the_pod_level_context_counts_for_its_containers() -> None:
    context = "securityContext:\n  runAsNonRoot: true\n  runAsUser: 7\n"
    context += "  seccompProfile: {type: RuntimeDefault}\n"
    container = "securityContext:\n  allowPrivilegeEscalation: false\n"
    container += "  capabilities: {drop: [ALL]}\n"
    assert violations(pod(spec=context, container=container), "restricted") == []


def test_a_namespace_label_in_the_same_file_enforces_its_level() -> None:
    namespace = (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n"
        "    pod-security.kubernetes.io/enforce: baseline\n---\n"
    )
    text = namespace + pod(spec="hostPID: true\n").replace(
        "  name: web\n", "  name: web\n  namespace: shop\n", 1
    )
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith('pod.yaml:14:12: spec.hostPID: violates PodSecurity "baseline')


def test_a_namespace_warn_label_warns_as_kubectl_does() -> None:
    namespace = (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n"
        "    pod-security.kubernetes.io/enforce: baseline\n"
        "    pod-security.kubernetes.io/warn: restricted\n---\n"
    )
    loose = pod(container="securityContext: {runAsNonRoot: true, runAsUser: 7}\n")
    text = namespace + loose.replace("  name: web\n", "  name: web\n  namespace: shop\n", 1)
    warnings = load("pod.yaml", text).warnings
    assert len(warnings) == 3, warnings
    assert all('would violate PodSecurity "restricted:latest": ' in w for w in warnings)
    assert any("allowPrivilegeEscalation != false" in w for w in warnings)


def test_the_annotation_enforces_and_the_label_on_the_pod_is_warned_about() -> None:
    text = pod(spec="hostIPC: true\n", annotations="podvisor.io/pod-security: baseline")
    with pytest.raises(ConfigError):
        load("pod.yaml", text)
    loose = pod(annotations="pod-security.kubernetes.io/enforce: restricted")
    [warning] = load("pod.yaml", loose).warnings
    assert "Kubernetes reads this from the pod's Namespace, not the pod" in warning


def test_check_and_run_enforce_the_level_they_are_given(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(pod(spec="hostPID: true\n"))
    for command in ("check", "run"):
        done = subprocess.run(
            [*podvisor_command(), command, "--pod-security", "baseline", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert 'spec.hostPID: violates PodSecurity "baseline:latest"' in done.stderr
    path.write_text(pod())
    done = subprocess.run(
        [*podvisor_command(), "check", "--pod-security", "restricted", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "  Pod Security Standard: restricted (enforced, and met)\n" in done.stdout
