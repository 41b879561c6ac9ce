"""`PodResources`: what a running pod holds of the machine, made whole or not at all.

`make_resources` makes, in order, the containers' images ready (`rootfs.py`),
the pod's volumes (`volumes.py`), its cgroups (one per container, with its
limits), its network and its init in its namespaces, and pushes the undoing
of each onto the caller's exit stack as soon as it exists: whatever fails
later, or however the pod ends, the stack undoes what was made, in reverse,
shielded from cancellation. The runner gets a complete `PodResources` or an
exception; it never sees a pod half made.
"""

from __future__ import annotations

import contextlib
import dataclasses
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from podvisor.supervisor.cgroups import CgroupDriver, ContainerCgroup, Limits, PodCgroup
from podvisor.supervisor.errors import CgroupError, ConfigError, InitDiedError, NamespaceError
from podvisor.supervisor.network import NetworkRequest, PodNetwork, cleanup_stale
from podvisor.supervisor.pod.init_client import InitClient
from podvisor.supervisor.pod.rootfs import PodRoots, remove_stale
from podvisor.supervisor.pod.sandbox import WaitingInit, plan_namespaces, without_namespaces

if TYPE_CHECKING:
    from podvisor.supervisor.manifest.model import Container, Pod
    from podvisor.supervisor.network.maker import NetworkMaker
    from podvisor.supervisor.pod.logs import LogSink
    from podvisor.supervisor.pod.volumes import PodVolumes

#: How long the init gets to end the pod's processes when the pod is torn down.
INIT_EXIT_WAIT = 10.0


@dataclass
class PodResources:
    """The pod's cgroups, network and init, all made."""

    pod_cgroup: PodCgroup
    cgroups: dict[str, ContainerCgroup]
    network: PodNetwork
    init: InitClient
    roots: PodRoots
    #: None for a pod without volumes: its supervisor keeps none of their code.
    volumes: PodVolumes | None


def container_limits(pod: Pod, c: Container) -> Limits:
    r = c.resources
    return Limits(
        memory_bytes=r.memory_limit_bytes,
        cpu_limit_millicores=r.cpu_limit_millicores,
        cpu_request_millicores=r.cpu_request_millicores,
        pids_max=c.settings.pids_limit
        if c.settings.pids_limit is not None
        else pod.settings.pids_limit,
        cpuset=c.settings.cpuset,
    )


async def make_resources(
    pod: Pod,
    sink: LogSink,
    stack: AsyncExitStack,
    *,
    init: WaitingInit | None = None,
    network_maker: NetworkMaker | None = None,
) -> PodResources:
    """Make the pod's cgroups, network and init; their undoing goes onto *stack*.

    *init*: an init started ahead of its plan; *network_maker*: the network
    being made by a child that `podvisor run` forked (each made here if None).
    """
    roots = await _make_roots(pod, sink, stack)
    volumes = await _make_volumes(pod, roots, stack)
    pod_cgroup, cgroups = await _make_cgroups(pod, sink, stack)
    network = await _make_network(pod, sink, stack, network_maker)
    plan = plan_namespaces(
        host_pid=pod.spec.host_pid,
        host_ipc=pod.spec.host_ipc,
        hostname=pod.hostname,
        netns=network.netns_path,
        binds=tuple((src, dst) for dst, src in network.etc_files.items()),
        cgroup_procs=tuple(pod_cgroup.init().procs_files()),
        grace=float(pod.spec.termination_grace_period_seconds),
        sysctls=pod.spec.sysctls,
    )
    if volumes is not None and (volumes.tmpfs or volumes.overlays or volumes.propagated):
        if "mnt" not in plan.unshare:
            raise ConfigError(
                "memory, Secrets' and image volumes and mountPropagation need a mount "
                "namespace of the pod's own, and podvisor cannot make one here (it lacks "
                "CAP_SYS_ADMIN): run it as root"
            )
        plan = dataclasses.replace(
            plan,
            tmpfs=volumes.tmpfs,
            files=volumes.files,
            overlays=volumes.overlays,
            propagated=volumes.propagated,
        )
    try:
        client = await InitClient.start(plan, init)
    except NamespaceError as exc:
        if "user" not in plan.unshare:
            raise
        plan = without_namespaces(plan, str(exc), own_name_files=pod.spec.own_name_files)
        client = await InitClient.start(plan)
    stack.push_async_callback(stop_init, client)
    for warning in plan.warnings:
        sink.system(f"warning: {warning}")
    return PodResources(pod_cgroup, cgroups, network, client, roots, volumes)


async def _make_roots(pod: Pod, sink: LogSink, stack: AsyncExitStack) -> PodRoots:
    """The images of the containers that run on one (pulled, maybe): before anything else."""
    for removed in await anyio.to_thread.run_sync(remove_stale):
        sink.system(f"removed the containers' files an earlier run left behind: {removed}")
    roots = await anyio.to_thread.run_sync(PodRoots.make, pod)
    stack.callback(roots.close)  # after the init's end: the containers' processes are gone
    return roots


async def _make_volumes(pod: Pod, roots: PodRoots, stack: AsyncExitStack) -> PodVolumes | None:
    """The pod's volumes, in the pod's own directory; None for a pod that has none."""
    if not pod.spec.volumes:
        return None
    from podvisor.supervisor.pod.volumes import PodVolumes

    volumes = await anyio.to_thread.run_sync(PodVolumes.make, pod, roots.directory)
    stack.callback(volumes.close)
    return volumes


async def _make_cgroups(
    pod: Pod, sink: LogSink, stack: AsyncExitStack
) -> tuple[PodCgroup, dict[str, ContainerCgroup]]:
    driver = CgroupDriver.detect()
    limits = {c.name: container_limits(pod, c) for c in pod.spec.all_containers}
    for name, limit in limits.items():
        try:
            driver.check(limit)
        except CgroupError as exc:
            raise ConfigError(f"container {name}: {exc}") from exc
    for removed in driver.remove_stale():
        sink.system(f"removed a cgroup an earlier run left behind: {removed}")
    for warning in driver.warnings:
        sink.system(f"warning: {warning}")
    for removed in await anyio.to_thread.run_sync(cleanup_stale):
        sink.system(f"removed a network an earlier run left behind: {removed}")
    pod_cgroup = driver.create_pod(pod.name, pod.uid)
    cgroups: dict[str, ContainerCgroup] = {}
    stack.push_async_callback(_remove_cgroups, pod_cgroup, cgroups)
    for c in pod.spec.all_containers:
        cgroups[c.name] = cg = pod_cgroup.container(c.name)
        cg.apply_limits(limits[c.name])
    return pod_cgroup, cgroups


async def _make_network(
    pod: Pod, sink: LogSink, stack: AsyncExitStack, maker: NetworkMaker | None
) -> PodNetwork:
    if maker is not None:
        request = maker.request
        network = await maker.network()
    else:
        # Made here (a loopback network, or no maker): only then is the making imported.
        from podvisor.supervisor.network import create_network

        request = NetworkRequest.for_pod(pod)
        network = await create_network(request)
    stack.push_async_callback(_close_network, network)
    for warning in network.warnings:
        sink.system(f"warning: {warning}")
    if request.host_ports:
        # Imported by a pod that publishes ports: the others do not keep the proxy.
        from podvisor.supervisor.network import publish_ports

        await stack.enter_async_context(publish_ports(network, request.host_ports))
    return network


# --- Undoing ------------------------------------------------------------------------


async def stop_init(init: InitClient) -> None:
    """Ask the init to end what is left, then make sure it is gone."""
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(InitDiedError):
            await init.stop_all(grace=0)
        with anyio.move_on_after(INIT_EXIT_WAIT):
            await init.process.wait()
        if init.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                init.process.kill()
            await init.process.wait()
        init.close()
        await init.process.aclose()


async def _close_network(network: PodNetwork) -> None:
    with anyio.CancelScope(shield=True):
        await network.aclose()


async def _remove_cgroups(pod_cgroup: PodCgroup, cgroups: dict[str, ContainerCgroup]) -> None:
    with anyio.CancelScope(shield=True):
        for cg in cgroups.values():
            with contextlib.suppress(CgroupError):
                await cg.kill()
    pod_cgroup.remove()
