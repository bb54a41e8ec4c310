"""A stand-in for the sandbox agent: a small ASGI app served by uvicorn on a unix socket, for gateway tests."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

Scope = dict[str, Any]


def connect_frame(obj: object, end: bool = False) -> bytes:
    """One Connect streaming envelope (flag byte, 4-byte big-endian length, JSON)."""
    data = json.dumps(obj).encode()
    return struct.pack(">BI", 2 if end else 0, len(data)) + data


@dataclass
class FakeEnvd:
    """Records what reached it; tests drive streaming endpoints through the events."""

    name: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    release_stream: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    stream_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"method": scope["method"], "path": path, "query": scope["query_string"].decode(),
                              "headers": headers})
        if path == "/health":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/whoami":
            await self._json(send, {"name": self.name, "headers": headers, "path": path,
                                    "query": scope["query_string"].decode()})
        elif path == "/upload":
            h = hashlib.sha256()
            n = 0
            while True:
                msg = await receive()
                h.update(msg.get("body", b""))
                n += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            await self._json(send, {"size": n, "sha256": h.hexdigest(),
                                    "te": headers.get("transfer-encoding"), "cl": headers.get("content-length")})
        elif path == "/download":
            size = int(scope["query_string"].decode().split("=")[1])
            body = bytes(range(256)) * (size // 256)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif path == "/gz":
            body = gzip.compress(b"hello " * 1000)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-encoding", b"gzip"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif path == "/notfound":
            body = json.dumps({"code": "not_found", "message": "no such process"}).encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
        elif path == "/process.Process/Start":
            await self._stream(receive, send)
        else:
            await self._json(send, {"path": path}, status=418)

    async def _stream(self, receive: Any, send: Any) -> None:
        """Start event, then wait for the test (or a client disconnect), then data and end-of-stream."""
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/connect+json")]})
        await send({"type": "http.response.body", "body": connect_frame({"event": {"start": {"pid": 7}}}),
                    "more_body": True})
        self.stream_started.set()
        waiter = asyncio.ensure_future(self.release_stream.wait())
        gone = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        if gone in done and gone.result()["type"] == "http.disconnect":
            self.disconnected.set()
            waiter.cancel()
            return
        gone.cancel()
        await send({"type": "http.response.body", "body": connect_frame({"event": {"end": {"exitCode": 0}}}),
                    "more_body": True})
        await send({"type": "http.response.body", "body": connect_frame({}, end=True)})

    @staticmethod
    async def _json(send: Any, obj: object, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class FakeEnvdServer:
    """uvicorn serving a FakeEnvd on `path`; start()/stop() within the test's event loop."""

    def __init__(self, app: FakeEnvd, path: Path) -> None:
        self.app = app
        self.path = path
        config = uvicorn.Config(app, uds=str(path), lifespan="off", log_level="error", http="httptools",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("fake envd did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        self.app.release_stream.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
