"""OCI images: the local store, loading and pulling, and layers unpacked for overlayfs.

    from podvisor.supervisor.images import ImageStore, PullPolicy
    image = ImageStore().ensure("busybox:1.36", PullPolicy.IF_NOT_PRESENT)
    image.config        # ImageConfig: entrypoint, cmd, env, working_dir, user, stop_signal
    image.layer_dirs()  # unpacked layers, lowest first (overlayfs lowerdirs, reversed)

`store` keeps images and their layers (`ImageStore`, `Image`), `reference`
reads image names and imagePullPolicy, `oci` the format's documents,
`sources` layouts and archives, `layers` unpacks one layer safely,
`registry` pulls through skopeo, `cli` is `podvisor image`.
"""

from __future__ import annotations

from podvisor.supervisor.images.oci import ImageConfig, Platform
from podvisor.supervisor.images.reference import PullPolicy, Reference, parse
from podvisor.supervisor.images.store import (
    Availability,
    Image,
    ImageState,
    ImageStore,
    default_root,
)

__all__ = [
    "Availability",
    "Image",
    "ImageConfig",
    "ImageState",
    "ImageStore",
    "Platform",
    "PullPolicy",
    "Reference",
    "default_root",
    "parse",
]
