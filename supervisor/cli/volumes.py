"""`podvisor volume ls | rm`: the PersistentVolumeClaims' folders kept on this machine.

`add_command` adds `volume` to podvisor's parser; `run` carries out the verb.
Errors print their message and exit 1, as `podvisor image` does.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from podvisor.supervisor.cli.output import columns, disk_size

if TYPE_CHECKING:
    import argparse

    from podvisor.supervisor.pod.claims import Claim, ClaimStore

_DESCRIPTION = """\
The folders of the pods' PersistentVolumeClaims: $PODVISOR_VOLUMES, else
/var/lib/podvisor/volumes (or --root), one folder NAMESPACE/NAME a claim. A
pod's first run makes its claims' folders; they stay, data and all, for every
later pod that names the claim, until `rm` removes them (never while a running
pod uses one)."""


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `volume` and its verbs to podvisor's sub-parsers."""
    import argparse

    volume = sub.add_parser(
        "volume",
        help="list and remove the folders kept for PersistentVolumeClaims",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    volume.add_argument("--root", metavar="DIR", help="the claims' folder (default: see above)")
    volume.set_defaults(ctl=run)  # the parser's caller runs what `ctl` names
    verbs = volume.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("ls", help="list the claims: namespace, name, size, in use")
    ls.add_argument("-o", "--output", choices=("text", "json"), default="text", help="format")
    ls.add_argument("-q", "--quiet", action="store_true", help="print the names only")
    rm = verbs.add_parser("rm", help="remove claims' folders and their data")
    rm.add_argument("claims", nargs="+", metavar="NAME", help="a claim's name, or NAMESPACE/NAME")
    rm.add_argument(
        "-n", "--namespace", default="default", help="the claims' namespace (default: default)"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out `podvisor volume VERB`."""
    from podvisor.supervisor.pod.claims import ClaimStore

    store = ClaimStore(args.root)
    return _ls(store, args) if args.verb == "ls" else _rm(store, args)


def _ls(store: ClaimStore, args: argparse.Namespace) -> int:
    try:
        claims = store.claims()
    except OSError as error:
        print(f"podvisor volume ls: {store.root}: {error.strerror}", file=sys.stderr)
        return 1
    if args.quiet:
        for c in claims:
            print(_name(c))
    elif args.output == "json":
        print(json.dumps([_json(c) for c in claims], indent=2))
    else:
        rows = [("NAMESPACE", "NAME", "SIZE", "IN USE")]
        rows += [
            (c.namespace, c.name, disk_size(c.bytes_used), "yes" if c.in_use else "no")
            for c in claims
        ]
        print(columns(rows), end="")
    return 0


def _rm(store: ClaimStore, args: argparse.Namespace) -> int:
    from podvisor.supervisor.pod.claims import ClaimError

    status = 0
    for given in args.claims:
        namespace, _, name = given.rpartition("/")
        try:
            path = store.remove(namespace or args.namespace, name)
        except (ClaimError, OSError) as error:
            print(f"podvisor volume rm: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"removed {namespace or args.namespace}/{name} ({path})")
    return status


def _name(c: Claim) -> str:
    return c.name if c.namespace == "default" else f"{c.namespace}/{c.name}"


def _json(c: Claim) -> dict[str, object]:
    return {
        "namespace": c.namespace,
        "name": c.name,
        "path": c.path,
        "bytes": c.bytes_used,
        "inUse": c.in_use,
    }
