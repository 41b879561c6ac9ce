"""Images the tests make themselves: tar layers, OCI layouts, OCI and Docker archives.

The base image is Debian's busybox-static: /bin/busybox and a symbolic link
per applet the tests use. Every blob is written as an OCI layout holds it,
named by its digest, so the store's checks see what a real tool writes.

The images examples/ runs on are built here too, for the tests and for
`make images` alike (`python -m tests.images.build DIR` writes them as OCI
archives): `busybox` with every applet, and an httpd image on top of it
whose Entrypoint and Cmd say what to run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "id", "true", "sleep")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_MEDIA = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One tar entry: a file (data), a directory, a symbolic or hard link, a device."""

    name: str
    data: bytes | None = None  # a regular file
    kind: str = "file"  # file, dir, symlink, hardlink, char, fifo
    target: str = ""  # of a link
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    xattrs: dict[str, str] = field(default_factory=dict)
    device: tuple[int, int] = (0, 0)


def tar(entries: list[Entry]) -> bytes:
    """An uncompressed tar of *entries*, in order (PAX, for the attributes)."""
    out = io.BytesIO()
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "char": tarfile.CHRTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = kinds[e.kind]
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
            info.linkname = e.target
            info.devmajor, info.devminor = e.device
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            data = e.data or b""
            info.size = len(data) if e.kind == "file" else 0
            archive.addfile(info, io.BytesIO(data) if e.kind == "file" else None)
    return out.getvalue()


def busybox_entries() -> list[Entry]:
    """busybox-static as a root: /bin/busybox, applet links, /tmp, /etc/passwd."""
    return [
        Entry("bin/", kind="dir", mode=0o755),
        Entry("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        *(Entry(f"bin/{a}", kind="symlink", target="busybox", mode=0o777) for a in APPLETS),
        Entry("etc/", kind="dir", mode=0o755),
        Entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
        Entry("tmp/", kind="dir", mode=0o1777),
    ]


def compress(data: bytes, how: str | None) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class Layout:
    """An OCI image layout being written at *path*."""

    path: Path
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = digest_of(data)
        (self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(
        self,
        layers: list[bytes],
        compression: str | None = "gzip",
        config: dict[str, Any] | None = None,
        architecture: str = "amd64",
    ) -> dict[str, Any]:
        """A manifest of *layers* (uncompressed tars), its descriptor returned."""
        descriptors = [
            self.blob(compress(t, compression), LAYER_MEDIA[compression]) for t in layers
        ]
        config_doc = {
            "created": "2026-01-01T00:00:00Z",
            "architecture": architecture,
            "os": "linux",
            "config": config if config is not None else {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layers]},
        }
        config_blob = self.blob(
            json.dumps(config_doc).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_blob,
            "layers": descriptors,
        }
        descriptor = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        descriptor["platform"] = {"architecture": architecture, "os": "linux"}
        return descriptor

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(index).encode(), OCI_INDEX)

    def tag(self, descriptor: dict[str, Any], name: str | None) -> None:
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        if name:
            entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.manifests.append(entry)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}
        (self.path / "index.json").write_text(json.dumps(index))


def busybox_layout(path: Path, name: str | None = "busybox:test", **options: Any) -> Layout:
    """An OCI layout at *path* holding busybox-static as one image named *name*."""
    layout = Layout(path)
    layout.tag(layout.image([tar(busybox_entries())], **options), name)
    return layout


def archive(directory: Path, to: Path) -> Path:
    """*directory*'s files in a tar at *to* (an OCI archive of a layout)."""
    with tarfile.open(to, "w") as out:
        for item in sorted(directory.rglob("*")):
            out.add(item, arcname=str(item.relative_to(directory)), recursive=False)
    return to


def docker_archive(to: Path, layers: list[bytes], tags: list[str], cmd: list[str]) -> Path:
    """A `docker save` archive: manifest.json, the config, and each layer as a plain tar."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layers]},
        }
    ).encode()
    config_name = digest_of(config).removeprefix("sha256:") + ".json"
    files: dict[str, bytes] = {config_name: config}
    layer_names = []
    for n, layer in enumerate(layers):
        layer_names.append(f"layer{n}/layer.tar")
        files[layer_names[-1]] = layer
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(to, "w") as out:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return to


def tree(root: Path) -> dict[str, str]:
    """What is under *root*: path -> kind (and link target, or device numbers)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                found[rel] = f"symlink:{os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            elif path.is_char_device():
                found[rel] = f"char:{os.major(st.st_rdev)}/{os.minor(st.st_rdev)}"
            elif path.is_file():
                found[rel] = "file"
            else:
                found[rel] = "other"
    return found


# --- The images examples/ runs on ------------------------------------------------------

#: busybox as Docker and Kubernetes name it; the examples ask for it by `busybox`.
EXAMPLE_BUSYBOX = "docker.io/library/busybox:latest"
#: An image of our own on top of it: a tag, so that Kubernetes' default pull
#: policy (IfNotPresent) takes the loaded image and asks no registry.
EXAMPLE_HTTPD = "localhost/busybox-httpd:1"
EXAMPLE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The users and groups a busybox image has, with www-data for the web server.
EXAMPLE_PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    b"www-data:x:33:33:www-data:/var/www:/bin/false\n"
    b"nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
EXAMPLE_GROUP = b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"


def all_applets() -> list[str]:
    """Every applet this machine's busybox-static holds."""
    listed = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    return sorted(set(listed) - {"busybox"})


def example_busybox_entries() -> list[Entry]:
    """busybox-static as a base image: every applet in /bin, users and groups, /root, /tmp."""
    return [
        Entry("bin/", kind="dir", mode=0o755),
        Entry("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        *(Entry(f"bin/{a}", kind="symlink", target="busybox", mode=0o777) for a in all_applets()),
        Entry("etc/", kind="dir", mode=0o755),
        Entry("etc/passwd", EXAMPLE_PASSWD),
        Entry("etc/group", EXAMPLE_GROUP),
        Entry("home/", kind="dir", mode=0o755),
        Entry("root/", kind="dir", mode=0o700),
        Entry("tmp/", kind="dir", mode=0o1777),
        Entry("var/", kind="dir", mode=0o755),
    ]


def example_httpd_entries() -> list[Entry]:
    """The web server's layer: a page to serve until a volume is mounted over it."""
    return [
        Entry("var/www/", kind="dir", mode=0o755),
        Entry("var/www/index.html", b"<h1>busybox httpd</h1>\n"),
    ]


def example_images(directory: Path) -> dict[str, Path]:
    """The examples' images as OCI archives in *directory*: name -> archive.

    The httpd image shares the busybox layer (the same bytes, so the same
    digest): a store that holds both unpacks it once.
    """
    directory.mkdir(parents=True, exist_ok=True)
    base = tar(example_busybox_entries())
    images: dict[str, tuple[list[bytes], dict[str, Any]]] = {
        EXAMPLE_BUSYBOX: ([base], {"Env": [EXAMPLE_PATH], "Cmd": ["sh"]}),
        EXAMPLE_HTTPD: (
            [base, tar(example_httpd_entries())],
            {
                "Env": [EXAMPLE_PATH],
                "Entrypoint": ["httpd", "-f", "-v"],
                "Cmd": ["-p", "80", "-h", "/var/www"],
                "ExposedPorts": {"80/tcp": {}},
                "WorkingDir": "/var/www",
            },
        ),
    }
    written = {}
    for name, (layers, config) in images.items():
        short = name.rsplit("/", 1)[1].split(":")[0]
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            layout = Layout(Path(scratch))
            layout.tag(layout.image(layers, config=config), name)
            written[name] = archive(layout.path, directory / f"{short}.tar")
    return written


def main(argv: list[str]) -> int:
    """`python -m tests.images.build DIR`: the examples' images as OCI archives in DIR."""
    if len(argv) != 1:
        print("usage: python -m tests.images.build DIR", file=sys.stderr)
        return 2
    for name, path in example_images(Path(argv[0])).items():
        print(f"{path} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
