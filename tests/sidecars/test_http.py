"""The httpGet client: the request the kubelet sends, response heads, redirects, TLS."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener

from podvisor.sidecars import http
from podvisor.supervisor.errors import ProbeError
from podvisor.supervisor.network import open_connection_in

TARGET = http.Target("http", "10.0.0.7", 8080, "/healthz?full=1")


# --- The request -----------------------------------------------------------------------


def test_request_is_what_the_kubelet_sends() -> None:
    lines = http.build_request(TARGET).decode().split("\r\n")
    assert lines[0] == "GET /healthz?full=1 HTTP/1.1"
    assert "Host: 10.0.0.7:8080" in lines
    assert f"User-Agent: {http.USER_AGENT}" in lines
    assert "Accept: */*" in lines
    assert "Connection: close" in lines
    assert lines[-2:] == ["", ""]


def test_user_headers_replace_defaults_of_the_same_name() -> None:
    headers = (("host", "example.test"), ("User-Agent", "mine"), ("X-Token", "s3cret"))
    lines = http.build_request(TARGET, headers).decode().split("\r\n")
    assert "host: example.test" in lines
    assert "User-Agent: mine" in lines
    assert "X-Token: s3cret" in lines
    assert not any(line.startswith(("Host:", f"User-Agent: {http.USER_AGENT}")) for line in lines)


def test_a_line_break_in_a_header_is_refused() -> None:
    with pytest.raises(ProbeError, match="line break"):
        http.build_request(TARGET, (("X-Evil", "a\r\nInjected: 1"),))


def test_ipv6_hosts_are_bracketed() -> None:
    assert http.Target("http", "::1", 80, "/").url == "http://[::1]:80/"


def test_a_path_without_slash_gets_one() -> None:
    assert http.target_for("HTTPS", "h", 1, "ready").url == "https://h:1/ready"


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ProbeError, match="FTP"):
        http.target_for("ftp", "h", 1, "/")


# --- The response -------------------------------------------------------------------------


def test_a_head_is_parsed_once_complete() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nX-A:b\r\n\r\nbody"
    assert http.parse_head(raw[:20]) is None
    parsed = http.parse_head(raw)
    assert parsed is not None
    response, rest = parsed
    assert (response.status, response.reason) == (503, "Service Unavailable")
    assert response.header("retry-after") == "5"
    assert response.header("X-A") == "b"
    assert rest == b"body"


def test_interim_responses_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.0 204 \r\n\r\n"
    parsed = http.parse_head(raw)
    assert parsed is not None
    assert parsed[0].status == 204


@pytest.mark.parametrize(
    "raw", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"HTTP/2 200\r\n\r\n"]
)
def test_what_is_not_http_is_a_probe_error(raw: bytes) -> None:
    with pytest.raises(ProbeError):
        http.parse_head(raw)


def test_an_endless_head_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="exceed"):
        http.parse_head(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000)


# --- Redirect targets ------------------------------------------------------------------------


def test_relative_locations_resolve_against_the_request() -> None:
    assert TARGET.follow("/other?x=1") == http.Target("http", "10.0.0.7", 8080, "/other?x=1")
    assert TARGET.follow("next").path == "/next"


def test_absolute_locations_take_their_own_scheme_and_port() -> None:
    assert TARGET.follow("https://10.0.0.7/s") == http.Target("https", "10.0.0.7", 443, "/s")


def test_a_location_that_is_not_http_is_refused() -> None:
    with pytest.raises(ProbeError, match="not an http"):
        TARGET.follow("mailto:someone@example.test")


# --- Against a server ---------------------------------------------------------------------------

Answer = Callable[[str, int], bytes]  # (path, port) -> the whole response


@asynccontextmanager
async def canned_server(
    answer: Answer, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Serve on 127.0.0.1 (any port), answering each request with answer(path, port)."""
    listener: anyio.abc.Listener[anyio.abc.ByteStream]
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = tcp
    if ssl_context is not None:
        listener = TLSListener(tcp, ssl_context, standard_compatible=False)

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            path = data.split(b" ")[1].decode()
            await stream.send(answer(path, port))

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port
        tg.cancel_scope.cancel()


async def connect(host: str, port: int) -> socket.socket:
    return await open_connection_in(None, host, port, 10)


def redirects(path: str, port: int) -> bytes:
    """/hop/N redirects to /hop/N-1 (relative), /hop/0 answers 200; /away redirects elsewhere."""
    if path.startswith("/hop/"):
        n = int(path.rsplit("/", 1)[1])
        if n == 0:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        return f"HTTP/1.1 302 Found\r\nLocation: {n - 1}\r\n\r\n".encode()
    if path == "/away":
        # 127.0.0.2 reaches this server too: following it would end in a 200.
        return f"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.2:{port}/hop/0\r\n\r\n".encode()
    if path == "/close":
        return b""
    return b"HTTP/1.1 404 Not Found\r\n\r\n"


@pytest.mark.anyio
async def test_redirects_to_the_same_host_are_followed() -> None:
    async with canned_server(redirects) as port:
        response = await http.get(http.Target("http", "127.0.0.1", port, "/hop/10"), (), connect)
    assert response.status == 200
    assert response.url == f"http://127.0.0.1:{port}/hop/0"


@pytest.mark.anyio
async def test_more_than_ten_redirects_fail() -> None:
    async with canned_server(redirects) as port:
        with pytest.raises(ProbeError, match="after 10 redirects"):
            await http.get(http.Target("http", "127.0.0.1", port, "/hop/11"), (), connect)


@pytest.mark.anyio
async def test_a_redirect_to_another_host_is_not_followed() -> None:
    async with canned_server(redirects) as port:
        response = await http.get(http.Target("http", "127.0.0.1", port, "/away"), (), connect)
    assert response.status == 301


@pytest.mark.anyio
async def test_a_connection_closed_without_an_answer_is_a_probe_error() -> None:
    async with canned_server(redirects) as port:
        with pytest.raises(ProbeError, match="closed the connection"):
            await http.get(http.Target("http", "127.0.0.1", port, "/close"), (), connect)


@pytest.fixture
def self_signed(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.anyio
async def test_https_skips_certificate_checks(self_signed: ssl.SSLContext) -> None:
    async with canned_server(redirects, self_signed) as port:
        response = await http.get(http.Target("https", "127.0.0.1", port, "/hop/1"), (), connect)
    assert response.status == 200
