"""What the lifecycle manager says to a new sandbox's agent over its host unix socket: envd `POST /init`, and the
template's start command through `process.Process/Start` (Connect, JSON codec)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from corral.errors import RuntimeFailure

START_CMD_TAG = "corral-start-cmd"


@functools.cache
def _tls() -> ssl.SSLContext:
    # httpx builds (and loads CA files into) a new SSL context per transport: ~20 ms, though a unix socket never
    # uses it. One shared context makes a client cheap.
    return ssl.create_default_context()


def _client(socket_path: Path, timeout: float | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket_path), verify=_tls()),
                             timeout=timeout, trust_env=False)


async def init_agent(socket_path: Path, body: dict[str, Any], timeout: float = 15.0,
                     current_token: str | None = None) -> None:
    """Hand the agent its env vars, access token and defaults (answered 204). `current_token`: the token an
    already-initialised agent holds (a sandbox restored from a snapshot), needed to give it a new one.

    Raw HTTP/1.1 over the socket: it is on every create's path, and one request needs no client machinery.
    """
    payload = json.dumps(body).encode()
    auth = b"X-Access-Token: %b\r\n" % current_token.encode() if current_token else b""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            writer.write(b"POST /init HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n%b"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (auth, len(payload), payload))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b" ", 2)
            status = int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else 0
            text = (await reader.read(200)).decode(errors="replace") if status >= 300 or not status else ""
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        raise RuntimeFailure(f"sandbox agent did not answer /init: {e!r}") from e
    finally:
        if writer is not None:
            writer.close()
    if not status or status >= 300:
        raise RuntimeFailure(f"sandbox agent refused /init: {status} {text[:200]}")


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


async def run_process(socket_path: Path, request: dict[str, Any], *, user: str, access_token: str | None,
                      timeout: float | None, until: str,
                      on_event: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Start a process through the agent and follow its event stream until the `start` (pid) or `end` (exit code);
    `on_event` sees every event on the way (e.g. a build step's output)."""
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
                raise RuntimeFailure(f"command refused: {resp.status_code} {resp.text[:200]}")
            async for chunk in resp.aiter_bytes():
                buf += chunk
                for flags, msg in _frames(buf):
                    if flags & 0x02:
                        raise RuntimeFailure(f"command failed: {msg.get('error') or 'stream ended'}")
                    if on_event is not None and msg.get("event"):
                        on_event(msg["event"])
                    event = (msg.get("event") or {}).get(until)
                    if event is not None:
                        return int(event.get("pid" if until == "start" else "exitCode", 0))
    except httpx.HTTPError as e:
        raise RuntimeFailure(f"sandbox agent did not run the command: {e!r}") from e
    raise RuntimeFailure("the agent closed the stream before the command " + ("started" if until == "start" else "ended"))


async def start_command(socket_path: Path, cmd: str, *, user: str, cwd: str, access_token: str | None,
                        timeout: float = 15.0) -> int:
    """Start `cmd` in the background (like `commands.run(background=True)`) and return its pid once it runs.

    Leaving the stream after the start event only unsubscribes: the agent keeps the process running.
    """
    request = {"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd], "envs": {}, "cwd": cwd},
               "tag": START_CMD_TAG}
    return await run_process(socket_path, request, user=user, access_token=access_token, timeout=timeout, until="start")


async def wait_ready(socket_path: Path, ready_cmd: str, *, user: str, cwd: str, access_token: str | None,
                     timeout: float = 60.0, interval: float = 0.05) -> None:
    """Run the template's ready command until it exits 0 (E2B's `set_start_cmd(start, ready)`), or fail."""
    request = {"process": {"cmd": "/bin/bash", "args": ["-c", ready_cmd], "envs": {}, "cwd": cwd}}
    deadline = asyncio.get_running_loop().time() + timeout
    code = -1
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise RuntimeFailure(f"the template's ready command {ready_cmd!r} did not succeed within {timeout:g}s "
                                 f"(last exit code {code})")
        code = await run_process(socket_path, request, user=user, access_token=access_token, timeout=left, until="end")
        if code == 0:
            return
        await asyncio.sleep(interval)
