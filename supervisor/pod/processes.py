"""What the pod's init runs for a container: its `protocol.Process`, from the manifest.

Every process of a container goes through `container_process`: its program,
its probes' and hooks' commands, `podvisor exec`. So each gets the same
environment, working directory, identity, cgroup and confinement
(`confinement.py`), and the same root: the host's files, or its image's
(`rootfs.py`; the program gets a fresh root, the others enter the program's),
whichever asked for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from podvisor.init import protocol
from podvisor.supervisor.manifest.expansion import expand_argv, resolve_env
from podvisor.supervisor.manifest.model import Container, Pod
from podvisor.supervisor.pod import image_config
from podvisor.supervisor.pod.confinement import confinement
from podvisor.supervisor.pod.rootfs import under

if TYPE_CHECKING:
    from podvisor.supervisor.images import Image
    from podvisor.supervisor.pod.volumes import PodVolumes

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
    image: Image | None = None,
    rootfs: protocol.Rootfs | None = None,
    volumes: PodVolumes | None = None,
    message: str | None = None,
) -> protocol.Process:
    """The process for container *c*: by default its own command (with `$(VAR)`
    expanded as the kubelet does), else *argv* (an exec, a probe, a hook).

    *extra_env*: what podvisor adds for every process of the container
    (NOTIFY_SOCKET, WATCHDOG_USEC). With *image* and *rootfs* the process runs
    on the image's root, the image's config applied (`image_config`); else
    on the host's files. *volumes*: where each of the pod's volumes is,
    for the container's volumeMounts. *message*: on the host's files, the
    instance's own termination message file, bound over terminationMessagePath.
    """
    sc = c.security_context
    if image is not None:
        env = image_config.image_env(image.config) | {"HOSTNAME": pod.hostname}
    else:
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": pod.hostname}
    own_env = resolve_env(c, pod, pod_ip)
    env.update(own_env)
    env.update(extra_env)
    mounts: tuple[protocol.Mount, ...] = ()
    if volumes is not None and c.volume_mounts:
        from podvisor.supervisor.pod.volumes import container_mounts  # a pod with volumes only

        mounts = container_mounts(c, volumes, own_env)
    cwd, uid, gid = c.working_dir, sc.run_as_user, sc.run_as_group
    notify = env.get("NOTIFY_SOCKET", "")
    confine = confinement(sc, (notify,) if notify.startswith("/") else ())
    if message is not None and confine.mounts:  # last: no volume covers its path
        mounts += (protocol.Mount("termination-log", message, c.termination_message_path),)
    if image is not None and rootfs is not None:
        if argv is None:
            argv = image_config.program(c, image.config, own_env)
        layers = tuple(reversed(image.layer_dirs()))
        uid, gid = image_config.user(image.config, uid, gid, layers)
        if "HOME" not in env:
            env["HOME"] = image_config.home(0 if uid is None else uid, layers)
        cwd_inside = image_config.working_dir(c, image.config)
        rootfs = dataclasses.replace(
            rootfs,
            cwd=cwd_inside,
            readonly=sc.read_only_root_filesystem,
            host_devices=sc.privileged,
        )
        cwd = None  # changed to inside the container's root, once there
        if notify.startswith("/") and not rootfs.join:  # the socket, where the container looks
            rootfs = dataclasses.replace(rootfs, binds=(*rootfs.binds, (notify, notify)))
    elif argv is None:
        # Against the manifest's variables alone, as the kubelet expands them:
        # HOSTNAME, PATH and the image's ENV come later, from the runtime.
        argv = expand_argv(c, own_env)
    if "HOME" not in env:  # on the host's files (an image's root has it by now)
        env["HOME"] = image_config.host_home(os.getuid() if uid is None else uid)
    if c.tty:  # as containerd gives a container a terminal
        env.setdefault("TERM", "xterm")
    return protocol.Process(
        argv=tuple(argv),
        env=env,
        cwd=cwd,
        uid=uid,
        gid=gid,
        cgroups=tuple(cgroup_procs),
        confine=_on_image(confine) if image else _asked_for(confine, mounts),
        rootfs=rootfs if image is not None else None,
        mounts=mounts,
    )


def _asked_for(
    confine: protocol.Confinement, mounts: tuple[protocol.Mount, ...]
) -> protocol.Confinement:
    """On the host's files, podvisor's state stays covered but where a volume is mounted
    over it (a hostPath of /var/log/pods for a log shipper): the manifest asks for it."""
    if not mounts:
        return confine
    kept = tuple(h for h in confine.hidden if not any(under(h, m.target) for m in mounts))
    return dataclasses.replace(confine, hidden=kept)


def _on_image(confine: protocol.Confinement) -> protocol.Confinement:
    """On its image, nothing of the host's files is left to hide from the container, and
    readOnlyRootFilesystem is its root's alone (`protocol.Rootfs.readonly`): the host's
    mounts made read-only would hold the overlay's upper directory read-only too."""
    return dataclasses.replace(confine, hidden=(), exposed=(), readonly_root=False)
