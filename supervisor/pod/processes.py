"""What the pod's init runs for a container: its `protocol.Process`, from the manifest.

Every process of a container goes through `container_process`: its program,
its probes' and hooks' commands, `podvisor exec`. So each gets the same
environment, working directory, identity, cgroup and confinement
(`confinement.py`), whichever asked for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from podvisor.init import protocol
from podvisor.supervisor.manifest.expansion import expand_argv, resolve_env
from podvisor.supervisor.manifest.model import Container, Pod
from podvisor.supervisor.pod.confinement import confinement

#: The PATH a container starts with when the supervisor has none.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def container_process(
    pod: Pod,
    c: Container,
    *,
    pod_ip: str | None,
    cgroup_procs: Sequence[str],
    extra_env: Mapping[str, str],
    argv: Sequence[str] | None = None,
) -> protocol.Process:
    """The process for container *c*: by default its own command (with `$(VAR)`
    expanded as the kubelet does), else *argv* (an exec, a probe, a hook).

    *extra_env*: what podvisor adds for every process of the container
    (NOTIFY_SOCKET, WATCHDOG_USEC).
    """
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": pod.hostname}
    env.update(resolve_env(c, pod, pod_ip))
    env.update(extra_env)
    if argv is None:
        argv = expand_argv(c, env)
    sc = c.security_context
    notify = env.get("NOTIFY_SOCKET", "")
    return protocol.Process(
        argv=tuple(argv),
        env=env,
        cwd=c.working_dir,
        uid=sc.run_as_user,
        gid=sc.run_as_group,
        cgroups=tuple(cgroup_procs),
        confine=confinement(sc, (notify,) if notify.startswith("/") else ()),
    )
