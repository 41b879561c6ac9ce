"""Running a container's probes: exec, httpGet and tcpSocket, with Kubernetes' timing.

How this works
--------------
`run_probe` is one probe's whole life, in the task the runner starts on the
core's StartProbe and cancels on its StopProbe: wait initialDelaySeconds,
then every periodSeconds (counted from the start of the previous attempt,
as the kubelet's ticker does) run one attempt bounded by timeoutSeconds and
report it as a `ProbeResult`. The core counts the thresholds and decides;
this module only says what each attempt saw.

httpGet and tcpSocket connect from inside the pod's network namespace
(`open_connection_in` makes the socket there), so a port that only exists in
the pod is reachable, and nothing the pod serves has to be published. The
host defaults to the pod's IP, as in Kubernetes, or to 127.0.0.1 when the
pod has none (the loopback network). A host name is resolved on the
machine, as the kubelet resolves it on the node.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import partial

import anyio

from podvisor.sidecars import http
from podvisor.sidecars.execs import Execs
from podvisor.supervisor import lifecycle as lc
from podvisor.supervisor.errors import PodvisorError, ProbeError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.manifest.model import (
    Container,
    ExecAction,
    HTTPGetAction,
    Probe,
    ProbeHandler,
    TCPSocketAction,
)
from podvisor.supervisor.network import open_connection_in
from podvisor.supervisor.pod.view import PodView

_NO_LIMIT = 24 * 3600.0  # for a hook's connect, which Kubernetes does not bound
MAX_MESSAGE = 1024  # characters of an attempt's message kept for the container's status


@frozen
class Outcome:
    """What one probe attempt (or one hook) saw."""

    success: bool
    message: str = ""


def probe_of(container: Container, kind: lc.ProbeKind) -> Probe | None:
    return {
        lc.ProbeKind.STARTUP: container.startup_probe,
        lc.ProbeKind.LIVENESS: container.liveness_probe,
        lc.ProbeKind.READINESS: container.readiness_probe,
    }[kind]


async def run_probe(view: PodView, execs: Execs, container: Container, kind: lc.ProbeKind) -> None:
    """Probe *container* until cancelled, reporting every attempt to the runner."""
    probe = probe_of(container, kind)
    if probe is None:
        return
    await anyio.sleep(probe.initial_delay_seconds)
    while True:
        began = anyio.current_time()
        outcome = await attempt(view, execs, container, probe.handler, probe.timeout_seconds)
        took = anyio.current_time() - began
        view.post(lc.ProbeResult(container.name, kind, outcome.success, outcome.message, took))
        await anyio.sleep_until(began + probe.period_seconds)


async def attempt(
    view: PodView,
    execs: Execs,
    container: Container,
    handler: ProbeHandler,
    timeout: float | None,  # noqa: ASYNC109 -- timeoutSeconds bounds one attempt, whatever its kind
) -> Outcome:
    """One attempt of *handler*; every way it can fail is a failed Outcome, never an error."""
    match handler:
        case ExecAction(command):
            result = await execs.run(container, command, timeout)
            return Outcome(result.succeeded, _short(result.describe()))
        case HTTPGetAction():
            return await http_get(view, container, handler, timeout)
        case TCPSocketAction():
            return await tcp_socket(view, container, handler, timeout)
        case _:
            return Outcome(False, f"{type(handler).__name__} probes are not supported")


# --- httpGet -------------------------------------------------------------------------


async def http_get(
    view: PodView,
    container: Container,
    action: HTTPGetAction,
    timeout: float | None,  # noqa: ASYNC109 -- bounds the whole exchange, redirects included
) -> Outcome:
    """GET the action's URL from inside the pod: 200-399 is success."""
    try:
        port = resolve_port(container, action.port)
        address = action.host or default_host(view)
        target = http.target_for(action.scheme, address, port, action.path)
    except ProbeError as e:
        return Outcome(False, str(e))
    try:
        with anyio.fail_after(timeout):
            response = await http.get(target, action.headers, partial(_connect, view, timeout))
    except TimeoutError:
        return Outcome(False, f'Get "{target.url}": no answer{_within(timeout)}')
    except (OSError, PodvisorError, anyio.BrokenResourceError) as e:
        return Outcome(False, _short(f'Get "{target.url}": {_reason(e)}'))
    return judge(response)


def judge(response: http.Response) -> Outcome:
    """The kubelet's verdict on a response: 2xx success, 3xx success with a warning."""
    if 200 <= response.status < 300:
        return Outcome(True)
    if 300 <= response.status < 400:
        where = response.header("Location") or "?"
        return Outcome(True, f"probe terminated redirects: {response.status} to {where}")
    return Outcome(False, f"HTTP probe failed with statuscode: {response.status}")


# --- tcpSocket ------------------------------------------------------------------------


async def tcp_socket(
    view: PodView,
    container: Container,
    action: TCPSocketAction,
    timeout: float | None,  # noqa: ASYNC109 -- the connect's bound
) -> Outcome:
    """Open a TCP connection from inside the pod; opening it is success."""
    address = action.host or default_host(view)
    try:
        port = resolve_port(container, action.port)
    except ProbeError as e:
        return Outcome(False, str(e))
    try:
        with anyio.fail_after(timeout):
            sock = await _connect(view, timeout, address, port)
    except TimeoutError:
        return Outcome(False, f"dial tcp {address}:{port}: no answer{_within(timeout)}")
    except (OSError, PodvisorError) as e:
        return Outcome(False, _short(_reason(e)))
    sock.close()
    return Outcome(True)


# --- Where to connect -------------------------------------------------------------------


def default_host(view: PodView) -> str:
    """The pod's IP, as in Kubernetes; 127.0.0.1 when the pod has none (loopback)."""
    network = view.network
    return (network.pod_ip if network is not None else None) or "127.0.0.1"


def resolve_port(container: Container, port: int | str) -> int:
    """A port number, or the number of the container's port of that name."""
    if isinstance(port, int):
        return port
    for p in container.ports:
        if p.name == port:
            return p.container_port
    if port.isdigit():
        return int(port)
    raise ProbeError(f"container {container.name} has no port named {port!r}")


async def _connect(view: PodView, limit: float | None, address: str, port: int) -> socket.socket:
    """A TCP connection to address:port, made from inside the pod's network namespace."""
    netns = view.network.netns_path if view.network is not None else None
    ip = await _resolve(address, port)
    return await open_connection_in(netns, ip, port, limit if limit is not None else _NO_LIMIT)


async def _resolve(address: str, port: int) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if address == "localhost":
        return "127.0.0.1"
    try:
        found = await anyio.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ProbeError(f"cannot resolve host {address!r}: {e}") from e
    return str(found[0][4][0])


def _within(timeout: float | None) -> str:
    return "" if timeout is None else f" within {timeout:g}s"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if not error.filename else f"{error.strerror} ({error.filename})"
    return str(error) or type(error).__name__


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
