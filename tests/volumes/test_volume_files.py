"""The files of configMap, secret, downwardAPI and projected volumes, as the kubelet lays them out.

The payload is a pure function of the volume and the pod: most tests build
the model directly and compare files. The atomic writer's layout is written
into a real directory and read back through its links, as a program would.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from podvisor.supervisor.errors import VolumeContentError
from podvisor.supervisor.manifest import load
from podvisor.supervisor.manifest.model import (
    ConfigMap,
    ConfigMapProjection,
    ConfigMapVolume,
    Container,
    ContainerKind,
    DownwardAPIFile,
    DownwardAPIProjection,
    DownwardAPIVolume,
    EmptyDirVolume,
    KeyToPath,
    Pod,
    PodConfig,
    PodSpec,
    ProjectedVolume,
    ResourceFieldRef,
    Resources,
    Secret,
    SecretProjection,
    SecretVolume,
    SecurityContext,
    Volume,
    VolumeSource,
)
from podvisor.supervisor.pod.volume_files import (
    VolumeDirectory,
    VolumeFile,
    VolumeLink,
    atomic_layout,
    data_directory_name,
    files_of,
    format_map,
    go_quote,
    has_content,
    write_layout,
    write_volume,
)

SETTINGS = ConfigMap(
    "settings",
    data={"app.conf": "level=debug\n", "greeting": "hello"},
    binary_data={"blob.bin": b"\x00\x01\x02"},
)
DB = Secret("db", data={"password": b"hunter2", "user": b"admin"})


def pod(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    fs_group: int | None = None,
    resources: Resources | None = None,
) -> Pod:
    app = Container(
        "app",
        ContainerKind.MAIN,
        ("true",),
        resources=resources or Resources(),
        security_context=SecurityContext(fs_group=fs_group),
    )
    return Pod(
        "web",
        "shop",
        "6c1f0a4e-0000-4000-8000-000000000001",
        labels or {},
        annotations or {},
        PodSpec((app,)),
        config=PodConfig({"settings": SETTINGS}, {"db": DB}),
    )


def files(source: VolumeSource, of: Pod | None = None) -> dict[str, tuple[bytes, int]]:
    found = files_of(Volume("v", source), of or pod())
    return {f.path: (f.data, f.mode) for f in found}


# --- configMap and secret -------------------------------------------------------------------


def test_config_map_gives_every_key_and_binary_data() -> None:
    assert files(ConfigMapVolume("settings")) == {
        "app.conf": (b"level=debug\n", 0o644),
        "blob.bin": (b"\x00\x01\x02", 0o644),
        "greeting": (b"hello", 0o644),
    }


def test_items_choose_keys_paths_and_modes() -> None:
    source = ConfigMapVolume(
        "settings",
        items=(
            KeyToPath("app.conf", "etc/app/app.conf"),
            KeyToPath("blob.bin", "data.bin", mode=0o600),
        ),
        default_mode=0o440,
    )
    assert files(source) == {
        "etc/app/app.conf": (b"level=debug\n", 0o440),
        "data.bin": (b"\x00\x01\x02", 0o600),
    }


def test_secret_gives_its_bytes_with_the_default_mode() -> None:
    assert files(SecretVolume("db", default_mode=0o400)) == {
        "password": (b"hunter2", 0o400),
        "user": (b"admin", 0o400),
    }


def test_optional_missing_source_gives_an_empty_volume() -> None:
    assert files(ConfigMapVolume("absent", optional=True)) == {}
    assert files(SecretVolume("absent", optional=True)) == {}


def test_optional_missing_key_is_left_out() -> None:
    source = SecretVolume(
        "db", items=(KeyToPath("token", "token"), KeyToPath("user", "user")), optional=True
    )
    assert files(source) == {"user": (b"admin", 0o644)}


def test_missing_key_is_the_kubelets_error_naming_it() -> None:
    source = ConfigMapVolume("settings", items=(KeyToPath("LOG_LEVEL", "level"),))
    with pytest.raises(VolumeContentError) as caught:
        files_of(Volume("config", source), pod())
    assert str(caught.value) == (
        'MountVolume.SetUp failed for volume "config" : '
        "configmap references non-existent config key: LOG_LEVEL"
    )
    assert caught.value.reason == "CreateContainerConfigError"
    assert caught.value.volume == "config"


def test_missing_secret_key_and_missing_secret() -> None:
    with pytest.raises(VolumeContentError, match=r"references non-existent secret key: token$"):
        files(SecretVolume("db", items=(KeyToPath("token", "t"),)))
    with pytest.raises(VolumeContentError, match=r'secrets "tls" not found$'):
        files(SecretVolume("tls"))
    with pytest.raises(VolumeContentError, match=r'configmaps "other" not found$'):
        files(ConfigMapVolume("other"))


def test_fs_group_owns_the_files_and_can_read_them() -> None:
    found = files_of(Volume("v", SecretVolume("db", default_mode=0o400)), pod(fs_group=2000))
    assert {(f.path, f.mode, f.group) for f in found} == {
        ("password", 0o440, 2000),
        ("user", 0o440, 2000),
    }


def test_a_secret_file_never_shows_its_bytes() -> None:
    (password, _) = files_of(Volume("v", SecretVolume("db")), pod())
    assert "hunter2" not in repr(password)
    assert "7 bytes" in repr(password)


# --- downwardAPI ------------------------------------------------------------------------------


def test_pod_fields_as_files() -> None:
    source = DownwardAPIVolume(
        (
            DownwardAPIFile("name", "metadata.name"),
            DownwardAPIFile("namespace", "metadata.namespace"),
            DownwardAPIFile("uid", "metadata.uid", mode=0o400),
            DownwardAPIFile("tier", "metadata.labels['tier']"),
            DownwardAPIFile("absent", "metadata.annotations['nothing']"),
        )
    )
    assert files(source, pod(labels={"tier": "front"})) == {
        "name": (b"web", 0o644),
        "namespace": (b"shop", 0o644),
        "uid": (b"6c1f0a4e-0000-4000-8000-000000000001", 0o400),
        "tier": (b"front", 0o644),
        "absent": (b"", 0o644),
    }


def test_labels_and_annotations_are_sorted_quoted_lines() -> None:
    source = DownwardAPIVolume(
        (
            DownwardAPIFile("labels", "metadata.labels"),
            DownwardAPIFile("annotations", "metadata.annotations"),
        )
    )
    of = pod(
        labels={"zone": "b", "app": "web", "tier": "front"},
        annotations={"note": 'say "hi"\\now\n', "empty": ""},
    )
    found = files(source, of)
    assert found["labels"][0] == b'app="web"\ntier="front"\nzone="b"'
    assert found["annotations"][0] == b'empty=""\nnote="say \\"hi\\"\\\\now\\n"'


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain text", '"plain text"'),
        ("tab\there\r\n", r'"tab\there\r\n"'),
        ("\a\b\f\v", r'"\a\b\f\v"'),
        ("\x01\x1f\x7f", r'"\x01\x1f\x7f"'),
        ("café ☕ 😀", '"café ☕ 😀"'),  # printable beyond ASCII stays as it is
        ("no\u00a0break", r'"no\u00a0break"'),  # a space other than ASCII's is escaped
        ("zero\u200bwidth", r'"zero\u200bwidth"'),  # a format character too
        ("\U000e0001", r'"\U000e0001"'),  # a tag character, above the BMP
        ("\ud800", r'"\ufffd"'),  # not a valid rune: the replacement character
    ],
)
def test_values_are_quoted_as_go_quotes_them(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_format_map_of_nothing_is_empty() -> None:
    assert format_map({}) == ""


def test_resource_field_refs_in_units_of_the_divisor() -> None:
    limits = Resources(
        cpu_request_millicores=250,
        cpu_limit_millicores=1500,
        memory_request_bytes=64 * 2**20,
        memory_limit_bytes=100 * 10**6,
    )
    source = DownwardAPIVolume(
        (
            DownwardAPIFile("cpu_limit", resource_field_ref=ResourceFieldRef("app", "limits.cpu")),
            DownwardAPIFile(
                "cpu_request_m",
                resource_field_ref=ResourceFieldRef("app", "requests.cpu", "1m"),
            ),
            DownwardAPIFile(
                "mem_limit_mi",
                resource_field_ref=ResourceFieldRef("app", "limits.memory", "1Mi"),
            ),
            DownwardAPIFile(
                "mem_request_m",
                resource_field_ref=ResourceFieldRef("app", "requests.memory", "1M"),
            ),
        )
    )
    found = files(source, pod(resources=limits))
    assert {path: data for path, (data, _) in found.items()} == {
        "cpu_limit": b"2",  # 1.5 cores, rounded up
        "cpu_request_m": b"250",
        "mem_limit_mi": b"96",  # 95.37 MiB, rounded up
        "mem_request_m": b"68",  # 67.1 MB, rounded up
    }


def test_a_limit_left_out_is_the_machines_capacity() -> None:
    ref = ResourceFieldRef("app", "limits.cpu", "1m")
    found = files(DownwardAPIVolume((DownwardAPIFile("cpu", resource_field_ref=ref),)))
    assert found["cpu"][0] == str((os.cpu_count() or 1) * 1000).encode()


# --- projected --------------------------------------------------------------------------------


def test_projected_combines_its_sources_with_its_default_mode() -> None:
    source = ProjectedVolume(
        (
            ConfigMapProjection("settings", (KeyToPath("greeting", "config/greeting"),)),
            SecretProjection("db", (KeyToPath("password", "secret/password", mode=0o400),)),
            DownwardAPIProjection((DownwardAPIFile("meta/name", "metadata.name"),)),
        ),
        default_mode=0o640,
    )
    assert files(source) == {
        "config/greeting": (b"hello", 0o640),
        "secret/password": (b"hunter2", 0o400),
        "meta/name": (b"web", 0o640),
    }


def test_projected_later_source_wins_a_path() -> None:
    both = PodConfig(
        {"settings": SETTINGS, "override": ConfigMap("override", {"greeting": "bonjour"})}
    )
    of = Pod("web", "default", "u", {}, {}, pod().spec, config=both)
    source = ProjectedVolume((ConfigMapProjection("settings"), ConfigMapProjection("override")))
    assert files(source, of)["greeting"] == (b"bonjour", 0o644)


def test_projected_reports_every_failure_at_once() -> None:
    source = ProjectedVolume(
        (
            ConfigMapProjection("settings", (KeyToPath("missing", "m"),)),
            SecretProjection("tls"),
            SecretProjection("optional-tls", optional=True),
        )
    )
    with pytest.raises(VolumeContentError) as caught:
        files_of(Volume("all", source), pod())
    assert caught.value.messages == [
        "configmap references non-existent config key: missing",
        'secrets "tls" not found',
    ]
    assert str(caught.value).endswith(
        ': [configmap references non-existent config key: missing, secrets "tls" not found]'
    )


# --- Paths ------------------------------------------------------------------------------------


def test_paths_are_cleaned_as_the_kubelet_cleans_them() -> None:
    source = ConfigMapVolume("settings", items=(KeyToPath("greeting", "./a//b/greeting"),))
    assert list(files(source)) == ["a/b/greeting"]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (("a", "a/b"), "a/b would be inside the file a"),
        (("..hidden",), "must not start with '..'"),
        (("x/../../etc/passwd",), "must not contain '..'"),
        (("/etc/passwd",), "must be relative path"),
        (("n" * 256,), "names are at most 255"),
    ],
)
def test_paths_the_kubelet_refuses(paths: tuple[str, ...], message: str) -> None:
    items = tuple(KeyToPath("greeting", p) for p in paths)
    with pytest.raises(VolumeContentError, match=message):
        files(ConfigMapVolume("settings", items=items))


def test_other_volumes_have_no_content_here() -> None:
    assert not has_content(Volume("scratch", EmptyDirVolume()))
    assert has_content(Volume("config", ConfigMapVolume("settings")))
    with pytest.raises(TypeError):
        files_of(Volume("scratch", EmptyDirVolume()), pod())


# --- The atomic writer's layout ----------------------------------------------------------------


def test_data_directory_is_named_by_the_time() -> None:
    now = datetime(2026, 12, 6, 5, 30, 7, tzinfo=UTC)
    assert data_directory_name(now, "42") == "..2026_12_06_05_30_07.42"
    assert data_directory_name(now).startswith("..2026_12_06_05_30_07.")


def test_layout_lists_directories_files_and_links_in_order() -> None:
    found = (
        VolumeFile("conf/app.conf", b"x", 0o644),
        VolumeFile("conf/extra/more", b"y", 0o600),
        VolumeFile("token", b"z", 0o400),
    )
    assert atomic_layout(found, "..d") == (
        VolumeDirectory("..d"),
        VolumeDirectory("..d/conf"),
        VolumeFile("..d/conf/app.conf", b"x", 0o644),
        VolumeDirectory("..d/conf/extra"),
        VolumeFile("..d/conf/extra/more", b"y", 0o600),
        VolumeFile("..d/token", b"z", 0o400),
        VolumeLink("..data", "..d"),
        VolumeLink("conf", "..data/conf"),
        VolumeLink("token", "..data/token"),
    )


def test_written_layout_reads_as_the_kubelets(tmp_path: Path) -> None:
    source = ProjectedVolume(
        (
            ConfigMapProjection("settings", (KeyToPath("app.conf", "conf/app.conf"),)),
            SecretProjection("db", (KeyToPath("password", "password", mode=0o400),)),
        )
    )
    found = files_of(Volume("v", source), pod())
    name = data_directory_name(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "1")
    old = os.umask(0o077)  # the modes asked for are set whatever the umask
    try:
        write_layout(tmp_path, atomic_layout(found, name))
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["..2026_01_02_03_04_05.1", "..data", "conf", "password"]
    assert os.readlink(tmp_path / "..data") == name
    assert os.readlink(tmp_path / "conf") == "..data/conf"
    assert (tmp_path / "conf" / "app.conf").read_bytes() == b"level=debug\n"
    assert (tmp_path / "password").read_bytes() == b"hunter2"
    assert stat.S_IMODE((tmp_path / "password").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "conf" / "app.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / name / "conf").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o755


def test_written_layout_with_fs_group(tmp_path: Path) -> None:
    found = files_of(Volume("v", SecretVolume("db", default_mode=0o400)), pod(fs_group=4242))
    write_layout(tmp_path, atomic_layout(found, "..d"))
    password = (tmp_path / "password").stat()
    assert (stat.S_IMODE(password.st_mode), password.st_gid) == (0o440, 4242)
    directory = (tmp_path / "..d").stat()
    assert (stat.S_IMODE(directory.st_mode), directory.st_gid) == (0o2755, 4242)


def test_writing_never_follows_a_planted_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "..d").symlink_to(outside)
    found = files_of(Volume("v", SecretVolume("db")), pod())
    with pytest.raises(FileExistsError):
        write_layout(volume, atomic_layout(found, "..d"))
    assert list(outside.iterdir()) == []


def test_empty_volume_still_has_its_data_link(tmp_path: Path) -> None:
    write_layout(tmp_path, atomic_layout((), "..d"))
    assert sorted(os.listdir(tmp_path)) == ["..d", "..data"]
    assert os.listdir(tmp_path / "..data") == []


def test_write_volume_lays_out_a_volume_now(tmp_path: Path) -> None:
    source = ConfigMapVolume("settings", items=(KeyToPath("greeting", "greeting"),))
    before = datetime.now(UTC).replace(microsecond=0)
    found = write_volume(Volume("v", source), pod(), tmp_path)
    assert found == (VolumeFile("greeting", b"hello", 0o644),)
    stamp = os.readlink(tmp_path / "..data")
    written = datetime.strptime(stamp[2:21], "%Y_%m_%d_%H_%M_%S").replace(tzinfo=UTC)
    assert before <= written <= datetime.now(UTC)
    assert (tmp_path / "greeting").read_text() == "hello"


def test_write_volume_writes_nothing_when_a_key_is_missing(tmp_path: Path) -> None:
    source = SecretVolume("db", items=(KeyToPath("token", "token"),))
    with pytest.raises(VolumeContentError):
        write_volume(Volume("v", source), pod(), tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- From a manifest --------------------------------------------------------------------------

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
binaryData: {blob.bin: AAEC}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
data: {password: aHVudGVyMg==}
stringData: {user: admin}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  securityContext: {fsGroup: 3000}
  containers:
  - name: app
    command: ["true"]
    volumeMounts:
    - {name: config, mountPath: /etc/config}
    - {name: all, mountPath: /etc/all}
  volumes:
  - name: config
    configMap: {name: settings, defaultMode: 0600}
  - name: all
    projected:
      defaultMode: 0400
      sources:
      - secret: {name: db, items: [{key: user, path: db/user}]}
      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
"""


def test_files_of_a_loaded_manifest() -> None:
    loaded = load("app.yaml", MANIFEST).pod
    config, projected = loaded.spec.volumes
    assert [(f.path, f.data, f.mode, f.group) for f in files_of(config, loaded)] == [
        ("blob.bin", b"\x00\x01\x02", 0o640, 3000),
        ("greeting", b"hello", 0o640, 3000),
    ]
    assert [(f.path, f.data, f.mode) for f in files_of(projected, loaded)] == [
        ("db/user", b"admin", 0o440),
        ("labels", b'app="web"', 0o440),
    ]
