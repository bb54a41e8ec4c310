"""The sandbox proxy's policy check and a real CONNECT / absolute-URI round trip on loopback (no sandbox)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corral.net.policy import EgressPolicy
from corral.net.proxy import Proxy, Refused, local_addresses

STATIC = {"site.test": "198.51.100.2", "inside.test": "10.9.9.9"}


async def test_check_by_name_and_address() -> None:
    proxy = Proxy(lambda ip: None, STATIC, upstream=None)
    open_ = EgressPolicy()
    assert await proxy.check(open_, "site.test") == "198.51.100.2"
    assert await proxy.check(open_, "198.51.100.9") == "198.51.100.9"
    for host in ("127.0.0.1", "169.254.169.254", "10.0.0.1", "inside.test", "localhost"):
        with pytest.raises(Refused) as e:
            await proxy.check(open_, host)
        assert e.value.status == 403
    closed = EgressPolicy.from_wire(False, {"allowOut": ["site.test"]})
    assert await proxy.check(closed, "site.test") == "198.51.100.2"
    with pytest.raises(Refused):
        await proxy.check(closed, "198.51.100.9")
    with pytest.raises(Refused):
        await proxy.check(EgressPolicy.from_wire(True, {"denyOut": ["site.test"]}), "site.test")


async def test_host_addresses_are_refused_even_when_public() -> None:
    proxy = Proxy(lambda ip: None, {}, upstream=None)
    proxy._local = (time.monotonic(), {"203.0.113.50"})
    with pytest.raises(Refused):
        await proxy.check(EgressPolicy(), "203.0.113.50")
    assert await proxy.check(EgressPolicy(), "203.0.113.51") == "203.0.113.51"


def test_local_addresses_reads_fib_trie(tmp_path: Path) -> None:
    trie = tmp_path / "fib_trie"
    trie.write_text("  +-- 192.0.2.0/24 2 0 2\n     |-- 192.0.2.2\n        /32 host LOCAL\n"
                    "     |-- 192.0.2.255\n        /32 link BROADCAST\n")
    assert local_addresses(str(trie)) == {"192.0.2.2"}


async def test_names_go_to_the_upstream_proxy_unresolved() -> None:
    proxy = Proxy(lambda ip: None, {}, upstream="http://user:pw@proxy.invalid:3128")
    assert await proxy.check(EgressPolicy(), "pypi.org") == "pypi.org"
    assert b"Proxy-Authorization: Basic dXNlcjpwdw==" in proxy._upstream_auth()


async def test_round_trips_through_a_loopback_origin() -> None:
    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + head.split(b"\r\n", 1)[0])
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(origin, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    # The origin is on loopback: allowed explicitly (and the loopback refusal is bypassed for the test only).
    policy = EgressPolicy.from_wire(True, {"allowOut": ["127.0.0.1"]})
    proxy = Proxy(lambda ip: ("sbx", policy), {"origin.test": "127.0.0.1"}, upstream=None)

    async def no_loopback_check(p: EgressPolicy, host: str) -> str:
        return "127.0.0.1"
    proxy.check = no_loopback_check  # type: ignore[method-assign]
    psrv = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    pport = psrv.sockets[0].getsockname()[1]
    try:
        r, w = await asyncio.open_connection("127.0.0.1", pport)
        w.write(f"GET http://origin.test:{port}/x?y=1 HTTP/1.1\r\nHost: origin.test\r\n\r\n".encode())
        body = await r.read()
        assert body.startswith(b"HTTP/1.0 200 OK") and body.endswith(b"GET /x?y=1 HTTP/1.1")
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", pport)
        w.write(f"CONNECT origin.test:{port} HTTP/1.1\r\n\r\n".encode())
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        w.write(b"GET /tunnel HTTP/1.1\r\n\r\n")
        assert (await r.read()).endswith(b"GET /tunnel HTTP/1.1")
        w.close()
    finally:
        srv.close()
        psrv.close()


async def test_connect_chains_to_the_upstream_proxy() -> None:
    seen: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        writer.write(await reader.readexactly(5))   # echo the tunnelled bytes
        await writer.drain()
        writer.close()

    up = await asyncio.start_server(upstream, "127.0.0.1", 0)
    up_port = up.sockets[0].getsockname()[1]
    policy = EgressPolicy.from_wire(False, {"allowOut": ["registry.test"]})
    proxy = Proxy(lambda ip: ("sbx", policy), {}, upstream=f"http://u:p@127.0.0.1:{up_port}")
    psrv = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    pport = psrv.sockets[0].getsockname()[1]
    try:
        r, w = await asyncio.open_connection("127.0.0.1", pport)
        w.write(b"CONNECT registry.test:443 HTTP/1.1\r\nHost: registry.test:443\r\n\r\n")
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        w.write(b"hello")
        assert await r.readexactly(5) == b"hello"
        w.close()
        assert seen[0].startswith(b"CONNECT registry.test:443 HTTP/1.1\r\n") and b"Proxy-Authorization: Basic" in seen[0]
        r, w = await asyncio.open_connection("127.0.0.1", pport)
        w.write(b"CONNECT other.test:443 HTTP/1.1\r\n\r\n")
        assert (await r.read()).startswith(b"HTTP/1.1 403 Forbidden")
        w.close()
        assert len(seen) == 1   # the denied name never reached the upstream
    finally:
        up.close()
        psrv.close()
