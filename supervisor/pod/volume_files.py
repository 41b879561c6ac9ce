"""The files of a configMap, secret, downwardAPI or projected volume, as the kubelet lays them out.

How this works. `files_of` is pure: given a volume's source and the pod (whose
`config` holds the ConfigMaps and Secrets of its file), it returns the
volume's payload, one `VolumeFile` (relative path, bytes, mode) per file,
exactly as the kubelet's volume plugins make it:

* configMap, secret: every key of `data` (and a ConfigMap's `binaryData`)
  as a file named after it, or only `items` (key to path, paths may nest);
  each file has its item's `mode`, else the volume's `defaultMode`.
  A missing source that is `optional: true` gives no files (an empty
  volume); an item whose key is missing is left out when optional and is
  the kubelet's error otherwise.
* downwardAPI: `metadata.name`, `.namespace`, `.uid`, one label or
  annotation (`metadata.labels['k']`, its value or "" when absent), all of
  them (one `key="value"` line each, sorted by key, the value quoted as Go's
  %q quotes it, no newline after the last line), or a container's
  `resourceFieldRef` (a limit left out is this machine's capacity, rounded
  up in units of the divisor).
* projected: its sources' payloads in order, each with the projected
  volume's `defaultMode`; where two write the same path, the later source
  wins, as in the kubelet (the API server refuses such duplicates among
  `items`, so only whole-object sources can collide).
* With the pod's `fsGroup`, every file also gets the group and the group's
  read bit (mode | 0440), as the kubelet's ownership pass does for these
  read-only volumes.

What the kubelet cannot set up raises `VolumeContentError` with its message,
every failure of the volume at once. Kubernetes reports it as a FailedMount
and keeps the container waiting (ContainerCreating); nothing would ever add the
key on one machine, so the mounting side reports the error and does not start
the container (the loader refuses such a manifest already: the error is
reached only by what it cannot know).

The atomic writer's layout is produced too, because programs that reload
their configuration watch for it: `atomic_layout` turns a payload into the
entries the kubelet writes, in order,

    ..2026_12_06_05_30_00.123456789/      the files, nested directories 0755
    ..data -> ..2026_12_06_05_30_00.123456789
    KEY -> ..data/KEY                      one link per top-level name

and `write_layout` creates them in a fresh directory, never following a link
(`write_volume` does all three for one volume).
A volume is written once, at the pod's start: the kubelet's later swaps of
`..data` when an object changes have no counterpart, as the file does not change.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from podvisor.init.volumes import settle
from podvisor.supervisor.errors import VolumeContentError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.expansion import resource_value
from podvisor.supervisor.manifest.model import (
    ConfigMapProjection,
    ConfigMapVolume,
    DownwardAPIFile,
    DownwardAPIProjection,
    DownwardAPIVolume,
    KeyToPath,
    Pod,
    ProjectedVolume,
    ResourceFieldRef,
    SecretProjection,
    SecretVolume,
    Volume,
)

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "ContentSource",
    "VolumeDirectory",
    "VolumeFile",
    "VolumeLink",
    "atomic_layout",
    "data_directory_name",
    "files_of",
    "format_map",
    "go_quote",
    "has_content",
    "write_layout",
    "write_volume",
]

ContentSource = ConfigMapVolume | SecretVolume | DownwardAPIVolume | ProjectedVolume
#: How a container's request or limit becomes text (`expansion.resource_value`).
ResourceReader = Callable[[ResourceFieldRef, Pod], str]

#: The kubelet's limits on a payload's paths (its atomic writer's validatePath).
_MAX_PATH = 4096
_MAX_NAME = 255
_DIRECTORY_MODE = 0o755
_DATA_LINK = "..data"
#: The kubelet's words for an item whose key is not there, a ConfigMap's and a Secret's.
_MISSING_KEY = {
    False: "configmap references non-existent config key",
    True: "references non-existent secret key",
}


@frozen
class VolumeFile:
    """One file of a volume: its path relative to the volume's root, its bytes and mode."""

    path: str
    data: bytes
    mode: int
    group: int | None = None  # the pod's fsGroup, which owns it when set

    def __repr__(self) -> str:  # a Secret's bytes never reach a traceback or a log
        group = "" if self.group is None else f", group={self.group}"
        return f"VolumeFile({self.path!r}, {len(self.data)} bytes, mode=0o{self.mode:o}{group})"


@frozen
class VolumeDirectory:
    """A directory of the atomic writer's layout (the timestamped one, or a nested path)."""

    path: str
    mode: int = _DIRECTORY_MODE
    group: int | None = None


@frozen
class VolumeLink:
    """A symbolic link of the atomic writer's layout: `..data`, or a top-level name into it."""

    path: str
    target: str


Entry = VolumeDirectory | VolumeFile | VolumeLink


def has_content(volume: Volume) -> bool:
    """Whether *volume* is one whose files `files_of` makes."""
    return isinstance(volume.source, ContentSource)


# --- The payload -------------------------------------------------------------------------


def files_of(
    volume: Volume, pod: Pod, *, resources: ResourceReader = resource_value
) -> tuple[VolumeFile, ...]:
    """The files of a configMap, secret, downwardAPI or projected *volume*, sorted by path.

    Raises VolumeContentError with the kubelet's messages when a source or key
    that is not optional is missing, or when the paths collide.
    """
    source = volume.source
    if not isinstance(source, ContentSource):
        raise TypeError(f"volume {volume.name!r} is not a configMap, secret, ... volume")
    errors: list[str] = []
    if isinstance(source, ConfigMapVolume):
        ref = _ObjectRef(False, source.name, source.items, source.optional)
        payload = _object(ref, source.default_mode, pod, errors)
    elif isinstance(source, SecretVolume):
        ref = _ObjectRef(True, source.secret_name, source.items, source.optional)
        payload = _object(ref, source.default_mode, pod, errors)
    elif isinstance(source, DownwardAPIVolume):
        payload = _downward(source.items, source.default_mode, pod, resources, errors)
    else:
        payload = _projected(source, pod, resources, errors)
    cleaned = _cleaned(payload, errors)
    if errors:
        raise VolumeContentError(volume.name, errors)
    group = _fs_group(pod)
    return tuple(
        VolumeFile(path, data, mode if group is None else mode | 0o440, group)
        for path, (data, mode) in sorted(cleaned.items())
    )


#: Each path's bytes and mode, before the paths are cleaned.
Payload = dict[str, tuple[bytes, int]]


@frozen
class _ObjectRef:
    """A ConfigMap or Secret a volume or projection takes its files from."""

    secret: bool
    name: str
    items: tuple[KeyToPath, ...]
    optional: bool


def _object(ref: _ObjectRef, default_mode: int, pod: Pod, errors: list[str]) -> Payload:
    """Every key as a file, or `items` only (the kubelet stops at the first missing key)."""
    data = _data(ref, pod)
    if data is None:
        if not ref.optional:
            errors.append(f'{"secrets" if ref.secret else "configmaps"} "{ref.name}" not found')
        return {}
    if not ref.items:
        return {key: (value, default_mode) for key, value in data.items()}
    payload: Payload = {}
    for item in ref.items:
        if item.key not in data:
            if ref.optional:
                continue
            errors.append(f"{_MISSING_KEY[ref.secret]}: {item.key}")
            return {}
        mode = default_mode if item.mode is None else item.mode
        payload[item.path] = (data[item.key], mode)
    return payload


def _data(ref: _ObjectRef, pod: Pod) -> dict[str, bytes] | None:
    """A Secret's data, or a ConfigMap's data and binaryData as bytes; None when it is missing."""
    if ref.secret:
        secret = pod.config.secrets.get(ref.name)
        return dict(secret.data) if secret is not None else None
    config_map = pod.config.config_maps.get(ref.name)
    if config_map is None:
        return None
    data = {key: value.encode() for key, value in config_map.data.items()}
    data.update(config_map.binary_data)
    return data


def _downward(
    items: tuple[DownwardAPIFile, ...],
    default_mode: int,
    pod: Pod,
    resources: ResourceReader,
    errors: list[str],
) -> Payload:
    payload: Payload = {}
    for item in items:
        mode = default_mode if item.mode is None else item.mode
        if item.field_path is not None:
            text = _field(item.field_path, pod)
            if text is None:
                errors.append(f"unsupported fieldPath: {item.field_path}")
                continue
        elif item.resource_field_ref is not None:
            try:
                text = resources(item.resource_field_ref, pod)
            except KeyError:
                ref = item.resource_field_ref
                errors.append(f"container {ref.container_name} not found in the pod")
                continue
        else:
            continue
        payload[item.path] = (text.encode(), mode)
    return payload


def _field(field_path: str, pod: Pod) -> str | None:
    """A pod field as the downward API writes it into a file, None for one it does not know."""
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
    }
    if field_path in simple:
        return simple[field_path]
    maps: dict[str, Mapping[str, str]] = {
        "metadata.labels": pod.labels,
        "metadata.annotations": pod.annotations,
    }
    if field_path in maps:
        return format_map(maps[field_path])
    for prefix, values in maps.items():
        if field_path.startswith(prefix + "['") and field_path.endswith("']"):
            return values.get(field_path[len(prefix) + 2 : -2], "")
    return None


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the kubelet writes them: `key="value"` lines, sorted by key.

    No newline follows the last line, as in the kubelet's file.
    """
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values))


def go_quote(text: str) -> str:
    """*text* in double quotes as Go's strconv.Quote writes it (the kubelet's %q)."""
    return '"' + "".join(_go_escape(char) for char in text) + '"'


_SHORT_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
}


def _go_escape(char: str) -> str:
    if char in ('"', "\\"):
        return "\\" + char
    # Go's IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII
    # space, which are exactly the characters Python calls printable.
    if char.isprintable():
        return char
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:  # not a valid rune: Go writes the replacement character
        code = 0xFFFD
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _projected(
    source: ProjectedVolume, pod: Pod, resources: ResourceReader, errors: list[str]
) -> Payload:
    payload: Payload = {}
    mode = source.default_mode
    for p in source.sources:
        if isinstance(p, ConfigMapProjection | SecretProjection):
            secret = isinstance(p, SecretProjection)
            ref = _ObjectRef(secret, p.name, p.items, p.optional)
            payload.update(_object(ref, mode, pod, errors))
        elif isinstance(p, DownwardAPIProjection):
            payload.update(_downward(p.items, mode, pod, resources, errors))
    return payload


def _cleaned(payload: Payload, errors: list[str]) -> Payload:
    """The paths cleaned and checked as the kubelet's atomic writer checks them."""
    cleaned: Payload = {}
    for path, content in payload.items():
        problem = _path_problem(path)
        if problem:
            errors.append(problem)
            continue
        cleaned[posixpath.normpath(path)] = content
    for path in cleaned:
        parent = posixpath.dirname(path)
        while parent:
            if parent in cleaned:
                errors.append(f"invalid path: {path} would be inside the file {parent}")
                break
            parent = posixpath.dirname(parent)
    return cleaned


def _path_problem(path: str) -> str | None:
    """Why the kubelet's atomic writer refuses *path*, or None."""
    parts = path.split("/")
    checks = (
        (not path, f"invalid path: must not be empty: {path!r}"),
        (path.startswith("/"), f"invalid path: must be relative path: {path}"),
        (len(path) > _MAX_PATH, f"invalid path: must be at most {_MAX_PATH} characters"),
        (".." in parts, f"invalid path: must not contain '..': {path}"),
        (any(len(p) > _MAX_NAME for p in parts), f"invalid path: names are at most {_MAX_NAME}"),
        (
            parts[0].startswith("..") and len(parts[0]) > 2,
            f"invalid path: must not start with '..': {path}",
        ),
        (bool(path) and posixpath.normpath(path) == ".", f"invalid path: names no file: {path}"),
    )
    return next((message for failed, message in checks if failed), None)


def _fs_group(pod: Pod) -> int | None:
    # fsGroup is a pod-level field: every container carries the pod's.
    containers = pod.spec.all_containers
    return containers[0].security_context.fs_group if containers else None


# --- The atomic writer's layout ---------------------------------------------------------------


def data_directory_name(now: datetime, suffix: str | None = None) -> str:
    """The timestamped directory's name, as the kubelet makes it: `..2026_12_06_05_30_00.NNN`."""
    if suffix is None:
        import secrets  # here, as datetime: only a pod with such volumes needs them

        suffix = str(secrets.randbelow(10**9))
    return now.strftime("..%Y_%m_%d_%H_%M_%S.") + suffix


def atomic_layout(files: tuple[VolumeFile, ...], data_directory: str) -> tuple[Entry, ...]:
    """The directories, files and links the kubelet's atomic writer makes, in creation order.

    *data_directory* is the timestamped directory's name (`data_directory_name`).
    The files go inside it; `..data` points at it; each top-level name of the
    payload is a link through `..data`, so that one rename of `..data` would
    change every file at once.
    """
    group = files[0].group if files else None
    entries: list[Entry] = [VolumeDirectory(data_directory, _DIRECTORY_MODE, group)]
    made: set[str] = set()
    for f in files:
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made:
                made.add(directory)
                path = f"{data_directory}/{directory}"
                entries.append(VolumeDirectory(path, _DIRECTORY_MODE, f.group))
        entries.append(VolumeFile(f"{data_directory}/{f.path}", f.data, f.mode, f.group))
    entries.append(VolumeLink(_DATA_LINK, data_directory))
    top = sorted({f.path.split("/")[0] for f in files})
    entries.extend(VolumeLink(name, f"{_DATA_LINK}/{name}") for name in top)
    return tuple(entries)


def write_volume(
    volume: Volume,
    pod: Pod,
    directory: str | os.PathLike[str],
    *,
    now: datetime | None = None,
) -> tuple[VolumeFile, ...]:
    """Write *volume*'s files into the empty *directory* in the kubelet's layout; its files.

    Raises VolumeContentError (nothing written) as `files_of` does.
    """
    from datetime import UTC, datetime

    files = files_of(volume, pod)
    stamp = data_directory_name(now or datetime.now(UTC))
    write_layout(directory, atomic_layout(files, stamp))
    return files


def write_layout(directory: str | os.PathLike[str], entries: Iterable[Entry]) -> None:
    """Create *entries* (from `atomic_layout`) in *directory*, which must be empty.

    Every name is made new (O_EXCL, mkdir, symlink), and no existing link is
    followed, so nothing is written outside *directory*. Modes are set after
    creation, whatever the umask, as the kubelet sets them.
    """
    root = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for entry in entries:
            if isinstance(entry, VolumeDirectory):
                os.mkdir(entry.path, 0o700, dir_fd=root)
                _settle_directory(root, entry)
            elif isinstance(entry, VolumeFile):
                _write_file(root, entry)
            else:
                os.symlink(entry.target, entry.path, dir_fd=root)
    finally:
        os.close(root)


def _write_file(root: int, entry: VolumeFile) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(entry.path, flags, 0o600, dir_fd=root)
    try:
        settle(fd, entry.data, entry.mode, entry.group)
    finally:
        os.close(fd)


def _settle_directory(root: int, entry: VolumeDirectory) -> None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(entry.path, flags, dir_fd=root)
    try:
        mode = entry.mode
        if entry.group is not None:
            os.fchown(fd, -1, entry.group)
            # The kubelet's ownership pass: an fsGroup's directories are setgid.
            mode |= 0o2000
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
