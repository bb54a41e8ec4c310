"""What the lifecycle manager says to a new sandbox's agent over its host unix socket: envd `POST /init`, and the
template's start command through `process.Process/Start` (Connect, JSON codec)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx

from corral.errors import RuntimeFailure

START_CMD_TAG = "corral-start-cmd"


def _client(socket_path: Path, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), timeout=timeout)


async def init_agent(socket_path: Path, body: dict[str, Any], timeout: float = 15.0) -> None:
    """Hand the agent its env vars, access token and defaults (answered 204)."""
    try:
        async with _client(socket_path, timeout) as client:
            resp = await client.post("http://agent/init", json=body)
    except httpx.HTTPError as e:
        raise RuntimeFailure(f"sandbox agent did not answer /init: {e!r}") from e
    if resp.status_code >= 300:
        raise RuntimeFailure(f"sandbox agent refused /init: {resp.status_code} {resp.text[:200]}")


def _frames(buf: bytearray) -> list[tuple[int, dict[str, Any]]]:
    """Pop every complete Connect envelope (flag byte, 4-byte big-endian length, JSON) off the buffer."""
    out = []
    while len(buf) >= 5:
        size = int.from_bytes(buf[1:5], "big")
        if len(buf) < 5 + size:
            break
        flags, payload = buf[0], bytes(buf[5:5 + size])
        del buf[:5 + size]
        out.append((flags, json.loads(payload or b"{}")))
    return out


async def start_command(socket_path: Path, cmd: str, *, user: str, cwd: str, access_token: str | None,
                        timeout: float = 15.0) -> int:
    """Start `cmd` in the background (like `commands.run(background=True)`) and return its pid once it runs.

    Leaving the stream after the start event only unsubscribes: the agent keeps the process running.
    """
    request = {"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd], "envs": {}, "cwd": cwd},
               "tag": START_CMD_TAG}
    payload = json.dumps(request).encode()
    headers = {"Content-Type": "application/connect+json",
               "Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}
    if access_token:
        headers["X-Access-Token"] = access_token
    buf = bytearray()
    try:
        async with _client(socket_path, timeout) as client, client.stream(
                "POST", "http://agent/process.Process/Start", headers=headers,
                content=b"\x00" + len(payload).to_bytes(4, "big") + payload) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise RuntimeFailure(f"start command refused: {resp.status_code} {resp.text[:200]}")
            async for chunk in resp.aiter_bytes():
                buf += chunk
                for flags, msg in _frames(buf):
                    if flags & 0x02:
                        raise RuntimeFailure(f"start command failed: {msg.get('error') or 'stream ended'}")
                    start = (msg.get("event") or {}).get("start")
                    if start is not None:
                        return int(start.get("pid", 0))
    except httpx.HTTPError as e:
        raise RuntimeFailure(f"sandbox agent did not run the start command: {e!r}") from e
    raise RuntimeFailure("start command: the agent closed the stream before the process started")
