"""Just enough HTTP/1.1 to serve a few GET endpoints to Prometheus, curl and probes.

The endpoint answers GET and HEAD, reads no request body it does not need,
and keeps a connection open between requests (Prometheus reuses one
connection per target), with `Content-Length` on every response, never
chunked. Everything that does not fit -- a malformed request line, headers
over `MAX_HEAD` bytes, a chunked request body -- gets a 4xx and the
connection is closed. A client that says nothing for `IDLE_SECONDS` is
dropped, so a slow or stuck client holds a task and a socket, never more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from podvisor.supervisor.frozen import frozen

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_SECONDS = 30.0
#: Once a request has begun, its head must arrive within this.
HEAD_SECONDS = 10.0


class Status(int):
    """An HTTP status code and its reason phrase (RFC 9110), one of those below.

    Not the standard library's enum of every status, which would stay in the
    supervisor (0.26 MB) for the ten this server answers with.
    """

    phrase: str

    def __new__(cls, code: int, phrase: str) -> Status:
        made = super().__new__(cls, code)
        made.phrase = phrase
        return made


OK = Status(200, "OK")
BAD_REQUEST = Status(400, "Bad Request")
NOT_FOUND = Status(404, "Not Found")
METHOD_NOT_ALLOWED = Status(405, "Method Not Allowed")
LENGTH_REQUIRED = Status(411, "Length Required")
REQUEST_ENTITY_TOO_LARGE = Status(413, "Request Entity Too Large")
REQUEST_HEADER_FIELDS_TOO_LARGE = Status(431, "Request Header Fields Too Large")
INTERNAL_SERVER_ERROR = Status(500, "Internal Server Error")
SERVICE_UNAVAILABLE = Status(503, "Service Unavailable")
HTTP_VERSION_NOT_SUPPORTED = Status(505, "HTTP Version Not Supported")


class BadRequestError(Exception):
    """A request this server cannot answer; the status says why, the connection closes."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@frozen
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.header("connection").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass
class Response:
    status: Status
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, *, head_only: bool, keep_alive: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {int(self.status)} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def text(status: Status, message: str) -> Response:
    return Response(status, (message + "\n").encode())


def parse_head(raw: bytes) -> Request:
    """The request line and headers (without the blank line that ends them)."""
    try:
        lines = raw.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as e:
        raise BadRequestError(BAD_REQUEST, "malformed request line") from e
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequestError(HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.x is served")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(BAD_REQUEST, "malformed header line")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Request(method, target, version, headers)


async def read_request(stream: BufferedByteReceiveStream) -> Request | None:
    """The next request on a connection; None when the client closed it in between.

    Raises BadRequestError for what cannot be served, TimeoutError for a silent
    client, and anyio's stream errors when the connection breaks.
    """
    with anyio.fail_after(IDLE_SECONDS):
        if not await _request_begun(stream):
            return None
    with anyio.fail_after(HEAD_SECONDS):
        too_large = BadRequestError(REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large")
        try:
            raw = await stream.receive_until(b"\r\n\r\n", MAX_HEAD)
        except anyio.DelimiterNotFound as e:
            raise too_large from e
        if len(raw) > MAX_HEAD:  # it came in one chunk: receive_until only bounds its reads
            raise too_large
        request = parse_head(raw)
        await _skip_body(stream, request)
    return request


async def _request_begun(stream: BufferedByteReceiveStream) -> bool:
    """Wait for the first bytes of a request (kept in the buffer); False on a clean close."""
    if stream.buffer:
        return True
    try:
        chunk = await stream.receive()
    except anyio.EndOfStream:
        return False
    stream.feed_data(chunk)
    return True


async def _skip_body(stream: BufferedByteReceiveStream, request: Request) -> None:
    if request.header("transfer-encoding"):
        raise BadRequestError(LENGTH_REQUIRED, "request bodies must have a length")
    length = request.header("content-length") or "0"
    if not length.isdigit():
        raise BadRequestError(BAD_REQUEST, "malformed Content-Length")
    if int(length) > MAX_BODY:
        raise BadRequestError(REQUEST_ENTITY_TOO_LARGE, "request body too large")
    if int(length):
        await stream.receive_exactly(int(length))
