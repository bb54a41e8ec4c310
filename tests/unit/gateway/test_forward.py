"""Forwarded ports: the gateway in front of a real agent binary (on the host) and a small HTTP app on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from e2b.envd.api import format_envd_api_exception, get_message
from e2b.exceptions import SandboxUnreachableException

from corral.agent.build import build_agent
from corral.server.gateway import Gateway
from corral.server.gateway_forward import ForwardTarget
from corral.server.route import Route

SID = "f" * 10 + "0123456789"
SECURE = "e" * 10 + "0123456789"
TOKEN = "agent-token"
TRAFFIC = "traffic-token"


class App:
    """The in-sandbox server: reports which TCP connection a request came on; streams on demand."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
            await asyncio.wait_for(self.release.wait(), 10)
            await send({"type": "http.response.body", "body": b"second\n"})
            return
        size = 0
        while True:
            msg = await receive()
            size += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = json.dumps({"path": scope["path"], "peer": scope["client"][1], "host": headers.get("host"),
                           "size": size, "token": headers.get("x-access-token")}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Fwd:
    gw: Gateway
    url: str
    port: int          # where the app listens
    closed: int        # where nothing listens
    app: App

    def headers(self, port: int | None = None, sid: str = SID) -> dict[str, str]:
        return {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": str(port or self.port)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_agent(sock: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(str(build_agent()), "serve", "--listen", f"unix:{sock}",
                                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for _ in range(500):
        if sock.exists():
            return proc
        await asyncio.sleep(0.01)
    proc.kill()
    await proc.wait()
    raise RuntimeError(f"agent did not start: {log.read_text()}")


@pytest.fixture
async def fwd() -> AsyncIterator[Fwd]:
    with tempfile.TemporaryDirectory(prefix="corral-fwd-") as tmp:
        plain, secure = Path(tmp) / "plain.sock", Path(tmp) / "secure.sock"
        agents = [await _start_agent(plain, Path(tmp) / "plain.log"),
                  await _start_agent(secure, Path(tmp) / "secure.log")]
        app = App()
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="error", http="httptools",
                                               timeout_graceful_shutdown=1))
        task = asyncio.create_task(server.serve(sockets=[lsock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(secure))) as c:
                r = await c.post("http://agent/init", json={"accessToken": TOKEN})
                assert r.status_code == 204, r.text
            routes = {SID: Route(SID, "team", plain, False, None, None),
                      SECURE: Route(SECURE, "team", secure, True, TOKEN, TRAFFIC)}
            gw = Gateway(routes.get)
            await gw.start("127.0.0.1", 0)
            try:
                yield Fwd(gw, f"http://127.0.0.1:{gw.port}", lsock.getsockname()[1], _free_port(), app)
            finally:
                await gw.close()
        finally:
            app.release.set()
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            for proc in agents:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 5)


@pytest.fixture
async def client(fwd: Fwd) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fwd.url, timeout=10) as c:
        yield c


async def test_port_by_headers(fwd: Fwd, client: httpx.AsyncClient) -> None:
    r = await client.post("/echo?x=1", headers=fwd.headers(), content=b"x" * 100_000)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "/echo" and body["size"] == 100_000
    assert body["token"] is None      # the agent's token never reaches the in-sandbox server


async def test_port_by_host_header(fwd: Fwd, client: httpx.AsyncClient) -> None:
    host = f"{fwd.port}-{SID}.localhost"
    r = await client.get("/by-host", headers={"Host": host})
    assert r.status_code == 200 and r.json()["path"] == "/by-host" and r.json()["host"] == host


async def test_streaming_response_streams(fwd: Fwd, client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/stream", headers=fwd.headers()) as r:
        assert r.status_code == 200
        it = r.aiter_raw()
        assert await asyncio.wait_for(it.__anext__(), 5) == b"first\n"
        assert not fwd.app.release.is_set()     # the first piece came before the app finished
        fwd.app.release.set()
        assert b"".join([c async for c in it]) == b"second\n"


async def test_keep_alive_reuses_the_forwarded_connection(fwd: Fwd, client: httpx.AsyncClient) -> None:
    peers = set()
    for _ in range(5):
        r = await client.get("/again", headers=fwd.headers())
        assert r.status_code == 200
        peers.add(r.json()["peer"])
    assert len(peers) == 1                      # one agent->app TCP connection served them all
    key = ForwardTarget(fwd.gw.resolve(SID).socket_path, fwd.port).key  # type: ignore[union-attr]
    assert len(fwd.gw.pool._idle[key]) == 1


async def test_closed_port_is_502_port_not_open(fwd: Fwd, client: httpx.AsyncClient) -> None:
    for headers in (fwd.headers(fwd.closed), {"Host": f"{fwd.closed}-{SID}.localhost"}):
        r = await client.get("/", headers=headers)
        assert r.status_code == 502
        body = r.json()
        assert body["code"] == 502 and f"port {fwd.closed}" in body["message"]
        assert "port is not open" in body["message"] and body["port"] == fwd.closed
        assert isinstance(format_envd_api_exception(502, get_message(r)), SandboxUnreachableException)
    # The connection stays usable after the error.
    assert (await client.get("/ok", headers=fwd.headers())).status_code == 200


async def test_secure_sandbox_needs_traffic_token(fwd: Fwd, client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers=fwd.headers(sid=SECURE))
    assert r.status_code == 401
    # With the traffic token the gateway authenticates to the agent with the envd token itself.
    r = await client.get("/sec", headers=fwd.headers(sid=SECURE) | {"E2B-Traffic-Access-Token": TRAFFIC})
    assert r.status_code == 200 and r.json()["path"] == "/sec"


async def test_internal_paths_on_other_ports_reach_the_app(fwd: Fwd, client: httpx.AsyncClient) -> None:
    # On a forwarded port the path belongs to the user's server, never to the agent.
    r = await client.get("/_corral/forward/1", headers=fwd.headers())
    assert r.status_code == 200 and r.json()["path"] == "/_corral/forward/1"
    # And on envd the forward endpoint stays unreachable to clients.
    r = await client.get(f"/_corral/forward/{fwd.port}", headers=fwd.headers(49983))
    assert r.status_code == 403


async def test_many_concurrent_requests(fwd: Fwd, client: httpx.AsyncClient) -> None:
    rs = await asyncio.gather(*(client.get(f"/c{i}", headers=fwd.headers()) for i in range(40)))
    assert [r.json()["path"] for r in rs] == [f"/c{i}" for i in range(40)]



async def test_websocket_passes_through(fwd: Fwd) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import InvalidStatus

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{fwd.gw.port}/ws"
        async with connect(url, additional_headers=fwd.headers(port), max_size=None) as ws:
            for i in range(3):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
        with pytest.raises(InvalidStatus) as exc:
            async with connect(url, additional_headers=fwd.headers(fwd.closed)):
                pass
        assert exc.value.response.status_code == 502
        with pytest.raises(InvalidStatus) as exc:
            async with connect(url, additional_headers=fwd.headers(49983)):
                pass
        assert exc.value.response.status_code == 501


async def test_upgrade_with_bytes_right_behind_the_head(fwd: Fwd) -> None:
    async def raw_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(raw_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", fwd.gw.port)
        writer.write(f"GET / HTTP/1.1\r\nHost: {port}-{SID}.localhost\r\nConnection: Upgrade\r\n"
                     "Upgrade: echo\r\n\r\nearly".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"early"
        writer.write(b"later")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"later"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
