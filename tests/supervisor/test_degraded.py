"""Degraded, never broken: pods without CAP_SYS_ADMIN, taken away for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from podvisor.init import protocol
from podvisor.supervisor.pod.init_client import InitClient, InitProcessHandle
from podvisor.supervisor.pod.sandbox import plan_namespaces
from tests.supervisor.conftest import pod_yaml, podvisor_command

DROP_SYS_ADMIN = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]


def test_without_cap_sys_admin_the_pod_runs_in_a_user_namespace(tmp_path: Path) -> None:
    # What docs/operating.md says of a pod without CAP_SYS_ADMIN, namespace by namespace.
    namespaces = "user pid mnt uts ipc net"
    script = (
        "echo pid=$$$$; hostname; cat /proc/self/uid_map;"
        f" for ns in {namespaces}; do readlink /proc/self/ns/$ns; done; exit 5"
    )
    path = tmp_path / "pod.yaml"
    path.write_text(
        pod_yaml(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: unprivileged}}
        spec:
          restartPolicy: Never
          containers:
            - name: main
              # $$$$: Kubernetes reduces $$ to $ in command and args
              command: ["sh", "-c", {json.dumps(script)}]
    """)
    )
    result = subprocess.run(
        [*DROP_SYS_ADMIN, *podvisor_command(), "run", "--metrics-address", "off", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    lines = [line.partition(" | ")[2] for line in result.stdout.splitlines() if " | " in line]
    pid, hostname, uid_map, *seen = lines
    assert pid == "pid=2"  # its own PID namespace, under the container's init
    assert hostname == "unprivileged"  # its own UTS namespace
    # One id mapped: its root is podvisor's own user on this machine's files.
    assert uid_map.split() == ["0", str(os.geteuid()), "1"]
    ours = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in namespaces.split()}
    theirs = dict(zip(namespaces.split(), seen, strict=True))
    assert {ns for ns in ours if ours[ns] == theirs[ns]} == {"net"}  # the host's network
    # Said once each, at start, with how to grant what is missing.
    assert result.stderr.count("running in a user namespace") == 1
    assert f"its root is podvisor's own user (uid {os.geteuid()})" in result.stderr
    assert result.stderr.count("the pod uses the host's network") == 1
    assert "--cap-add SYS_ADMIN" in result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_without_any_namespace_init_reaps_as_a_subreaper(tmp_path: Path) -> None:
    # No CAP_SYS_ADMIN and no user namespaces: the init runs in our namespaces.
    plan = plan_namespaces(
        host_pid=False,
        host_ipc=False,
        hostname="ignored",
        netns=None,
        binds=(),
        cgroup_procs=(),
        grace=5,
        privileged=False,
        user_namespaces=False,
    )
    assert plan.unshare == ()
    assert "running without namespaces" in plan.warnings[0]
    init = await InitClient.start(plan)
    try:
        assert init.host_pid == init.process.pid  # no inner PID 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(init.serve)
            read_end, write_end = os.pipe()
            null = os.open(os.devnull, os.O_RDONLY)
            orphan = "import os, time\nif os.fork() == 0:\n    time.sleep(0.3)\n    os._exit(0)\nprint(os.getpid())"
            spawned = await init.spawn(
                protocol.Process((sys.executable, "-c", orphan)), (null, write_end, write_end)
            )
            os.close(write_end)
            os.close(null)
            assert isinstance(spawned, InitProcessHandle)
            with anyio.fail_after(30):
                await spawned.wait()
                assert spawned.code == 0
                # The grandchild was orphaned; the init adopted and reaped it.
                reaped = await init.notices.receive()
                while not isinstance(reaped, protocol.OrphansReaped):
                    reaped = await init.notices.receive()
            assert reaped.total == 1
            assert int(os.read(read_end, 100)) == spawned.pid  # pids are the host's
            os.close(read_end)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await init.stop_all(grace=1)
            await init.process.wait()
            init.close()
            await init.process.aclose()
