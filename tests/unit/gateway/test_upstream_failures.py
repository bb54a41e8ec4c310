"""Upstreams that misbehave: close-delimited bodies, dying mid-stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from corral.server.route import Route

from .conftest import Env

RAW = "r" * 10 + "0123456789"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_upstream(env: Env, handler: Handler) -> AsyncIterator[None]:
    """A hand-written HTTP server on a unix socket, routed as sandbox RAW."""
    sock = Path(env.routes[next(iter(env.routes))].socket_path).parent / "raw.sock"
    server = await asyncio.start_unix_server(handler, str(sock))
    env.routes[RAW] = Route(RAW, "team", sock, False, None, None)
    try:
        yield
    finally:
        del env.routes[RAW]
        server.close()
        await server.wait_closed()


async def test_close_delimited_body_is_rechunked(env: Env, client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nhello ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"world")
        writer.close()

    async with raw_upstream(env, handler):
        r = await client.get("/x", headers=env.headers(RAW))
        assert r.status_code == 200 and r.text == "hello world"
        assert r.headers["transfer-encoding"] == "chunked"
        # The client connection survives (the body was re-framed); the upstream one was not pooled.
        r = await client.get("/x", headers=env.headers(RAW))
        assert r.text == "hello world"


async def test_upstream_dying_mid_stream_cuts_the_client(env: Env, client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/connect+json\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()  # the sandbox was killed

    async with (
        raw_upstream(env, handler),
        client.stream("POST", "/process.Process/Start", headers=env.headers(RAW), content=b"{}") as r,
    ):
        with pytest.raises(httpx.HTTPError):
            await asyncio.wait_for(r.aread(), 5)


async def test_upstream_closing_before_answering_is_502(env: Env, client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async with raw_upstream(env, handler):
        r = await client.get("/x", headers=env.headers(RAW))
        assert r.status_code == 502 and "lost" in r.json()["message"]
