"""Fixtures: fake agents on unix sockets, a live Gateway on 127.0.0.1, and an httpx client pointed at it."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from corral.server.gateway import Gateway
from corral.server.route import Route

from .fake_envd import FakeEnvd, FakeEnvdServer

SB1 = "a" * 10 + "0123456789"
SB2 = "b" * 10 + "0123456789"
SECURE = "c" * 10 + "0123456789"
DEAD = "d" * 10 + "0123456789"        # has a route, but nothing listens on its socket
ENVD_TOKEN = "envd-secret-token"
TRAFFIC_TOKEN = "traffic-secret"


@dataclass
class Env:
    gw: Gateway
    url: str
    routes: dict[str, Route]
    agents: dict[str, FakeEnvd]
    activity: list[str] = field(default_factory=list)

    def headers(self, sandbox_id: str = SB1, port: int = 49983, **extra: str) -> dict[str, str]:
        return {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": str(port), **extra}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    with tempfile.TemporaryDirectory(prefix="corral-gw-") as tmp:
        agents: dict[str, FakeEnvd] = {}
        servers: list[FakeEnvdServer] = []
        routes: dict[str, Route] = {}
        for sid, secure in ((SB1, False), (SB2, False), (SECURE, True)):
            sock = Path(tmp) / f"{sid}.sock"
            agents[sid] = FakeEnvd(sid)
            servers.append(FakeEnvdServer(agents[sid], sock))
            routes[sid] = Route(sid, "team", sock, secure, ENVD_TOKEN if secure else None,
                                TRAFFIC_TOKEN if secure else None)
        routes[DEAD] = Route(DEAD, "team", Path(tmp) / "nothing.sock", False, None, None)
        await asyncio.gather(*(s.start() for s in servers))
        activity: list[str] = []
        gw = Gateway(routes.get, activity.append, head_timeout=0.5)
        await gw.start("127.0.0.1", 0)
        try:
            yield Env(gw, f"http://127.0.0.1:{gw.port}", routes, agents, activity)
        finally:
            await gw.close()
            await asyncio.gather(*(s.stop() for s in servers))


@pytest.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=env.url, timeout=10) as c:
        yield c
