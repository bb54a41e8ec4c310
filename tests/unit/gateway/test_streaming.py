"""Streaming through the gateway: Connect server streams, big uploads/downloads, client disconnects."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator

import httpx

from .conftest import SB1, Env


async def test_server_stream_frames_arrive_before_upstream_finishes(env: Env, client: httpx.AsyncClient) -> None:
    agent = env.agents[SB1]
    headers = env.headers(**{"Content-Type": "application/connect+json", "Keepalive-Ping-Interval": "50"})
    async with client.stream("POST", "/process.Process/Start", headers=headers, content=b"\0\0\0\0\x02{}") as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/connect+json"
        it = r.aiter_raw()
        first = await asyncio.wait_for(it.__anext__(), 5)
        flag, length = struct.unpack(">BI", first[:5])
        assert flag == 0 and b'"start"' in first[5:5 + length]
        assert not agent.release_stream.is_set()      # the upstream has not finished yet
        agent.release_stream.set()
        rest = b"".join([chunk async for chunk in it])
    assert b'"end"' in rest and rest.endswith(b"{}")
    assert rest[-7] == 2                               # end-of-stream envelope flag


async def test_upload_5mib_content_length(env: Env, client: httpx.AsyncClient) -> None:
    data = os.urandom(5 << 20)
    r = await client.post("/upload", headers=env.headers(), content=data)
    body = r.json()
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["cl"] == str(len(data))


async def test_upload_chunked(env: Env, client: httpx.AsyncClient) -> None:
    parts = [os.urandom(300_000) for _ in range(10)]

    async def gen() -> AsyncIterator[bytes]:
        for p in parts:
            yield p
            await asyncio.sleep(0)

    r = await client.post("/upload", headers=env.headers(), content=gen())
    body = r.json()
    assert body["size"] == sum(map(len, parts)) and body["te"] == "chunked"
    assert body["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_download_large_and_content_encoding_untouched(env: Env, client: httpx.AsyncClient) -> None:
    size = 16 << 20
    t0 = time.perf_counter()
    r = await client.get(f"/download?size={size}", headers=env.headers())
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200 and len(r.content) == size and r.content[:256] == bytes(range(256))
    assert elapsed < 5, elapsed
    async with client.stream("GET", "/gz", headers=env.headers()) as r:
        raw = b"".join([c async for c in r.aiter_raw()])
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == b"hello " * 1000


async def test_client_disconnect_reaches_the_agent(env: Env) -> None:
    agent = env.agents[SB1]
    async with (
        httpx.AsyncClient(base_url=env.url) as c,
        c.stream("POST", "/process.Process/Start", headers=env.headers(), content=b"{}") as r,
    ):
        await asyncio.wait_for(r.aiter_raw().__anext__(), 5)
        await asyncio.wait_for(agent.stream_started.wait(), 5)
    # The client's connection is closed now; the agent must see its request end.
    await asyncio.wait_for(agent.disconnected.wait(), 5)
