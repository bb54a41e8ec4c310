"""Per-sandbox network namespace + veth pair: address allocation, setup, re-addressing for restore, teardown."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.net import nft
from corral.runtime.procs import run_cmd

NETNS_DIR = Path("/run/netns")
SANDBOX_IFACE = "eth0"
NET_FILE = "net.json"
ALLOC_ATTEMPTS = 8   # in the sandbox directory: what teardown needs even after a server crash

# One allocation at a time per event loop (an asyncio.Lock belongs to one loop; tests run several).
_alloc_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
# Allocation goes round the /16 instead of taking the lowest free block: a freed address is not handed to the next
# sandbox at once (conntrack entries of the old one's flows could otherwise match the new one's traffic).
_next_index = [random.randrange(1, 1 << 12)]


@dataclass(frozen=True)
class NetInfo:
    """Where a sandbox sits on the host network."""

    sandbox_id: str
    netns: str          # name under /run/netns
    host_iface: str     # host end of the veth
    host_ip: str        # the sandbox's gateway (host end)
    sandbox_ip: str
    service_ip: str     # DNS resolver + HTTP(S) proxy

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)


def network(settings: Settings) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(settings.net_cidr, strict=False)


def service_ip(settings: Settings) -> str:
    """Block 0's host address: on `lo` (label lo:<tag>), where DNS and the proxy listen."""
    return str(network(settings).network_address + 1)


def service_label(settings: Settings) -> str:
    return f"lo:{settings.net_tag}"


def netns_name(sandbox_id: str) -> str:
    return f"corral-{sandbox_id}"


def _info(settings: Settings, sandbox_id: str, index: int) -> NetInfo:
    base = network(settings).network_address + 4 * index
    return NetInfo(sandbox_id=sandbox_id, netns=netns_name(sandbox_id), host_iface=f"{settings.net_tag}{index:x}",
                   host_ip=str(base + 1), sandbox_ip=str(base + 2), service_ip=service_ip(settings))


def read_info(sandbox_dir: Path) -> NetInfo | None:
    try:
        return NetInfo(**json.loads((sandbox_dir / NET_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def used_indexes(settings: Settings) -> set[int]:
    """Indexes of this tag's host veths that exist now (any server's, any sandbox's)."""
    tag = settings.net_tag
    used = set()
    for name in os.listdir("/sys/class/net"):
        if name.startswith(tag):
            try:
                used.add(int(name[len(tag):], 16))
            except ValueError:
                pass
    return used


async def _ip(*args: str, stdin: str | None = None) -> None:
    if stdin is None:
        rc, out = await run_cmd("ip", *args)
    else:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        raw, _ = await proc.communicate(stdin.encode())
        rc, out = proc.returncode or 0, raw.decode(errors="replace").strip()
    if rc != 0:
        raise RuntimeFailure(f"ip {' '.join(args)} failed: {out}")


async def setup(settings: Settings, sandbox_dir: Path, sandbox_id: str) -> NetInfo:
    """Create netns `corral-<id>` with eth0 (sandbox end) and the host end, addressed, and a deny-all nft chain.

    net.json is written before anything exists in the kernel, so teardown always knows what to remove."""
    await nft.ensure_table_once(settings, service_ip(settings))
    blocks = network(settings).num_addresses // 4
    async with _alloc_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
        for attempt in range(ALLOC_ATTEMPTS):
            used = used_indexes(settings)
            # Block 0 is the service address; the host end's name is the kernel-level lock between processes.
            start = _next_index[0] % blocks or 1
            order = [*range(start, blocks), *range(1, start)]
            index = next((i for i in order if i not in used), None)
            if index is None:
                raise RuntimeFailure(f"no free /30 left in {settings.net_cidr}")
            _next_index[0] = index + 1
            info = _info(settings, sandbox_id, index)
            (sandbox_dir / NET_FILE).write_text(json.dumps(asdict(info)))
            # One `ip` process for the host side (each spawn costs ~10 ms of a create). `netns add` in a batch
            # returns to the host namespace for the next line (iproute2 >= 4.x); the batch stops at the first error.
            batch = [] if (NETNS_DIR / info.netns).exists() else [f"netns add {info.netns}"]
            batch += [f"link add {info.host_iface} type veth peer name {SANDBOX_IFACE} netns {info.netns}",
                      f"addr add {info.host_ip}/30 dev {info.host_iface}",
                      f"link set {info.host_iface} up"]
            link_line = len(batch) - 2  # ip names a failed batch line "-:<number>", from 1
            try:
                await _ip("-batch", "-", stdin="\n".join(batch) + "\n")
                break
            except RuntimeFailure as e:
                # Another process (a second server, a runtime test) took that name between our scan and now.
                if "File exists" not in str(e) or f"-:{link_line}" not in str(e) or attempt == ALLOC_ATTEMPTS - 1:
                    raise
    # Packets from the sandbox are routed (forwarded) by the host: enabled on this interface only. Nothing runs in
    # the netns yet, so setting it after `up` loses nothing.
    Path(f"/proc/sys/net/ipv4/conf/{info.host_iface}/forwarding").write_text("1")
    Path(f"/proc/sys/net/ipv6/conf/{info.host_iface}/disable_ipv6").write_text("1")
    await address_sandbox_end(info)
    await nft.add_sandbox(settings, info)
    return info


async def address_sandbox_end(info: NetInfo) -> None:
    """Give eth0 its address and default route. runsc --network=sandbox moves them into its netstack (removing
    them from the netns), so a `runsc restore` into the same netns needs this again first."""
    await _ip("-n", info.netns, "-batch", "-", stdin=(
        f"addr replace {info.sandbox_ip}/30 dev {SANDBOX_IFACE}\n"
        f"link set {SANDBOX_IFACE} up\nlink set lo up\n"
        f"route replace default via {info.host_ip}\n"))


async def teardown(settings: Settings, sandbox_dir: Path, sandbox_id: str) -> None:
    """Remove the nft chain/sets and the netns (its veth end goes with it, and so the host end). Idempotent."""
    info = read_info(sandbox_dir)
    await nft.remove_sandbox(settings, sandbox_id, info)
    name = netns_name(sandbox_id)
    if (NETNS_DIR / name).exists():
        await _ip("netns", "del", name)
    if info is not None and Path(f"/sys/class/net/{info.host_iface}").exists():
        # Only when the sandbox end was never moved into the netns (a crash mid-setup).
        rc, out = await run_cmd("ip", "link", "del", info.host_iface)
        if rc != 0 and Path(f"/sys/class/net/{info.host_iface}").exists():
            raise RuntimeFailure(f"ip link del {info.host_iface} failed: {out}")


def proxy_env(info: NetInfo, settings: Settings) -> dict[str, str]:
    """What makes pip/npm/apt/curl inside the sandbox use Corral's proxy (both spellings: tools differ)."""
    url = f"http://{info.service_ip}:{settings.net_proxy_port}"
    env = {}
    for k, v in (("HTTP_PROXY", url), ("HTTPS_PROXY", url), ("NO_PROXY", "localhost,127.0.0.1,::1")):
        env[k] = v
        env[k.lower()] = v
    return env


def resolv_conf(info: NetInfo) -> str:
    return f"# written by Corral: its resolver applies the sandbox's egress policy\nnameserver {info.service_ip}\n"
