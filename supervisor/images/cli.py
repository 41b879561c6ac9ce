"""`podvisor image ls | load | pull | rm | prune | inspect`: the local image store.

`add_command` adds `image` to podvisor's parser; `run` carries out the verb.
Errors print their message and exit 1 (2 for a reference that is no
reference), as the control commands do.
"""

from __future__ import annotations

import calendar
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from podvisor.supervisor.cli.output import columns, disk_size
from podvisor.supervisor.errors import ImageError

if TYPE_CHECKING:
    import argparse

    from podvisor.supervisor.images.store import Image, ImageStore

_DESCRIPTION = """\
The images containers run from, in a local store: $PODVISOR_IMAGE_STORE, else
/var/lib/podvisor/images (or --store). `load` reads an OCI layout directory,
an OCI archive or a Docker archive (docker save, podman save, skopeo copy to
oci:, oci-archive: or docker-archive:); `pull` fetches from a registry with
skopeo, with the credentials of $REGISTRY_AUTH_FILE or ~/.docker/config.json.
Images stay until `rm` or `prune`."""


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `image` and its verbs to podvisor's sub-parsers."""
    import argparse

    image = sub.add_parser(
        "image",
        help="list, load, pull and remove the images containers run from",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    image.add_argument("--store", metavar="DIR", help="the image store (default: see above)")
    image.set_defaults(ctl=run)  # the parser's caller runs what `ctl` names
    verbs = image.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("ls", help="list the images: name, ID, platform, size, age")
    ls.add_argument("-o", "--output", choices=("text", "json"), default="text", help="format")
    ls.add_argument("-q", "--quiet", action="store_true", help="print the image IDs only")
    load = verbs.add_parser("load", help="load an OCI layout, OCI archive or Docker archive")
    load.add_argument("path", metavar="PATH", help="a layout directory or an archive")
    load.add_argument(
        "--name", metavar="IMAGE", help="name the loaded image (the source holds one)"
    )
    pull = verbs.add_parser("pull", help="pull an image from its registry")
    pull.add_argument("reference", metavar="IMAGE", help="busybox:1.36, ghcr.io/o/app@sha256:...")
    pull.add_argument(
        "--platform", metavar="OS/ARCH", help="another platform than this machine's (linux/arm64)"
    )
    pull.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a registry to reach without TLS verification (repeatable)",
    )
    rm = verbs.add_parser("rm", help="remove a name; the image goes with its last one")
    rm.add_argument("references", nargs="+", metavar="IMAGE", help="a name, an ID or a digest")
    verbs.add_parser("prune", help="remove unnamed images, unused layers and leftovers")
    inspect = verbs.add_parser("inspect", help="print an image's record and config as JSON")
    inspect.add_argument("reference", metavar="IMAGE", help="a name, an ID or a digest")


def run(args: argparse.Namespace) -> int:
    """Carry out `podvisor image VERB`."""
    from podvisor.supervisor.images.store import ImageStore

    store = ImageStore(args.store)
    try:
        return _VERBS[args.verb](store, args)
    except ImageError as error:
        print(f"podvisor image {args.verb}: {error}", file=sys.stderr)
        return error.exit_status
    except OSError as error:
        print(f"podvisor image {args.verb}: {store.root}: {error}", file=sys.stderr)
        return 1


def _ls(store: ImageStore, args: argparse.Namespace) -> int:
    images = store.images()
    if args.quiet:
        for image in images:
            print(image.id)
    elif args.output == "json":
        print(json.dumps([_json(i) for i in images], indent=2))
    else:
        print(_table(images), end="")
    return 0


def _table(images: list[Image]) -> str:
    from podvisor.supervisor.images.reference import familiar

    rows = [("IMAGE", "ID", "PLATFORM", "SIZE", "CREATED")]
    for image in images:
        for name in image.names or ("<none>",):
            shown = familiar(name) if name != "<none>" else name
            created = _age(image.created)
            rows.append((shown, image.id[7:19], image.platform, disk_size(image.size), created))
    return columns(rows)


def _age(created: str | None) -> str:
    if not created:
        return "-"
    try:
        then = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return created
    seconds = time.time() - then
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now" if seconds >= 0 else created[:10]


def _json(image: Image) -> dict[str, Any]:
    c = image.config
    return {
        "id": image.id,
        "names": list(image.names),
        "digests": list(image.digests),
        "manifest": image.manifest,
        "platform": image.platform,
        "size": image.size,
        "created": image.created,
        "layers": list(image.layers),
        "config": {
            "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
            "Cmd": list(c.cmd) if c.cmd is not None else None,
            "Env": list(c.env),
            "WorkingDir": c.working_dir,
            "User": c.user,
            "StopSignal": c.stop_signal,
            "Labels": dict(c.labels),
        },
    }


def _load(store: ImageStore, args: argparse.Namespace) -> int:
    for image in store.load(args.path, args.name):
        names = ", ".join(image.names) or "no name (give one with --name)"
        print(f"loaded {image.id}: {names}")
    return 0


def _pull(store: ImageStore, args: argparse.Namespace) -> int:
    from podvisor.supervisor.images.oci import Platform

    platform = Platform.parse(args.platform) if args.platform else None
    image = store.pull(args.reference, platform=platform, insecure=args.insecure_registry)
    print(f"pulled {image.id} as {args.reference}")
    return 0


def _rm(store: ImageStore, args: argparse.Namespace) -> int:
    status = 0
    for reference in args.references:
        try:
            for line in store.remove(reference):
                print(line)
        except ImageError as error:
            print(f"podvisor image rm: {error}", file=sys.stderr)
            status = error.exit_status
    return status


def _prune(store: ImageStore, args: argparse.Namespace) -> int:
    for line in store.prune():
        print(line)
    return 0


def _inspect(store: ImageStore, args: argparse.Namespace) -> int:
    image = store.resolve(args.reference)
    print(json.dumps(_json(image) | {"layer_dirs": list(image.layer_dirs())}, indent=2))
    return 0


_VERBS = {
    "ls": _ls,
    "load": _load,
    "pull": _pull,
    "rm": _rm,
    "prune": _prune,
    "inspect": _inspect,
}
