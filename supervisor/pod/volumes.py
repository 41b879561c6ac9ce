"""The pod's volumes on this machine, and each container's mounts of them.

How this works
--------------
`PodVolumes.make` runs before anything of the pod starts, beside the images
(`rootfs.PodRoots`). It finds or makes each volume's files, and refuses the
pod (a `ConfigError`: exit 2, nothing started) where the kubelet would fail
to set the volume up, with the kubelet's message:

- emptyDir: a directory of the pod's own, ``<pod's directory>/volumes/NAME``
  (`rootfs.PodRoots` owns that directory: it goes with the pod, and a killed
  supervisor's goes with its clean-up or the next run), mode 0777 as the
  kubelet makes it (with an fsGroup: that group's, and setgid). With
  ``medium: Memory`` the pod's init mounts a tmpfs on it, of the kubelet's
  size (`memory_volume_size`), in the pod's own mount namespace (`tmpfs`):
  the files never touch the disk, the host never sees the mount, and it goes
  with the pod's last process.
  On disk, an emptyDir with a sizeLimit is measured every
  `EMPTY_DIR_CHECK_SECONDS` (`outgrown`, as the kubelet's du): past it, the
  pod is evicted (Evicted, with the kubelet's message). Every emptyDir on
  disk, and every configMap volume, counts in the pod's local storage
  against its containers' ephemeral-storage limits (`storage.py`).
- hostPath: the host's path, checked (and made, for DirectoryOrCreate and
  FileOrCreate) by its type as the kubelet checks it.
- configMap, secret, downwardAPI, projected: their files (`volume_files`),
  in the kubelet's layout, written once, read-only in every container. A
  Secret's (and a projected volume's holding one) go on a tmpfs that the
  pod's init mounts and fills (`files`), in the pod's mount namespace only:
  the bytes go from the supervisor's memory to the pod's tmpfs over the init's
  channel, and never touch a disk nor show on the host. The others are
  written into the pod's directory.
- image: the image's layers (from the store, pulled as its pullPolicy says,
  leased for the pod's life) as a read-only overlay without an upper
  directory, which the pod's init mounts in the pod's mount namespace
  (`overlays`); every mount of it is read-only.
- persistentVolumeClaim: the claim's folder, made by its first pod and kept
  (`claims.py`), held while the pod runs so that `podvisor volume rm` leaves
  it alone; ``readOnly`` makes every mount of it read-only. With an fsGroup
  the folder and its files are given to that group first, as the kubelet's
  ownership management gives them (`claims.give_to_group`).

A volume that a container mounts with mountPropagation gets a staging place
(``<pod's directory>/propagated/NAME``): the pod's init copies the host's
mounts at the volume's source there before it makes its own mounts private
(`propagated`), so that the copy keeps the host's propagation; the
container's mount is a copy of that one. A volume made in the pod's own
mount namespace (a tmpfs, an image's overlay) has nothing of the host's to
propagate and is refused with it.

`container_mounts` turns a container's volumeMounts into the init's
`protocol.Mount`s: subPathExpr expanded from the container's environment,
ordered by depth (a mount inside another comes after it), as container
runtimes order them. The container's own process resolves each subPath
beneath its volume and binds it (`podvisor.init.volumes`).
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podvisor.init import protocol
from podvisor.supervisor.errors import ConfigError, ImageError, Problem, VolumeContentError
from podvisor.supervisor.manifest.expansion import expand
from podvisor.supervisor.manifest.model import (
    ConfigMapVolume,
    Container,
    EmptyDirVolume,
    HostPathVolume,
    ImageVolume,
    PersistentVolumeClaimVolume,
    Pod,
    ProjectedVolume,
    SecretProjection,
    SecretVolume,
    Volume,
)
from podvisor.supervisor.pod.volume_files import (
    Entry,
    VolumeDirectory,
    VolumeLink,
    atomic_layout,
    data_directory_name,
    files_of,
    has_content,
    write_layout,
)

if TYPE_CHECKING:
    from podvisor.supervisor.pod.claims import ClaimStore

#: The pod's emptyDirs, inside its directory.
EMPTY_DIRS = "volumes"
#: The staging places of the volumes mounted with mountPropagation, inside it too.
PROPAGATED = "propagated"
#: How often the emptyDirs on disk with a sizeLimit are measured.
EMPTY_DIR_CHECK_SECONDS = 2.0

#: What the kubelet says a path is not, by hostPath type; and the test it fails.
_KINDS = {
    "Directory": ("a directory", stat.S_ISDIR),
    "DirectoryOrCreate": ("a directory", stat.S_ISDIR),
    "File": ("a file", stat.S_ISREG),
    "FileOrCreate": ("a file", stat.S_ISREG),
    "Socket": ("a socket file", stat.S_ISSOCK),
    "CharDevice": ("a character device", stat.S_ISCHR),
    "BlockDevice": ("a block device", stat.S_ISBLK),
}


@dataclass
class PodVolumes:
    """Where each of the pod's volumes is on this machine, by volume name."""

    sources: dict[str, str] = field(default_factory=dict)
    #: The volumes every mount of which is read-only (a claim's readOnly).
    read_only: set[str] = field(default_factory=set)
    #: (directory, tmpfs options): mounted by the pod's init in the pod's mount namespace.
    tmpfs: tuple[tuple[str, str], ...] = ()
    #: What the pod's init writes into its tmpfs mounts (Secrets' files).
    files: tuple[protocol.PlanFile, ...] = ()
    #: (directory, lower directories): image volumes' read-only overlays, made by the init.
    overlays: tuple[tuple[str, str], ...] = ()
    #: The images of image volumes, leased for the pod's life.
    leases: ExitStack = field(default_factory=ExitStack)
    #: (source, staging): copies the pod's init makes of the host's mounts, before it makes
    #: its own private, for the volumes mounted with mountPropagation.
    propagated: tuple[tuple[str, str], ...] = ()
    #: Those volumes' staging directories, by volume name: their mounts' source.
    staging: dict[str, str] = field(default_factory=dict)
    #: (volume, directory, bytes): emptyDirs on disk with a sizeLimit (`outgrown`).
    limits: tuple[tuple[str, str, int], ...] = ()
    #: The volumes on disk that the kubelet counts in the pod's local ephemeral storage:
    #: emptyDirs and configMaps (`storage`).
    local: tuple[str, ...] = ()
    #: The claims' folders, held while the pod runs (`close` lets go).
    held: list[int] = field(default_factory=list)

    @classmethod
    def make(cls, pod: Pod, directory: str, claims: ClaimStore | None = None) -> PodVolumes:
        """Each volume found or made (*directory*: the pod's own); ConfigError if one cannot be."""
        found = cls()
        try:
            said = [found._problem(pod, v, directory, claims) for v in pod.spec.volumes]
            problems = [p for p in said if p] + _missing_targets(pod, found.sources)
            if not problems:
                problems = found._stage_propagated(pod, directory)
        except BaseException:
            found.close()
            raise
        if problems:
            found.close()
            raise ConfigError([Problem(pod.source, 0, 0, "", p) for p in problems])
        return found

    def _problem(
        self, pod: Pod, volume: Volume, directory: str, claims: ClaimStore | None
    ) -> str | None:
        try:
            self._add(pod, volume, directory, claims)
        except (ValueError, OSError, VolumeContentError) as exc:
            return (
                f'MountVolume.SetUp failed for volume "{volume.name}" : {_reason(exc)}. '
                "Nothing was started"
            )
        return None

    def close(self) -> None:
        """Let go of the claims and the images (the pod's processes are gone)."""
        while self.held:
            os.close(self.held.pop())
        self.leases.close()

    def _add(self, pod: Pod, volume: Volume, directory: str, claims: ClaimStore | None) -> None:
        source = volume.source
        if isinstance(source, EmptyDirVolume):
            path = os.path.join(directory, EMPTY_DIRS, volume.name)
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            os.mkdir(path)
            # Any user of any container writes it, as the kubelet makes it; with an
            # fsGroup the group is that one, and setgid passes it on to what is made in it.
            group = _fs_group(pod)
            mode = 0o777 if group is None else 0o2777
            if group is not None:
                os.chown(path, -1, group)
            os.chmod(path, mode)
            if source.medium == "Memory":
                size = memory_volume_size(pod, source.size_limit_bytes)
                owner = f",gid={group}" if group is not None else ""
                self.tmpfs += ((path, f"mode={mode:o}{owner},size={size}"),)
            else:
                self.local += (path,)
                if source.size_limit_bytes is not None:
                    self.limits += ((volume.name, path, source.size_limit_bytes),)
            self.sources[volume.name] = path
        elif isinstance(source, HostPathVolume):
            check_host_path(source)
            self.sources[volume.name] = source.path
        elif has_content(volume):
            self._add_content(pod, volume, directory)
        elif isinstance(source, ImageVolume):
            self._add_image(pod, volume.name, source, directory)
        elif isinstance(source, PersistentVolumeClaimVolume):
            from podvisor.supervisor.pod.claims import ClaimError, ClaimStore

            claim = pod.config.claims.get(source.claim_name)
            one_pod = claim is not None and "ReadWriteOncePod" in claim.access_modes
            try:
                path, fd = (claims or ClaimStore()).hold(
                    pod.namespace, source.claim_name, one_pod=one_pod
                )
            except ClaimError as exc:
                raise ValueError(str(exc)) from None
            self.held.append(fd)
            group = _fs_group(pod)
            if group is not None:
                from podvisor.supervisor.pod.claims import give_to_group

                policy = pod.spec.all_containers[0].security_context.fs_group_change_policy
                mismatch = policy == "OnRootMismatch"
                give_to_group(fd, group, read_only=source.read_only, on_root_mismatch=mismatch)
            self.sources[volume.name] = path
            if source.read_only:
                self.read_only.add(volume.name)

    def _stage_propagated(self, pod: Pod, directory: str) -> list[str]:
        """A staging place for each volume a container mounts with mountPropagation."""
        made_in_memory = {path for path, _ in self.tmpfs} | {path for path, _ in self.overlays}
        problems = []
        for c in pod.spec.all_containers:
            for m in c.volume_mounts:
                if m.mount_propagation == "None" or m.name in self.staging:
                    continue
                source = self.sources[m.name]
                if source in made_in_memory:
                    problems.append(
                        f"container {c.name}: volumeMounts {m.name}: mountPropagation "
                        f"{m.mount_propagation} takes a volume on this machine's files "
                        "(hostPath, persistentVolumeClaim, an emptyDir on disk, configMap, "
                        f"downwardAPI); {m.name} is made in the pod's own mount namespace. "
                        "Nothing was started"
                    )
                    continue
                staging = os.path.join(directory, PROPAGATED, m.name)
                os.makedirs(os.path.dirname(staging), 0o700, exist_ok=True)
                if os.path.isdir(source):
                    os.mkdir(staging, 0o700)
                else:
                    os.close(os.open(staging, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                self.staging[m.name] = staging
                self.propagated += ((source, staging),)
        return problems

    def _add_content(self, pod: Pod, volume: Volume, directory: str) -> None:
        """A configMap's, secret's, downwardAPI's or projected volume's files, laid out."""
        from datetime import UTC, datetime  # here: a pod without such volumes never needs it

        files = files_of(volume, pod)
        entries = atomic_layout(files, data_directory_name(datetime.now(UTC)))
        path = os.path.join(directory, EMPTY_DIRS, volume.name)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        os.mkdir(path, 0o755)
        self.sources[volume.name] = path
        self.read_only.add(volume.name)  # as Kubernetes mounts them, whatever readOnly says
        if not _holds_a_secret(volume):
            write_layout(path, entries)
            if isinstance(volume.source, ConfigMapVolume):
                self.local += (path,)
            return
        size = sum(len(f.data) for f in files) + 4096 * (len(entries) + 1)
        self.tmpfs += ((path, f"mode=755,size={size}"),)
        self.files += tuple(_plan_file(path, e) for e in entries)

    def _add_image(self, pod: Pod, name: str, source: ImageVolume, directory: str) -> None:
        """An image's files, read-only: an overlay of its layers alone, made by the pod's init."""
        from podvisor.supervisor.images import ImageStore, PullPolicy

        store = ImageStore()
        policy = PullPolicy(source.pull_policy) if source.pull_policy else None
        secrets: Any = pod.pull_secrets()  # auths maps, as the manifest's reader checked them
        try:
            image = self.leases.enter_context(
                store.lease(store.ensure(source.reference, policy, secrets))
            )
        except ImageError as exc:
            raise ValueError(
                f"cannot have the image {source.reference}: {exc}. Load it into the store "
                f"({store.root}): `podvisor image load FILE` (or `podvisor image pull "
                f"{source.reference}`)"
            ) from None
        path = os.path.join(directory, EMPTY_DIRS, name)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        os.mkdir(path, 0o755)
        layers = ":".join(reversed(image.layer_dirs()))  # overlayfs lists the top layer first
        self.overlays += ((path, layers),)
        self.sources[name] = path
        self.read_only.add(name)


def outgrown(volumes: PodVolumes) -> str | None:
    """The kubelet's eviction message for the first emptyDir past its sizeLimit, or None."""
    from podvisor.supervisor.pod.claims import bytes_used

    for name, path, limit in volumes.limits:
        if bytes_used(path) > limit:
            return f'Usage of EmptyDir volume "{name}" exceeds the limit "{quantity(limit)}".'
    return None


def memory_volume_size(pod: Pod, size_limit: int | None) -> int:
    """A Memory emptyDir's size in bytes, as the kubelet gives it.

    The smallest of this machine's memory, the pod's memory limit when it has
    one, and the volume's sizeLimit: what a pod may keep in memory-backed files
    is what it may keep in memory, not the kernel's default of half the
    machine's, and `df` in the container shows what it would on a node.
    """
    size = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for bound in (pod.spec.memory_limit_bytes, size_limit):
        if bound:
            size = min(size, bound)
    return size


def quantity(count: int) -> str:
    """*count* bytes as Kubernetes writes a quantity: 64Mi, 1Gi, 1500."""
    for suffix, size in (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30),
                         ("Mi", 1 << 20), ("Ki", 1 << 10)):  # fmt: skip
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _holds_a_secret(volume: Volume) -> bool:
    source = volume.source
    if isinstance(source, SecretVolume):
        return True
    return isinstance(source, ProjectedVolume) and any(
        isinstance(p, SecretProjection) for p in source.sources
    )


def _plan_file(top: str, entry: Entry) -> protocol.PlanFile:
    path = os.path.join(top, entry.path)
    if isinstance(entry, VolumeLink):
        return protocol.PlanFile(path, "link", target=entry.target)
    if isinstance(entry, VolumeDirectory):
        mode = entry.mode | (0o2000 if entry.group is not None else 0)
        return protocol.PlanFile(path, "dir", mode, group=entry.group)
    data = base64.b64encode(entry.data).decode()
    return protocol.PlanFile(path, "file", entry.mode, data, entry.group)


def _fs_group(pod: Pod) -> int | None:
    """The pod's fsGroup: a pod-level field, which every container carries."""
    containers = pod.spec.all_containers
    return containers[0].security_context.fs_group if containers else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc.strerror)
    return str(exc)


def check_host_path(volume: HostPathVolume) -> None:
    """The kubelet's check of a hostPath by its type: ValueError (or OSError) when it fails.

    "" checks nothing and makes a missing directory, as container runtimes
    make a bind mount's missing source; DirectoryOrCreate makes it (and its
    parents) 0755, FileOrCreate an empty file 0644 in an existing directory.
    """
    path, kind = volume.path, volume.type
    if kind in ("", "DirectoryOrCreate") and not os.path.lexists(path):
        os.makedirs(path, 0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    if not kind:
        return
    what, test = _KINDS[kind]
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = 0
    if not test(mode):
        raise ValueError(f"hostPath type check failed: {path} is not {what}")


def _missing_targets(pod: Pod, sources: Mapping[str, str]) -> list[str]:
    """Mounts over the host's files need their paths there: a pod would otherwise write them."""
    from podvisor.supervisor.manifest.rootfs import on_image

    found: list[str] = []
    for c in pod.spec.all_containers:
        if on_image(pod, c):
            continue
        found.extend(
            f"container {c.name}: volumeMounts {m.name}: {m.mount_path} does not exist on this "
            "machine, and a container on the host's files gets its volumes over paths that "
            "exist (podvisor makes nothing on the host for them): make it, or run the "
            "container on an image"
            for m in c.volume_mounts
            if m.name in sources and not os.path.lexists(m.mount_path)
        )
    return found


def container_mounts(
    c: Container, volumes: PodVolumes, env: Mapping[str, str]
) -> tuple[protocol.Mount, ...]:
    """*c*'s volumeMounts as the init binds them, parents before what is inside them."""
    found: list[protocol.Mount] = []
    for m in c.volume_mounts:
        sub_path = expand(m.sub_path_expr, env) if m.sub_path_expr else m.sub_path
        propagated = m.mount_propagation != "None"
        found.append(
            protocol.Mount(
                name=m.name,
                source=volumes.staging[m.name] if propagated else volumes.sources[m.name],
                target=os.path.normpath(m.mount_path),
                sub_path=sub_path,
                readonly=m.read_only or m.name in volumes.read_only,
                recursive_readonly=m.recursive_read_only,
                propagation=m.mount_propagation,
            )
        )
    return tuple(sorted(found, key=lambda m: m.target.rstrip("/").count("/")))


def subpath_message(said: str, container: str) -> str:
    """The kubelet's message for a subPath it could not prepare, and the init's reason after it.

    *said*: the init's message, "volume NAME: subPath 'PATH': why".
    """
    _, _, detail = said.partition("volume ")
    name, _, why = detail.partition(": ")
    return f'failed to prepare subPath for volumeMount "{name}" of container "{container}": {why}'
