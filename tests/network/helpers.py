"""Small helpers for the network tests: a child process in a netns that says it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

REPO = Path(__file__).resolve().parents[2]

#: A TCP server on ADDRESS (argv[1]), any port: prints the port, then for each
#: connection reads to EOF and answers "<client address> <what it read>".
TCP_WHO_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, peer = s.accept()
    data = b""
    while chunk := c.recv(4096):
        data += chunk
    c.sendall(peer[0].encode() + b" " + data)
    c.close()
"""

#: The same for UDP: each datagram is answered with "<client address> <datagram>".
UDP_WHO_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(peer[0].encode() + b" " + data, peer)
"""


@asynccontextmanager
async def child(netns_name: str | None, code: str, *args: str) -> AsyncIterator[str]:
    """Run `python -c CODE ARGS` (in netns *netns_name* via `ip netns exec`); its first line.

    The child is killed and reaped when the block ends.
    """
    command = [sys.executable, "-c", code, *args]
    if netns_name is not None:
        command = ["ip", "netns", "exec", netns_name, *command]
    process = await anyio.open_process(
        command, stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    async with process:
        try:
            assert process.stdout is not None
            with anyio.fail_after(30):
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
            yield line.decode()
        finally:
            process.kill()
            await process.wait()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody on 127.0.0.1 uses right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def exchange(stream: anyio.abc.SocketStream, message: bytes) -> bytes:
    """Send *message*, half-close, and read the answer to EOF."""
    await stream.send(message)
    await stream.send_eof()
    answer = b""
    async for chunk in stream:
        answer += chunk
    return answer
