"""The gateway's side towards sandboxes: pooled keep-alive HTTP/1.1 connections and response parsing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httptools

from corral.server.gateway_http import Headers, forwardable

log = logging.getLogger(__name__)

# How the response body is framed by the upstream: no body, Content-Length, chunked, or until close.
NONE, LENGTH, CHUNKED, CLOSE = "none", "length", "chunked", "close"
CONNECT_TIMEOUT = 5.0


class ResponseSink(Protocol):
    """Where an upstream response goes (the client connection); calls arrive in order, from data_received."""

    def on_response_head(self, status: int, reason: bytes, headers: Headers, mode: str) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self) -> None: ...
    def flush(self) -> None: ...


@dataclass(frozen=True)
class UnixTarget:
    """An HTTP/1.1 server on a unix socket (the agent's envd socket). In-sandbox TCP ports are
    gateway_forward.ForwardTarget, with the same `key`, `open` and `unreachable`."""

    path: Path

    @property
    def key(self) -> str:
        return f"unix:{self.path}"

    def unreachable(self, exc: OSError) -> str:
        return f"envd is not reachable ({exc.strerror or exc})"

    async def open(self, factory: type[UpstreamConn] | object) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        try:
            # A wedged agent with a full accept backlog must not hold the request forever.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, proto = await loop.create_unix_connection(factory, str(self.path))  # type: ignore[arg-type,var-annotated]
        except TimeoutError:
            raise ConnectionRefusedError(f"connecting to {self.path} timed out") from None
        return proto  # type: ignore[return-value]


class UpstreamTarget(Protocol):
    @property
    def key(self) -> str: ...
    async def open(self, factory: object) -> UpstreamConn: ...
    def unreachable(self, exc: OSError) -> str: ...


class UpstreamConn(asyncio.Protocol):
    """One connection to a sandbox server; carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.got_bytes = False          # any response byte for the current exchange (no retry after that)
        self.keep_alive = False
        self._sink: ResponseSink | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head_request = False
        self._interim = False
        self._reason = b""
        self._headers: Headers = []
        self._mode = NONE
        self._head_sent = False
        self._done: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.key = ""
        self._read_paused = False
        self.on_lost: Callable[[UpstreamConn], None] | None = None

    # --- exchange API used by the client side -------------------------------------------------
    def start(self, sink: ResponseSink, head_request: bool) -> asyncio.Future[None]:
        self.resume_reading()  # a previous exchange may have ended while its client was slow
        self._sink = sink
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = head_request
        self._interim = False
        self._reason = b""
        self._headers = []
        self._mode = NONE
        self._head_sent = False
        self.got_bytes = False
        self.keep_alive = False
        self._done = asyncio.get_running_loop().create_future()
        return self._done

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionError("upstream connection closed")
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def pause_reading(self) -> None:
        """Backpressure: the client is not keeping up with this response."""
        if not self._read_paused and not self.closed and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and not self.closed and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink, parser = self._sink, self._parser
        if sink is None or parser is None:
            # Bytes while idle mean the upstream is confused; never reuse it.
            self.abort()
            return
        self.got_bytes = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP from sandbox: {exc}"))
        sink.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_lost is not None:
            self.on_lost(self)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionError("upstream connection closed"))
        if self._done is not None and not self._done.done():
            if self._mode == CLOSE and self._head_sent:
                self._complete()           # a close-delimited body ends at EOF
                if self._sink is not None:
                    self._sink.flush()
            else:
                self._fail(ConnectionError("the connection to the sandbox was closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # --- httptools callbacks ----------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._sink is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # Interim responses (we strip Expect, so only e.g. 103) are dropped; the final one follows.
            self._interim = True
            self._reason, self._headers = b"", []
            return
        chunked = False
        length = False
        for name, value in self._headers:
            low = name.lower()
            if low == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif low == b"content-length":
                length = True
        if self._head_request or status in (204, 304):
            self._mode = NONE
        elif chunked:
            self._mode = CHUNKED
        elif length:
            self._mode = LENGTH
        else:
            self._mode = CLOSE
        self._head_sent = True
        self._sink.on_response_head(status, self._reason, forwardable(self._headers), self._mode)
        if self._head_request:
            # llhttp does not know this answers a HEAD and would wait for Content-Length bytes.
            self.keep_alive = self._parser.should_keep_alive()
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self._sink is not None and self._done is not None and not self._done.done():
            self._sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._done is None or self._done.done():
            return
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive() and self._mode != CLOSE
        self._complete()

    # --- internals --------------------------------------------------------------------------
    def _complete(self) -> None:
        if self._sink is not None:
            self._sink.on_response_end()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.keep_alive = False
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        if not self.closed:
            self.abort()

    def detach(self) -> None:
        """Forget the finished exchange so stray bytes are noticed."""
        self._sink = None
        self._parser = None
        self._done = None


class UpstreamPool:
    """Idle keep-alive connections per upstream key (a small LIFO per sandbox socket)."""

    def __init__(self, max_idle_per_key: int = 8) -> None:
        self._max_idle = max_idle_per_key
        self._idle: dict[str, list[UpstreamConn]] = {}
        self._all: set[UpstreamConn] = set()
        self._closed = False

    async def acquire(self, target: UpstreamTarget) -> tuple[UpstreamConn, bool]:
        """A connection for target and whether it was reused from the pool."""
        idle = self._idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
            self._all.discard(conn)
        if idle is not None and not idle:
            del self._idle[target.key]
        conn = await target.open(UpstreamConn)
        conn.key = target.key
        conn.on_lost = self._forget
        self._all.add(conn)
        return conn, False

    def _forget(self, conn: UpstreamConn) -> None:
        """A connection closed (e.g. the sandbox died): drop it so dead sandboxes leave nothing behind."""
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def release(self, target: UpstreamTarget, conn: UpstreamConn) -> None:
        conn.detach()
        if self._closed or conn.closed or not conn.keep_alive:
            self.discard(conn)
            return
        idle = self._idle.setdefault(target.key, [])
        if len(idle) >= self._max_idle:
            self.discard(conn)
            return
        idle.append(conn)

    def discard(self, conn: UpstreamConn) -> None:
        self._all.discard(conn)
        if not conn.closed:
            conn.abort()

    def close(self) -> None:
        self._closed = True
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
