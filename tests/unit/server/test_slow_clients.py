"""The API server's read deadline: slowloris heads and trickled bodies are cut, busy requests are not."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Request

from corral.server.slow_clients import guarded_protocol
from tests.unit.gateway.test_limits import open_raw


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(1.0)  # longer than the read deadline: working on a complete request is fine
        return {"ok": True}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free, lifespan="off", log_level="error",
                                           http=guarded_protocol(0.5), h11_max_incomplete_event_size=4096))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield free
    server.should_exit = True
    await task


async def test_slowloris_head_is_cut(port: int) -> None:
    started = time.monotonic()
    reader, writer = await open_raw(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    for _ in range(15):
        await asyncio.sleep(0.1)
        if reader.at_eof():
            break
        writer.write(b"X-A: 1\r\n")
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert time.monotonic() - started < 2
    writer.close()


async def test_trickled_body_is_cut_and_busy_request_is_not(port: int) -> None:
    reader, writer = await open_raw(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    reader, writer = await open_raw(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_oversized_head_in_pieces_is_refused(port: int) -> None:
    reader, writer = await open_raw(port, b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
    assert (await asyncio.wait_for(reader.read(), 3)).startswith(b"HTTP/1.1 4")
    writer.close()
