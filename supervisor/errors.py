"""Every error podvisor raises on purpose, rooted at one base class.

Each says what went wrong, where, and how to fix it: the message is what a
user reads, so it is written for them. Exit statuses follow the table in the
README: 2 for a configuration error (nothing was started), 125 for
podvisor's own failure.
"""

from __future__ import annotations

from podvisor.supervisor.frozen import frozen

#: Exit status for a manifest or command-line error: nothing was started.
EXIT_CONFIG = 2
#: Exit status for podvisor's own failure (as `docker run` uses it).
EXIT_PODVISOR = 125


class PodvisorError(Exception):
    """Raised when podvisor cannot do what it was asked; the base of all the others."""

    exit_status: int = EXIT_PODVISOR


# --- Configuration -------------------------------------------------------------


@frozen
class Problem:
    """One finding in a manifest: where it is and what is wrong with it."""

    source: str  # file name, or "<stdin>"
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # e.g. "spec.containers[0].resources.limits.memory"
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(PodvisorError):
    """Raised when a manifest, an annotation or a flag is wrong; nothing has started."""

    exit_status = EXIT_CONFIG

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", 0, 0, "", problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class QuantityError(PodvisorError, ValueError):
    """Raised when a text is not a Kubernetes quantity (`500m`, `128Mi`, `1G`, `1e3`)."""

    exit_status = EXIT_CONFIG


# --- Running a pod ---------------------------------------------------------------


class ForkedCallError(PodvisorError):
    """Raised when a forked child ends without the result it was forked for (`forked`).

    It was killed, or it raised: its traceback is on stderr.
    """


class InitDiedError(PodvisorError):
    """Raised when the pod's init exits or the channel to it breaks while the pod runs."""


class NamespaceError(PodvisorError):
    """Raised when the pod's namespaces cannot be made and no fallback applies."""


class VolumeContentError(PodvisorError):
    """Raised when a configMap, secret, downwardAPI or projected volume's files cannot be made.

    A ConfigMap, Secret or key it names is not there and is not `optional: true`,
    or two of its paths collide. The message is the kubelet's
    (`configmap references non-existent config key: KEY`); Kubernetes would keep
    the container waiting for it, so the container is not started: add the key
    or the object to the manifest's file (or --config), or mark it optional.
    """

    reason = "CreateContainerConfigError"

    def __init__(self, volume: str, messages: list[str]) -> None:
        self.volume = volume
        self.messages = messages
        # The kubelet joins several failures as its error aggregate does: [a, b].
        joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {joined}')


# --- cgroups -----------------------------------------------------------------------


class CgroupError(PodvisorError):
    """Raised when a cgroup cannot be made, limited or removed."""


# --- Network -----------------------------------------------------------------------


class NetworkError(PodvisorError):
    """Raised when the pod's network cannot be set up as the manifest asks."""


# --- Probes and hooks (sidecars/) ------------------------------------------------------


class ProbeError(PodvisorError):
    """Raised when a probe or hook cannot be carried out as written.

    For example: a port name that no port of the container has, or a server
    that does not answer in HTTP. A probe counts it as a failure.
    """


# --- Metrics and control -------------------------------------------------------------


class AddressInUseError(PodvisorError):
    """Raised when an address podvisor must listen on (metrics, hostPort) is taken."""


class PodNameInUseError(PodvisorError):
    """Raised when `podvisor run` is given a pod whose name a running pod on this host has.

    Nothing was started: rename the pod (metadata.name) or stop the running one.
    """

    exit_status = EXIT_CONFIG


class ControlError(PodvisorError):
    """Raised when a request on a pod's control socket cannot be carried out.

    `podvisor ps/status/logs/exec/restart/stop/kill/pause/resume` print its
    message and exit 1: no such pod or container, permission denied (the pod
    belongs to another user), a supervisor that does not answer, a container
    that is not running.
    """

    exit_status = 1


class ControlMessageError(ControlError):
    """Raised when a message on a pod's control socket is not one the other end knows.

    An unknown request or reply (the pod's podvisor and the command are
    different versions: run the command of the podvisor that started the pod),
    or a field that is missing or of the wrong type; the message names both.
    """


# --- Images ----------------------------------------------------------------------------


class ImageError(PodvisorError):
    """Raised when an image cannot be loaded, pulled, found or removed.

    The base of the errors below; `podvisor image` prints the message and exits 1.
    """

    exit_status = 1


class ImageReferenceError(ImageError):
    """Raised when a text is not an image reference (`busybox:1.36`, `ghcr.io/o/app@sha256:...`)."""

    exit_status = EXIT_CONFIG


class ImageNotFoundError(ImageError):
    """Raised when the store holds no image by that reference and may not pull one."""


class ImageFormatError(ImageError):
    """Raised when an image layout, archive or manifest is not one podvisor reads.

    A digest that does not match its blob, a manifest of a kind podvisor does
    not know (Docker's schema 1, an encrypted layer), a file that is neither
    an OCI layout nor an OCI or Docker archive.
    """


class LayerError(ImageFormatError):
    """Raised when a layer would write outside its own directory, or cannot be unpacked.

    An entry with `..` or an absolute path, one that goes through a symbolic
    link, a hard link to what the layer does not hold. Nothing of the layer is
    kept: its directory is removed before this is raised.
    """


class PullError(ImageError):
    """Raised when a registry refuses or fails a pull (auth, no such image, the network)."""


class ImageInUseError(ImageError):
    """Raised when `podvisor image rm` is asked to remove an image a running pod uses."""
