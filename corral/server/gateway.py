"""The sandbox gateway (E2B_SANDBOX_URL): routes each HTTP/1.1 request to its sandbox's agent socket and streams it."""

from __future__ import annotations

import asyncio

from corral.server.gateway_client import ClientConn
from corral.server.gateway_forward import ForwardTarget
from corral.server.gateway_upstream import UnixTarget, UpstreamPool, UpstreamTarget
from corral.server.route import ENVD_PORT, ActivityHook, Route, RouteResolver, WakeHook


class Gateway:
    """HTTP/1.1 reverse proxy in front of every sandbox; one instance serves the gateway port."""

    def __init__(
        self,
        resolve: RouteResolver,
        on_activity: ActivityHook | None = None,
        domain: str = "localhost",
        wake: WakeHook | None = None,
        *,
        max_head_bytes: int = 64 * 1024,
        head_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        max_idle_upstream: int = 8,
        max_connections: int = 10_000,
        max_body_bytes: int = 1 << 30,
        body_timeout: float = 60.0,
    ) -> None:
        self.resolve = resolve
        self.on_activity = on_activity
        self.wake = wake
        self.active: dict[str, int] = {}   # sandbox id -> requests being proxied right now
        self.domain = domain
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        # One request body (an envd upload) may be this large, and may stall this long between chunks.
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.pool = UpstreamPool(max_idle_upstream)
        self._server: asyncio.base_events.Server | None = None
        self.conns: set[ClientConn] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port; returns once listening."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientConn(self), host, port, reuse_address=True, backlog=1024)

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, drop client connections and close upstream connections."""
        if self._server is not None:
            self._server.close()
        workers = [c.worker for c in self.conns if c.worker is not None]
        for conn in list(self.conns):
            conn.shutdown()
        self.pool.close()
        if workers:
            await asyncio.wait(workers, timeout=2)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def busy(self, sandbox_id: str) -> bool:
        """True while a request to the sandbox is being proxied (hibernation waits for it)."""
        return sandbox_id in self.active

    def upstream_for(self, route: Route, port: int) -> UpstreamTarget | None:
        """Where a sandbox port is served; None answers 502. envd is the agent itself; any other port is
        a TCP port inside the sandbox, forwarded by the agent (the sandbox has no network to reach it by)."""
        if port == ENVD_PORT:
            return UnixTarget(route.socket_path)
        if 0 < port < 65536:
            return ForwardTarget(route.socket_path, port, route.envd_access_token)
        return None
