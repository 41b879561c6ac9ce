"""How `podvisor ps`, `status` and `logs` print: tables, ages, quantities, colours.

Ages read as kubectl's do (``45s``, ``3m12s``, ``5h4m``, ``2d3h``); memory in
Kubernetes' binary units (``45Mi``), CPU in cores or millicores (``250m``).
Colours only on a terminal, and never with ``NO_COLOR`` set (no-color.org) or
``TERM=dumb``. The store listings (`image ls`, `volume ls`) print plain
columns and sizes in decimal units, as podman's do. Standard library only,
like the rest of the client.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Sequence
from typing import TextIO

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "blue": "34", "dim": "2", "bold": "1"}
#: Ei, Pi, Ti, Gi, Mi, Ki: each 1024 times the next.
_UNITS = tuple((unit, 1 << 10 * (6 - i)) for i, unit in enumerate("EPTGMK"))
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: What each word of a phase, state or reason looks like.
WORD_COLOURS = {
    "Running": "green",
    "running": "green",
    "Succeeded": "green",
    "Completed": "green",
    "Pending": "yellow",
    "waiting": "yellow",
    "Terminating": "yellow",
    "paused": "blue",
    "Paused": "blue",
    "Failed": "red",
    "terminated": "red",
    "Error": "red",
    "OOMKilled": "red",
    "CrashLoopBackOff": "red",
    "Unknown": "red",
}

Cell = str | tuple[str, str | None]  # text, or (text, colour)


class Style:
    """Paints text for one stream, or leaves it plain when that stream is no terminal."""

    def __init__(self, stream: TextIO) -> None:
        env = os.environ
        self.enabled = (
            stream.isatty() and "NO_COLOR" not in env and env.get("TERM", "") not in ("dumb", "")
        )

    def paint(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None or not text:
            return text
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"

    def word(self, text: str) -> str:
        """*text* in the colour its first word calls for."""
        return self.paint(text, WORD_COLOURS.get(text.split(" ", 1)[0].rstrip(":")))


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style) -> str:
    """Columns aligned on the text as seen: padding is counted before any colour."""
    cells = [[_split(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        padded = [style.paint(t.ljust(w), c) for (t, c), w in zip(row, widths, strict=True)]
        lines.append("   ".join(padded).rstrip())
    return "\n".join(lines)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Plain rows, the first the headers, aligned two spaces apart, each line ended."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in rows
    )


def _split(cell: Cell) -> tuple[str, str | None]:
    if isinstance(cell, tuple):
        return cell
    return cell, WORD_COLOURS.get(cell.split(" ", 1)[0].rstrip(":"))


# --- Words for numbers ----------------------------------------------------------------


def age(seconds: float | None) -> str:
    """``45s``, ``3m12s``, ``5h4m``, ``2d3h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def since(when: float | None, now: float) -> str:
    """How long ago Unix time *when* was, as an age."""
    return "-" if when is None else age(now - when)


def memory(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in _UNITS:
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}i" if value >= 10 else f"{value:.1f}{unit}i"
    return str(n)


def disk_size(count: int) -> str:
    """Bytes on disk in decimal units, as podman lists them: ``5.3 MB``, ``812 B``."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def cores(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1:
        return f"{n:.2f}".rstrip("0").rstrip(".")
    return f"{round(n * 1000)}m"


def against(used: str, limit: str | None) -> str:
    """``45Mi/128Mi``, or just ``45Mi`` without a limit."""
    return used if limit in (None, "-") else f"{used}/{limit}"


def percent(used: float | None, limit: float | None) -> str:
    if used is None or not limit:
        return ""
    return f" ({100 * used / limit:.0f}%)"


def timestamp(when: float) -> str:
    """RFC 3339 in UTC, to the nanosecond's worth a float holds, as kubectl logs --timestamps."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def parse_duration(text: str) -> float:
    """``10s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` (Go's durations, and days): seconds."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"not a duration: {text!r} (try 10s, 5m, 1h30m or 2d)")
    return total
