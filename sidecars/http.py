"""A minimal HTTP/1.1 GET, as the kubelet sends it for httpGet probes and hooks.

How this works
--------------
The connection is made by the caller (`Connect`), because it must start
inside the pod's network namespace; this module only speaks HTTP over it,
through anyio streams, so the whole exchange is cancellable and runs on trio
and asyncio alike. HTTPS wraps the same socket in TLS without certificate or
host name checks, as the kubelet does (probes trust the pod they probe).

One request per connection (``Connection: close``), and only the status
line and headers are read: the verdict (200-399 is success) and redirects
need nothing more, and a slow or endless body cannot hold the probe.
Redirects are followed, at most ten, but only to the host of the first
request (the kubelet's ``followNonLocalRedirects: false``): a redirect
elsewhere is not followed and its own 3xx status stands, which the caller
counts as a success with a warning, as the kubelet does.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.abc

from podvisor.supervisor.errors import ProbeError
from podvisor.supervisor.frozen import frozen

#: The kubelet sends kube-probe/<major>.<minor>; some servers answer probes by it.
USER_AGENT = "kube-probe/1.33"
MAX_REDIRECTS = 10  # as Go's http.Client, which the kubelet uses
MAX_HEAD = 64 * 1024  # a status line and headers larger than this are not a server's answer
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}

#: Opens a TCP connection to (host, port) where the request must come from.
Connect = Callable[[str, int], Awaitable[socket.socket]]


@frozen
class Target:
    """Where one request goes: the parts of a URL the probe needs."""

    scheme: str  # "http" | "https"
    host: str  # an IP address or a name
    port: int
    path: str  # path and query, starting with "/"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"

    def follow(self, location: str) -> Target:
        """The target a Location header points to, relative ones resolved against this one."""
        parts = urlsplit(urljoin(self.url, location))
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ProbeError(f"redirect to {location!r}, which is not an http(s) URL")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as e:
            raise ProbeError(f"redirect to {location!r}: {e}") from e
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        return Target(scheme, parts.hostname, port, path)


@frozen
class Response:
    """A response's status line and headers (the body is never read)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    url: str = ""  # the URL that answered (after the redirects followed)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


def target_for(scheme: str, host: str, port: int, path: str) -> Target:
    """The first request's target, from an httpGet action's fields."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ProbeError(f"scheme {scheme.upper()!r} is not HTTP or HTTPS")
    if not path.startswith("/"):
        path = "/" + path
    return Target(scheme, host, port, path)


# --- The wire format ----------------------------------------------------------------


def build_request(target: Target, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The request bytes; the user's headers replace the defaults of the same name."""
    defaults = [
        ("Host", target.authority),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ]
    given = {name.lower() for name, _ in headers}
    lines = [f"GET {target.path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in defaults if k.lower() not in given]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
    lines.append("Connection: close")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ProbeError(f"a line break in the request line or a header: {line!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(data: bytes) -> tuple[Response, bytes] | None:
    """The first final response in *data* and what follows it; None while incomplete.

    Interim 1xx responses (100 Continue, 103 Early Hints) are skipped, as Go's
    client skips them.
    """
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                raise ProbeError(f"the response's headers exceed {MAX_HEAD} bytes")
            return None
        head, data = data[:end], data[end + 4 :]
        response = _parse_head(head.decode("latin-1"))
        if not 100 <= response.status < 200 or response.status == 101:
            return response, data


def _parse_head(text: str) -> Response:
    status_line, *header_lines = text.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProbeError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise ProbeError(f"not an HTTP status code: {status_line[:80]!r}")
    headers = []
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon and name and name == name.strip():
            headers.append((name, value.strip()))
    return Response(int(code), parts[2] if len(parts) > 2 else "", tuple(headers))


# --- Talking to a server -------------------------------------------------------------


def insecure_context() -> ssl.SSLContext:
    """TLS that trusts any certificate and host name: what the kubelet's probes do."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def get(target: Target, headers: Sequence[tuple[str, str]], connect: Connect) -> Response:
    """GET *target*, following redirects to the same host; the final response's head.

    Bound it with a cancel scope: nothing here times out by itself.
    """
    first_host = target.host.lower()
    for _ in range(MAX_REDIRECTS + 1):
        response = await get_once(target, headers, connect)
        location = response.header("Location")
        if response.status not in REDIRECTS or location is None:
            return response
        following = target.follow(location)
        if following.host.lower() != first_host:
            return response  # not followed: its 3xx is the answer
        target = following
    raise ProbeError(f"stopped after {MAX_REDIRECTS} redirects (last: {target.url})")


async def get_once(
    target: Target, headers: Sequence[tuple[str, str]], connect: Connect
) -> Response:
    """One request on a new connection; the response's head."""
    request = build_request(target, headers)
    sock = await connect(target.host, target.port)
    try:
        stream: anyio.abc.ByteStream = await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise
    async with stream:
        if target.scheme == "https":
            # Here, not at the top: anyio's TLS module brings `logging`, which
            # a pod start without an HTTPS probe need not import.
            from anyio.streams.tls import TLSStream

            stream = await TLSStream.wrap(
                stream,
                server_side=False,
                hostname=_server_name(target.host),
                ssl_context=insecure_context(),
                standard_compatible=False,
            )
        await stream.send(request)
        response = await _read_head(stream)
    return replace(response, url=target.url)


async def _read_head(stream: anyio.abc.ByteStream) -> Response:
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError) as e:
            raise ProbeError("the server closed the connection before it answered") from e
        parsed = parse_head(data)
        if parsed is not None:
            return parsed[0]


def _server_name(host: str) -> str | None:
    """The name to send as SNI: none for an IP address (RFC 6066 forbids it)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None
