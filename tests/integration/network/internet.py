"""Test "internet": HTTP servers in network namespaces the tests create (TEST-NET addresses, never outside ones)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from corral.net import netns, nft

PORT = 8000
# http.server without its reverse lookup of the bind address (server_bind calls getfqdn before listen(): with no
# reachable DNS that stalls the start for many seconds).
SERVE = """
import http.server, socketserver, sys
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
Server((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""
# name -> (netns-side address, host-side address); RFC 5737 documentation ranges, routed nowhere but here.
SITES = {"site-a.test": ("198.51.100.2", "198.51.100.1"), "site-b.test": ("203.0.113.2", "203.0.113.1")}


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Site:
    name: str
    ip: str
    host_ip: str
    netns: str
    veth: str
    server: subprocess.Popen[bytes] | None = None


@dataclass
class Internet:
    sites: dict[str, Site] = field(default_factory=dict)

    def start(self, workdir: Path) -> None:
        tag = secrets.token_hex(2)
        for i, (name, (ip, host_ip)) in enumerate(SITES.items()):
            site = Site(name, ip, host_ip, netns=f"ctest-{tag}-{i}", veth=f"ctw{tag}{i}")
            self.sites[name] = site
            _run("ip", "netns", "add", site.netns)
            _run("ip", "link", "add", site.veth, "type", "veth", "peer", "name", "eth0", "netns", site.netns)
            _run("ip", "addr", "add", f"{host_ip}/30", "dev", site.veth)
            _run("ip", "link", "set", site.veth, "up")
            # Replies to forwarded sandbox traffic arrive on this interface: it must forward too.
            Path(f"/proc/sys/net/ipv4/conf/{site.veth}/forwarding").write_text("1")
            for cmd in (f"addr add {ip}/30 dev eth0", "link set eth0 up", "link set lo up",
                        f"route add default via {host_ip}"):
                _run("ip", "-n", site.netns, *cmd.split())
            root = workdir / name
            root.mkdir(parents=True, exist_ok=True)
            (root / "index.html").write_text(f"hello from {name}")
            site.server = subprocess.Popen(
                ["ip", "netns", "exec", site.netns, sys.executable, "-c", SERVE, ip, str(PORT)],
                cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for site in self.sites.values():
            deadline = time.monotonic() + 10
            while True:
                try:
                    if httpx.get(f"http://{site.ip}:{PORT}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def stop(self) -> None:
        for site in self.sites.values():
            if site.server is not None and site.server.poll() is None:
                site.server.terminate()
                try:
                    site.server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    site.server.kill()
                    site.server.wait()
            subprocess.run(["ip", "netns", "del", site.netns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", site.veth], capture_output=True, check=False)

    @property
    def static_hosts(self) -> dict[str, str]:
        # api.site-a.test: a subdomain for wildcard rules (same server).
        return {**{name: ip for name, (ip, _h) in SITES.items()}, "api.site-a.test": SITES["site-a.test"][0]}


def net_info(data_dir: Path, sandbox_id: str) -> netns.NetInfo:
    info = netns.read_info(data_dir / "sandboxes" / sandbox_id)
    assert info is not None, f"sandbox {sandbox_id} has no net.json"
    return info


def net_leftovers(net_tag: str, infos: list[netns.NetInfo], data_dir: Path) -> list[str]:
    """Network state killed sandboxes could leave: their netns, host veth, nft chain or sets.

    A host veth name can be reused by a newer sandbox: it is a leftover only when no live sandbox's net.json names it."""
    table = subprocess.run(["nft", "list", "table", "inet", net_tag], capture_output=True, text=True, check=False)
    live = {i.host_iface for d in (data_dir / "sandboxes").glob("*") if (i := netns.read_info(d)) is not None}
    found = []
    for info in infos:
        if (netns.NETNS_DIR / info.netns).exists():
            found.append(f"netns: {info.netns}")
        if Path(f"/sys/class/net/{info.host_iface}").exists() and info.host_iface not in live:
            found.append(f"veth: {info.host_iface}")
        if nft.chain(info.sandbox_id) in table.stdout:
            found.append(f"nft: chain {nft.chain(info.sandbox_id)} still in table inet {net_tag}")
    return found
