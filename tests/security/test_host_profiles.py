"""AppArmor, SELinux, procMount, Windows options and hostUsers: done, or refused by name.

This machine has neither AppArmor nor SELinux, so what the kubelet says here
is what podvisor says; the other host is reached by patching the one check
of the host each reads.
"""

from __future__ import annotations

from unittest import mock

import pytest

from podvisor.supervisor.errors import ConfigError
from podvisor.supervisor.manifest import load, lsm
from tests.security.conftest import web_pod as pod


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load("pod.yaml", text)
    return [str(p) for p in caught.value.problems]


def ignored(text: str) -> list[str]:
    return [f"{i.path}: {i.reason}" for i in load("pod.yaml", text).ignored]


needs_no_apparmor = pytest.mark.skipif(lsm.apparmor_enabled(), reason="this host has AppArmor")


@needs_no_apparmor
@pytest.mark.parametrize(
    ("text", "where"),
    [
        (pod(spec="securityContext:\n  appArmorProfile: {type: RuntimeDefault}\n"), "7:29"),
        (
            pod(container="securityContext:\n  appArmorProfile: {type: Localhost, "
                "localhostProfile: k8s-deny-write}\n"),
            "10:31",
        ),
        (
            pod(annotations="container.apparmor.security.beta.kubernetes.io/web: runtime/default"),
            "6:57",
        ),
    ],
)  # fmt: skip
def test_apparmor_without_apparmor_is_refused_in_the_kubelets_words(text: str, where: str) -> None:
    [problem] = problems(text)
    assert problem.startswith(f"pod.yaml:{where}: ")
    assert problem.endswith(": Cannot enforce AppArmor: AppArmor is not enabled on the host")


def test_apparmor_on_a_host_with_it_is_refused_not_left_unapplied() -> None:
    text = pod(annotations="container.apparmor.security.beta.kubernetes.io/web: localhost/p")
    with mock.patch.object(lsm, "apparmor_enabled", return_value=True):
        [problem] = problems(text)
    assert "podvisor does not apply AppArmor profiles" in problem


def test_unconfined_apparmor_asks_for_nothing_and_is_listed_as_ignored() -> None:
    text = pod(
        container="securityContext:\n  appArmorProfile: {type: Unconfined}\n",
        annotations="container.apparmor.security.beta.kubernetes.io/web: unconfined",
    )
    assert ignored(text) == [
        (
            "metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]: "
            "unconfined asks for what podvisor does anyway"
        ),
        (
            "spec.containers[0].securityContext.appArmorProfile: appArmorProfile: "
            "{type: Unconfined} asks for what podvisor does anyway"
        ),
    ]


def test_apparmor_is_checked_as_the_api_server_checks_it() -> None:
    text = pod(
        container="securityContext:\n  appArmorProfile: {type: Localhost}\n",
        annotations=(
            "container.apparmor.security.beta.kubernetes.io/wbe: unconfined\n"
            "container.apparmor.security.beta.kubernetes.io/web: docker-default"
        ),
    )
    assert [p.split(": ", 2)[2] for p in problems(text)] == [
        "'wbe': container not found",
        "invalid AppArmor profile name: 'docker-default'",
        "must be set when AppArmor type is Localhost",
    ]


@pytest.mark.skipif(lsm.selinux_enabled(), reason="this host has SELinux")
def test_selinux_options_without_selinux_are_what_the_runtimes_make_of_them() -> None:
    text = pod(spec="securityContext:\n  seLinuxOptions: {level: 's0:c123,c456'}\n")
    assert ignored(text) == [
        (
            "spec.securityContext.seLinuxOptions: SELinux is not enabled on this host: as "
            "containerd and CRI-O do on such a host, no label is applied"
        )
    ]


def test_selinux_options_where_selinux_enforces_are_refused() -> None:
    text = pod(container="securityContext:\n  seLinuxOptions: {type: spc_t}\n")
    with mock.patch.object(lsm, "selinux_enabled", return_value=True):
        [problem] = problems(text)
    assert problem.startswith("pod.yaml:10:7: spec.containers[0].securityContext.seLinuxOptions: ")
    assert "podvisor does not set SELinux labels" in problem


def test_windows_options_are_ignored_but_a_host_process_is_refused() -> None:
    assert ignored(pod(container="securityContext:\n  windowsOptions: {runAsUserName: x}\n")) == [
        "spec.containers[0].securityContext.windowsOptions: applies to Windows containers only"
    ]
    [problem] = problems(pod(container="securityContext:\n  windowsOptions: {hostProcess: true}\n"))
    assert problem.endswith("hostProcess: HostProcess containers run on Windows nodes only")
    [problem] = problems(
        pod(spec="os: {name: linux}\nsecurityContext:\n  windowsOptions: {runAsUserName: x}\n")
    )
    assert "windows options cannot be set for a linux pod" in problem


def test_proc_mount_unmasked_is_refused_with_kubernetes_reason() -> None:
    [problem] = problems(pod(container="securityContext:\n  procMount: Unmasked\n"))
    assert problem.startswith("pod.yaml:10:7: spec.containers[0].securityContext.procMount: ")
    assert "`hostUsers` must be false to use `Unmasked`" in problem


def test_host_users_false_is_refused_with_what_to_do_instead() -> None:
    [problem] = problems(pod(spec="hostUsers: false\n"))
    assert problem.startswith("pod.yaml:6:3: spec.hostUsers: not supported: ")
    assert "runAsNonRoot: true" in problem
    assert ignored(pod(spec="hostUsers: true\n")) == [
        "spec.hostUsers: hostUsers: true asks for what podvisor does anyway"
    ]
