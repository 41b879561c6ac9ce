"""AppArmor and SELinux in a securityContext, as the kubelet treats them on this host.

The kubelet refuses a pod that asks for an AppArmor profile (the
appArmorProfile field, or the older annotation
``container.apparmor.security.beta.kubernetes.io/CONTAINER``) on a node
without AppArmor: "Cannot enforce AppArmor: AppArmor is not enabled on the
host". podvisor says the same there. On a host with AppArmor, podvisor does
not load or apply profiles, so a profile other than ``unconfined`` is
refused by name rather than left unapplied.

seLinuxOptions on a host without SELinux are what containerd and CRI-O make
of them there: no label; podvisor lists them as ignored, with that reason.
On a host with SELinux they are refused: podvisor sets no labels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from podvisor.supervisor.manifest import fields
from podvisor.supervisor.manifest.nodes import Fields, Report, child

ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
NOT_ENABLED = "Cannot enforce AppArmor: AppArmor is not enabled on the host"
_NOT_APPLIED = (
    "podvisor does not apply AppArmor profiles: the container would run unconfined by "
    "AppArmor; remove it (or ask for Unconfined)"
)


@functools.cache
def apparmor_enabled() -> bool:
    """What the kubelet reads: the apparmor module's `enabled` parameter."""
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


@functools.cache
def selinux_enabled() -> bool:
    """Whether selinuxfs is there, as the runtimes' SELinux library asks."""
    return Path("/sys/fs/selinux/enforce").exists()


def apparmor_refusal() -> str:
    return NOT_ENABLED if not apparmor_enabled() else _NOT_APPLIED


def apparmor_profile(f: Fields) -> None:
    """securityContext.appArmorProfile: checked as the API server does, then as the kubelet."""
    p = f.mapping("appArmorProfile", fields.APP_ARMOR_PROFILE)
    if p is None or not p.require("type", "one of RuntimeDefault, Localhost, Unconfined"):
        return
    kind, localhost = p.string("type"), p.string("localhostProfile")
    if kind not in ("RuntimeDefault", "Localhost", "Unconfined"):
        p.error("type", f"unsupported value {kind!r}: one of RuntimeDefault, Localhost, Unconfined")
    elif kind == "Localhost" and not localhost:
        p.error("localhostProfile", "must be set when AppArmor type is Localhost")
    elif kind != "Localhost" and "localhostProfile" in p:
        p.error("localhostProfile", "can only be set when AppArmor type is Localhost")
    elif kind == "Unconfined":
        f.report.ignore(
            f.get("appArmorProfile"),
            f.at("appArmorProfile"),
            "appArmorProfile: {type: Unconfined} asks for what podvisor does anyway",
        )
    else:
        p.error("type", apparmor_refusal())


def apparmor_annotations(
    report: Report, annotations: list[tuple[yaml.ScalarNode, yaml.Node, str, str]],
    containers: list[str],
) -> None:  # fmt: skip
    """The older annotation per container: `runtime/default`, `localhost/NAME`, `unconfined`."""
    for key_node, value_node, key, value in annotations:
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        where = child("metadata.annotations", key)
        name = key.removeprefix(ANNOTATION_PREFIX)
        if name not in containers:
            report.error(key_node, where, f"{name!r}: container not found")
        elif (
            value != "runtime/default"
            and not value.startswith("localhost/")
            and (value != "unconfined")
        ):
            report.error(value_node, where, f"invalid AppArmor profile name: {value!r}")
        elif value == "localhost/":
            report.error(value_node, where, "invalid AppArmor profile name: 'localhost/'")
        elif value == "unconfined":
            report.ignore(value_node, where, "unconfined asks for what podvisor does anyway")
        else:
            report.error(value_node, where, apparmor_refusal())


def selinux_options(f: Fields) -> None:
    """seLinuxOptions: no label without SELinux, as the runtimes do; else refused."""
    if "seLinuxOptions" not in f:
        return
    o = f.mapping("seLinuxOptions", fields.SELINUX_OPTIONS)
    if o is None:
        return
    if selinux_enabled():
        f.error(
            "seLinuxOptions",
            "podvisor does not set SELinux labels, and this host enforces SELinux; "
            "remove seLinuxOptions",
        )
    else:
        f.report.ignore(
            f.get("seLinuxOptions"),
            f.at("seLinuxOptions"),
            "SELinux is not enabled on this host: as containerd and CRI-O do on such a "
            "host, no label is applied",
        )


def windows_options(f: Fields, os_name: str | None) -> None:
    """securityContext.windowsOptions: for Windows containers, which a Linux node ignores."""
    if "windowsOptions" not in f:
        return
    o = f.mapping("windowsOptions", fields.WINDOWS_OPTIONS)
    if o is None:
        return
    if os_name == "linux":
        f.error("windowsOptions", "windows options cannot be set for a linux pod (os.name: linux)")
    elif o.boolean("hostProcess"):
        o.error("hostProcess", "HostProcess containers run on Windows nodes only")
    else:
        f.report.ignore(
            f.get("windowsOptions"), f.at("windowsOptions"), "applies to Windows containers only"
        )
