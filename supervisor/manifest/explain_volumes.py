"""What `podvisor check` says of a pod's configuration, volumes and environment.

Text lines and JSON for: the ConfigMaps, Secrets and claims beside the pod;
each volume, what it is made of and where it is mounted in which container,
with the files a configMap, secret, downwardAPI or projected volume will
hold (paths and modes: `pod.volume_files` makes them); each variable with
the value it will have and where that comes from. A Secret's value is never
shown, nor the contents of a volume's files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from podvisor.supervisor.errors import VolumeContentError
from podvisor.supervisor.manifest.model import (
    ConfigMapProjection,
    ConfigMapVolume,
    Container,
    DownwardAPIFile,
    DownwardAPIVolume,
    EmptyDirVolume,
    EnvVar,
    HostPathVolume,
    ImageVolume,
    KeyToPath,
    LoadedPod,
    PersistentVolumeClaimVolume,
    Pod,
    ProjectedVolume,
    SecretProjection,
    SecretVolume,
    Volume,
    VolumeMount,
    VolumeSource,
)

__all__ = ["config_lines", "env_json", "env_lines", "volume_lines", "volumes_json"]

#: Pod fields whose value is known only once the pod runs, and what they will be.
_AT_START = {
    "status.podIP": "the pod's address, given when it starts",
    "status.podIPs": "the pod's addresses, given when it starts",
}
#: What a pod field is on one machine, where that is worth saying.
_MEANING = {
    "spec.nodeName": "this machine's name",
    "status.hostIP": "this machine's address",
    "status.hostIPs": "this machine's addresses",
}


# --- Configuration beside the pod ------------------------------------------------------------


def config_lines(pod: Pod) -> Iterator[str]:
    """The ConfigMaps, Secrets and claims the pod can use: names and keys, never a value."""
    config = pod.config
    found = [
        *(
            f"ConfigMap {c.name} ({_count(len(c.data) + len(c.binary_data), 'key')})"
            for c in config.config_maps.values()
        ),
        *(f"Secret {s.name} ({_count(len(s.data), 'key')})" for s in config.secrets.values()),
        *(f"PersistentVolumeClaim {c.name}" for c in config.claims.values()),
    ]
    if found:
        yield f"  configuration beside the pod: {', '.join(found)}"


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


# --- Volumes -----------------------------------------------------------------------------------


def volume_lines(loaded: LoadedPod) -> Iterator[str]:
    """Each volume: its source, where it is mounted, and the files it will hold."""
    from podvisor.supervisor.manifest.volumes import source_kind

    pod = loaded.pod
    if not pod.spec.volumes:
        return
    yield "  volumes:"
    for v in pod.spec.volumes:
        at = [
            f"{m.mount_path} in {c.name}{' (read-only)' if _read_only(m, v) else ''}"
            for c in pod.spec.all_containers
            for m in c.volume_mounts
            if m.name == v.name
        ]
        where = f"; mounted at {', '.join(at)}" if at else "; mounted nowhere"
        yield f"    {v.name}: {source_kind(v)} {_source_text(v.source, pod)}{where}"
        yield from _files_lines(v, pod)
    for line in loaded.not_yet:
        yield f"  podvisor run refuses: {line}"


def _files_lines(volume: Volume, pod: Pod) -> Iterator[str]:
    """The files a configMap, secret, downwardAPI or projected volume will hold, with modes."""
    files, problem = _files(volume, pod)
    if problem:
        yield f"      cannot be made, the container would not start: {problem}"
    elif files is not None:
        shown = ", ".join(f"{path} ({mode:04o})" for path, mode in files)
        where = " (on a tmpfs of the pod's, never on disk)" if _holds_a_secret(volume) else ""
        yield f"      files{where}: {shown or 'none'}"


def _holds_a_secret(volume: Volume) -> bool:
    source = volume.source
    if isinstance(source, ProjectedVolume):
        return any(isinstance(p, SecretProjection) for p in source.sources)
    return isinstance(source, SecretVolume)


def _read_only(m: VolumeMount, volume: Volume) -> bool:
    """Whether the mount is read-only: as asked, or as Kubernetes always mounts the volume."""
    from podvisor.supervisor.pod.volume_files import has_content

    source = volume.source
    claim = isinstance(source, PersistentVolumeClaimVolume) and source.read_only
    return m.read_only or claim or isinstance(source, ImageVolume) or has_content(volume)


def _files(volume: Volume, pod: Pod) -> tuple[list[tuple[str, int]] | None, str | None]:
    from podvisor.supervisor.pod.volume_files import files_of, has_content

    if not has_content(volume):
        return None, None
    try:
        return [(f.path, f.mode) for f in files_of(volume, pod)], None
    except VolumeContentError as error:
        return None, str(error)


def _source_text(source: VolumeSource, pod: Pod) -> str:
    """What a volume is made of, in a few words; a Secret's keys, never its values."""
    if isinstance(source, ConfigMapVolume | SecretVolume):
        name = source.name if isinstance(source, ConfigMapVolume) else source.secret_name
        keys = _keys_text(source.items, source.optional)
        return f"{name} ({keys}, mode {source.default_mode:04o})"
    if isinstance(source, DownwardAPIVolume):
        return "(" + ", ".join(f"{i.path} <- {_downward_text(i)}" for i in source.items) + ")"
    if isinstance(source, ProjectedVolume):
        return f"of {_projections_text(source)}, mode {source.default_mode:04o}"
    if isinstance(source, ImageVolume):
        policy = f" (pullPolicy {source.pull_policy})" if source.pull_policy else ""
        return source.reference + policy
    return _local_text(source, pod)


def _memory_volume_bound(pod: Pod, size_limit: int | None, size: int) -> str:
    if size_limit == size:
        return "its sizeLimit"
    if pod.spec.memory_limit_bytes == size:
        return "the pod's memory limit" + (", below its sizeLimit" if size_limit else "")
    return "this machine's memory"


def _local_text(
    source: EmptyDirVolume | HostPathVolume | PersistentVolumeClaimVolume, pod: Pod
) -> str:
    if isinstance(source, EmptyDirVolume):
        limit = source.size_limit_bytes
        if source.medium == "Memory":
            from podvisor.supervisor.pod.volumes import memory_volume_size

            tmpfs = memory_volume_size(pod, limit)
            why = _memory_volume_bound(pod, limit, tmpfs)
            return f"(a tmpfs (medium Memory) of {_bytes(tmpfs)}: {why})"
        return "(a directory on disk" + (f", sizeLimit {_bytes(limit)})" if limit else ")")
    if isinstance(source, HostPathVolume):
        return source.path + (f" (type {source.type})" if source.type else "")
    claim = pod.config.claims.get(source.claim_name)
    size = claim.storage_request_bytes if claim is not None else None
    shown = f" ({_bytes(size)})" if size else ""
    if claim is not None and "ReadWriteOncePod" in claim.access_modes:
        shown += ", ReadWriteOncePod: this pod's alone while it runs"
    if source.read_only:
        shown += ", read-only"
    sc = pod.spec.all_containers[0].security_context if pod.spec.all_containers else None
    if sc is not None and sc.fs_group is not None:
        when = (
            "unless its folder is already"
            if sc.fs_group_change_policy == "OnRootMismatch"
            else "at each start"
        )
        shown += f", its files given to fsGroup {sc.fs_group} {when}"
    return f"claim {source.claim_name}{shown}"


def _bytes(count: int) -> str:
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return f"{count} bytes"


def _projections_text(source: ProjectedVolume) -> str:
    parts = []
    for p in source.sources:
        if isinstance(p, ConfigMapProjection | SecretProjection):
            kind = "configMap" if isinstance(p, ConfigMapProjection) else "secret"
            parts.append(f"{kind} {p.name} ({_keys_text(p.items, p.optional)})")
        else:
            files = ", ".join(f"{i.path} <- {_downward_text(i)}" for i in p.items)
            parts.append(f"downwardAPI ({files})")
    return "; ".join(parts)


def _keys_text(items: tuple[KeyToPath, ...], optional: bool) -> str:
    keys = ", ".join(f"{i.key} as {i.path}" for i in items) if items else "every key as a file"
    return keys + (", optional" if optional else "")


def _downward_text(item: DownwardAPIFile) -> str:
    if item.field_path:
        return item.field_path
    ref = item.resource_field_ref
    assert ref is not None
    return f"{ref.resource} of {ref.container_name}"


def mount_text(m: VolumeMount, pod: Pod) -> str:
    """A container's mount: the volume, its kind and the mount's options."""
    from podvisor.supervisor.manifest.volumes import source_kind

    volume = next(v for v in pod.spec.volumes if v.name == m.name)
    extras = [
        "read-only" if _read_only(m, volume) else "",
        f"subPath {m.sub_path}" if m.sub_path else "",
        f"subPathExpr {m.sub_path_expr}" if m.sub_path_expr else "",
        f"propagation {m.mount_propagation}" if m.mount_propagation != "None" else "",
        f"recursiveReadOnly {m.recursive_read_only}" if m.recursive_read_only != "Disabled" else "",
    ]
    shown = ", ".join(e for e in extras if e)
    return f"{m.name} ({source_kind(volume)})" + (f", {shown}" if shown else "")


# --- Environment -------------------------------------------------------------------------------


def env_lines(container: Container, pod: Pod) -> Iterator[str]:
    """Each variable as `podvisor check` shows it, `NAME=value  (from its source)`;
    never a Secret's value."""
    import shlex

    for var, value, source, waiting in _env_values(container, pod):
        if value is None:
            yield f"{var.name}=<{source}>"
            continue
        shown = f"{var.name}={shlex.quote(value)}"
        if source:
            shown += f"  (from {source})"
        if waiting:
            shown += f"  ({', '.join(f'$({n})' for n in waiting)} filled in when it starts)"
        yield shown


def _env_values(
    container: Container, pod: Pod
) -> list[tuple[EnvVar, str | None, str | None, list[str]]]:
    """Each variable in order: its value (None: not shown), its source, and the names
    its value refers to that are not shown, left as written here.

    A written value's `$(NAME)` is expanded as the kubelet expands it (`expansion`),
    against the variables before it: so it shows the value the container gets.
    """
    from podvisor.supervisor.manifest.expansion import expand

    earlier: dict[str, str | None] = {}
    found: list[tuple[EnvVar, str | None, str | None, list[str]]] = []
    for var in container.env:
        value, source = _env_value(var, pod)
        waiting: list[str] = []
        written = var.field_path is None and var.resource_field_ref is None and not var.source
        if written and value and "$" in value:
            waiting = [n for n, v in earlier.items() if v is None and f"$({n})" in value]
            value = expand(value, {n: v for n, v in earlier.items() if v is not None})
            if waiting:  # kept as written: `$$` stays `$$`, references stay
                value = var.value
        earlier[var.name] = None if waiting else value
        found.append((var, value, source, waiting))
    return found


def _env_value(var: EnvVar, pod: Pod) -> tuple[str | None, str | None]:
    """The value the container will get (None: not shown), and its source (None: literal)."""
    from podvisor.supervisor.manifest.expansion import field_value, resource_value

    if var.secret:
        return None, var.source
    if var.field_path:
        source = f"fieldRef {var.field_path}"
        if var.field_path in _AT_START:
            return _pod_ip(var.field_path, pod, source)
        meaning = _MEANING.get(var.field_path)
        return field_value(var.field_path, pod, None), source + (f": {meaning}" if meaning else "")
    if var.resource_field_ref is not None:
        ref = var.resource_field_ref
        r = pod.container(ref.container_name).resources
        which = r.cpu_limit_millicores if ref.resource == "limits.cpu" else r.memory_limit_bytes
        capacity = ref.resource.startswith("limits.") and which is None
        note = ": no limit, this machine's capacity" if capacity else ""
        return resource_value(ref, pod), f"{var.source}{note}"
    return var.value or "", var.source


def _pod_ip(field_path: str, pod: Pod, source: str) -> tuple[str | None, str]:
    """status.podIP(s) where the pod's network already says it: the host's, or none."""
    from podvisor.supervisor.manifest.expansion import host_ip

    network = "host" if pod.spec.host_network else pod.settings.network
    if network == "host":
        return host_ip(), f"{source}: this machine's address, the pod being on its network"
    if network == "loopback":
        return "", f"{source}: none, the pod's network being loopback only"
    return None, f"{source}: {_AT_START[field_path]}"


# --- JSON --------------------------------------------------------------------------------------


def volumes_json(pod: Pod) -> list[dict[str, Any]]:
    """Each volume: its kind, where it is mounted, and the files (paths, modes) it will hold."""
    from podvisor.supervisor.manifest.volumes import source_kind

    found = []
    for v in pod.spec.volumes:
        mounts = [
            {
                "container": c.name,
                "mount_path": m.mount_path,
                "read_only": _read_only(m, v),
                "sub_path": m.sub_path or m.sub_path_expr or None,
            }
            for c in pod.spec.all_containers
            for m in c.volume_mounts
            if m.name == v.name
        ]
        files, problem = _files(v, pod)
        entry: dict[str, Any] = {"name": v.name, "kind": source_kind(v), "mounts": mounts}
        if files is not None:
            entry["files"] = [{"path": path, "mode": f"{mode:04o}"} for path, mode in files]
        if problem is not None:
            entry["error"] = problem
        found.append(entry)
    return found


def env_json(container: Container, pod: Pod) -> list[dict[str, Any]]:
    """The container's variables in order: name, value (None when not shown) and source."""
    found = []
    for var, value, source, _ in _env_values(container, pod):
        found.append({"name": var.name, "value": value, "source": source, "secret": var.secret})
    return found
