"""Removing a directory tree without following links.

Its own module, beside the layers' unpacking that needs it too: a pod's
supervisor removes its containers' instance directories with it, and would
otherwise hold tarfile and hashlib (OpenSSL's libcrypto with it) for the
pod's whole life, and import them on a container's first start.

Standard library only, and only its cheap part.
"""

from __future__ import annotations

import os
import stat

__all__ = ["remove_tree"]


def remove_tree(path: str) -> None:
    """Remove *path* and everything beneath it, never following a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                os.unlink(entry.path)
    os.rmdir(path)
