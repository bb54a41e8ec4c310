"""NetworkService: the host side of sandbox networking a server runs (service address, nft table, resolver, proxy,
and the policy of every live sandbox)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from corral.config import Settings
from corral.errors import NotFoundError, RuntimeFailure
from corral.net import netns, nft
from corral.net.dns import Resolver, Upstream, system_nameservers
from corral.net.netns import NetInfo
from corral.net.policy import EgressPolicy
from corral.net.proxy import Proxy
from corral.runtime.procs import run_cmd

log = logging.getLogger(__name__)


class NetworkService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service_ip = netns.service_ip(settings)
        self._live: dict[str, tuple[NetInfo, EgressPolicy]] = {}
        self._by_ip: dict[str, str] = {}
        self.upstream = Upstream(settings.net_upstream_dns or system_nameservers(), settings.net_static_hosts)
        self._dns: asyncio.DatagramTransport | None = None
        self._proxy: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifetime ----

    async def start(self) -> None:
        """Idempotent: the service address, the nft table, the resolver and the proxy."""
        # On `lo` (labelled lo:<tag>): no dummy-interface module needed; only the input chain decides who gets in.
        label = netns.service_label(self.settings)
        rc, out = await run_cmd("ip", "addr", "replace", f"{self.service_ip}/32", "dev", "lo", "label", label)
        if rc != 0:
            raise RuntimeFailure(f"ip addr replace {self.service_ip}/32 dev lo failed: {out}")
        await nft.ensure_table(self.settings, self.service_ip)
        loop = asyncio.get_running_loop()
        resolver = Resolver(self.upstream, self.lookup, self._on_resolved, self.settings.net_dns_min_ttl_s)
        self._dns, _ = await loop.create_datagram_endpoint(
            lambda: resolver, local_addr=(self.service_ip, self.settings.net_dns_port))
        proxy = Proxy(self.lookup, self.settings.net_static_hosts, self.settings.net_upstream_proxy)
        self._proxy = await asyncio.start_server(proxy.handle, self.service_ip, self.settings.net_proxy_port)
        log.info("sandbox network: %s, resolver and proxy on %s (upstream proxy: %s)", self.settings.net_cidr,
                 self.service_ip, "yes" if self.settings.net_upstream_proxy else "none")

    async def close(self) -> None:
        """Stops the resolver and proxy. Sandboxes that keep running keep their netns and the table (the next
        start re-attaches); when none is left, the table and the service address go too."""
        if self._dns is not None:
            self._dns.close()
        if self._proxy is not None:
            self._proxy.close()
            await self._proxy.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        # Never drop the table while a sandbox veth exists: its traffic would be forwarded unfiltered.
        if not netns.used_indexes(self.settings):
            await nft.remove_table(self.settings)
            await run_cmd("ip", "addr", "del", f"{self.service_ip}/32", "dev", "lo")

    # ---- policies ----

    def lookup(self, ip: str) -> tuple[str, EgressPolicy] | None:
        sandbox_id = self._by_ip.get(ip)
        if sandbox_id is None:
            return None
        return sandbox_id, self._live[sandbox_id][1]

    def policy(self, sandbox_id: str) -> EgressPolicy:
        try:
            return self._live[sandbox_id][1]
        except KeyError:
            raise NotFoundError(f"sandbox {sandbox_id} has no network") from None

    @staticmethod
    def has_network(sandbox_dir: Path) -> bool:
        """False for a sandbox started while networking was off (it keeps running without one)."""
        return netns.read_info(sandbox_dir) is not None

    async def apply(self, sandbox_id: str, sandbox_dir: Path, policy: EgressPolicy) -> None:
        """Install (or replace, atomically) the sandbox's egress rules; the resolver and proxy follow at once."""
        info = netns.read_info(sandbox_dir)
        if info is None:
            raise RuntimeFailure(f"sandbox {sandbox_id} has no network (missing {netns.NET_FILE})")
        await nft.set_policy(self.settings, info, policy)
        self._live[sandbox_id] = (info, policy)
        self._by_ip[info.sandbox_ip] = sandbox_id
        # Named rules hold for connect-by-IP too: resolve them now (static names at once, others in background).
        for allowed, names in ((True, policy.allow_domains), (False, policy.deny_domains)):
            for name in names:
                if name.startswith("*."):
                    continue
                if name in self.upstream.static:
                    await self._on_resolved(sandbox_id, allowed, [self.upstream.static[name]],
                                            self.settings.net_dns_min_ttl_s)
                else:
                    task = asyncio.create_task(self._resolve(sandbox_id, allowed, name))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    def forget(self, sandbox_id: str) -> None:
        entry = self._live.pop(sandbox_id, None)
        if entry is not None:
            self._by_ip.pop(entry[0].sandbox_ip, None)

    async def _resolve(self, sandbox_id: str, allowed: bool, name: str) -> None:
        try:
            ips, ttl = await self.upstream.resolve(name)
            if sandbox_id in self._live:
                await self._on_resolved(sandbox_id, allowed, ips, max(ttl, self.settings.net_dns_min_ttl_s))
        except Exception:
            log.warning("could not resolve %s for sandbox %s", name, sandbox_id, exc_info=True)

    async def _on_resolved(self, sandbox_id: str, allowed: bool, ips: list[str], ttl: int) -> None:
        if sandbox_id in self._live:
            await nft.add_resolved(self.settings, sandbox_id, allowed, ips, ttl)
