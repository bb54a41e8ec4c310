"""Edge cases: refused uploads, HTTP/1.0 clients, slow readers, pipelining, shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx

from corral.server.gateway import Gateway

from .conftest import SB1, SECURE, Env


async def test_refused_big_upload_gets_its_401_not_a_reset(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.post("/upload", headers=env.headers(SECURE), content=os.urandom(8 << 20))
    assert r.status_code == 401
    assert env.agents[SECURE].requests == []


async def test_http10_client_gets_a_close_delimited_stream(env: Env) -> None:
    env.agents[SB1].release_stream.set()
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port)
    try:
        writer.write(f"POST /process.Process/Start HTTP/1.0\r\nE2b-Sandbox-Id: {SB1}\r\nE2b-Sandbox-Port: 49983\r\n"
                     "Content-Length: 2\r\n\r\n{}".encode())
        data = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the gateway closes
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert b'"start"' in body and b'"end"' in body and body.endswith(b"{}")


async def test_pipelined_requests_answer_in_order(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port)
    try:
        one = f"GET /whoami?n={{}} HTTP/1.1\r\nHost: 49983-{SB1}.x\r\n\r\n"
        writer.write("".join(one.format(i) for i in range(3)).encode())
        for i in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            assert f'"query": "n={i}"'.encode() in await reader.readexactly(length)
    finally:
        writer.close()


async def test_slow_reader_then_reuse(env: Env) -> None:
    size = 32 << 20
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port, limit=1 << 16)
    try:
        writer.write(f"GET /download?size={size} HTTP/1.1\r\nHost: 49983-{SB1}.x\r\n\r\n".encode())
        await asyncio.sleep(0.5)  # let every buffer fill up: the gateway must not hold 32 MiB
        buffered = [c.transport.get_write_buffer_size() for c in env.gw.conns if c.transport is not None]
        assert max(buffered) < 4 << 20, buffered
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        got = 0
        while got < size:
            got += len(await reader.read(1 << 20))
        assert got == size
    finally:
        writer.close()
    # The pooled upstream connection the slow download used still works.
    async with httpx.AsyncClient(base_url=env.url) as c:
        for _ in range(3):
            assert (await c.get("/health", headers=env.headers())).status_code == 204


async def test_close_ends_open_streams(env: Env) -> None:
    async with (
        httpx.AsyncClient(base_url=env.url) as c,
        c.stream("POST", "/process.Process/Start", headers=env.headers(), content=b"{}") as r,
    ):
        it = r.aiter_raw()
        await asyncio.wait_for(it.__anext__(), 5)
        await env.gw.close()
        try:
            async for _ in it:
                pass
            raise AssertionError("stream should have been cut")
        except httpx.HTTPError:
            pass
    await asyncio.wait_for(env.agents[SB1].disconnected.wait(), 5)


async def test_expect_100_continue(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port)
    body = os.urandom(100_000)
    try:
        writer.write(f"POST /upload HTTP/1.1\r\nHost: 49983-{SB1}.x\r\nExpect: 100-continue\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        assert hashlib.sha256(body).hexdigest().encode() in await reader.readexactly(length)
    finally:
        writer.close()
    assert "expect" not in env.agents[SB1].requests[-1]["headers"]


async def test_connection_cap(env: Env) -> None:
    gw = Gateway(env.routes.get, max_connections=1)
    await gw.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as first:
            assert (await first.get("/health", headers=env.headers())).status_code == 204
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            try:
                assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 503")
            finally:
                writer.close()
            assert (await first.get("/health", headers=env.headers())).status_code == 204
    finally:
        await gw.close()
