"""Many clients at once, mixing sandboxes, uploads, downloads and streams: every answer lands where it belongs."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx

from .conftest import SB1, SB2, Env


async def test_concurrent_mixed_traffic(env: Env) -> None:
    for agent in env.agents.values():
        agent.release_stream.set()
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)

    async def worker(c: httpx.AsyncClient, i: int) -> None:
        sid = (SB1, SB2)[i % 2]
        r = await c.get(f"/whoami?i={i}", headers=env.headers(sid))
        assert r.json()["name"] == sid and r.json()["query"] == f"i={i}"
        data = os.urandom(50_000 + i)
        r = await c.post("/upload", headers=env.headers(sid), content=data)
        assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        r = await c.get("/download?size=262144", headers=env.headers(sid))
        assert len(r.content) == 262144
        r = await c.post("/process.Process/Start", headers=env.headers(sid), content=b"{}")
        assert b'"end"' in r.content
        assert (await c.get("/health", headers=env.headers("q" * 20))).status_code == 502

    async with httpx.AsyncClient(base_url=env.url, limits=limits, timeout=20) as c:
        await asyncio.gather(*(worker(c, i) for i in range(40)))
    # Upstream connections stay bounded by the pool (8 idle per sandbox), not by the request count.
    assert len(env.gw.pool._all) <= 16
