"""podvisor's version, as its installed distribution says."""

from __future__ import annotations


def version() -> str:
    # Imported here, not at the top: importlib.metadata brings zipfile, email
    # and csv, tens of milliseconds that `podvisor run` would pay before its
    # pod starts; only `podvisor version` and a /metrics scrape ask for it.
    from importlib import metadata

    try:
        return metadata.version("podvisor")
    except metadata.PackageNotFoundError:
        return "0+unknown"
