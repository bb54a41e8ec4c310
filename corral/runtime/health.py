"""Readiness probe: `GET /health` over the agent's Unix socket with raw asyncio (no HTTP client dependency)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL_S = 0.005
LIVENESS_INTERVAL_S = 0.05    # a dead sandbox fails create fast instead of after the whole timeout


async def health_status(socket_path: Path, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET /health, or None when nothing answers on the socket."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else None
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def wait_ready(socket_path: Path, timeout: float, still_running: Callable[[], bool] | None = None) -> bool:
    """Poll until GET /health answers 204 (True) or `timeout` passes / `still_running()` turns False (False)."""
    deadline = time.monotonic() + timeout
    next_liveness = time.monotonic() + LIVENESS_INTERVAL_S
    while time.monotonic() < deadline:
        # connect() on a missing path fails fast; only try once the agent has bound its socket
        if socket_path.exists() and await health_status(socket_path) == 204:
            return True
        if still_running is not None and time.monotonic() >= next_liveness:
            if not still_running():
                return False
            next_liveness = time.monotonic() + LIVENESS_INTERVAL_S
        await asyncio.sleep(POLL_INTERVAL_S)
    return False
