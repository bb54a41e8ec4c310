"""The `inet <net_tag>` nftables table: host-wide chains (created idempotently) and one chain + sets per sandbox."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.net.policy import PROTECTED, EgressPolicy

if TYPE_CHECKING:
    from corral.net.netns import NetInfo

# Per-sandbox sets: explicit allows inside protected ranges, other allows, denies, and the addresses Corral's
# resolver handed out for allowed / denied names (with a timeout: DNS TTL, at least net_dns_min_ttl_s).
SETS = {"allowp": "flags interval;", "allow": "flags interval;", "deny": "flags interval;",
        "dnsallow": "flags timeout;", "dnsdeny": "flags timeout;"}


def table(settings: Settings) -> str:
    return f"inet {settings.net_tag}"


def chain(sandbox_id: str) -> str:
    return f"s_{sandbox_id}"


async def run(script: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise RuntimeFailure(f"nft failed: {out.decode(errors='replace').strip()}\nscript:\n{script}")


async def _try(script: str) -> None:
    """For idempotent teardown: a missing object is fine."""
    try:
        await run(script)
    except RuntimeFailure as e:
        if "No such file or directory" not in str(e):
            raise


def host_script(settings: Settings, svc_ip: str, net: str) -> str:
    """The table, its shared sets and base chains. Re-running it rewrites the base chains only."""
    t = table(settings)
    protected = ", ".join(str(p) for p in PROTECTED)
    return f"""
add table {t}
add set {t} protected {{ type ipv4_addr; flags interval; }}
flush set {t} protected
add element {t} protected {{ {protected} }}
add set {t} veths {{ type ifname; }}
add set {t} sources {{ type ifname . ipv4_addr; }}
add map {t} egress {{ type ifname : verdict; }}
add chain {t} reject_fast
flush chain {t} reject_fast
add rule {t} reject_fast meta l4proto tcp reject with tcp reset
add rule {t} reject_fast reject with icmpx type admin-prohibited
add chain {t} from_sandbox
flush chain {t} from_sandbox
add rule {t} from_sandbox ct state established,related accept
add rule {t} from_sandbox meta nfproto ipv4 iifname . ip saddr != @sources drop
add rule {t} from_sandbox ip daddr {svc_ip} udp dport {settings.net_dns_port} accept
add rule {t} from_sandbox ip daddr {svc_ip} tcp dport {{ {settings.net_dns_port}, {settings.net_proxy_port} }} accept
add rule {t} from_sandbox goto reject_fast
add chain {t} input {{ type filter hook input priority -10; policy accept; }}
flush chain {t} input
add rule {t} input iifname @veths goto from_sandbox
add chain {t} forward {{ type filter hook forward priority -10; policy accept; }}
flush chain {t} forward
add rule {t} forward iifname vmap @egress
add rule {t} forward oifname @veths ct state established,related accept
add rule {t} forward oifname @veths goto reject_fast
add chain {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
flush chain {t} postrouting
add rule {t} postrouting ip saddr {net} ip daddr != {net} masquerade
"""


async def ensure_table(settings: Settings, svc_ip: str) -> None:
    await run(host_script(settings, svc_ip, str(ipaddress.IPv4Network(settings.net_cidr, strict=False))))
    _ensured.add((settings.net_tag, settings.net_cidr))


_ensured: set[tuple[str, str]] = set()


async def ensure_table_once(settings: Settings, svc_ip: str) -> None:
    """A runtime used without a server (tests, tools) still gets the table: its sandboxes stay deny-all."""
    if (settings.net_tag, settings.net_cidr) not in _ensured:
        await ensure_table(settings, svc_ip)


def _elements(values: list[str]) -> str:
    return ", ".join(values)


def policy_script(settings: Settings, info: NetInfo, policy: EgressPolicy | None) -> str:
    """The sandbox's chain and sets, rewritten in one transaction. No policy: everything is rejected."""
    t, c = table(settings), chain(info.sandbox_id)
    lines = [f"add chain {t} {c}", f"flush chain {t} {c}"]
    for name, flags in SETS.items():
        lines += [f"add set {t} {c}_{name} {{ type ipv4_addr; {flags} }}"]
        if name in ("allowp", "allow", "deny"):   # the resolver's sets keep their entries until they expire
            lines += [f"flush set {t} {c}_{name}"]
    if policy is not None:
        allow = [ipaddress.IPv4Network(n) for n in policy.allow_cidrs]
        inside = [str(n) for n in allow if any(n.subnet_of(p) for p in PROTECTED)]
        outside = [str(n) for n in allow if str(n) not in inside]
        for name, values in (("allowp", inside), ("allow", outside), ("deny", policy.deny_cidrs)):
            if values:
                lines.append(f"add element {t} {c}_{name} {{ {_elements(values)} }}")
    rules = [
        f"ip saddr != {info.sandbox_ip} drop",          # anti-spoofing
        "ct state established,related accept",
        "meta nfproto ipv6 goto reject_fast",            # sandboxes are IPv4-only
    ]
    if policy is not None:
        rules += [
            f"ip daddr @{c}_allowp accept",
            "ip daddr @protected goto reject_fast",
            f"ip daddr @{c}_allow accept",
            f"ip daddr @{c}_dnsallow accept",
            f"ip daddr @{c}_dnsdeny goto reject_fast",
            f"ip daddr @{c}_deny goto reject_fast",
            "accept" if policy.allow_internet else "goto reject_fast",
        ]
    else:
        rules.append("goto reject_fast")
    lines += [f"add rule {t} {c} {r}" for r in rules]
    return "\n".join(lines) + "\n"


async def add_sandbox(settings: Settings, info: NetInfo) -> None:
    """Deny-all chain, then hook it in (a pool member stays locked down until its creator's policy arrives)."""
    t = table(settings)
    script = (policy_script(settings, info, None)
              + f'add element {t} egress {{ "{info.host_iface}" : goto {chain(info.sandbox_id)} }}\n'
              + f'add element {t} veths {{ "{info.host_iface}" }}\n'
              # Anti-spoofing for what reaches the host (resolver and proxy tell sandboxes apart by address).
              + f'add element {t} sources {{ "{info.host_iface}" . {info.sandbox_ip} }}\n')
    try:
        await run(script)
    except RuntimeFailure as e:
        # Another process removed the table when it saw no sandbox left (server stop, runtime tests): recreate.
        if "No such file or directory" not in str(e):
            raise
        await ensure_table(settings, info.service_ip)
        await run(script)


async def set_policy(settings: Settings, info: NetInfo, policy: EgressPolicy) -> None:
    await run(policy_script(settings, info, policy))


async def add_resolved(settings: Settings, sandbox_id: str, allowed: bool, ips: list[str], ttl_s: int) -> None:
    """Addresses the resolver answered for a name an allow (or deny) rule names."""
    if not ips:
        return
    t, c = table(settings), chain(sandbox_id)
    name = "dnsallow" if allowed else "dnsdeny"
    elems = ", ".join(f"{ip} timeout {ttl_s}s" for ip in ips)
    # Re-adding an element that exists refreshes its timeout (measured on this kernel); a sandbox torn down
    # meanwhile has no set any more, which is fine.
    await _try(f"add element {t} {c}_{name} {{ {elems} }}\n")


async def remove_sandbox(settings: Settings, sandbox_id: str, info: NetInfo | None) -> None:
    """One transaction when everything is there (the usual case); else piece by piece, tolerating what is gone."""
    t, c = table(settings), chain(sandbox_id)
    steps = []
    if info is not None:
        steps += [f'delete element {t} egress {{ "{info.host_iface}" }}',
                  f'delete element {t} veths {{ "{info.host_iface}" }}',
                  f'delete element {t} sources {{ "{info.host_iface}" . {info.sandbox_ip} }}']
    steps += [f"delete chain {t} {c}", *(f"delete set {t} {c}_{name}" for name in SETS)]
    try:
        await run("\n".join(steps) + "\n")
    except RuntimeFailure:
        for step in steps:
            await _try(step + "\n")


async def remove_table(settings: Settings) -> None:
    await _try(f"delete table {table(settings)}\n")
