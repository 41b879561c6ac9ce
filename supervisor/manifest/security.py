"""securityContext: who a container's process runs as, and with which privileges.

The pod's securityContext gives defaults for runAsUser, runAsGroup and
runAsNonRoot; a container's own value wins, field by field, as in Kubernetes.
Kubernetes' rules: privileged and adding CAP_SYS_ADMIN both contradict
allowPrivilegeEscalation: false. podvisor adds one check Kubernetes leaves to
the kubelet at start: runAsNonRoot with runAsUser 0.
"""

from __future__ import annotations

from dataclasses import replace

import yaml

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.model import SecurityContext
from podvisor.supervisor.manifest.nodes import Fields, Report, did_you_mean, fields_of, string
from podvisor.supervisor.manifest.probes import INT32_MAX


def pod_security(report: Report, node: yaml.Node | None) -> SecurityContext:
    """spec.securityContext: the runAs* defaults for every container."""
    if node is None:
        return SecurityContext()
    f = fields_of(report, node, "spec.securityContext", fields.POD_SECURITY_CONTEXT)
    return _run_as(f, SecurityContext()) if f is not None else SecurityContext()


def container_security(container: Fields, pod: SecurityContext) -> SecurityContext:
    """A container's securityContext, over the pod's."""
    f = container.mapping("securityContext", fields.SECURITY_CONTEXT)
    if f is None:
        return pod
    escalation = f.boolean("allowPrivilegeEscalation")
    privileged = f.flag("privileged")
    add, drop = _capabilities(f)
    if escalation is False and privileged:
        f.error("privileged", "cannot be true with allowPrivilegeEscalation: false")
    if escalation is False and "SYS_ADMIN" in add:
        f.error("capabilities", "cannot add SYS_ADMIN with allowPrivilegeEscalation: false")
    return replace(
        _run_as(f, pod),
        allow_privilege_escalation=escalation,
        privileged=privileged,
        capabilities_add=add,
        capabilities_drop=drop,
    )


def _run_as(f: Fields, base: SecurityContext) -> SecurityContext:
    user = f.integer("runAsUser", 0, INT32_MAX)
    group = f.integer("runAsGroup", 0, INT32_MAX)
    non_root = f.boolean("runAsNonRoot")
    context = SecurityContext(
        run_as_user=base.run_as_user if user is None else user,
        run_as_group=base.run_as_group if group is None else group,
        run_as_non_root=base.run_as_non_root if non_root is None else non_root,
    )
    # Said once, where the contradiction is written (not again for every container).
    said_here = "runAsUser" in f or "runAsNonRoot" in f
    if context.run_as_non_root and context.run_as_user == 0 and said_here:
        key = "runAsUser" if "runAsUser" in f else "runAsNonRoot"
        f.error(key, "runAsNonRoot is true but runAsUser is 0 (root)")
    return context


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
