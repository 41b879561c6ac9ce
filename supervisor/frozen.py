"""`@frozen` for the supervisor's classes: the one of `podvisor.init.frozen`.

The init's wire and the supervisor's model, lifecycle and wires make their
classes the same way; the implementation lives with the init, which may
import only the standard library.
"""

from __future__ import annotations

from podvisor.init.frozen import frozen

__all__ = ["frozen"]
