"""The readiness probe against fake agents on a Unix socket."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from corral.runtime.health import health_status, wait_ready


async def _serve(path: Path, status_line: bytes | None) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if status_line is not None:
            writer.write(status_line + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, str(path))


async def test_health_204(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    async with await _serve(sock, b"HTTP/1.1 204 No Content"):
        assert await health_status(sock) == 204
        assert await wait_ready(sock, 2.0)


async def test_not_ready_on_other_status_or_garbage(tmp_path: Path) -> None:
    for line in (b"HTTP/1.1 503 Service Unavailable", b"garbage", None):
        sock = tmp_path / "b.sock"
        async with await _serve(sock, line):
            t = time.monotonic()
            assert not await wait_ready(sock, 0.3)
            assert 0.3 <= time.monotonic() - t < 1.0
        sock.unlink(missing_ok=True)


async def test_missing_socket(tmp_path: Path) -> None:
    assert await health_status(tmp_path / "none.sock") is None
    assert not await wait_ready(tmp_path / "none.sock", 0.1)


async def test_gives_up_fast_when_sandbox_dies(tmp_path: Path) -> None:
    t = time.monotonic()
    assert not await wait_ready(tmp_path / "none.sock", 10.0, still_running=lambda: False)
    assert time.monotonic() - t < 0.5


async def test_becomes_ready_later(tmp_path: Path) -> None:
    sock = tmp_path / "late.sock"

    async def start_later() -> asyncio.AbstractServer:
        await asyncio.sleep(0.2)
        return await _serve(sock, b"HTTP/1.1 204 No Content")

    task = asyncio.ensure_future(start_later())
    assert await wait_ready(sock, 3.0, still_running=lambda: True)
    (await task).close()
