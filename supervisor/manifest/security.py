"""securityContext: who a container's process runs as, and with which privileges.

The pod's securityContext gives defaults for runAsUser, runAsGroup and
runAsNonRoot; a container's own value wins, field by field, as in Kubernetes.
supplementalGroups, supplementalGroupsPolicy and fsGroup are the pod's only,
and apply to every container. Kubernetes' rules: privileged and adding
CAP_SYS_ADMIN both contradict allowPrivilegeEscalation: false. The kubelet's
check before a start is made when the manifest is read: with runAsNonRoot,
runAsUser: 0 is refused here with the kubelet's reason. With no runAsUser the
uid is the image's (checked where the image is had, `pod.rootfs`) or, in host
mode, podvisor's own (checked by the loader, which knows the container's root).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from podvisor.supervisor.manifest import fields, lsm, names, seccomp
from podvisor.supervisor.manifest.capabilities import capability_set
from podvisor.supervisor.manifest.model import SecurityContext
from podvisor.supervisor.manifest.nodes import (
    Fields,
    Report,
    did_you_mean,
    fields_of,
    integer,
    string,
)
from podvisor.supervisor.manifest.probes import INT32_MAX


def pod_security(
    report: Report, node: yaml.Node | None, os_name: str | None = None
) -> SecurityContext:
    """spec.securityContext: the runAs* defaults for every container."""
    if node is None:
        return SecurityContext()
    f = fields_of(report, node, "spec.securityContext", fields.POD_SECURITY_CONTEXT)
    if f is None:
        return SecurityContext()
    _host_profiles(f, os_name)
    policy = f.string("supplementalGroupsPolicy") or "Merge"
    if policy not in ("Merge", "Strict"):
        f.error("supplementalGroupsPolicy", f"{policy!r} is not one of Merge, Strict")
    change = f.string("fsGroupChangePolicy") or "Always"
    if change not in ("Always", "OnRootMismatch"):
        f.error("fsGroupChangePolicy", f"{change!r} is not one of Always, OnRootMismatch")
    seccomp_type, localhost = _seccomp_profile(f)
    return replace(
        _run_as(f, SecurityContext()),
        seccomp_type=seccomp_type or "",
        seccomp_localhost=localhost,
        supplemental_groups=_groups(f),
        supplemental_groups_policy=policy,
        fs_group=f.integer("fsGroup", 0, INT32_MAX),
        fs_group_change_policy=change,
    )


def _groups(f: Fields) -> tuple[int, ...]:
    found = []
    for item, path in f.items("supplementalGroups"):
        value = integer(f.report, item, path, 0, INT32_MAX)
        if value is not None:
            found.append(value)
    return tuple(found)


def container_security(
    container: Fields, pod: SecurityContext, name: str, os_name: str | None = None
) -> SecurityContext:
    """A container's securityContext, over the pod's; *name* is the container's, for messages."""
    f = container.mapping("securityContext", fields.SECURITY_CONTEXT)
    if f is None:
        _non_root(container, pod, name, "securityContext")
        return _with_filter(container, pod, "securityContext")
    _host_profiles(f, os_name)
    escalation = f.boolean("allowPrivilegeEscalation")
    privileged = f.flag("privileged")
    add, drop = _capabilities(f)
    if escalation is False and privileged:
        f.error("privileged", "cannot be true with allowPrivilegeEscalation: false")
    if escalation is False and "SYS_ADMIN" in add:
        f.error("capabilities", "cannot add SYS_ADMIN with allowPrivilegeEscalation: false")
    context = replace(
        _run_as(f, pod),
        allow_privilege_escalation=escalation,
        privileged=privileged,
        capabilities_add=add,
        capabilities_drop=drop,
        read_only_root_filesystem=f.flag("readOnlyRootFilesystem"),
    )
    seccomp_type, localhost = _seccomp_profile(f)
    if seccomp_type is not None:
        context = replace(context, seccomp_type=seccomp_type, seccomp_localhost=localhost)
    _non_root(f, context, name, "runAsUser" if "runAsUser" in f else "runAsNonRoot")
    key = "seccompProfile" if "seccompProfile" in f else "securityContext"
    return _with_filter(f if key == "seccompProfile" else container, context, key)


def _host_profiles(f: Fields, os_name: str | None) -> None:
    """AppArmor, SELinux and Windows options: applied, ignored or refused as this host allows."""
    lsm.apparmor_profile(f)
    lsm.selinux_options(f)
    lsm.windows_options(f, os_name)


def _seccomp_profile(f: Fields) -> tuple[str | None, str | None]:
    """(type, localhostProfile) of seccompProfile; (None, None) when it is not set."""
    p = f.mapping("seccompProfile", fields.SECCOMP_PROFILE)
    if p is None:
        return None, None
    kind = p.string("type")
    localhost = p.string("localhostProfile")
    if kind not in ("RuntimeDefault", "Localhost", "Unconfined"):
        p.error("type", f"{kind!r} is not one of RuntimeDefault, Localhost, Unconfined")
        return None, None
    if (kind == "Localhost") != (localhost is not None):
        p.error(
            "localhostProfile",
            "required with type: Localhost, and only with it"
            if kind == "Localhost"
            else "may only be set with type: Localhost",
        )
        return None, None
    if localhost is not None and (localhost.startswith("/") or ".." in localhost.split("/")):
        p.error("localhostProfile", f"{localhost!r} must be a relative path without '..'")
        return None, None
    return kind, localhost


def _with_filter(f: Fields, context: SecurityContext, key: str) -> SecurityContext:
    """*context* with its seccomp filter compiled; a profile's problem reported at *key*."""
    kind = context.seccomp_type or ("Unconfined" if context.privileged else "RuntimeDefault")
    if kind == "Unconfined":
        return replace(context, seccomp_type=kind, seccomp_filter="")
    caps = capability_set(context)
    try:
        if kind == "Localhost":
            assert context.seccomp_localhost is not None
            base = (
                Path(f.report.source).parent
                if f.report.source not in ("", "-", "<stdin>")
                else Path()
            )
            profile = seccomp.read_profile(base / context.seccomp_localhost)
        else:
            profile = seccomp.runtime_default(caps)
        program = seccomp.compile_profile(profile, caps)
    except (seccomp.ProfileError, ImportError, OSError) as exc:
        f.error(key, f"seccompProfile {kind}: {exc}")
        return context
    return replace(context, seccomp_type=kind, seccomp_filter=program)


def _non_root(f: Fields, context: SecurityContext, name: str, key: str) -> None:
    """The kubelet's check before it starts a container with runAsNonRoot (its words)."""
    if not context.run_as_non_root:
        return
    if context.run_as_user == 0:
        f.error(key, f"container's runAsUser breaks non-root policy (container: {name})")


def _run_as(f: Fields, base: SecurityContext) -> SecurityContext:
    user = f.integer("runAsUser", 0, INT32_MAX)
    group = f.integer("runAsGroup", 0, INT32_MAX)
    non_root = f.boolean("runAsNonRoot")
    return replace(
        base,
        run_as_user=base.run_as_user if user is None else user,
        run_as_group=base.run_as_group if group is None else group,
        run_as_non_root=base.run_as_non_root if non_root is None else non_root,
    )


def _capabilities(f: Fields) -> tuple[tuple[str, ...], tuple[str, ...]]:
    c = f.mapping("capabilities", fields.CAPABILITIES)
    if c is None:
        return (), ()
    return _capability_list(c, "add"), _capability_list(c, "drop")


def _capability_list(c: Fields, key: str) -> tuple[str, ...]:
    found = []
    for item, path in c.items(key):
        value = string(c.report, item, path)
        if value is None:
            continue
        canonical, problem = names.capability(value)
        if problem:
            hint = did_you_mean(value.upper().removeprefix("CAP_"), sorted(names.CAPABILITIES))
            c.report.error(item, path, problem + hint)
        elif canonical is not None:
            found.append(canonical)
    return tuple(found)
