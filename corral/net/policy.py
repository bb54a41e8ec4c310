"""A sandbox's egress policy: parsed from the E2B wire fields, stored as JSON, and judged for names and addresses."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from corral.errors import InvalidRequestError

# Never reachable unless an allow_out entry lies inside them: loopback, private and shared ranges, link-local
# (169.254.169.254, the cloud metadata address), multicast/reserved, "this network".
PROTECTED = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/3")]
ALL_TRAFFIC = ipaddress.IPv4Network("0.0.0.0/0")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}\.?$")


def _protected(net: ipaddress.IPv4Network) -> bool:
    return any(net.subnet_of(p) for p in PROTECTED)


@dataclass(frozen=True)
class EgressPolicy:
    """allow_internet: the default verdict. Allow entries win over deny entries (as E2B documents)."""

    allow_internet: bool = True
    allow_cidrs: list[str] = field(default_factory=list)
    allow_domains: list[str] = field(default_factory=list)
    deny_cidrs: list[str] = field(default_factory=list)
    deny_domains: list[str] = field(default_factory=list)

    # ---- wire / storage ----

    @classmethod
    def from_wire(cls, allow_internet_access: bool | None, network: dict[str, Any] | None,
                  where: str = "network") -> EgressPolicy:
        """`allow_internet_access` + `network.{allowOut,denyOut}`; a deny of 0.0.0.0/0 is "no internet"."""
        network = network or {}
        allow_c, allow_d = _entries(network.get("allowOut"), f"{where}.allowOut")
        deny_c, deny_d = _entries(network.get("denyOut"), f"{where}.denyOut")
        internet = allow_internet_access is not False
        if str(ALL_TRAFFIC) in deny_c:
            internet = False
            deny_c = [c for c in deny_c if c != str(ALL_TRAFFIC)]
        return cls(internet, allow_c, allow_d, deny_c, deny_d)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EgressPolicy:
        return cls(**data) if data else cls()

    # ---- verdicts (the proxy uses them; nftables mirrors them for packets) ----

    def ip_allowed(self, ip: str, *, resolved_for_allowed_name: bool = False) -> bool:
        addr = ipaddress.IPv4Address(ip)
        nets = lambda cidrs: [ipaddress.IPv4Network(c) for c in cidrs]
        allow = nets(self.allow_cidrs)
        if any(addr in n for n in allow if _protected(n)):
            return True
        if any(addr in p for p in PROTECTED):
            return False
        if resolved_for_allowed_name or any(addr in n for n in allow):
            return True
        if any(addr in n for n in nets(self.deny_cidrs)):
            return False
        return self.allow_internet

    def name_verdict(self, name: str) -> bool | None:
        """True: an allow rule names it; False: a deny rule does, or nothing allows it and internet is off;
        None: no domain rule speaks and internet is on (then the addresses decide)."""
        if matches(self.allow_domains, name):
            return True
        if matches(self.deny_domains, name) or not self.allow_internet:
            return False
        return None


def matches(patterns: list[str], name: str) -> bool:
    """`example.com` matches itself; `*.example.com` matches its subdomains (not itself)."""
    name = name.lower().rstrip(".")
    for p in patterns:
        if p.startswith("*."):
            if name.endswith(p[1:]):
                return True
        elif name == p:
            return True
    return False


def _entries(value: Any, where: str) -> tuple[list[str], list[str]]:
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise InvalidRequestError(f"{where}: must be a list of CIDRs, IP addresses or domain names")
    cidrs: list[str] = []
    domains: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, str) or not entry.strip():
            raise InvalidRequestError(f"{where}[{i}]: must be a non-empty string")
        entry = entry.strip().lower()
        try:
            cidrs.append(str(ipaddress.IPv4Network(entry, strict=False)))
            continue
        except ValueError:
            pass
        if ":" in entry:
            raise InvalidRequestError(f"{where}[{i}]: IPv6 is not supported (sandboxes have IPv4 only): {entry!r}")
        if not _DOMAIN.match(entry) or entry.replace(".", "").isdigit():
            raise InvalidRequestError(f"{where}[{i}]: not a CIDR, IPv4 address or domain name: {entry!r}")
        domains.append(entry.rstrip("."))
    return cidrs, domains
