"""Upgrade (WebSocket) pass-through: after an upgrade request the gateway relays raw bytes both ways."""

from __future__ import annotations

import asyncio
from typing import Protocol


class TunnelClient(Protocol):
    """The client side of a tunnel (gateway_client.ClientConn)."""

    transport: asyncio.Transport | None

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class TunnelUpstream(asyncio.Protocol):
    """The sandbox side of a tunnel. The upstream's answer (101 or an error) is relayed as is: the client
    speaks the upgraded protocol with the in-sandbox server, the gateway only copies bytes."""

    def __init__(self, client: TunnelClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        out = self.client.transport
        if out is not None and not out.is_closing():
            out.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # Backpressure both ways: a slow reader on one side stops reading on the other.
    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.transport.is_closing():
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
