"""Lazy imports: what the supervisor imports only once something asks for it.

Why
---
The supervisor lives as long as its pod, and what it imports it keeps: code
that only some pods or some requests use (cgroup statistics for a scrape,
the network's modules for a pod with a bridge, the manifest's reader) would
otherwise weigh on every pod for its whole life, and would be imported before
the pod starts. So those names are imported where they are first used, and
`podvisor run` does the reading and the network's making in forked children
(`podvisor.supervisor.forked`), which import what they need on the other core
while the supervisor imports its own modules. docs/performance.md has the
figures this buys.

How
---
A package whose names live in submodules lists, for each name, the submodule
it comes from, and sets its module ``__getattr__`` (PEP 562) to
`lazy_names`: the first ``package.name`` imports that submodule and keeps
the name in the package, so the next lookup is an ordinary one. Type checkers
and readers see the names imported normally, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, object]
) -> Callable[[str], object]:
    """A module ``__getattr__`` for *package*: each name of *homes* from its submodule.

    *namespace* is the package's ``globals()``, where a name is kept once
    imported.
    """

    def lookup(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    return lookup
