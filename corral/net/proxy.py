"""The sandboxes' HTTP(S) proxy (service address): CONNECT and absolute-URI requests, policed by host name, chained
to the machine's upstream proxy when one is configured (else it connects directly, refusing protected addresses)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from corral.net.policy import EgressPolicy

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
LOCAL_CACHE_S = 5.0
CONNECT_TIMEOUT_S = 10.0
Lookup = Callable[[str], "tuple[str, EgressPolicy] | None"]


def local_addresses(fib_trie: str = "/proc/net/fib_trie") -> set[str]:
    """Every IPv4 address of this host (any interface): the kernel's LOCAL routes. No fork, no netlink."""
    found: set[str] = set()
    try:
        lines = open(fib_trie).read().splitlines()  # noqa: SIM115 - one small procfs read
    except OSError:
        return found
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            found.add(prev.split()[-1])
    return found


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _split_hostport(target: str, default_port: int) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or "]" in port:
        return target.strip("[]").lower(), default_port
    try:
        return host.strip("[]").lower(), int(port)
    except ValueError:
        raise Refused(400, f"bad port in {target!r}") from None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    await asyncio.gather(_pump(a[0], b[1]), _pump(b[0], a[1]))


class Proxy:
    def __init__(self, lookup: Lookup, static: dict[str, str], upstream: str | None) -> None:
        self.lookup = lookup
        self.static = {k.lower().rstrip("."): v for k, v in static.items()}
        self.upstream = urlsplit(upstream if "://" in (upstream or "") else f"http://{upstream}") if upstream else None
        self._local: tuple[float, set[str]] = (0.0, set())

    def _is_host(self, ip: str) -> bool:
        """The proxy dials from the host: any of the host's own addresses would reach host-only services."""
        now = time.monotonic()
        if now - self._local[0] > LOCAL_CACHE_S:
            self._local = (now, local_addresses())
        return ipaddress.IPv4Address(ip).is_loopback or ip in self._local[1]

    # ---- policy ----

    async def check(self, policy: EgressPolicy, host: str) -> str:
        """The address to dial directly (or the name, for the upstream proxy); raises Refused."""
        try:
            ipaddress.IPv4Address(host)
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip:
            if not policy.ip_allowed(host) or self._is_host(host):
                raise Refused(403, f"egress to {host} is denied by the sandbox's network policy")
            return host
        verdict = policy.name_verdict(host)
        if verdict is False:
            raise Refused(403, f"egress to {host} is denied by the sandbox's network policy")
        if host in self.static:
            ip = self.static[host]
            if not policy.ip_allowed(ip, resolved_for_allowed_name=bool(verdict)) or self._is_host(ip):
                raise Refused(403, f"egress to {host} ({ip}) is denied by the sandbox's network policy")
            return ip
        if self.upstream is None or host in ("localhost",) or host.endswith(".localhost"):
            # Connecting from the host: the name must not lead to the host's own or private services.
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET)
            except OSError as e:
                if self.upstream is not None:
                    return host
                raise Refused(502, f"cannot resolve {host}: {e}") from None
            ips = sorted({str(i[4][0]) for i in infos})
            bad = [ip for ip in ips if self._is_host(ip)
                   or not policy.ip_allowed(ip, resolved_for_allowed_name=bool(verdict))]
            if bad:
                raise Refused(403, f"egress to {host} ({', '.join(bad)}) is denied by the sandbox's network policy")
            return ips[0]
        return host

    # ---- connections ----

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        found = self.lookup(peer[0]) if peer else None
        try:
            if found is None:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            try:
                await self._serve(head, reader, writer, found[1])
            except Refused as e:
                body = f"corral proxy: {e}\n".encode()
                reason = {400: "Bad Request", 403: "Forbidden", 501: "Not Implemented"}.get(e.status, "Bad Gateway")
                writer.write(f"HTTP/1.1 {e.status} {reason}\r\nContent-Type: text/plain\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _upstream_auth(self) -> bytes:
        u = self.upstream
        if u is None or not u.username:
            return b""
        cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        return b"Proxy-Authorization: Basic " + base64.b64encode(cred) + b"\r\n"

    async def _dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise Refused(502, f"cannot connect to {host}:{port}: {e}") from None

    async def _serve(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     policy: EgressPolicy) -> None:
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise Refused(400, "malformed request line") from None
        if method.upper() == "CONNECT":
            host, port = _split_hostport(target, 443)
            dest = await self.check(policy, host)
            if self.upstream is not None and dest == host:
                up = await self._dial(self.upstream.hostname or "", self.upstream.port or 3128)
                up[1].write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
                            + self._upstream_auth() + b"\r\n")
                await up[1].drain()
                # The upstream's answer (200 or its error) goes to the client as it is.
            else:
                up = await self._dial(dest, port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            try:
                await splice((reader, writer), up)
            finally:
                up[1].close()
            return
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise Refused(400, f"expected CONNECT or an absolute http:// URL, got {target!r}")
        headers = [ln for ln in lines[1:] if ln and not ln.lower().startswith(
            ("proxy-", "connection:", "keep-alive:"))]
        if any(h.lower().startswith("transfer-encoding:") for h in headers):
            raise Refused(501, "chunked request bodies are not supported by this proxy")
        length = next((int(h.split(":", 1)[1]) for h in headers
                       if h.lower().startswith("content-length:") and h.split(":", 1)[1].strip().isdigit()), 0)
        host, port = url.hostname.lower(), url.port or 80
        dest = await self.check(policy, host)
        if self.upstream is not None and dest == host:
            up = await self._dial(self.upstream.hostname or "", self.upstream.port or 3128)
            first = f"{method} {target} HTTP/1.1\r\n".encode() + self._upstream_auth()
        else:
            up = await self._dial(dest, port)
            path = url.path or "/"
            first = f"{method} {path}{'?' + url.query if url.query else ''} HTTP/1.1\r\n".encode()
        # One request per connection: a second request on it could name another host.
        up[1].write(first + "".join(h + "\r\n" for h in headers).encode("latin-1") + b"Connection: close\r\n\r\n")
        if length:
            up[1].write(await reader.readexactly(length))
        await up[1].drain()
        try:
            await _pump(up[0], writer)
        finally:
            up[1].close()
