"""Which root file system a container runs on: its image's, or the host's (host mode).

The rule, in order:

1. `podvisor.io/rootfs.CONTAINER: host` or `image`, if the pod says so for that container;
2. `podvisor.io/rootfs: host` or `image`, if the pod says so for all of them;
3. the image's root when the container names an `image:`, else the host's.

So a manifest written for Kubernetes runs on its images, and a bundle of
programs from the host's (or the enclosing container's) file system either
leaves `image:` out or says `podvisor.io/rootfs: host`. `podvisor check`
prints the choice and the reason for each container.
"""

from __future__ import annotations

from enum import StrEnum

from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import Container, Pod


class RootMode(StrEnum):
    HOST = "host"
    IMAGE = "image"


@frozen
class RootChoice:
    mode: RootMode
    why: str


def root_choice(pod: Pod, c: Container) -> RootChoice:
    """Container *c*'s root, and why (the words `podvisor check` prints)."""
    return choice_for(c, pod.settings.rootfs)


def choice_for(c: Container, pod_rootfs: str | None) -> RootChoice:
    """`root_choice` given the pod's `podvisor.io/rootfs` (for the manifest's reader)."""
    if c.settings.rootfs is not None:
        why = f"podvisor.io/rootfs.{c.name}: {c.settings.rootfs}"
        return RootChoice(RootMode(c.settings.rootfs), why)
    if pod_rootfs is not None:
        return RootChoice(RootMode(pod_rootfs), f"podvisor.io/rootfs: {pod_rootfs}")
    if c.image:
        return RootChoice(RootMode.IMAGE, f"it names the image {c.image}")
    return RootChoice(RootMode.HOST, "it names no image")


def on_image(pod: Pod, c: Container) -> bool:
    return root_choice(pod, c).mode is RootMode.IMAGE
