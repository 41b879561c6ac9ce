"""The pod's containers on their images' roots: images made ready, upper directories kept.

How this works
--------------
`PodRoots.make` runs before anything of the pod is made. For each container
on an image (`manifest.rootfs.root_choice`) it asks the store for the image
as imagePullPolicy says (`ImageStore.ensure`), and leases it for the pod's
life so that `image rm` and `prune` keep it. An image that cannot be had
is a `ConfigError` (exit 2, nothing started) that names the image, what was
tried, and the two ways out.

Each start of a container's program gets a fresh instance directory,
``<store>/containers/POD_UID/CONTAINER/N/`` with ``upper``, ``work`` and
``root`` (the overlay's mount point), and the previous instance's goes: a
restarted container starts from its image again, as in Kubernetes. The
overlay itself is mounted by the container's process in its own mount
namespace (`podvisor.init.rootfs`), so no mount of it ever exists on the
host, and it goes with the container's last process.

A pod with emptyDirs (or configMap, secret, downwardAPI and projected
volumes) has that directory too, images or not: they live in it
(`volumes.py`). The pod's directory goes when the pod ends. While the pod runs, the
supervisor holds a lock on its ``owner`` file; a directory whose lock
nobody holds is left by a supervisor that was killed, and the next pod's
`remove_stale` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from podvisor.init import protocol
from podvisor.supervisor.errors import ConfigError, ImageError, Problem
from podvisor.supervisor.flocks import flock_held
from podvisor.supervisor.manifest.rootfs import on_image

if TYPE_CHECKING:
    from podvisor.supervisor.images import Image, ImageStore
    from podvisor.supervisor.manifest.model import Container, Pod

#: The most of a termination message that is kept, as the kubelet keeps it.
MESSAGE_MAX = 4096
#: FallbackToLogsOnError: the log's last lines, at most so many and so many bytes.
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048

#: The pod's directories, beside the images: upper directories may hold set-id
#: programs and devices, as layers do, in a store only root can enter.
CONTAINERS = "containers"


@dataclass
class PodRoots:
    """The images the pod's containers run on, and their instances' upper directories."""

    store: ImageStore | None
    images: dict[str, Image]  # container name: its image
    directory: str  # <store>/containers/POD_UID; "" when no container has an image
    instances: dict[str, int] = field(default_factory=dict)  # container: its last number
    _held: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def make(cls, pod: Pod) -> PodRoots:
        """Every image the pod needs, ensured and leased; ConfigError if one cannot be had."""
        wanted = [c for c in pod.spec.all_containers if on_image(pod, c)]
        if not wanted:
            messages = any(host_message_target(pod, c) for c in pod.spec.all_containers)
            if not _needs_directory(pod) and not messages:
                return cls(None, {}, "")
            roots = cls(None, {}, os.path.join(default_store_root(), CONTAINERS, pod.uid))
            roots._own_directory()
            return roots
        from podvisor.supervisor.images import ImageStore, PullPolicy

        store = ImageStore()
        roots = cls(store, {}, os.path.join(store.root, CONTAINERS, pod.uid))
        secrets: Any = pod.pull_secrets()  # auths maps, as the manifest's reader checked them
        try:
            for c in wanted:
                assert c.image is not None  # the manifest's rules: image mode needs one
                policy = PullPolicy(c.image_pull_policy) if c.image_pull_policy else None
                try:
                    image = store.ensure(c.image, policy, secrets)
                except ImageError as exc:
                    raise _problem(pod, unavailable(c, exc, store.root)) from exc
                roots.images[c.name] = roots._held.enter_context(store.lease(image))
                try:
                    _check_runnable(pod, c, image)
                except ValueError as exc:
                    raise _problem(pod, str(exc)) from None
            roots._own_directory()
        except BaseException:
            roots.close()
            raise
        return roots

    def _own_directory(self) -> None:
        os.makedirs(os.path.dirname(self.directory), 0o700, exist_ok=True)
        os.makedirs(self.directory, 0o700, exist_ok=True)
        fd = os.open(f"{self.directory}/owner", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._held.callback(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)

    def image_of(self, c: Container) -> Image | None:
        return self.images.get(c.name)

    # --- Per instance ------------------------------------------------------------------

    def fresh(self, c: Container) -> protocol.Rootfs:
        """A new instance's root for *c*: an empty upper directory; the previous one goes."""
        image = self.images[c.name]
        number = self.instances.get(c.name, 0) + 1
        self.instances[c.name] = number
        base = os.path.join(self.directory, c.name)
        previous = os.path.join(base, str(number - 1))
        _remove(previous)
        instance = os.path.join(base, str(number))
        for sub in ("upper", "work", "root"):
            os.makedirs(os.path.join(instance, sub), 0o755 if sub == "upper" else 0o700)
        # The upper directory is the container's /: mode 0755, as an image's root is.
        # The termination message file is the instance's own, writable by any
        # user the container runs as (as the kubelet makes it).
        message = os.path.join(instance, "termination-log")
        os.close(os.open(message, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        os.chmod(message, 0o666)  # noqa: S103 (any user of the container writes it)
        return protocol.Rootfs(
            lower=tuple(reversed(image.layer_dirs())),  # overlayfs lists the top layer first
            upper=os.path.join(instance, "upper"),
            work=os.path.join(instance, "work"),
            binds=((message, c.termination_message_path),),
        )

    def fresh_message(self, c: Container) -> str:
        """On the host's files: a new instance's own termination message file (the image's
        root has it in `fresh`); the previous instance's goes."""
        number = self.instances.get(c.name, 0) + 1
        self.instances[c.name] = number
        base = os.path.join(self.directory, c.name)
        _remove(os.path.join(base, str(number - 1)))
        instance = os.path.join(base, str(number))
        os.makedirs(instance, 0o700)
        message = os.path.join(instance, "termination-log")
        os.close(os.open(message, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        os.chmod(message, 0o666)  # noqa: S103 (any user of the container writes it)
        return message

    def termination_message(self, c: Container) -> str:
        """What the current instance left in its termination message file: 4 KiB at most."""
        number = self.instances.get(c.name)
        if number is None:
            return ""
        path = os.path.join(self.directory, c.name, str(number), "termination-log")
        try:
            with open(path, "rb") as f:
                return f.read(MESSAGE_MAX).decode(errors="replace")
        except OSError:
            return ""

    def upper_of(self, c: Container) -> str | None:
        """The current instance's upper directory: its writable layer (for the metrics).

        None on the host's files, where an instance has a termination message alone."""
        number = self.instances.get(c.name)
        if number is None or c.name not in self.images:
            return None
        return os.path.join(self.directory, c.name, str(number), "upper")

    # --- The end -----------------------------------------------------------------------

    def close(self) -> None:
        """Remove the pod's directories and give up its leases (its processes are gone)."""
        if self.directory:
            _remove(self.directory)
        self._held.close()


def host_message_target(pod: Pod, c: Container) -> bool:
    """Whether *c*, on the host's files, gets a termination message file of its own.

    Its own file is bound over terminationMessagePath in its mount namespace,
    which needs a file there to bind over: podvisor makes nothing on the host
    (the default, /dev/termination-log, would be made in the host's /dev).
    So only a regular file that exists gets it, and only when no volume of
    the container covers it.
    """
    path = c.termination_message_path
    if on_image(pod, c) or not os.path.isfile(path) or os.path.islink(path):
        return False
    return not any(under(path, m.mount_path) for m in c.volume_mounts)


def under(path: str, top: str) -> bool:
    """Whether *path* is *top* or beneath it."""
    top = top.rstrip("/")
    return path.rstrip("/") == top or path.startswith(top + "/")


def _needs_directory(pod: Pod) -> bool:
    """Whether the pod keeps files of its own on this machine: its emptyDirs, its
    configMap, secret, downwardAPI and projected volumes, its image volumes' mount points,
    the staging places of its volumes mounted with mountPropagation."""
    if pod.spec.volumes:  # the volumes' code is kept by a pod that has some
        from podvisor.supervisor.manifest.model import EmptyDirVolume, ImageVolume
        from podvisor.supervisor.pod.volume_files import has_content

        own = (EmptyDirVolume, ImageVolume)
        if any(isinstance(v.source, own) or has_content(v) for v in pod.spec.volumes):
            return True
    mounts = (m for c in pod.spec.all_containers for m in c.volume_mounts)
    return any(m.mount_propagation != "None" for m in mounts)


def _problem(pod: Pod, message: str) -> ConfigError:
    return ConfigError([Problem(pod.source, 0, 0, "", message)])


def _check_runnable(pod: Pod, c: Container, image: Image) -> None:
    """What the kubelet would refuse at the container's creation, refused before any start."""
    from podvisor.supervisor.pod import image_config

    if not image_config.says_what_to_run(c, image.config):
        raise ValueError(
            f"container {c.name}: its image {c.image} says nothing to run (no Entrypoint, "
            "no Cmd): give the container a command"
        )
    sc = c.security_context
    why = image_config.runs_as_root(image.config)
    if sc.run_as_non_root and sc.run_as_user is None and why is not None:
        raise ValueError(
            f"container {c.name}: CreateContainerConfigError: container has runAsNonRoot and "
            f'{why} (pod: "{pod.name}_{pod.namespace}({pod.uid})", container: {c.name}): '
            "set the container's runAsUser to a uid other than 0, or use an image whose "
            "User is a numeric uid other than 0"
        )
    layers = tuple(reversed(image.layer_dirs()))
    try:
        image_config.user(image.config, sc.run_as_user, sc.run_as_group, layers)
    except LookupError as exc:
        raise ValueError(f"container {c.name}: {exc}: set runAsUser") from None
    if not image.layers:
        raise ValueError(f"container {c.name}: its image {c.image} has no layers: no root")


def unavailable(c: Container, exc: ImageError, store: str) -> str:
    """The message for an image that cannot be had: which, what was tried, the ways out."""
    return (
        f"container {c.name}: cannot have its image {c.image}: {exc}. Nothing was started. "
        f"Either load the image into the store ({store}): `podvisor image load FILE` "
        f"(or `podvisor image pull {c.image}`); or run the container on the host's file "
        f"system: annotate the pod with podvisor.io/rootfs.{c.name}: host "
        "(or podvisor.io/rootfs: host for every container)"
    )


# --- The image's StopSignal ------------------------------------------------------------


def with_image_stop_signals(pod: Pod, images: dict[str, Image]) -> Pod:
    """*pod* with each image's StopSignal for a container whose manifest gives none
    (neither lifecycle.stopSignal nor podvisor.io/stop-signal), as Kubernetes applies it."""
    import dataclasses

    changed = {}
    for c in pod.spec.all_containers:
        image = images.get(c.name)
        number = _signal(image.config.stop_signal) if image is not None else None
        if number is not None and not c.settings.stop_signal_given:
            settings = dataclasses.replace(c.settings, stop_signal=number)
            changed[c.name] = dataclasses.replace(c, settings=settings)
    if not changed:
        return pod
    spec = dataclasses.replace(
        pod.spec,
        containers=tuple(changed.get(c.name, c) for c in pod.spec.containers),
        init_containers=tuple(changed.get(c.name, c) for c in pod.spec.init_containers),
    )
    return dataclasses.replace(pod, spec=spec)


def _signal(text: str | None) -> int | None:
    """An image's StopSignal (`SIGQUIT`, `QUIT`, `3`); None when unset or unknown."""
    import signal

    if not text:
        return None
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    found = signal.Signals.__members__.get(name)
    return int(found) if found is not None else None


# --- The writable layer, for the metrics -------------------------------------------------


@dataclass(frozen=True)
class LayerUsage:
    """A container's writable layer: what it holds, and the file system it is on."""

    bytes_used: int  # allocated blocks, as du and cAdvisor count them
    device: str  # major:minor of the file system
    bytes_total: int
    inodes_total: int
    inodes_free: int


def writable_layer(pod_uid: str, container: str, store_root: str | None = None) -> str | None:
    """The upper directory of *container*'s current instance, or None (host mode, not started)."""
    base = os.path.join(store_root or default_store_root(), CONTAINERS, pod_uid, container)
    try:
        numbers = [int(n) for n in os.listdir(base) if n.isdigit()]
    except OSError:
        return None
    return os.path.join(base, str(max(numbers)), "upper") if numbers else None


def layer_usage(upper: str) -> LayerUsage | None:
    """What *upper* holds (its files' blocks, hard links once), or None once it is gone."""
    try:
        top = os.lstat(upper)
        fs = os.statvfs(upper)
    except OSError:
        return None
    from podvisor.supervisor.pod.claims import bytes_used

    # A restart may remove what the walk has yet to reach: it counts what is left.
    used = top.st_blocks * 512 + bytes_used(upper)
    device = f"{os.major(top.st_dev)}:{os.minor(top.st_dev)}"
    return LayerUsage(used, device, fs.f_blocks * fs.f_frsize, fs.f_files, fs.f_ffree)


def remove_stale(store_root: str | None = None) -> list[str]:
    """Remove the pod directories of supervisors that died; what was removed."""
    top = os.path.join(store_root or default_store_root(), CONTAINERS)
    try:
        names = sorted(os.listdir(top))
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(top, name)
        if _abandoned(path):
            _remove(path)
            removed.append(path)
    return removed


def default_store_root() -> str:
    """`images.default_root()`, without importing the store (and its shutil) into every
    supervisor: a pod in host mode only looks for what a killed supervisor left."""
    return os.environ.get("PODVISOR_IMAGE_STORE") or "/var/lib/podvisor/images"


def _abandoned(path: str) -> bool:
    """Whether nobody holds *path*'s owner lock (its supervisor is gone)."""
    try:
        # No owner file: killed before it took the lock, so nothing of it ran.
        return not flock_held(f"{path}/owner", missing=False)
    except OSError:
        return False


def _remove(path: str) -> None:
    from podvisor.supervisor.trees import remove_tree

    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)
