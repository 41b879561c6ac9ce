"""The network maker: the pod's network made by a child forked at `podvisor run`'s start.

A process with threads does not fork a maker, and this one has (anyio's
worker threads), so each scenario runs in a fresh interpreter, as `podvisor
run` does, and prints what it saw as JSON. The pods use the default network:
the bridge podvisor0 and its subnet, as users get.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from podvisor.supervisor.network import records
from tests.faults import procfs
from tests.faults.pods import podvisor_command
from tests.network.conftest import ip

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60

#: Loads the pod (argv[1]); `forked` forks a maker and sends it the pod, `ask`
#: takes its answer as the runner does. The scenario follows.
PROLOGUE = """
import json, os, signal, sys
import anyio
from podvisor.supervisor import manifest
from podvisor.supervisor.errors import NetworkError
from podvisor.supervisor.network import NetworkRequest, links, records
from podvisor.supervisor.network.maker import NetworkMaker

pod = manifest.load(sys.argv[1]).pod
request = NetworkRequest.for_pod(pod)
record = records.PODS_DIR / request.instance / "network.json"
netns = f"/run/netns/pv-{request.instance}"
seen = {"netns": netns}

def forked(pod):
    maker = NetworkMaker.fork()
    maker.make(pod)
    return maker

def note_reaped(maker):
    try:
        os.waitpid(maker.pid, os.WNOHANG)
    except ChildProcessError:
        seen["child reaped"] = True

def ask(maker):  # the runner takes the network; what went wrong: seen["error"]
    try:
        return anyio.run(maker.network)
    except NetworkError as e:
        seen["error"] = str(e)
"""


def a_pod(tmp_path: Path) -> Path:
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: maker-{uuid.uuid4().hex[:6]}}}\n"
        'spec:\n  containers: [{name: main, command: ["true"]}]\n'
    )
    return pod


def scenario(tmp_path: Path, code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROLOGUE + textwrap.dedent(code), str(a_pod(tmp_path)), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def left_of(seen: dict[str, Any]) -> list[str]:
    """What of the scenario's pod is still on the machine."""
    instance = Path(seen["netns"]).name.removeprefix("pv-")
    return [str(p) for p in (Path(seen["netns"]), records.PODS_DIR / instance) if p.exists()] + [
        line for line in ip("-o", "addr").splitlines() if f" {seen.get('pod_ip')}/" in line
    ]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_runner_takes_the_network_the_child_made(tmp_path: Path, backend: str) -> None:
    seen = scenario(
        tmp_path,
        """
        maker = forked(pod)
        seen["child"] = maker.pid
        network = anyio.run(maker.network, backend=sys.argv[2])
        note_reaped(maker)
        seen["pod_ip"], seen["netns"] = network.pod_ip, network.netns_path
        seen["owner"] = json.loads(record.read_text())["owner"]["pid"]
        seen["eth0"] = os.popen(f"ip -n pv-{request.instance} -4 -o addr").read()
        seen["etc"] = sorted(network.etc_files)
        anyio.run(network.aclose, backend=sys.argv[2])
        print(json.dumps(seen))
        """,
        backend,
    )
    assert seen["child reaped"] is True
    assert seen["owner"] != seen["child"]  # the records name the supervisor, never the child
    assert seen["pod_ip"].startswith("10.213.0.")
    assert f"eth0    inet {seen['pod_ip']}/24" in seen["eth0"]
    assert seen["etc"] == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    assert left_of(seen) == []


def test_a_network_the_runner_never_took_is_undone_on_the_way_out(tmp_path: Path) -> None:
    # An error before the pod is made (a metrics port taken, say): the
    # supervisor leaves the maker's `with` block without taking the network.
    seen = scenario(
        tmp_path,
        """
        with forked(pod) as maker:
            seen["child"] = maker.pid
        note_reaped(maker)
        print(json.dumps(seen))
        """,
    )
    assert seen["child reaped"] is True
    assert left_of(seen) == []


def test_a_child_sent_no_request_goes_having_made_nothing(tmp_path: Path) -> None:
    # A loopback pod (`dismiss`), or a manifest with an error (the way out).
    seen = scenario(
        tmp_path,
        """
        for how in ("dismiss", "way out"):
            maker = NetworkMaker.fork()
            if how == "dismiss":
                maker.dismiss()
            with maker:
                pass
            try:
                os.waitpid(maker.pid, os.WNOHANG)
            except ChildProcessError:
                seen[how] = "reaped"
        print(json.dumps(seen))
        """,
    )
    assert seen["dismiss"] == seen["way out"] == "reaped"
    assert left_of(seen) == []


def test_a_request_to_a_dead_child_is_answered_as_its_end(tmp_path: Path) -> None:
    seen = scenario(
        tmp_path,
        """
        maker = NetworkMaker.fork()
        os.kill(maker.pid, signal.SIGKILL)
        os.waitid(os.P_PID, maker.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
        maker.make(pod)  # the pipe is broken: not an error here
        ask(maker)
        print(json.dumps(seen))
        """,
    )
    assert seen["error"].endswith("ended without an answer (killed by SIGKILL)")
    assert left_of(seen) == []


def test_a_request_cut_short_is_closed_and_the_way_out_does_not_wait(tmp_path: Path) -> None:
    # A Ctrl-C while the request is written: the pipe is closed all the same,
    # so the child reads end-of-file and ends, and `close` does not wait for
    # an answer that cannot come (the timeout here is longer than the test's).
    seen = scenario(
        tmp_path,
        """
        from podvisor.supervisor.network import maker as maker_module
        maker_module.ANSWER_TIMEOUT = 3600
        def interrupted(fd, data):
            raise KeyboardInterrupt
        maker_module._write_all = interrupted
        def fds():  # but the supervisor's owner lock, held until it exits
            found = set()
            for fd in os.listdir("/proc/self/fd"):
                try:
                    to = os.readlink(f"/proc/self/fd/{fd}")
                except FileNotFoundError:  # listdir's own
                    continue
                if not to.startswith(str(records.OWNERS_DIR)):
                    found.add(fd)
            return found
        before = fds()
        maker = NetworkMaker.fork()
        try:
            maker.make(pod)
        except KeyboardInterrupt:
            seen["interrupted"] = True
        maker.close()
        seen["fds left"] = sorted(fds() - before)
        note_reaped(maker)
        print(json.dumps(seen))
        """,
    )
    assert seen["interrupted"] is True
    assert seen["fds left"] == []
    assert seen["child reaped"] is True
    assert left_of(seen) == []


@pytest.mark.parametrize("network", ["loopback", "bridge"])
def test_a_launcher_that_ignores_sigchld_is_no_matter(tmp_path: Path, network: str) -> None:
    # SIG_IGN for SIGCHLD survives exec: the kernel would reap the maker and
    # the init before podvisor could wait for them.
    name = f"maker-chld-{uuid.uuid4().hex[:6]}"
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n"
        f"  annotations: {{podvisor.io/network: {network}}}\n"
        'spec:\n  restartPolicy: Never\n  containers: [{name: main, command: ["echo", "done"]}]\n'
    )
    done = subprocess.run(
        [*podvisor_command(), "run", "--metrics-address", "off", str(pod)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN),
    )
    assert done.returncode == 0, done.stderr
    assert "main | done" in done.stdout
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"pv-{name}-")]
    assert not list(records.PODS_DIR.glob(f"{name}-*"))


def test_what_the_child_could_not_make_reaches_the_runner_with_its_reason(
    tmp_path: Path,
) -> None:
    seen = scenario(
        tmp_path,
        """
        os.system(f"ip netns add pv-{request.instance}")  # somebody else's, by that name
        try:
            maker = forked(pod)
            ask(maker)
            seen["netns kept"] = os.path.exists(netns)
        finally:
            os.system(f"ip netns delete pv-{request.instance}")
        print(json.dumps(seen))
        """,
    )
    assert seen["error"] == (
        f"network namespace {seen['netns']} exists already; if no pod uses it, "
        f"remove it with `ip netns delete {Path(seen['netns']).name}`"
    )
    assert seen["netns kept"] is True  # not ours: left alone
    assert left_of(seen) == []


def test_a_bug_in_the_child_is_said_not_lost(tmp_path: Path) -> None:
    seen = scenario(
        tmp_path,
        """
        from podvisor.supervisor.network import create
        def broken(mode):
            raise RuntimeError("a bug")
        create.choose_mode = broken
        maker = forked(pod)
        ask(maker)
        print(json.dumps(seen))
        """,
    )
    assert seen["error"].startswith("cannot make the network of pod maker-")
    assert seen["error"].endswith(": RuntimeError('a bug')")
    assert left_of(seen) == []


def test_a_child_killed_half_way_leaves_nothing_once_the_runner_asks(tmp_path: Path) -> None:
    # The child dies after its record, namespace, bridge and address are made,
    # just before the veth: the supervisor undoes what the record names.
    seen = scenario(
        tmp_path,
        """
        links.add_veth = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        maker = forked(pod)
        ask(maker)
        print(json.dumps(seen))
        """,
    )
    assert seen["error"].startswith("the process making the network of pod maker-")
    assert seen["error"].endswith("ended without an answer (killed by SIGKILL)")
    assert left_of(seen) == []


@pytest.mark.parametrize("taken", [True, False], ids=["runner-asks", "way-out"])
def test_a_child_that_hangs_is_killed_and_what_it_made_undone(tmp_path: Path, taken: bool) -> None:
    seen = scenario(
        tmp_path,
        """
        import time
        from podvisor.supervisor.network import maker as maker_module
        maker_module.ANSWER_TIMEOUT = 0.5
        links.add_veth = lambda *args: time.sleep(WAIT)
        maker = forked(pod)
        if sys.argv[2] == "True":
            ask(maker)
        else:
            maker.close()
        note_reaped(maker)
        print(json.dumps(seen))
        """.replace("WAIT", str(WAIT)),
        str(taken),
    )
    if taken:
        assert seen["error"].endswith("did not answer within 0.5 s and was killed")
    assert seen["child reaped"] is True
    assert left_of(seen) == []


#: Forks the maker, waits until /proc/locks shows its child waiting for the
#: network lock (so past its PR_SET_PDEATHSIG), then SIGKILLs itself.
FORK_AND_DIE = """
maker = forked(pod)
def waiting(line):
    return line.split()[1:2] == ["->"] and f" {maker.pid} " in line
while not any(waiting(line) for line in open("/proc/locks")):
    pass
print(json.dumps({"child": maker.pid, "netns": netns}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_dies_with_a_killed_supervisor(tmp_path: Path) -> None:
    # The test holds the network lock, so the child cannot have finished when
    # its supervisor is SIGKILLed. The child is killed too (this session is a
    # subreaper, so it comes back here), and nothing of the pod is made.
    with records.locked():
        done = subprocess.run(
            [sys.executable, "-c", PROLOGUE + FORK_AND_DIE, str(a_pod(tmp_path))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr
        seen = json.loads(done.stdout)
        deadline = time.monotonic() + WAIT
        while (found := os.waitpid(seen["child"], os.WNOHANG)) == (0, 0):
            assert time.monotonic() < deadline, f"the child {seen['child']} outlived its parent"
            time.sleep(0.02)
    assert os.WIFSIGNALED(found[1])
    assert os.WTERMSIG(found[1]) == signal.SIGKILL
    assert left_of(seen) == []


def test_a_process_with_threads_makes_its_network_itself(tmp_path: Path) -> None:
    seen = scenario(
        tmp_path,
        """
        import threading
        release = threading.Event()
        other = threading.Thread(target=release.wait)
        other.start()
        seen["maker"] = NetworkMaker.fork() is None
        release.set()
        other.join()
        print(json.dumps(seen))
        """,
    )
    assert seen["maker"] is True
    assert left_of(seen) == []


def test_podvisor_run_that_fails_before_the_pod_is_made_leaves_no_network(
    tmp_path: Path,
) -> None:
    # `podvisor run` forks the maker at once; the metrics port is taken, an
    # error found after the network was made and before the pod was.
    pod = a_pod(tmp_path)
    name = pod.read_text().split("name: ")[1].split("}")[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        done = subprocess.run(
            [*podvisor_command(), "run", "--metrics-address", address, str(pod)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    assert done.returncode == 125, done.stderr
    assert "another program listens there" in done.stderr
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"pv-{name}-")]
    assert not list(records.PODS_DIR.glob(f"{name}-*"))


def test_a_loopback_pod_keeps_no_maker(tmp_path: Path) -> None:
    # `podvisor run` forks the maker before it reads the manifest; a pod that
    # needs none (loopback) sends it off at once, and a manifest with an error
    # does too, before it exits 2.
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: maker-lo\n"
        "  annotations: {podvisor.io/network: loopback}\n"
        'spec:\n  containers: [{name: main, command: ["sh", "-c", "trap \'exit 0\' TERM; echo up; while :; do sleep 0.1; done"]}]\n'
    )
    with subprocess.Popen(
        [*podvisor_command(), "run", "--metrics-address", "off", str(pod)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as sup:
        try:
            assert sup.stdout is not None
            assert select.select([sup.stdout], [], [], WAIT)[0], "no line from main"
            assert sup.stdout.readline() == "main | up\n"
            children = [procfs.comm_of(pid) for pid in procfs.children_of(sup.pid)]
        finally:
            sup.send_signal(signal.SIGTERM)
            _, err = sup.communicate(timeout=WAIT)
    assert sup.returncode == 0, err
    assert "podvisor-init" in children
    assert "podvisor-net" not in children
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Pod\nspec: {containers: []}\n")
    done = subprocess.run(
        [*podvisor_command(), "run", str(broken)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert "nothing was started" in done.stderr
    # Its maker was reaped: one left behind would have come to us (a subreaper).
    adopted = [procfs.comm_of(pid) for pid in procfs.children_of(os.getpid())]
    assert "podvisor-net" not in adopted
