"""A small HTTP/1.1 client on anyio for the endpoint's tests: raw bytes in, parsed replies out."""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        body = self.body
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode()


async def read_reply(reader: BufferedByteReceiveStream, *, head_only: bool = False) -> Reply:
    head = (await reader.receive_until(b"\r\n\r\n", 65536)).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    body = await reader.receive_exactly(length) if length else b""
    return Reply(int(status_line.split()[1]), headers, body)


def request_bytes(
    path: str, *, method: str = "GET", headers: dict[str, str] | None = None, close: bool = True
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def get(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Reply:
    """One request on a connection of its own."""
    with anyio.fail_after(30):
        stream: SocketStream = await anyio.connect_tcp(host, port)
        async with stream:
            await stream.send(request_bytes(path, method=method, headers=headers))
            reader = BufferedByteReceiveStream(stream)
            return await read_reply(reader, head_only=method == "HEAD")
