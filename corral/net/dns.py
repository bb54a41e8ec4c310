"""The sandboxes' resolver (UDP, on the service address): answers by policy, forwards upstream, feeds nftables.

An allowed name's A records go into the asking sandbox's `dnsallow` set (TTL, at least net_dns_min_ttl_s), so
allow-by-domain works even when internet access is off and the code then connects by IP. Denied names answer
NXDOMAIN; their addresses are blocked through `dnsdeny` (filled when the policy is applied, see service.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from corral.net import dnswire
from corral.net.policy import EgressPolicy

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_S = 2.0
# (sandbox_id, policy) for a source address, or None for a stranger.
Lookup = Callable[[str], "tuple[str, EgressPolicy] | None"]
# (sandbox_id, allowed?, ips, ttl) -> nftables update
OnResolved = Callable[[str, bool, list[str], int], Awaitable[None]]


def system_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


class _ReplyProtocol(asyncio.DatagramProtocol):
    """Completes `fut` with the first datagram carrying the query's id."""

    def __init__(self, fut: asyncio.Future[bytes], qid: bytes) -> None:
        self.fut = fut
        self.qid = qid

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.fut.done() and data[:2] == self.qid:
            self.fut.set_result(data)


class Upstream:
    """Sends a raw query to the host's resolvers in turn; answers static names itself."""

    def __init__(self, servers: list[str], static: dict[str, str]) -> None:
        self.servers = servers
        self.static = {k.lower().rstrip("."): v for k, v in static.items()}

    async def ask(self, query: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for server in self.servers:
            fut: asyncio.Future[bytes] = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda f=fut: _ReplyProtocol(f, query[:2]), remote_addr=(server, 53))  # type: ignore[misc]
            except OSError:
                continue
            try:
                transport.sendto(query)
                return await asyncio.wait_for(fut, UPSTREAM_TIMEOUT_S)
            except (TimeoutError, OSError):
                continue
            finally:
                transport.close()
        return None

    async def resolve(self, name: str) -> tuple[list[str], int]:
        """A records of `name` (static map first)."""
        if name in self.static:
            return [self.static[name]], 0
        reply = await self.ask(dnswire.query_a(name, random.randrange(1 << 16)))
        return dnswire.a_records(reply) if reply else ([], 0)


class Resolver(asyncio.DatagramProtocol):
    def __init__(self, upstream: Upstream, lookup: Lookup, on_resolved: OnResolved, min_ttl: int) -> None:
        self.upstream = upstream
        self.lookup = lookup
        self.on_resolved = on_resolved
        self.min_ttl = min_ttl
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        found = self.lookup(addr[0])
        if found is None:
            return   # not one of our sandboxes: nftables should not even let it here
        task = asyncio.create_task(self._answer(data, addr, *found))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int], sandbox_id: str, policy: EgressPolicy) -> None:
        try:
            q = dnswire.parse_question(data)
        except dnswire.DnsFormatError:
            return
        try:
            reply = await self._reply(data, q, sandbox_id, policy)
        except Exception:
            log.exception("resolver: %s for sandbox %s failed", q.name, sandbox_id)
            reply = dnswire.error(data, q, dnswire.RCODE_SERVFAIL)
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    async def _reply(self, data: bytes, q: dnswire.Question, sandbox_id: str, policy: EgressPolicy) -> bytes:
        verdict = policy.name_verdict(q.name)
        if verdict is False:
            return dnswire.error(data, q, dnswire.RCODE_NXDOMAIN)
        if q.name in self.upstream.static:
            ip = self.upstream.static[q.name]
            reply = dnswire.answer(data, q, [ip], self.min_ttl)
            ips, ttl = [ip], self.min_ttl
        else:
            up = await self.upstream.ask(data)
            if up is None:
                return dnswire.error(data, q, dnswire.RCODE_SERVFAIL)
            reply = up
            ips, ttl = dnswire.a_records(up)
        if verdict is True and ips:
            # Before the answer leaves: the sandbox may connect the moment it reads it.
            await self.on_resolved(sandbox_id, True, ips, max(ttl, self.min_ttl))
        return reply
