"""emptyDir volumes: the pod's containers share a directory, on disk or in memory.

Every pod here runs ``podvisor run``: real mounts in each container's own
mount namespace, nothing on the host's mount table (the leak fixture checks),
and no directory of the pod left in the store afterwards (`image_store`).
"""

from __future__ import annotations

import json
from pathlib import Path

from podvisor.supervisor.images import ImageStore
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import run_pod, sh
from tests.volumes.conftest import BUSYBOX


def test_the_documentations_init_container_writes_what_a_server_serves(
    run_dir: Path, load_image: LoadImage
) -> None:
    """Kubernetes' init-container example: an init container fills an emptyDir, a web
    server serves it, a client fetches it (busybox's httpd and wget for nginx's)."""
    image = load_image("test/busybox:1", BUSYBOX)
    fetch = "until busybox wget -qO- http://127.0.0.1:8080/index.html; do sleep 0.1; done"
    ran = run_pod(
        run_dir,
        "vol-init-demo",
        f"""
        initContainers:
          - name: install
            image: {image}
            imagePullPolicy: Never
            command: {sh("echo '<h1>from the init container</h1>' > /work-dir/index.html")}
            volumeMounts: [{{name: workdir, mountPath: /work-dir}}]
          - name: server
            image: {image}
            imagePullPolicy: Never
            restartPolicy: Always
            command: [busybox, httpd, -f, -p, "8080", -h, /usr/share/nginx/html]
            volumeMounts: [{{name: workdir, mountPath: /usr/share/nginx/html}}]
        containers:
          - name: client
            image: {image}
            imagePullPolicy: Never
            command: {sh(fetch)}
        volumes:
          - name: workdir
            emptyDir: {{}}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("client") == ["<h1>from the init container</h1>"]


def test_two_containers_share_an_empty_dir_on_the_hosts_files(
    run_dir: Path, tmp_path: Path
) -> None:
    """The documentation's two-container pod, on this machine's programs: one writes,
    the other waits for the file and reads it, each at its own path."""
    writer, reader = tmp_path / "writer-html", tmp_path / "reader-html"
    writer.mkdir()
    reader.mkdir()
    wait = "until [ -s index.html ]; do sleep 0.1; done; cat index.html; ls -ld ."
    ran = run_pod(
        run_dir,
        "vol-two",
        f"""
        containers:
          - name: writer
            command: {sh(f"echo hello from the writer > {writer}/index.html")}
            volumeMounts: [{{name: shared, mountPath: {writer}}}]
          - name: reader
            command: {sh(wait)}
            workingDir: {reader}
            volumeMounts: [{{name: shared, mountPath: {reader}}}]
        volumes:
          - name: shared
            emptyDir: {{}}
        """,
    )
    assert ran.status == 0, ran.stderr
    said = ran.of("reader")
    assert said[0] == "hello from the writer"
    assert said[1].startswith("drwxrwxrwx")  # 0777, as the kubelet makes an emptyDir
    # On the host the paths are as they were: the volume was the containers' alone.
    assert not list(writer.iterdir())
    assert not list(reader.iterdir())


def test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit(
    run_dir: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    script = (
        "grep ' /cache ' /proc/self/mountinfo | sed 's/.* - //'; "
        "busybox dd if=/dev/zero of=/cache/big bs=1024 count=2048 2>&1 | grep -o 'No space.*'"
    )
    ran = run_pod(
        run_dir,
        "vol-memory",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(script)}
            volumeMounts: [{{name: cache, mountPath: /cache}}]
        volumes:
          - name: cache
            emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
        """,
    )
    assert ran.status == 0, ran.stderr
    fs, source, options = ran.of("main")[0].split()
    assert (fs, source) == ("tmpfs", "tmpfs")
    assert "size=1024k" in options.split(",")
    assert ran.of("main")[1] == "No space left on device"


def test_a_memory_volume_is_no_larger_than_the_pods_memory_limit(
    run_dir: Path, load_image: LoadImage
) -> None:
    # As the kubelet sizes it: the pod's limit (main containers and sidecars
    # together) caps the tmpfs below a larger sizeLimit, or without one.
    image = load_image("test/busybox:1", BUSYBOX)
    script = "grep -E ' /(capped|unbounded) ' /proc/self/mountinfo | sed 's/.* - //'"
    ran = run_pod(
        run_dir,
        "vol-memory-limit",
        f"""
        initContainers:
          - name: helper
            image: {image}
            imagePullPolicy: Never
            restartPolicy: Always
            command: [sleep, "3600"]
            resources: {{limits: {{memory: 16Mi}}}}
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(script)}
            resources: {{limits: {{memory: 32Mi}}}}
            volumeMounts:
              - {{name: capped, mountPath: /capped}}
              - {{name: unbounded, mountPath: /unbounded}}
        volumes:
          - {{name: capped, emptyDir: {{medium: Memory, sizeLimit: 1Gi}}}}
          - {{name: unbounded, emptyDir: {{medium: Memory}}}}
        """,
    )
    assert ran.status == 0, ran.stderr
    sizes = [
        next(o for o in line.split()[2].split(",") if o.startswith("size="))
        for line in ran.of("main")
    ]
    assert sizes == ["size=49152k", "size=49152k"], ran.of("main")


def test_read_only_mounts_refuse_writes_with_erofs(run_dir: Path, load_image: LoadImage) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    script = "echo kept > /rw/file; cat /ro/file; (echo lost > /ro/other) 2>&1 || true"
    ran = run_pod(
        run_dir,
        "vol-readonly",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(script)}
            volumeMounts:
              - {{name: data, mountPath: /rw}}
              - {{name: data, mountPath: /ro, readOnly: true}}
        volumes:
          - name: data
            emptyDir: {{}}
        """,
    )
    assert ran.status == 0, ran.stderr
    said = ran.of("main")
    assert said[0] == "kept"
    assert said[1].endswith("/ro/other: Read-only file system")


def test_sub_path_and_sub_path_expr_mount_a_part_of_the_volume(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    ran = run_pod(
        run_dir,
        "vol-subpath",
        f"""
        initContainers:
          - name: fill
            image: {image}
            imagePullPolicy: Never
            command: {sh("echo one > /all/a/file; mkdir -p /all/logs/vol-subpath; ls /all")}
            volumeMounts:
              - {{name: data, mountPath: /all}}
              - {{name: data, mountPath: /all/a, subPath: made/here}}
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
            command: {sh("cat /a/file; echo two > /logs/file; ls /all/logs/vol-subpath")}
            volumeMounts:
              - {{name: data, mountPath: /a, subPath: made/here}}
              - {{name: data, mountPath: /logs, subPathExpr: "logs/$(POD_NAME)"}}
              - {{name: data, mountPath: /all}}
        volumes:
          - name: data
            emptyDir: {{}}
        """,
    )
    assert ran.status == 0, ran.stderr
    # The mount point /all/a is made inside the volume, as runtimes make it.
    assert ran.of("fill") == ["a", "logs", "made"]
    assert ran.of("main") == ["one", "file"]


def test_a_sub_path_through_a_link_a_container_planted_is_refused(
    run_dir: Path, load_image: LoadImage
) -> None:
    """The runtimes' classic escape: one container plants a link in a shared volume,
    the next mounts it by subPath; the link leads out of the volume, and is refused."""
    image = load_image("test/busybox:1", BUSYBOX)
    marker = run_dir / "host-secret"
    marker.write_text("the host's")
    ran = run_pod(
        run_dir,
        "vol-escape",
        f"""
        initContainers:
          - name: plant
            image: {image}
            imagePullPolicy: Never
            command: {sh("busybox ln -s / /data/escape && busybox ln -s ../../../.. /data/up")}
            volumeMounts: [{{name: data, mountPath: /data}}]
        containers:
          - name: victim
            image: {image}
            imagePullPolicy: Never
            command: {sh(f"cat /host{marker}")}
            volumeMounts: [{{name: data, mountPath: /host, subPath: escape}}]
          - name: climber
            image: {image}
            imagePullPolicy: Never
            command: {sh(f"cat /host{marker}")}
            volumeMounts: [{{name: data, mountPath: /host, subPath: up}}]
        volumes:
          - name: data
            emptyDir: {{}}
        """,
    )
    assert ran.status != 0
    assert ran.of("victim") == []
    assert ran.of("climber") == []
    for name, sub in (("victim", "escape"), ("climber", "up")):
        said = (
            f'failed to prepare subPath for volumeMount "data" of container "{name}": '
            f"subPath {sub!r}: it leads out of the volume"
        )
        assert f"Warning Failed {name}: Error: {said}" in ran.stderr, ran.stderr
        assert f"{name} exited 128 (CreateContainerConfigError: {said})" in ran.stderr
    assert json.dumps("the host's") not in ran.stderr


def test_an_empty_dir_on_disk_past_its_size_limit_evicts_the_pod(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/busybox:1", BUSYBOX)
    fill = "busybox dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>/dev/null; echo full"
    ran = run_pod(
        run_dir,
        "vol-evicted",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(fill + "; sleep 60")}
            volumeMounts: [{{name: scratch, mountPath: /scratch}}]
        volumes:
          - name: scratch
            emptyDir: {{sizeLimit: 1Mi}}
        """,
    )
    said = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    assert ran.status == 143, ran.stderr  # stopped with the kubelet's grace period of 0
    assert ran.of("main") == ["full"]
    assert f"podvisor | Warning Evicted pod/vol-evicted: {said}" in ran.stderr, ran.stderr
    assert ran.stderr.splitlines()[-1].startswith(
        f"podvisor | pod Failed (exit 143): evicted: {said}; main exited 143 after SIGTERM"
    )


def test_a_container_past_its_ephemeral_storage_limit_evicts_the_pod(
    run_dir: Path, load_image: LoadImage
) -> None:
    """Its writable layer counts: 5 MB written into / outgrow a limit of 1Mi. The pod's
    total (the sum of its containers' limits, 1Mi) is checked first, as the kubelet
    checks it."""
    image = load_image("test/busybox:1", BUSYBOX)
    fill = "busybox dd if=/dev/zero of=/big bs=1024 count=5120 2>/dev/null; echo full"
    ran = run_pod(
        run_dir,
        "vol-storage-evicted",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(fill + "; sleep 60")}
            resources: {{limits: {{ephemeral-storage: 1Mi}}}}
        """,
    )
    said = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi."
    assert ran.status == 143, ran.stderr
    assert ran.of("main") == ["full"]
    assert f"podvisor | Warning Evicted pod/vol-storage-evicted: {said}" in ran.stderr
    assert ran.stderr.splitlines()[-1].startswith(
        f"podvisor | pod Failed (exit 143): evicted: {said}"
    )


def test_a_container_past_its_own_limit_within_the_pods_total_evicts_the_pod(
    run_dir: Path, load_image: LoadImage
) -> None:
    """2 MB in one container's root: past its own 1Mi, within the pod's 9Mi; the other
    container, with 8Mi, holds less than its limit and is not the one named. It
    ignores SIGTERM: two seconds after it, the eviction's SIGKILL ends it."""
    image = load_image("test/busybox:1", BUSYBOX)
    fill = "busybox dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null; echo full"
    deaf = "trap '' TERM; " + fill
    ran = run_pod(
        run_dir,
        "vol-storage-own",
        f"""
        containers:
          - name: small
            image: {image}
            imagePullPolicy: Never
            command: {sh(fill + "; sleep 60")}
            resources: {{limits: {{ephemeral-storage: 1Mi}}}}
          - name: large
            image: {image}
            imagePullPolicy: Never
            command: {sh(deaf + "; sleep 60")}
            resources: {{limits: {{ephemeral-storage: 8Mi}}}}
        """,
    )
    said = 'Container small exceeded its local ephemeral storage limit "1Mi".'
    assert ran.status == 143, ran.stderr
    assert f"podvisor | Warning Evicted pod/vol-storage-own: {said}" in ran.stderr, ran.stderr
    last = ran.stderr.splitlines()[-1]
    assert "small exited 143 after SIGTERM" in last, last
    assert "large exited 137 (SIGKILL: still running when the grace period ended)" in last


def test_a_container_within_its_ephemeral_storage_limit_runs_on(
    run_dir: Path, load_image: LoadImage
) -> None:
    """2 MB against 8Mi, kept past several measures: the container ends as it would."""
    image = load_image("test/busybox:1", BUSYBOX)
    fill = "busybox dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null; echo full"
    ran = run_pod(
        run_dir,
        "vol-storage-within",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: {sh(fill + "; sleep 5; ls -s /big")}
            resources: {{limits: {{ephemeral-storage: 8Mi}}}}
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main")[0] == "full"
    assert "Evicted" not in ran.stderr


def test_in_host_mode_the_log_counts_and_the_hosts_files_do_not(
    run_dir: Path, tmp_path: Path
) -> None:
    """A container on the host's files has no writable layer: 3 MB it writes there are
    the host's, and leave it under its 1Mi; 3 MB it prints to its log evict the pod."""
    big = tmp_path / "big"
    quiet = f"head -c 3000000 /dev/zero > {big}; sync; sleep 5; echo kept"
    ran = run_pod(
        run_dir,
        "vol-storage-host",
        f"""
        containers:
          - name: main
            command: {sh(quiet)}
            resources: {{limits: {{ephemeral-storage: 1Mi}}}}
        """,
    )
    assert (ran.status, ran.of("main")) == (0, ["kept"]), ran.stderr
    loud = "head -c 3000000 /dev/zero | tr '\\\\0' x | fold -w 1000; sleep 60"
    ran = run_pod(
        run_dir,
        "vol-storage-log",
        f"""
        containers:
          - name: main
            command: {sh(loud)}
            resources: {{limits: {{ephemeral-storage: 1Mi}}}}
        """,
    )
    said = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi."
    assert ran.status == 143, ran.stderr[-2000:]
    assert f"podvisor | Warning Evicted pod/vol-storage-log: {said}" in ran.stderr
