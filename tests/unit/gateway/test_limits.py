"""Gateway request limits: an upload over the cap answers 413, a body that stalls is dropped."""

from __future__ import annotations

import asyncio
import time

from corral.server.gateway import Gateway

from .conftest import SB1, Env


async def open_raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP connection to 127.0.0.1:port that has sent `data` (for tests of malformed or slow clients)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_declared_upload_over_cap_is_413_and_stalled_body_is_dropped(env: Env) -> None:
    gw = Gateway(env.routes.get, max_body_bytes=1000, body_timeout=0.5)
    await gw.start("127.0.0.1", 0)
    try:
        head = (f"POST /files?path=/tmp/x HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: {SB1}\r\n"
                "E2b-Sandbox-Port: 49983\r\nContent-Type: application/octet-stream\r\n")
        reader, writer = await open_raw(gw.port, (head + "Content-Length: 5000\r\n\r\n").encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than 1000 bytes" in answer
        writer.close()
        # Chunked, no length: the cap still holds once the bytes arrive.
        reader, writer = await open_raw(gw.port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                                    + b"800\r\n" + b"a" * 2048 + b"\r\n")
        await asyncio.wait_for(reader.read(), 5)  # closed (the upload was in flight, so maybe no answer)
        assert reader.at_eof()
        writer.close()
        # Slow body: 10 of 100 declared bytes, then silence -> closed after body_timeout.
        started = time.monotonic()
        reader, writer = await open_raw(gw.port, (head + "Content-Length: 100\r\n\r\n").encode() + b"x" * 10)
        await asyncio.wait_for(reader.read(), 5)
        assert reader.at_eof() and time.monotonic() - started < 3
        writer.close()
    finally:
        await gw.close()


async def test_slowloris_head_is_dropped(env: Env) -> None:
    reader, writer = await open_raw(env.gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    answer = b""
    for _ in range(10):  # one header line every 0.2 s: the head never completes within head_timeout (0.5 s)
        try:
            answer = await asyncio.wait_for(reader.read(100), 0.2)
            break
        except TimeoutError:
            writer.write(b"X-Slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 2.5
    writer.close()
