"""`spec.volumes` and each container's `volumeMounts`, read and checked as the API server does.

Every rule that needs no mounting is here: names are DNS labels and unique,
a volume has exactly one source, paths of items are relative and never
climb out with "..", modes are permission bits, a hostPath's type is one
Kubernetes knows, a mount names a volume of the pod at an absolute path
(once per container), subPath is relative, and Bidirectional propagation
takes a privileged container. Storage that only a cluster provides (NFS,
cloud disks, CSI, ...) is refused by name in `fields.VOLUME` with what to use
instead. ConfigMaps, Secrets and claims must be in the same file (or
--config) unless `optional: true`, as the kubelet would wait for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import yaml

from podvisor.supervisor.manifest import fields, names
from podvisor.supervisor.manifest.containers import ParsedContainer
from podvisor.supervisor.manifest.env import EnvContext, resource_field_ref
from podvisor.supervisor.manifest.model import (
    ConfigMapProjection,
    ConfigMapVolume,
    DownwardAPIFile,
    DownwardAPIProjection,
    DownwardAPIVolume,
    EmptyDirVolume,
    HostPathVolume,
    ImageVolume,
    KeyToPath,
    PersistentVolumeClaimVolume,
    ProjectedVolume,
    Projection,
    SecretProjection,
    SecretVolume,
    Volume,
    VolumeMount,
    VolumeSource,
)
from podvisor.supervisor.manifest.nodes import Fields, Report, did_you_mean, fields_of, position
from podvisor.supervisor.manifest.quantity import QuantityError, memory_bytes, parse_quantity

__all__ = [
    "HOST_PATH_TYPES",
    "read_mounts",
    "read_volumes",
    "source_kind",
    "with_mounts",
]

HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
_SOURCES = (
    "emptyDir",
    "hostPath",
    "persistentVolumeClaim",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "image",
)
#: The pod fields a downwardAPI file may hold (the API server's list for volumes).
_VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid")
_SUBSCRIPTED = ("metadata.labels", "metadata.annotations")
_PROPAGATION = ("None", "HostToContainer", "Bidirectional")
_RECURSIVE_READ_ONLY = ("Disabled", "IfPossible", "Enabled")
_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def source_kind(volume: Volume) -> str:
    """The manifest's word for a volume's source: emptyDir, hostPath, ..."""
    return {
        EmptyDirVolume: "emptyDir",
        HostPathVolume: "hostPath",
        PersistentVolumeClaimVolume: "persistentVolumeClaim",
        ConfigMapVolume: "configMap",
        SecretVolume: "secret",
        DownwardAPIVolume: "downwardAPI",
        ProjectedVolume: "projected",
        ImageVolume: "image",
    }[type(volume.source)]


# --- Volumes ------------------------------------------------------------------------------


def read_volumes(spec: Fields, context: EnvContext) -> tuple[Volume, ...]:
    """`spec.volumes`, each checked; a name given twice is refused."""
    found: list[Volume] = []
    seen: dict[str, yaml.Node] = {}
    for item, path in spec.items("volumes"):
        f = fields_of(spec.report, item, path, fields.VOLUME)
        if f is None or not f.require("name", "the volume's name, which volumeMounts refer to"):
            continue
        name = f.string("name")
        problem = names.dns1123_label(name) if name is not None else None
        if problem:
            f.error("name", problem)
        elif name is not None and name in seen:
            f.error(
                "name",
                f"{name!r} is taken (line {position(seen[name])[0]}): volume names are unique",
            )
        taken = name in seen
        if name is not None and not problem and not taken:
            seen[name] = f["name"]
        source = _source(f, context)
        if name is None or problem or taken or source is None:
            continue
        found.append(Volume(name, source))
    return tuple(found)


def _source(f: Fields, context: EnvContext) -> VolumeSource | None:
    kinds = [k for k in _SOURCES if k in f]
    if not kinds:
        if not _refused(f.node):
            f.report.error(
                f.node,
                f.path,
                "required: a source, e.g. emptyDir: {} (one of " + ", ".join(_SOURCES) + ")",
            )
        return None
    if len(kinds) > 1:
        f.error(kinds[1], f"may not be set together with {kinds[0]}: a volume has one source")
        return None
    readers: dict[str, Callable[[Fields, EnvContext], VolumeSource | None]] = {
        "emptyDir": _empty_dir,
        "hostPath": _host_path,
        "persistentVolumeClaim": _claim,
        "configMap": _config_map,
        "secret": _secret,
        "downwardAPI": _downward_api,
        "projected": _projected,
        "image": _image,
    }
    rules = {
        "emptyDir": fields.EMPTY_DIR,
        "hostPath": fields.HOST_PATH,
        "persistentVolumeClaim": fields.PVC_SOURCE,
        "configMap": fields.CONFIG_MAP_VOLUME,
        "secret": fields.SECRET_VOLUME,
        "downwardAPI": fields.DOWNWARD_API_VOLUME,
        "projected": fields.PROJECTED_VOLUME,
        "image": fields.IMAGE_VOLUME,
    }
    kind = kinds[0]
    source = f.mapping(kind, rules[kind])
    return readers[kind](source, context) if source is not None else None


def _refused(node: yaml.Node) -> bool:
    """True when a key other than name was given: refused or unknown, it was said already."""
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value != "name" for k, _ in node.value
    )


def _empty_dir(f: Fields, context: EnvContext) -> EmptyDirVolume | None:
    medium = f.string("medium") or ""
    if medium not in ("", "Memory"):
        hint = "; huge pages are not reserved by podvisor" if medium.startswith("HugePages") else ""
        f.error("medium", f'{medium!r} is not "" (the disk) or Memory (a tmpfs){hint}')
        return None
    size = None
    if "sizeLimit" in f:
        node = f["sizeLimit"]
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        try:
            amount = parse_quantity(text.strip())
        except QuantityError:
            amount = None
        if amount is None or amount < 0:
            f.error("sizeLimit", f"{text!r} is not a size (examples: 64Mi, 1Gi)")
            return None
        size = memory_bytes(amount)
    return EmptyDirVolume(medium, size)


def _host_path(f: Fields, context: EnvContext) -> HostPathVolume | None:
    if not f.require("path", "the path on this machine, e.g. /var/log"):
        return None
    path = f.string("path")
    kind = f.string("type") or ""
    ok = path is not None and _absolute(f, "path", path)
    if kind not in HOST_PATH_TYPES:
        shown = ", ".join(t or repr(t) for t in HOST_PATH_TYPES)
        f.error(
            "type",
            f"{kind!r} is not a hostPath type ({shown})"
            + did_you_mean(kind, list(HOST_PATH_TYPES[1:])),
        )
        ok = False
    return HostPathVolume(path or "", kind) if ok else None


def _claim(f: Fields, context: EnvContext) -> PersistentVolumeClaimVolume | None:
    if not f.require("claimName", "the name of a PersistentVolumeClaim of this file"):
        return None
    name = f.string("claimName")
    if name is None:
        return None
    if name not in context.config.claims:
        f.error(
            "claimName",
            f'persistentvolumeclaim "{name}" not found: the pod would stay Pending; add a '
            f"PersistentVolumeClaim named {name} in namespace {context.namespace} to this file "
            "(or pass it with --config)",
        )
        return None
    return PersistentVolumeClaimVolume(name, f.flag("readOnly"))


def _config_map(f: Fields, context: EnvContext) -> ConfigMapVolume | None:
    if not f.require("name", "the name of a ConfigMap of this file"):
        return None
    name = f.string("name") or ""
    optional = f.flag("optional")
    items = _items(
        f, _keys(context, False, name), f"ConfigMap {context.namespace}/{name}", optional
    )
    mode = _mode(f, "defaultMode")
    if (
        items is None
        or mode is None
        or not _exists(f, "name", context, False, name, optional=optional)
    ):
        return None
    return ConfigMapVolume(name, items, mode, optional)


def _secret(f: Fields, context: EnvContext) -> SecretVolume | None:
    if not f.require("secretName", "the name of a Secret of this file"):
        return None
    name = f.string("secretName") or ""
    optional = f.flag("optional")
    items = _items(f, _keys(context, True, name), f"Secret {context.namespace}/{name}", optional)
    mode = _mode(f, "defaultMode")
    if (
        items is None
        or mode is None
        or not _exists(f, "secretName", context, True, name, optional=optional)
    ):
        return None
    return SecretVolume(name, items, mode, optional)


def _keys(context: EnvContext, secret: bool, name: str) -> set[str] | None:
    if secret:
        s = context.config.secrets.get(name)
        return set(s.data) if s is not None else None
    c = context.config.config_maps.get(name)
    return set(c.data) | set(c.binary_data) if c is not None else None


def _exists(
    f: Fields, key: str, context: EnvContext, secret: bool, name: str, *, optional: bool
) -> bool:
    if optional or _keys(context, secret, name) is not None:
        return True
    word, kind = ("secret", "Secret") if secret else ("configmap", "ConfigMap")
    f.error(
        key,
        f'{word} "{name}" not found: the kubelet cannot set up the volume and the pod stays '
        f"ContainerCreating; add a {kind} named {name} in namespace {context.namespace} to this "
        "file (or pass it with --config), or set optional: true",
    )
    return False


def _items(
    f: Fields, keys: set[str] | None, what: str, optional: bool
) -> tuple[KeyToPath, ...] | None:
    found: list[KeyToPath] = []
    ok = True
    paths: set[str] = set()
    for item, path in f.items("items"):
        i = fields_of(f.report, item, path, fields.KEY_TO_PATH)
        if i is None:
            ok = False
            continue
        has = i.require("key", "the key to write") & i.require(
            "path", "the file's path in the volume"
        )
        key, file = i.string("key"), i.string("path")
        mode = _mode(i, "mode")
        if not has or key is None or file is None or mode is None or not _relative(i, "path", file):
            ok = False
            continue
        if keys is not None and key not in keys and not optional:
            i.error(
                "key",
                f"{what} has no key {key}: the kubelet cannot set up the volume; add the key, "
                "or set optional: true" + did_you_mean(key, sorted(keys)),
            )
            ok = False
            continue
        if file in paths:
            i.error("path", f"{file!r} is written twice")
            ok = False
        paths.add(file)
        found.append(KeyToPath(key, file, None if "mode" not in i else mode))
    return tuple(found) if ok else None


def _mode(f: Fields, key: str) -> int | None:
    """A permission mode (0 to 0777, 0644 when not set); YAML's 0644 is octal, JSON gives 420."""
    if key not in f:
        return 0o644
    mode = f.integer(key)
    if mode is not None and not 0 <= mode <= 0o777:
        f.error(key, f"0{mode:o} ({mode}) is not a file mode: 0 to 0777 (0 to 511 in JSON)")
        return None
    return mode


def _downward_files(f: Fields, context: EnvContext) -> tuple[DownwardAPIFile, ...] | None:
    found: list[DownwardAPIFile] = []
    ok = True
    for item, path in f.items("items"):
        i = fields_of(f.report, item, path, fields.DOWNWARD_API_FILE)
        if i is None or not i.require("path", "the file's path in the volume"):
            ok = False
            continue
        file = i.string("path")
        mode = _mode(i, "mode")
        refs = [k for k in ("fieldRef", "resourceFieldRef") if k in i]
        if len(refs) != 1:
            message = "give one of fieldRef or resourceFieldRef"
            i.error(refs[1] if refs else "fieldRef", message)
            ok = False
            continue
        field_path = _volume_field_path(i) if refs[0] == "fieldRef" else None
        resource = (
            resource_field_ref(i, "resourceFieldRef", "", context.containers)
            if refs[0] == "resourceFieldRef"
            else None
        )
        if (
            file is None
            or mode is None
            or not _relative(i, "path", file)
            or not (field_path or resource)
        ):
            ok = False
            continue
        found.append(DownwardAPIFile(file, field_path, resource, None if "mode" not in i else mode))
    return tuple(found) if ok else None


def _volume_field_path(i: Fields) -> str | None:
    ref = i.mapping("fieldRef", fields.FIELD_REF)
    if ref is None or not ref.require("fieldPath", "e.g. metadata.labels"):
        return None
    field_path = ref.string("fieldPath")
    if field_path is None:
        return None
    if field_path in _VOLUME_FIELD_PATHS or field_path in _SUBSCRIPTED:
        return field_path
    for prefix in _SUBSCRIPTED:
        if field_path.startswith(prefix + "['") and field_path.endswith("']"):
            problem = names.qualified_name(field_path[len(prefix) + 2 : -2])
            if problem:
                ref.error("fieldPath", problem)
                return None
            return field_path
    choices = [*_VOLUME_FIELD_PATHS, *_SUBSCRIPTED]
    ref.error(
        "fieldPath",
        f"{field_path!r} is not one a volume can hold (one of {', '.join(choices)}, "
        "or metadata.labels['KEY']); status and spec fields go in env"
        + did_you_mean(field_path, choices),
    )
    return None


def _downward_api(f: Fields, context: EnvContext) -> DownwardAPIVolume | None:
    items = _downward_files(f, context)
    mode = _mode(f, "defaultMode")
    return DownwardAPIVolume(items, mode) if items is not None and mode is not None else None


def _projected(f: Fields, context: EnvContext) -> ProjectedVolume | None:
    found: list[Projection] = []
    written: set[str] = set()
    ok = True
    for item, path in f.items("sources"):
        p = fields_of(f.report, item, path, fields.VOLUME_PROJECTION)
        kinds = [k for k in ("configMap", "secret", "downwardAPI") if p is not None and k in p]
        if p is None or len(kinds) != 1:
            if p is not None and kinds:
                p.error(kinds[1], f"may not be set together with {kinds[0]}: one source per entry")
            elif p is not None and not _refused(p.node):
                p.report.error(item, path, "required: one of configMap, secret or downwardAPI")
            ok = False
            continue
        projection = _projection(p, kinds[0], context)
        if projection is None or not _paths_apart(p, kinds[0], projection, written):
            ok = False
            continue
        found.append(projection)
    mode = _mode(f, "defaultMode")
    return ProjectedVolume(tuple(found), mode) if ok and mode is not None else None


def _paths_apart(p: Fields, kind: str, projection: Projection, written: set[str]) -> bool:
    """The API server's rule: no two sources' items of a projected volume write one path."""
    again = [i.path for i in projection.items if i.path in written]
    written.update(i.path for i in projection.items)
    if again:
        p.error(
            kind,
            f"{again[0]!r} is written by an earlier source too (conflicting duplicate paths): "
            "give each file a path of its own",
        )
    return not again


def _projection(p: Fields, kind: str, context: EnvContext) -> Projection | None:
    if kind == "downwardAPI":
        d = p.mapping(kind, fields.DOWNWARD_API_PROJECTION)
        items = _downward_files(d, context) if d is not None else None
        return DownwardAPIProjection(items) if items is not None else None
    secret = kind == "secret"
    rules = fields.SECRET_PROJECTION if secret else fields.CONFIG_MAP_PROJECTION
    s = p.mapping(kind, rules)
    if s is None or not s.require("name", f"the name of a {'Secret' if secret else 'ConfigMap'}"):
        return None
    name = s.string("name") or ""
    optional = s.flag("optional")
    what = f"{'Secret' if secret else 'ConfigMap'} {context.namespace}/{name}"
    keys = _items(s, _keys(context, secret, name), what, optional)
    if keys is None or not _exists(s, "name", context, secret, name, optional=optional):
        return None
    kind_of = SecretProjection if secret else ConfigMapProjection
    return kind_of(name, keys, optional)


def _image(f: Fields, context: EnvContext) -> ImageVolume | None:
    if not f.require("reference", "the image, e.g. registry.example/data:1.0"):
        return None
    reference = f.string("reference")
    policy = None
    if "pullPolicy" in f:
        from podvisor.supervisor.images.reference import PullPolicy

        policy = str(f.choice("pullPolicy", PullPolicy, PullPolicy.IF_NOT_PRESENT))
    return ImageVolume(reference, policy) if reference else None


# --- Paths -----------------------------------------------------------------------------------


def _absolute(f: Fields, key: str, path: str) -> bool:
    if not path.startswith("/"):
        f.error(key, f"{path!r} must be an absolute path")
        return False
    return True


def _relative(f: Fields, key: str, path: str) -> bool:
    """A path inside a volume: not absolute, no '..' element, not empty."""
    if not path:
        f.error(key, "must not be empty")
    elif path.startswith("/"):
        f.error(key, f"{path!r} must be a relative path")
    elif ".." in path.split("/"):
        f.error(key, f"{path!r} must not contain '..'")
    else:
        return True
    return False


def with_mounts(
    spec: Fields, parsed: list[ParsedContainer], pod_volumes: tuple[Volume, ...]
) -> list[ParsedContainer]:
    """Each container with its volumeMounts read and checked against the pod's volumes."""
    found = []
    declared = _declared(spec)
    for p in parsed:
        privileged = p.container.security_context.privileged
        mounts = read_mounts(
            spec.report, p.node, p.path, pod_volumes, privileged=privileged, declared=declared
        )
        found.append(replace(p, container=replace(p.container, volume_mounts=mounts)))
    return found


# --- Mounts ---------------------------------------------------------------------------------


def _declared(spec: Fields) -> set[str]:
    """Every volume name written, valid or not: a mount of one that is wrong is said once."""
    node = spec.get("volumes")
    found = set()
    for item in node.value if isinstance(node, yaml.SequenceNode) else ():
        for k, v in item.value if isinstance(item, yaml.MappingNode) else ():
            if k.value == "name" and isinstance(v, yaml.ScalarNode):
                found.add(str(v.value))
    return found


def read_mounts(
    report: Report,
    container: yaml.Node,
    path: str,
    volumes: tuple[Volume, ...],
    *,
    privileged: bool,
    declared: set[str] | None = None,
) -> tuple[VolumeMount, ...]:
    """A container's `volumeMounts` (read from its node), each checked against the pod's volumes.

    A mount of a volume in *declared* that is not in *volumes* (it was wrong,
    and said so) is left out without another word.
    """
    f = Fields(report, container, path, {})
    for key_node, value in container.value if isinstance(container, yaml.MappingNode) else ():
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "volumeMounts":
            f.found["volumeMounts"] = value
    known = {v.name: v for v in volumes}
    found: list[VolumeMount] = []
    at: dict[str, int] = {}
    for i, (item, item_path) in enumerate(f.items("volumeMounts")):
        m = fields_of(report, item, item_path, fields.VOLUME_MOUNT)
        if m is None:
            continue
        mount = _mount(m, known, privileged, declared or set())
        if mount is None:
            continue
        if mount.mount_path in at:
            m.error(
                "mountPath",
                f"{mount.mount_path!r} is mounted already (volumeMounts[{at[mount.mount_path]}])",
            )
            continue
        at[mount.mount_path] = i
        found.append(mount)
    return tuple(found)


def _mount(
    m: Fields, known: dict[str, Volume], privileged: bool, declared: set[str]
) -> VolumeMount | None:
    has = m.require("name", "the name of one of spec.volumes") & m.require(
        "mountPath", "where the volume appears in the container, e.g. /data"
    )
    name, mount_path = m.string("name"), m.string("mountPath")
    ok = has and name is not None and mount_path is not None
    if name is not None and name in declared and name not in known:
        ok = False
    elif name is not None and name not in known:
        written = sorted(declared | set(known))
        volumes = ", ".join(written) or "there are none"
        m.error(
            "name",
            f"no volume named {name!r} in spec.volumes ({volumes})" + did_you_mean(name, written),
        )
        ok = False
    if mount_path is not None and not _absolute(m, "mountPath", mount_path):
        ok = False
    sub_path = m.string("subPath") or ""
    sub_path_expr = m.string("subPathExpr") or ""
    if sub_path and sub_path_expr:
        m.error("subPathExpr", "may not be set together with subPath")
        ok = False
    for key, value in (("subPath", sub_path), ("subPathExpr", sub_path_expr)):
        if value and not _relative(m, key, value):
            ok = False
    propagation = _one_of(m, "mountPropagation", _PROPAGATION, "None")
    if propagation == "Bidirectional" and not privileged:
        m.error(
            "mountPropagation",
            "Bidirectional propagation takes a privileged container (securityContext.privileged: "
            "true); HostToContainer needs no privilege",
        )
        ok = False
    recursive = _one_of(m, "recursiveReadOnly", _RECURSIVE_READ_ONLY, "Disabled")
    read_only = m.flag("readOnly")
    if recursive not in ("Disabled", None) and not read_only:
        m.error("recursiveReadOnly", f"{recursive} takes readOnly: true")
        ok = False
    if recursive not in ("Disabled", None) and propagation not in ("None", None):
        m.error("recursiveReadOnly", f"{recursive} takes mountPropagation None")
        ok = False
    if not ok or propagation is None or recursive is None:
        return None
    assert name is not None
    assert mount_path is not None
    return VolumeMount(name, mount_path, read_only, sub_path, sub_path_expr, propagation, recursive)


def _one_of(f: Fields, key: str, choices: tuple[str, ...], default: str) -> str | None:
    value = f.string(key) if key in f else default
    if value not in choices:
        f.error(
            key,
            f"{value!r} is not one of {', '.join(choices)}"
            + did_you_mean(value or "", list(choices)),
        )
        return None
    return value


def config_key_problem(key: str) -> str | None:
    """Why *key* cannot be a ConfigMap's or Secret's key, or None (the API server's rule)."""
    if not key or len(key) > 253 or not _KEY.fullmatch(key):
        return f"{key!r}: a key is at most 253 letters, digits, '-', '_' and '.'"
    if key in (".", "..") or key.startswith(".."):
        return f"{key!r}: a key may not be '.' or '..' or start with '..'"
    return None
