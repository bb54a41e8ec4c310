"""In-sandbox TCP ports as gateway upstreams: a `corral-tcp` upgrade on the agent's socket, then plain HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from corral.server.gateway_upstream import CONNECT_TIMEOUT, UpstreamConn

FORWARD_PROTOCOL = b"corral-tcp"
_MAX_HANDSHAKE = 16 * 1024     # the agent's answer is a few hundred bytes; more means something is wrong


class PortClosedError(ConnectionRefusedError):
    """Nothing accepts connections on the port inside the sandbox (the agent answered 502)."""


@dataclass(frozen=True)
class ForwardTarget:
    """A TCP port inside the sandbox, reached through the agent's `/_corral/forward/<port>` endpoint.
    The sandbox has no network: the agent dials 127.0.0.1:<port> in its own namespace and splices bytes."""

    path: Path                 # the agent's socket on the host
    port: int
    token: str | None = None   # the envd access token: the agent checks it on every path but /health

    @property
    def key(self) -> str:
        return f"fwd:{self.path}:{self.port}"

    def unreachable(self, exc: OSError) -> str:
        """The 502 message for a failed open (the SDK keys on "port is not open", which the caller adds)."""
        if isinstance(exc, PortClosedError):
            return str(exc)
        return f"port {self.port} could not be reached through the sandbox agent ({exc.strerror or exc})"

    def _handshake(self) -> bytes:
        token = b"x-access-token: %b\r\n" % self.token.encode() if self.token else b""
        return (b"GET /_corral/forward/%d HTTP/1.1\r\nhost: corral-agent\r\nconnection: Upgrade\r\n"
                b"upgrade: %b\r\n%b\r\n" % (self.port, FORWARD_PROTOCOL, token))

    async def open(self, factory: type[UpstreamConn] | object) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # One round trip before the connection carries HTTP: the agent dials the port, then answers.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, str(self.path))
                await loop.sock_sendall(sock, self._handshake())
                status, body = await _read_answer(loop, sock)
            if status != 101:
                raise _refusal(status, body, self.port)
            _, proto = await loop.create_unix_connection(factory, sock=sock)  # type: ignore[arg-type,var-annotated]
        except TimeoutError:
            sock.close()
            raise ConnectionRefusedError(f"opening port {self.port} through {self.path} timed out") from None
        except BaseException:
            sock.close()
            raise
        return proto  # type: ignore[no-any-return]


async def _read_answer(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[int, bytes]:
    """The agent's status code and (for errors) body. Reads nothing past a 101's head: after it the
    connection belongs to the in-sandbox server, which speaks only once it has a request."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ConnectionResetError("the sandbox agent closed the connection during the port handshake")
        buf += data
        if len(buf) > _MAX_HANDSHAKE:
            raise ConnectionError("the sandbox agent's port handshake answer is too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"bad port handshake answer from the sandbox agent: {lines[0][:100]!r}")
    status = int(parts[1])
    if status == 101:
        if body:
            raise ConnectionError("the in-sandbox server spoke before the request")
        return status, b""
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = min(int(value), _MAX_HANDSHAKE)
    while len(body) < length:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            break
        body += data
    return status, body


def _refusal(status: int, body: bytes, port: int) -> ConnectionRefusedError:
    try:
        message = str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace").strip() or f"status {status}"
    if status == 502:
        return PortClosedError(message)
    return ConnectionRefusedError(f"the sandbox agent refused to open port {port}: {status} {message}")
