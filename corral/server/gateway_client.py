"""One client connection of the gateway: parses HTTP/1.1 requests, routes and checks them, streams the exchange."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from corral.errors import CorralError
from corral.server.gateway_http import (
    HOP_BY_HOP,
    LAST_CHUNK,
    Headers,
    chunk,
    error_response,
    forwardable,
    serialize_headers,
)
from corral.server.gateway_routing import check_access, pick_target, split_target
from corral.server.gateway_tunnel import TunnelUpstream
from corral.server.gateway_upstream import CHUNKED, CLOSE, NONE, UpstreamConn, UpstreamTarget
from corral.server.route import ENVD_PORT

if TYPE_CHECKING:
    from corral.server.gateway import Gateway

log = logging.getLogger(__name__)

_BODY_HIGH = 1 << 20      # pause reading the client above this much buffered request body
_BODY_LOW = 256 << 10     # and resume below this

# What the request parser looks for in a header name (lower-cased); anything else is forwarded as is.
_HOP, _EXPECT, _SID, _PORT, _HOST, _ACCESS, _TRAFFIC = range(7)
_KIND: dict[bytes, int] = {name: _HOP for name in HOP_BY_HOP}
_KIND.update({b"expect": _EXPECT, b"e2b-sandbox-id": _SID, b"e2b-sandbox-port": _PORT, b"host": _HOST,
              b"x-access-token": _ACCESS, b"e2b-traffic-access-token": _TRAFFIC})


class Request:
    """One parsed request head plus its body as it streams in."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_waiter",
        "access_token",
        "body_done",
        "chunked",
        "expect_continue",
        "forward",
        "headers",
        "host",
        "http11",
        "keep_alive",
        "method",
        "sandbox_id",
        "sandbox_port",
        "target",
        "traffic_token",
        "upgrade",
    )

    def __init__(self, conn: ClientConn, method: bytes, target: bytes, headers: Headers, http11: bool,
                 keep_alive: bool) -> None:
        self._conn = conn
        self.method = method.decode("ascii")
        self.target = target
        self.headers = headers
        self.http11 = http11
        self.keep_alive = keep_alive
        self.chunked = False
        self.expect_continue = False
        self.sandbox_id: bytes | None = None
        self.sandbox_port: bytes | None = None
        self.host: bytes | None = None
        self.access_token: bytes | None = None
        self.traffic_token: bytes | None = None
        self.upgrade: bytes | None = None   # the Upgrade header; kept only when the parser did upgrade
        # One pass over the headers: pick out what the gateway reads and serialize what it forwards.
        forward: list[bytes] = []
        odd_connection = False
        for name, value in headers:
            low = name.lower()
            kind = _KIND.get(low)
            if kind is None:
                forward.append(b"%b: %b\r\n" % (name, value))
                continue
            if kind == _HOP:
                if low == b"transfer-encoding" and b"chunked" in value.lower():
                    self.chunked = True
                elif low == b"connection" and value.lower().strip() not in (b"keep-alive", b"close"):
                    odd_connection = True
                elif low == b"upgrade":
                    self.upgrade = value.strip()
                continue
            if kind == _EXPECT:
                self.expect_continue = value.strip().lower() == b"100-continue"
                continue
            forward.append(b"%b: %b\r\n" % (name, value))
            if kind == _SID:
                self.sandbox_id = value.strip()
            elif kind == _PORT:
                self.sandbox_port = value.strip()
            elif kind == _HOST:
                self.host = value.strip()
            elif kind == _ACCESS:
                self.access_token = value
            elif kind == _TRAFFIC:
                self.traffic_token = value
        if odd_connection:
            # Headers named in `Connection:` are hop-by-hop too (rare): take the slow, general path.
            forward = [b"%b: %b\r\n" % (n, v) for n, v in forwardable(headers) if n.lower() != b"expect"]
        if self.chunked:
            forward.append(b"transfer-encoding: chunked\r\n")
        self.forward = b"".join(forward)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.body_done = False
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _BODY_HIGH:
            self._conn.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.body_done = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take_all(self) -> list[bytes]:
        """Everything buffered so far (the whole body when body_done)."""
        out = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume_reading()
        return out

    async def next_chunk(self) -> bytes | None:
        """The next body piece, or None at the end of the body."""
        while not self._chunks:
            if self.body_done:
                return None
            if self._conn.lost:
                raise ConnectionError("client went away")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered < _BODY_LOW:
            self._conn.resume_reading()
        return data


class ClientConn(asyncio.Protocol):
    """One client TCP connection: parses requests, runs them one at a time, writes the responses."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = httptools.HttpRequestParser(self)
        self._dead = False              # stop parsing (error answered, closing)
        self._in_head = False           # between the first byte of a request and its blank line
        self._body_bytes = 0            # of the request being parsed (capped at gw.max_body_bytes)
        self._head_bytes = 0
        self._url = b""
        self._headers: Headers = []
        self._parsing: Request | None = None
        self._pending: deque[Request] = deque()
        self.worker: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_paused = False
        self._write_paused = False
        self._upstream: UpstreamConn | None = None
        # After an upgrade request the client's bytes belong to a tunnel: buffered here until it is open.
        self._early: list[bytes] | None = None
        self._tunnel: TunnelUpstream | None = None
        # Response state of the current exchange.
        self._out: list[bytes] = []
        self._out_chunked = False
        self._close_after = False
        self._req: Request | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.gw.conns) >= self.gw.max_connections:
            # Over the cap: refuse cheaply rather than let a flood of sockets starve live sandboxes.
            self._dead = True
            transport.write(error_response(503, "too many connections to the gateway", close=True))  # type: ignore[attr-defined]
            transport.close()
            return
        self.gw.conns.add(self)
        self._arm(self.gw.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            if self._tunnel is not None:
                self._tunnel.send(data)
            else:
                self._early.append(data)
            return
        if self._dead:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._pending and self._pending[-1].upgrade is not None:
                self._early = [data[exc.args[0]:]]
            else:
                self._reject(501, "CONNECT is not supported by the gateway")
        except httptools.HttpParserError as exc:
            if self._head_bytes > self.gw.max_head_bytes:
                self._reject(431, f"request head larger than {self.gw.max_head_bytes} bytes")
            elif self._body_bytes > self.gw.max_body_bytes:
                self._reject(413, f"request body larger than {self.gw.max_body_bytes} bytes")
            else:
                self._reject(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._dead = True
        self.gw.conns.discard(self)
        self._disarm()
        for req in [self._parsing, *self._pending, self._req]:
            if req is not None:
                req._wake()
        if self.worker is not None:
            # Cancelling the exchange closes its upstream connection, so the agent sees the client leave.
            self.worker.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._upstream is not None:
            self._upstream.pause_reading()
        if self._tunnel is not None:
            self._tunnel.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._upstream is not None:
            self._upstream.resume_reading()
        if self._tunnel is not None:
            self._tunnel.resume_reading()

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.lost:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- timers -----------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._in_head:
            self._reject(408, "request head not received in time")
        elif self.transport is not None:
            self.transport.close()

    # --- httptools request callbacks --------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._parsing = None
        self._in_head = True
        self._arm(self.gw.head_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._count(len(name) + len(value) + 4)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.gw.max_head_bytes:
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        p = self._parser
        method = p.get_method()
        upgrade = p.should_upgrade()
        if upgrade and method == b"CONNECT":
            return  # answered 501 by data_received once the parser stops
        req = Request(self, method, self._url, self._headers, p.get_http_version() == "1.1",
                       p.should_keep_alive())
        if not upgrade:
            req.upgrade = None
        if not self._body_allowed():
            return
        self._parsing = req
        self._pending.append(req)
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._run())

    def _body_allowed(self) -> bool:
        """Checks a declared body against the cap and starts the body-stall timer; False = refused (413)."""
        self._body_bytes = 0
        headers = {k.lower(): v for k, v in self._headers}
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.gw.max_body_bytes:
            self._reject(413, f"request body larger than {self.gw.max_body_bytes} bytes")
            return False
        if declared not in (b"", b"0") or b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self._arm(self.gw.body_timeout)  # a client that trickles (or withholds) its body is dropped
        return True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.gw.max_body_bytes:
            raise ValueError("request body too large")  # -> HttpParserError: the connection is closed
        if self._timer is not None:
            self._arm(self.gw.body_timeout)
        if self._parsing is not None:
            self._parsing.feed(body)

    def on_message_complete(self) -> None:
        if self._timer is not None:
            self._disarm()  # the body-stall timer (head and idle timers are never armed at this point)
        if self._parsing is not None:
            self._parsing.finish()
            self._parsing = None

    # --- request handling -------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while self._pending and not self.lost:
                req = self._pending.popleft()
                self._req = req
                keep = await self._handle(req)
                self._req = None
                if not keep:
                    self._dead = True
                    if self.transport is not None:
                        self.transport.close()
                    return
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must cost one connection, never the gateway
            log.exception("gateway: request handling failed")
            if self.transport is not None:
                self.transport.abort()
        finally:
            self.worker = None
            self._req = None
        if not self.lost and self._parsing is None and self._timer is None:
            self._arm(self.gw.idle_timeout)

    def _reject(self, status: int, message: str) -> None:
        """Answer an error and close: used when the request stream can no longer be trusted."""
        self._dead = True
        self._disarm()
        if self.transport is not None and not self.lost:
            if self._req is None:  # nothing in flight: safe to write a response
                self.transport.write(error_response(status, message, close=True))
            self.transport.close()

    async def _answer(self, req: Request, status: int, message: str, extra: dict[str, object] | None = None) -> bool:
        """Write a gateway-made error; returns whether the connection may carry another request."""
        assert self.transport is not None
        keep = req.keep_alive and req.body_done and req.upgrade is None
        self.transport.write(error_response(status, message, close=not keep, extra=extra))
        if not req.body_done and not req.expect_continue:
            # Read (and drop) the rest of the body before closing, or the client may get a reset
            # instead of our answer.
            await self._discard_body(req)
        return keep

    async def _discard_body(self, req: Request, limit: int = 64 << 20, seconds: float = 10.0) -> None:
        seen = 0
        try:
            async with asyncio.timeout(seconds):
                while (data := await req.next_chunk()) is not None:
                    seen += len(data)
                    if seen > limit:
                        return
        except (TimeoutError, ConnectionError):
            return

    async def _handle(self, req: Request) -> bool:
        gw = self.gw
        try:
            sandbox_id, port = pick_target(req.sandbox_id, req.sandbox_port, req.host)
        except CorralError as exc:
            return await self._answer(req, exc.status_code, exc.message)
        route = gw.resolve(sandbox_id)
        if route is None and gw.wake is not None:
            try:
                route = await gw.wake(sandbox_id)   # a paused sandbox: auto-resume, or a clear refusal
            except CorralError as exc:
                return await self._answer(req, exc.status_code, exc.message, {"sandboxId": sandbox_id})
        if route is None:
            # "was not found" is what the SDK matches to raise SandboxNotRunningException.
            return await self._answer(req, 502, f"The sandbox {sandbox_id} was not found", {"sandboxId": sandbox_id})
        path, query = split_target(req.target)
        try:
            check_access(route, port, port == ENVD_PORT, req.method, path, query, req.access_token, req.traffic_token)
        except CorralError as exc:
            return await self._answer(req, exc.status_code, exc.message)
        target = gw.upstream_for(route, port)
        if target is None:
            # "port is not open" makes the SDK raise SandboxUnreachableException.
            return await self._answer(
                req, 502,
                f"The sandbox {sandbox_id} is running but port is not open: port {port} is not served by Corral",
                {"sandboxId": sandbox_id, "port": port},
            )
        if gw.on_activity is not None:
            try:
                gw.on_activity(sandbox_id)
            except Exception:
                log.exception("gateway: on_activity hook failed for %s", sandbox_id)
        if req.expect_continue and not req.body_done:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        gw.active[sandbox_id] = gw.active.get(sandbox_id, 0) + 1
        try:
            if req.upgrade is not None:
                return await self._run_tunnel(req, target, sandbox_id, port)
            return await self._proxy(req, target, sandbox_id, port)
        finally:
            # In-flight requests (streams, tunnels) keep a sandbox from hibernating; its end counts as activity.
            left = gw.active.pop(sandbox_id, 1) - 1
            if left:
                gw.active[sandbox_id] = left
            if gw.on_activity is not None:
                gw.on_activity(sandbox_id)

    def _upstream_head(self, req: Request) -> bytes:
        return b"%b %b HTTP/1.1\r\n%b\r\n" % (req.method.encode(), req.target, req.forward)

    async def _proxy(self, req: Request, target: UpstreamTarget, sandbox_id: str, port: int) -> bool:
        gw = self.gw
        head = self._upstream_head(req)
        retried = False
        while True:
            try:
                up, reused = await gw.pool.acquire(target)
            except OSError as exc:
                return await self._unreachable(req, target, exc, sandbox_id, port)
            whole = req.body_done
            first = [head]
            if whole:
                body = req.take_all()
                if req.chunked:
                    first.extend(chunk(b) for b in body if b)
                    first.append(LAST_CHUNK)
                else:
                    first.extend(body)
            self._begin_response(req)
            done = up.start(self, req.method == "HEAD")
            self._upstream = up
            pump: asyncio.Task[bool] | None = None
            finished = False
            try:
                up.write(b"".join(first))
                if not whole:
                    pump = asyncio.get_running_loop().create_task(self._pump(req, up))
                try:
                    await done
                except ConnectionError as exc:
                    if pump is not None:
                        pump.cancel()
                        await asyncio.gather(pump, return_exceptions=True)
                    if reused and whole and not up.got_bytes and not retried:
                        retried = True          # a stale pooled connection: replay once on a fresh one
                        gw.pool.discard(up)
                        req._chunks.extend(body)
                        continue
                    if up.head_sent:
                        return False            # mid-response failure: only closing tells the client
                    return await self._answer(req, 502, f"The connection to sandbox {sandbox_id} was lost: {exc}",
                                        {"sandboxId": sandbox_id})
                finished = True
                body_sent = whole or bool(pump is not None and pump.done() and not pump.cancelled()
                                          and pump.result())
                if not body_sent:
                    up.keep_alive = False
                gw.pool.release(target, up)
                return not self._close_after and body_sent and req.body_done
            finally:
                self._upstream = None
                if pump is not None and not pump.done():
                    pump.cancel()
                if not finished:
                    gw.pool.discard(up)

    async def _unreachable(self, req: Request, target: UpstreamTarget, exc: OSError, sandbox_id: str,
                           port: int) -> bool:
        # "port is not open" makes the SDK raise SandboxUnreachableException.
        return await self._answer(req, 502, f"The sandbox {sandbox_id} is running but port is not open: "
                                  f"{target.unreachable(exc)}", {"sandboxId": sandbox_id, "port": port})

    async def _run_tunnel(self, req: Request, target: UpstreamTarget, sandbox_id: str, port: int) -> bool:
        """Relay an upgrade request (WebSocket) and then raw bytes until either side closes; never pooled."""
        if port == ENVD_PORT:
            return await self._answer(req, 501, "connection upgrades are passed only to in-sandbox ports, not envd")
        try:
            up: TunnelUpstream = await target.open(lambda: TunnelUpstream(self))  # type: ignore[assignment]
        except OSError as exc:
            return await self._unreachable(req, target, exc, sandbox_id, port)
        self._disarm()  # a tunnel may sit idle for long; either side closing ends it
        assert req.upgrade is not None
        up.send(b"%b %b HTTP/1.1\r\n%bconnection: upgrade\r\nupgrade: %b\r\n\r\n"
                % (req.method.encode(), req.target, req.forward, req.upgrade))
        for data in self._early or ():
            if data:
                up.send(data)
        self._early = []
        self._tunnel = up
        try:
            await up.done
        finally:
            self._tunnel = None
            up.abort()
        return False

    async def _pump(self, req: Request, up: UpstreamConn) -> bool:
        """Stream the rest of a request body upstream, re-chunking if the client sent it chunked."""
        try:
            while True:
                data = await req.next_chunk()
                if data is None:
                    if req.chunked:
                        up.write(LAST_CHUNK)
                    return True
                if data:
                    up.write(chunk(data) if req.chunked else data)
                    await up.drain()
        except (ConnectionError, OSError):
            # Either side went away; the exchange itself notices and cleans up.
            up.abort()
            return False

    # --- ResponseSink (called by the upstream connection) ------------------------------------
    def _begin_response(self, req: Request) -> None:
        self._out = []
        self._out_chunked = False
        self._close_after = not req.keep_alive
        self._req = req

    def on_response_head(self, status: int, reason: bytes, headers: Headers, mode: str) -> None:
        req = self._req
        assert req is not None
        if mode in (CHUNKED, CLOSE):
            if req.http11:
                self._out_chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
            else:
                self._close_after = True  # HTTP/1.0 has no chunked encoding: the body ends at close
        if self._close_after:
            headers.append((b"connection", b"close"))
        self._out.append(b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason or b"-", serialize_headers(headers)))
        if mode == NONE:
            self._out_chunked = False

    def on_response_body(self, data: bytes) -> None:
        self._out.append(chunk(data) if self._out_chunked else data)

    def on_response_end(self) -> None:
        if self._out_chunked:
            self._out.append(LAST_CHUNK)

    def flush(self) -> None:
        out = self._out
        if out and self.transport is not None and not self.lost:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)
        out.clear()
