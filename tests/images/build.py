"""Images the tests make themselves: tar layers, OCI layouts, OCI and Docker archives.

The base image is Debian's busybox-static: /bin/busybox and a symbolic link
per applet the tests use. Every blob is written as an OCI layout holds it,
named by its digest, so the store's checks see what a real tool writes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
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
