"""A small client for one sandbox's envd API through the gateway: the CLI's exec and shell use it."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

END_STREAM_FLAG = 0x02


@dataclass(frozen=True)
class SandboxEndpoint:
    sandbox_url: str
    sandbox_id: str
    access_token: str | None = None
    user: str = "user"

    def headers(self) -> dict[str, str]:
        auth = base64.b64encode(f"{self.user}:".encode()).decode()
        h = {
            "E2b-Sandbox-Id": self.sandbox_id,
            "E2b-Sandbox-Port": "49983",
            "Authorization": f"Basic {auth}",
        }
        if self.access_token:
            h["X-Access-Token"] = self.access_token
        return h


def envelope(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">BI", 0, len(body)) + body


def iter_envelopes(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """Split a Connect server stream into its JSON messages; raise on an end-of-stream error."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 5:
            flags, length = struct.unpack(">BI", buf[:5])
            if len(buf) < 5 + length:
                break
            payload, buf = buf[5 : 5 + length], buf[5 + length :]
            message = json.loads(payload or b"{}")
            if flags & END_STREAM_FLAG:
                if message.get("error"):
                    err = message["error"]
                    raise RuntimeError(f"{err.get('code')}: {err.get('message')}")
                return
            yield message


class EnvdClient:
    def __init__(self, endpoint: SandboxEndpoint) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint.sandbox_url, headers=endpoint.headers(), timeout=None)

    def close(self) -> None:
        self.http.close()

    def unary(self, method: str, message: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/process.Process/{method}", json=message)
        if r.status_code != 200:
            raise RuntimeError(f"{method}: HTTP {r.status_code}: {r.text}")
        result: dict[str, Any] = r.json()
        return result

    def start(self, cmd: str, *, pty: tuple[int, int] | None = None, cwd: str | None = None,
              envs: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Start `cmd` under a login bash and yield its process events (start, data, end)."""
        process: dict[str, Any] = {"cmd": "/bin/bash", "args": ["-l", "-c", cmd] if pty is None else ["-i", "-l"],
                                   "envs": envs or {}}
        if cwd:
            process["cwd"] = cwd
        request: dict[str, Any] = {"process": process}
        if pty is not None:
            request["pty"] = {"size": {"cols": pty[0], "rows": pty[1]}}
            process["envs"].setdefault("TERM", "xterm-256color")
        headers = {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                   "Keepalive-Ping-Interval": "50"}
        with self.http.stream("POST", "/process.Process/Start", content=envelope(request), headers=headers) as r:
            if r.status_code != 200:
                r.read()
                raise RuntimeError(f"Start: HTTP {r.status_code}: {r.text}")
            for message in iter_envelopes(r.iter_raw()):
                event = message.get("event", {})
                if "keepalive" not in event:
                    yield event

    def send_pty_input(self, pid: int, data: bytes) -> None:
        self.unary("SendInput", {"process": {"pid": pid}, "input": {"pty": base64.b64encode(data).decode()}})

    def resize(self, pid: int, cols: int, rows: int) -> None:
        self.unary("Update", {"process": {"pid": pid}, "pty": {"size": {"cols": cols, "rows": rows}}})
