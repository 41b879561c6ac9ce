"""How much a manifest may ask of the loader: its size, and what its aliases expand to.

A YAML alias (`*name`) stands for the whole node its anchor (`&name`)
marks. The composed nodes share it, so composing costs nothing more, but
everything that walks the manifest after that (merge keys, the checks, the
plan) walks it once per use. Aliases of aliases multiply: a few hundred
bytes can stand for a billion nodes ("billion laughs"). So after composing,
each document's size *as expanded* is counted, in one pass over the shared
nodes (each counted once, its expansion remembered), and a document whose
aliases more than double it, beyond `ALIAS_ALLOWANCE` nodes, is refused,
with the line of the anchor used most.
"""

from __future__ import annotations

from typing import Final

import yaml

from podvisor.supervisor.errors import ConfigError, Problem

#: The largest manifest read, in bytes: Kubernetes stores an object of at most
#: 1.5 MiB, so a larger file could never be applied there either.
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
#: Nodes the aliases of a document may add beyond the document's own count.
ALIAS_ALLOWANCE: Final = 10_000


def check_size(source: str, text: str) -> None:
    """ConfigError when *text* is over `MAX_MANIFEST_BYTES`."""
    if len(text) > MAX_MANIFEST_BYTES:
        limit = MAX_MANIFEST_BYTES // (1024 * 1024)
        raise ConfigError(
            [
                Problem(
                    source,
                    0,
                    0,
                    "",
                    f"the manifest is over {limit} MiB; split it into several files "
                    "(`podvisor run` takes a folder) or move data into ConfigMaps",
                )
            ]
        )


def check_aliases(source: str, document: yaml.Node) -> None:
    """ConfigError, with the worst anchor's line, when aliases blow *document* up."""
    expanded: dict[int, int] = {}
    uses: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    stack: list[tuple[yaml.Node, bool]] = [(document, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if not children_done:
            uses[key] = uses.get(key, 0) + 1
            if key in nodes:
                continue  # shared: an alias
            nodes[key] = node
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
            continue
        expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
    total = expanded[id(document)]
    if total <= 2 * len(nodes) + ALIAS_ALLOWANCE:
        return
    worst = max(
        (k for k in uses if uses[k] > 1), key=lambda k: (uses[k] - 1) * expanded[k], default=None
    )
    mark = nodes[worst].start_mark if worst is not None else None
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    raise ConfigError(
        [
            Problem(
                source,
                line,
                column,
                "",
                f"YAML aliases expand this document to {total:,} nodes from {len(nodes):,} "
                f"(at most twice its own nodes plus {ALIAS_ALLOWANCE:,} are read); the anchor "
                "here is used most: write the repeated parts out, or use fewer aliases",
            )
        ]
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
