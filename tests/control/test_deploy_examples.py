"""The deployment examples run as their hosts would run them.

There is no Docker daemon and no systemd as PID 1 here, so the tests do what
those would do with the files, and no more:

* a Dockerfile: its build context is this repository less `.dockerignore`;
  every COPY source is in it; `pip install` of that context builds a wheel
  holding every module of the source tree; its RUN checks pass; and its
  ENTRYPOINT + CMD (exec form) runs as PID 1 of fresh pid, mount, net, uts
  and ipc namespaces with loopback up, as `docker run` starts it (files the
  Dockerfile COPYs are mapped to a temporary directory). `docker stop` is
  SIGTERM to that PID 1, then SIGKILL after 10 s.
* the systemd unit: `systemd-analyze verify` finds nothing in it; its
  ExecStart runs the way systemd starts it (stdin /dev/null, a session of
  its own, systemd's PATH) and its stop is KillMode=mixed: KillSignal to the
  main process, and after TimeoutStopSec whatever is left is killed. The
  exit status must count as success by the unit's own rules, and nothing may
  be left.
"""

from __future__ import annotations

import configparser
import contextlib
import fnmatch
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podvisor.supervisor.control.paths import RUN_DIR_VARIABLE
from tests.control.conftest import REPO

pytestmark = pytest.mark.needs_root

EXAMPLES = REPO / "examples"
VENV_BIN = Path(sys.executable).parent
#: What `docker run` gives PID 1: fresh namespaces, /proc of its own, lo up.
CONTAINER = (
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "--net",
    "--uts",
    "--ipc",
    "--",
    "sh",
    "-c",
    'ip link set lo up && exec "$@"',
    "container",
)
DOCKER_STOP_TIMEOUT = 10.0  # `docker stop`'s default grace
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- Dockerfiles --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT, CMD or HEALTHCHECK CMD (shell form is not used)."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD ") + len("CMD ") :]
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} must use exec form"
        assert all(isinstance(part, str) for part in value)
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """The instructions, comments dropped and continued lines joined."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(arguments.split()), start))
        pending = ""
    assert not pending, f"{path.name}: a continued line at the end"
    return found


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves *relative* out (the subset of the syntax used)."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in relative.split("/")):
                return True
        elif fnmatch.fnmatch(relative.split("/", maxsplit=1)[0], pattern):
            return True
    return False


def build_context(into: Path) -> Path:
    """A copy of the repository as `docker build .` sends it."""
    patterns = dockerignore()

    def leave_out(folder: str, names: list[str]) -> set[str]:
        base = os.path.relpath(folder, REPO)
        return {
            name for name in names if ignored(os.path.normpath(os.path.join(base, name)), patterns)
        }

    context = into / "context"
    shutil.copytree(REPO, context, ignore=leave_out, symlinks=True)
    return context


def source_modules() -> set[str]:
    """podvisor's modules as the source tree has them (init/, supervisor/, sidecars/)."""
    found = set()
    for folder in ("init", "supervisor", "sidecars"):
        for path in (REPO / folder).rglob("*.py"):
            found.add(f"podvisor/{folder}/{path.relative_to(REPO / folder).as_posix()}")
    return found


@dataclass
class Image:
    """What a Dockerfile's build would make, mapped onto this machine."""

    instructions: list[Instruction]
    root: Path  # COPY destinations outside the context land here

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        [found] = self.all(keyword)
        return found

    def env(self) -> dict[str, str]:
        env = {"PATH": f"{VENV_BIN}:{SYSTEMD_PATH}", "HOME": "/root"}
        for instruction in self.all("ENV"):
            name, _, value = instruction.arguments.partition("=")
            env[name] = value
        return env

    def mapped(self, argument: str) -> str:
        """A path the image has, as this test placed it."""
        for copy in self.all("COPY"):
            source, destination = copy.arguments.split()
            if source != "." and argument == destination:
                return str(self.root / destination.lstrip("/"))
        return argument

    def command(self) -> list[str]:
        argv = self.one("ENTRYPOINT").exec_form() + self.one("CMD").exec_form()
        return [self.mapped(a) for a in argv]


def build(name: str, tmp_path: Path) -> Image:
    """Check a Dockerfile's build steps here; its image, mapped onto this machine."""
    image = Image(parse_dockerfile(EXAMPLES / name), tmp_path / "image")
    assert image.instructions[0].keyword == "FROM"
    context = build_context(tmp_path)
    for copy in image.all("COPY"):
        source, destination = copy.arguments.split()
        assert (context / source).exists(), f"{name}:{copy.line}: {source} not in the context"
        if source != ".":
            target = image.root / destination.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(context / source, target)
    for run in image.all("RUN"):
        if run.arguments.startswith("pip install"):
            assert_installable(context, tmp_path / "wheels")
        else:
            argv = [image.mapped(a) for a in run.arguments.split()]
            done = subprocess.run(
                argv, env=image.env(), capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, f"{name}:{run.line}: {run.arguments}\n{done.stderr}"
    return image


def assert_installable(context: Path, wheels: Path) -> None:
    """`pip install` of the context: a wheel that holds every module of the source."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--wheel-dir", str(wheels), str(context)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = wheels.glob("podvisor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert source_modules() <= names, sorted(source_modules() - names)
    assert re.search(r"^podvisor = ", scripts, re.MULTILINE), scripts


class Container:
    """ENTRYPOINT + CMD running as PID 1 of fresh namespaces, output read line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*CONTAINER, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.output = ""

    def pid_1(self) -> int:
        """PID 1 of the container, as this machine numbers it (a child of unshare)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                if pids := children.read_text().split():
                    pid = int(pids[0])
                    status = Path(f"/proc/{pid}/status").read_text()
                    if re.search(r"^NSpid:\s+\d+\s+1$", status, re.MULTILINE):
                        return pid
            time.sleep(0.05)
        raise AssertionError(f"no PID 1 in the container; output so far:\n{self.output}")

    def read_until(self, text: str, timeout: float = 60.0) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no {text!r} within {timeout}s; output:\n{self.output}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"output ended before {text!r}:\n{self.output}")
            self.output += chunk.decode(errors="replace")

    def inside(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """`docker exec`: a command in the container's network namespace."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid_1()), "-n", "--", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def wait(self, timeout: float) -> int:
        """The container's exit status (unshare passes PID 1's on)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None
        self.output += out.decode(errors="replace")
        return self.proc.returncode

    def remove(self) -> None:
        """Whatever the test did: PID 1 killed (the kernel then kills the rest), reaped."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate(timeout=30)


@contextlib.contextmanager
def container(image: Image) -> Iterator[Container]:
    # Its pods' log folders go where the session's do: this "container" has
    # the host's files, and /var/log/pods is the host's.
    env = {**image.env(), "PODVISOR_LOG_DIR": os.environ["PODVISOR_LOG_DIR"]}
    running = Container(image.command(), env)
    try:
        yield running
    finally:
        running.remove()


def test_the_dockerfile_runs_its_command_under_podvisor_as_pid_1(tmp_path: Path) -> None:
    image = build("Dockerfile", tmp_path)
    assert image.one("ENTRYPOINT").exec_form() == ["podvisor", "--"]
    with container(image) as running:
        running.read_until("Serving HTTP on")
        pid_1 = running.pid_1()
        assert Path(f"/proc/{pid_1}/comm").read_text().strip().startswith("podvisor")
        fetch = (
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/').status)"
        )
        served = running.inside(["python3", "-c", fetch], image.env())
        assert served.stdout.strip() == "200", served.stderr
        os.kill(pid_1, signal.SIGTERM)  # docker stop
        assert running.wait(DOCKER_STOP_TIMEOUT) == 128 + signal.SIGTERM, running.output


def test_the_bundle_dockerfile_runs_the_pod_to_its_end_and_reports_healthy(
    tmp_path: Path,
) -> None:
    image = build("Dockerfile.bundle", tmp_path)
    assert image.one("ENTRYPOINT").exec_form()[:2] == ["podvisor", "run"]
    healthcheck = image.one("HEALTHCHECK").exec_form()
    with container(image) as running:
        running.read_until("app asked api the time:")
        check = running.inside(healthcheck, image.env())
        assert check.returncode == 0, check.stderr
        assert running.wait(120) == 0, running.output
    asked = re.findall(r"^app +\| app asked api the time:", running.output, re.MULTILINE)
    assert len(asked) == 5, running.output
    assert re.search(r"^app +\| app done$", running.output, re.MULTILINE), running.output


# --- the systemd unit -----------------------------------------------------------------


def load_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    return unit


def seconds(text: str) -> float:
    found = re.fullmatch(r"(\d+)(s|min)?", text.strip())
    assert found, f"a time span this test reads: {text!r}"
    return float(found[1]) * (60 if found[2] == "min" else 1)


@pytest.fixture
def web_tmp() -> Iterator[None]:
    """examples/web.yaml writes to /tmp/podvisor-web on the host (no mount isolation)."""
    yield
    shutil.rmtree("/tmp/podvisor-web", ignore_errors=True)


@pytest.mark.usefixtures("web_tmp")
def test_the_systemd_unit_verifies_runs_and_stops_cleanly(tmp_path: Path) -> None:
    source = EXAMPLES / "podvisor@.service"
    unit = load_unit(source)
    service = unit["Service"]
    assert service["Delegate"] == "yes"
    assert service["KillMode"] == "mixed"
    assert "2" in service["RestartPreventExitStatus"].split()  # a wrong manifest stays down
    success = {0, *(int(code) for code in service["SuccessExitStatus"].split())}

    # Where this machine has them: this environment's podvisor, the manifest in tmp_path.
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(EXAMPLES / "web.yaml", etc / "web.yaml")
    text = source.read_text().replace("/usr/local/bin/podvisor", str(VENV_BIN / "podvisor"))
    text = text.replace("/etc/podvisor/", f"{etc}/")
    installed = tmp_path / "podvisor@.service"
    installed.write_text(text)
    verify = subprocess.run(
        ["systemd-analyze", "verify", f"{installed.parent}/podvisor@web.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")

    exec_start = load_unit(installed)["Service"]["ExecStart"].replace("%i", "web").split()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {
        "PATH": SYSTEMD_PATH,
        "LANG": "C.UTF-8",
        RUN_DIR_VARIABLE: str(run_dir),
        # The pod's log folder in the test's own place, never the host's /var/log/pods.
        "PODVISOR_LOG_DIR": str(tmp_path / "logs"),
    }
    main = subprocess.Popen(
        exec_start,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        ctl = [str(VENV_BIN / "podvisor"), "ps", "-o", "json"]
        deadline = time.monotonic() + 60
        while True:
            listed = subprocess.run(ctl, env=env, capture_output=True, text=True, check=False)
            pods = json.loads(listed.stdout) if listed.returncode == 0 else []
            if [
                (p["name"], bool(p.get("containers")) and p.get("ready") == p.get("containers"))
                for p in pods
            ] == [("web", True)]:
                break
            assert main.poll() is None, main.communicate()[0].decode()
            assert time.monotonic() < deadline, listed.stdout + listed.stderr
            time.sleep(0.2)
        main.send_signal(signal.Signals[service["KillSignal"]])  # systemctl stop
        out, _ = main.communicate(timeout=seconds(service["TimeoutStopSec"]))
    finally:
        if main.poll() is None:
            os.killpg(main.pid, signal.SIGKILL)  # what KillMode=mixed does at the timeout
            main.communicate(timeout=30)
    assert main.returncode in success, out.decode()
    # The journal gets each container's lines, prefixed with its name.
    assert re.search(r"^web +\| ", out.decode(), re.MULTILINE), out.decode()
    # Nothing of the unit outlived its main process (systemd would have had to
    # kill it): this process is a subreaper, so a survivor would be its child.
    assert children_of_this_process() == []


def children_of_this_process() -> list[int]:
    tasks = Path("/proc/self/task")
    return [int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()]
