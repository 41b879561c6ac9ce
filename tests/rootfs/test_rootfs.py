"""Containers on their images' roots, as Kubernetes runs them.

Every pod here runs ``podvisor run`` on images the tests build from Debian's
busybox-static and load into a store of the test's own. Nothing is mocked:
the overlays, pivot_root and the mounts are the kernel's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from podvisor.init.rootfs import DEVICES
from podvisor.supervisor.images import ImageStore
from podvisor.supervisor.manifest.explain import main as check
from tests.faults import procfs
from tests.faults.pods import Supervisor, podvisor_command
from tests.images.build import Entry
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import Ran, manifest, run_pod

#: The image's config: a program, its default arguments, its environment, directory, user.
CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ['echo "cmd: $0 $GREETING"; id; pwd'],
    "Env": ["PATH=/bin", "GREETING=from-image", "KEPT=image"],
    "WorkingDir": "/home/app",
    "User": "app",
}


def _supervised(run_dir: Path, name: str, body: str) -> Supervisor:
    """`podvisor run` of *body* in the background, in *run_dir*; stopped as the block ends."""
    path = run_dir / f"{name}.yaml"
    path.write_text(body)
    return Supervisor(path, env={"PODVISOR_RUN_DIR": str(run_dir)})


def said(ran: Ran, container: str = "main") -> list[str]:
    assert ran.status == 0, ran.stderr + "\n".join(ran.of(container))
    return ran.of(container)


# --- The image's config, as Kubernetes applies it -------------------------------------


def test_the_images_config_runs_as_it_says(run_dir: Path, load_image: LoadImage) -> None:
    image = load_image("test/config:1", CONFIG)
    ran = run_pod(
        run_dir,
        "img-config",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
        """,
    )
    assert said(ran) == [
        "cmd: /bin/sh from-image",
        "uid=1000(app) gid=1000(app) groups=1000(app)",
        "/home/app",
    ]


def test_args_replace_cmd_and_the_containers_settings_win(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/config:1", CONFIG)
    ran = run_pod(
        run_dir,
        "img-args",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            args: ['echo "$GREETING $KEPT"; id -u; pwd']
            env: [{{name: GREETING, value: from-pod}}]
            workingDir: /srv/data
            securityContext: {{runAsUser: 0}}
        """,
    )
    # The Entrypoint stays; the pod's env wins, the image's other variables stay;
    # workingDir wins, made as runc makes it; runAsUser wins.
    assert said(ran) == ["from-pod image", "0", "/srv/data"]


def test_command_replaces_the_entrypoint_and_drops_cmd(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/config:1", CONFIG)
    ran = run_pod(
        run_dir,
        "img-command",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [echo, only, the, command]
        """,
    )
    assert said(ran) == ["only the command"]


# --- What a container sees ------------------------------------------------------------------


def test_the_root_is_the_image_and_the_host_is_out_of_reach(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    here = Path(__file__).resolve()
    script = (
        "ls /; "
        f"test -e {here} && echo host-path; "
        f"test -e /proc/1/root{here} && echo proc-escape; "
        "test -e /proc/1/root/bin/busybox && echo pid1-root-is-image; "
        "ls /dev; "
        "cat /etc/hostname; "
        "mount | grep -c ' / ' "
    )
    ran = run_pod(
        run_dir,
        "img-view",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
            securityContext: {{capabilities: {{add: [SYS_PTRACE]}}}}
        """,
    )
    lines = said(ran)
    root = lines[: lines.index("pid1-root-is-image")]
    assert root == ["bin", "dev", "etc", "home", "proc", "run", "sys", "tmp"]
    rest = lines[len(root) + 1 :]
    # The standard devices, their links, devpts and shm, and the termination message file.
    devices = {name for name, _, _ in DEVICES} | {"fd", "stdin", "stdout", "stderr", "ptmx"}
    devices |= {"pts", "shm", "termination-log"}
    assert rest[: len(devices)] == sorted(devices)
    assert rest[len(devices) :] == ["img-view", "1"]


def test_writes_land_in_the_upper_directory_and_vanish_on_restart(
    run_dir: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    # Each instance says whether it sees the write of the one before, writes, and fails.
    script = "test -e /etc/mark && echo seen || echo fresh; echo w > /etc/mark; exit 1"
    body = manifest(
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
        """,
        "img-restart",
    ).replace("restartPolicy: Never", "restartPolicy: OnFailure")
    with _supervised(run_dir, "img-restart", body) as pod:
        pod.wait_line("main", "fresh", count=2)  # the first restart is at once
        said = pod.out.of("main")[:2]
        uppers = list((Path(image_store.root) / "containers").glob("*/main/*/upper"))
    assert said == ["fresh", "fresh"]
    # One instance's files at a time: the one before is gone.
    assert [u.parent.name for u in uppers] == ["2"]
    # The image's own layer never saw the write.
    for layer in image_store.resolve(image).layer_dirs():
        assert not os.path.exists(f"{layer}/etc/mark")


def test_probes_hooks_and_exec_enter_the_containers_root(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    # The hook writes in the container's root; the program waits for it, and
    # the probe reads what only the container's root holds.
    script = "while ! test -e /tmp/hooked; do sleep 0.05; done; cat /tmp/hooked; sleep 2"
    ran = run_pod(
        run_dir,
        "img-hooks",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
            lifecycle:
              postStart:
                exec: {{command: [sh, -c, "pwd > /tmp/hooked; ls / >> /tmp/hooked"]}}
            startupProbe:  # patient: a loaded machine may take seconds for an exec
              exec: {{command: [test, -e, /tmp/hooked]}}
              periodSeconds: 1
              timeoutSeconds: 10
              failureThreshold: 30
        """,
    )
    assert said(ran) == ["/", "bin", "dev", "etc", "home", "proc", "run", "sys", "tmp"]


# --- When the image cannot be had, and host mode ----------------------------------------


def test_a_missing_image_stops_the_pod_before_anything_starts(
    run_dir: Path, image_store: ImageStore
) -> None:
    ran = run_pod(
        run_dir,
        "img-missing",
        """
        containers:
          - name: main
            image: test/absent:1
            imagePullPolicy: Never
            command: [sh, -c, "touch /tmp/never"]
        """,
    )
    assert ran.status == 2
    assert "cannot have its image test/absent:1" in ran.stderr
    assert "podvisor image load" in ran.stderr
    assert "podvisor.io/rootfs.main: host" in ran.stderr
    assert ran.of("main") == []


def test_host_mode_by_annotation_runs_the_hosts_programs(
    run_dir: Path, image_store: ImageStore
) -> None:
    here = Path(__file__).resolve()
    ran = run_pod(
        run_dir,
        "img-host",
        f"""
        containers:
          - name: main
            image: test/absent:1
            command: [sh, -c, "test -e {here} && echo host"]
        """,
        annotations={"podvisor.io/rootfs": "host"},
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == ["host"]


def test_check_says_which_root_and_why(
    tmp_path: Path, load_image: LoadImage, capsys: object
) -> None:
    image = load_image("test/config:1", CONFIG)
    path = tmp_path / "pod.yaml"
    path.write_text(
        manifest(
            f"""
            containers:
              - name: main
                image: {image}
                imagePullPolicy: Never
                securityContext: {{privileged: true}}
              - name: tool
                command: [sh]
                securityContext: {{privileged: true}}
            """,
            "img-check",
        )
    )
    assert check([str(path)]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert (
        "root: its image's, an overlay entered with pivot_root (it names the image test/config:1)"
        in out
    )
    assert "runs: /bin/sh -c 'echo \"cmd: $0 $GREETING\"; id; pwd' (the image's Entrypoint" in out
    assert "root: the host's file system (host mode: it names no image)" in out
    # On the host's files /dev is the host's already: only the image's root is given its devices.
    privileged = "    privileged: every capability, nothing masked, /sys and the cgroups writable"
    assert out.count(f"{privileged}, the host's devices in /dev\n") == 1
    assert out.count(f"{privileged}\n") == 1


def test_an_image_that_says_nothing_to_run_needs_a_command(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/empty:1", {}, [Entry("srv/", kind="dir", mode=0o755)])
    ran = run_pod(
        run_dir,
        "img-nothing",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
        """,
    )
    assert ran.status == 2
    assert "says nothing to run (no Entrypoint, no Cmd): give the container a command" in (
        ran.stderr
    )


# --- The writable layer's metrics and the clean-up ------------------------------------


def test_the_writable_layers_usage_is_what_the_container_wrote(
    tmp_path: Path, image_store: ImageStore
) -> None:
    from podvisor.supervisor.cgroups import CgroupStats
    from podvisor.supervisor.metrics.cadvisor import ContainerSample, container_families
    from podvisor.supervisor.pod.rootfs import layer_usage, writable_layer

    pod_dir = Path(image_store.root) / "containers" / "uid-1" / "main"
    (pod_dir / "1" / "upper").mkdir(parents=True)
    upper = pod_dir / "2" / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "big").write_bytes(b"x" * 1_000_000)
    os.link(upper / "etc" / "big", upper / "etc" / "again")  # counted once
    assert writable_layer("uid-1", "main", image_store.root) == str(upper)
    assert writable_layer("uid-1", "other", image_store.root) is None
    usage = layer_usage(str(upper))
    assert usage is not None
    assert 1_000_000 <= usage.bytes_used < 1_100_000
    sample = ContainerSample(("main", "img", "default", "p"), CgroupStats(), None, usage)
    families = {f.name: f for f in container_families([sample], 0.0)}
    (value,) = families["container_fs_usage_bytes"].samples
    assert value.value == usage.bytes_used
    assert value.labels["device"] == usage.device
    assert "container_fs_inodes_free" in families
    shutil.rmtree(Path(image_store.root) / "containers")


def test_the_supervisor_of_a_pod_on_an_image_keeps_no_layer_unpacking(
    run_dir: Path, load_image: LoadImage
) -> None:
    # Its containers' instance directories are made and removed with the
    # standard library's cheap part: tarfile and hashlib (OpenSSL's libcrypto
    # with it) would stay in the supervisor for the pod's whole life.
    image = load_image("test/lean:1", {"Cmd": ["/bin/true"]})
    path = run_dir / "img-lean.yaml"
    path.write_text(manifest(f"containers: [{{name: main, image: {image}}}]", "img-lean"))
    code = (
        "import sys\n"
        "from podvisor.init.entry import main\n"
        f"status = main(['run', {str(path)!r}, '--metrics-address', 'off'])\n"
        "print('modules:', ' '.join(sys.modules))\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PODVISOR_RUN_DIR": str(run_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f'Container image "{image}" already present' in done.stderr  # it ran on its image
    modules = set(done.stdout.rpartition("modules: ")[2].split())
    heavy = ("tarfile", "hashlib", "podvisor.supervisor.images.layers")
    assert [m for m in heavy if m in modules] == []


def test_a_killed_supervisors_files_are_removed_by_the_next_run(
    run_dir: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    # What a SIGKILLed supervisor leaves: a pod directory whose owner lock nobody holds.
    left = Path(image_store.root) / "containers" / "dead-pod-uid"
    (left / "main" / "1" / "upper" / "etc").mkdir(parents=True)
    (left / "owner").touch()
    ran = run_pod(
        run_dir,
        "img-stale",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: ["true"]
        """,
    )
    assert ran.status == 0, ran.stderr
    assert not left.exists()
    assert f"removed the containers' files an earlier run left behind: {left}" in ran.stderr


# --- The termination message ----------------------------------------------------------------


def test_the_termination_message_reaches_the_pods_status(
    run_dir: Path, load_image: LoadImage
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    long_message = "x" * 5000  # kept to 4 KiB, as the kubelet keeps it
    body = manifest(
        f"""
        initContainers:
          - name: leaves-word
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "echo done: 42 rows > /dev/termination-log"]
          - name: custom-path
            image: {image}
            imagePullPolicy: Never
            terminationMessagePath: /tmp/why
            command: [sh, -c, "echo {long_message} > /tmp/why"]
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "echo ready; sleep 30"]
        """,
        "img-message",
    )
    with _supervised(run_dir, "img-message", body) as pod:
        pod.wait_line("main", "ready")
        ended = _last_terminations(run_dir, "img-message")
    assert ended["leaves-word"]["message"] == "done: 42 rows\n"
    assert ended["custom-path"]["message"] == "x" * 4096


def _last_terminations(run_dir: Path, pod: str) -> dict[str, Any]:
    """Each container's last termination, as `podvisor status -o json POD` shows it."""
    shown = subprocess.run(
        [*podvisor_command(), "status", "-o", "json", pod],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PODVISOR_RUN_DIR": str(run_dir)},
        check=True,
    ).stdout
    return {c["name"]: c["last_termination"] for c in json.loads(shown)["containers"]}


def test_on_the_hosts_files_the_message_is_read_from_a_file_of_the_containers_own(
    run_dir: Path, tmp_path: Path, image_store: ImageStore
) -> None:
    """A terminationMessagePath that exists on the host gets the instance's own file
    bound over it, in the container's mount namespace: the host's file stays as it was."""
    on_host = tmp_path / "why"
    on_host.write_text("the host's\n")
    body = manifest(
        f"""
        initContainers:
          - name: leaves-word
            terminationMessagePath: {on_host}
            command: [sh, -c, "cat {on_host}; echo done: 42 rows > {on_host}"]
        containers:
          - name: main
            command: [sh, -c, "echo ready; sleep 30"]
        """,
        "host-message",
    )
    with _supervised(run_dir, "host-message", body) as pod:
        pod.wait_line("main", "ready")
        ended = _last_terminations(run_dir, "host-message")
    assert ended["leaves-word"]["message"] == "done: 42 rows\n"
    assert on_host.read_text() == "the host's\n"
    assert not list((Path(image_store.root) / "containers").iterdir())


def test_after_a_sigkilled_supervisor_nothing_is_mounted_and_its_init_cleans_up(
    run_dir: Path, load_image: LoadImage, image_store: ImageStore
) -> None:
    image = load_image("test/plain:1", {"Cmd": ["/bin/sh"]})
    body = manifest(
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, "echo written > /etc/mark; echo ready; sleep 60"]
        """,
        "img-killed",
    ).replace("terminationGracePeriodSeconds: 3", "terminationGracePeriodSeconds: 1")
    with _supervised(run_dir, "img-killed", body) as pod:
        pod.wait_line("main", "ready")
        containers = Path(image_store.root) / "containers"
        (left,) = containers.iterdir()  # the pod's directory
        assert list(left.glob("main/1/upper/etc/mark"))
        tree = procfs.descendants(pod.pid)
        pod.signal(signal.SIGKILL)
        pod.wait(timeout=30)
    # The pod's outer init cleans up in the killed supervisor's place, then ends.
    procfs.wait_gone(tree, timeout=30)
    procfs.reap_adopted()
    assert not left.exists()
    # The overlay was only ever mounted in the container's own mount namespace.
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert str(containers) not in mountinfo
    ran = run_pod(
        run_dir,
        "img-next",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: ["true"]
        """,
        timeout=90,
    )
    assert ran.status == 0, ran.stderr


def test_the_images_stop_signal_stops_the_container(run_dir: Path, load_image: LoadImage) -> None:
    image = load_image("test/stops:1", {"Cmd": ["/bin/sh"], "StopSignal": "SIGUSR1"})
    script = "trap 'echo got USR1; exit 0' USR1; echo ready; while true; do sleep 0.1; done"
    body = manifest(
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            command: [sh, -c, {json.dumps(script)}]
        """,
        "img-stop",
    )
    with _supervised(run_dir, "img-stop", body) as pod:
        pod.wait_line("main", "ready")
        pod.signal(signal.SIGTERM)
        pod.wait(timeout=30)
    assert "got USR1" in pod.out.of("main")


def test_a_tty_on_an_images_root_is_a_terminal(run_dir: Path, load_image: LoadImage) -> None:
    # The terminal is from the host's /dev/pts, which the container's own /dev/pts
    # does not show: it is the container's /dev/console, as runtimes give it.
    image = load_image("test/tty:1", {"Env": ["PATH=/bin"]})
    script = "test -t 0 && test -t 1 && echo a-terminal; tty"
    ran = run_pod(
        run_dir,
        "img-tty",
        f"""
        containers:
          - name: main
            image: {image}
            imagePullPolicy: Never
            tty: true
            command: ["sh", "-c", {json.dumps(script)}]
        """,
    )
    assert ran.status == 0, ran.stderr
    assert ran.of("main") == ["a-terminal", "/dev/console"]
