"""Test doubles for the lifecycle manager: a runtime whose 'agent' is a real unix-socket HTTP server, and templates."""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import NotFoundError
from corral.runtime.base import RuntimeHandle, SandboxSpec
from corral.sandboxes import SandboxManager


def frame(flags: int, msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg).encode()
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


# Ids being torn down right now by any FakeRuntime, and ids two teardowns overlapped on (must stay empty).
IN_DESTROY: set[str] = set()
OVERLAPS: list[str] = []


class FakeRuntime:
    """Implements the Runtime protocol in memory; each sandbox's agent answers HTTP on a real unix socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Short base dir: unix socket paths are limited to ~107 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="crl", dir="/tmp"))
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.alive: set[str] = set()
        self.leftovers: set[str] = set()  # state on disk without processes (as after a crash)
        self.specs: dict[str, SandboxSpec] = {}
        self.init_bodies: dict[str, dict[str, Any]] = {}
        self.started: dict[str, list[tuple[dict[str, Any], dict[str, str]]]] = {}  # Process/Start (body, headers)
        self.ready_exit_codes: list[int] = []  # exit codes of successive ready-check runs (then 1 forever)
        self.start_fails = False
        self.destroyed: list[str] = []
        self.fail_create: BaseException | None = None
        self.fail_destroy_times = 0
        self.init_status = 204
        self.create_delay = 0.0

    def _socket(self, sandbox_id: str) -> Path:
        return self.base / f"{sandbox_id}.sock"

    async def create(self, spec: SandboxSpec) -> RuntimeHandle:
        self.specs[spec.sandbox_id] = spec
        self.leftovers.add(spec.sandbox_id)  # state exists as soon as create starts, as in the real backends
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        if self.fail_create is not None:
            raise self.fail_create
        sid = spec.sandbox_id

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if lines[0].startswith("POST /process.Process/Start "):
                request = json.loads(body[5:])
                self.started.setdefault(sid, []).append((request, headers))
                end = b""
                if request["process"]["args"][0] == "-c":  # a ready check: it runs to its end
                    code = self.ready_exit_codes.pop(0) if self.ready_exit_codes else 1
                    end = frame(0, {"event": {"end": {"exitCode": code, "exited": True}}})
                frames = (frame(2, {"error": {"code": "unknown", "message": "no shell"}}) if self.start_fails
                          else frame(0, {"event": {"start": {"pid": 42}}}) + end + frame(2, {}))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/connect+json\r\n"
                             + f"Content-Length: {len(frames)}\r\n\r\n".encode() + frames)
                await writer.drain()
                writer.close()
                return
            if lines[0].startswith("POST /init "):
                self.init_bodies[sid] = json.loads(body or b"{}")
            reason = "No Content" if self.init_status == 204 else "Error"
            writer.write(f"HTTP/1.1 {self.init_status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        self.servers[sid] = await asyncio.start_unix_server(handle, path=str(self._socket(sid)))
        self.alive.add(sid)
        return self.handle_for(sid)

    async def destroy(self, sandbox_id: str) -> None:
        if sandbox_id in IN_DESTROY:
            OVERLAPS.append(sandbox_id)
        IN_DESTROY.add(sandbox_id)
        try:
            await asyncio.sleep(0.01)  # a real teardown yields (runsc kill, umount): let overlaps show
            await self._destroy(sandbox_id)
        finally:
            IN_DESTROY.discard(sandbox_id)

    async def _destroy(self, sandbox_id: str) -> None:
        if self.fail_destroy_times > 0:
            self.fail_destroy_times -= 1
            raise RuntimeError("umount: target is busy")
        server = self.servers.pop(sandbox_id, None)
        if server is not None:
            server.close()
        self._socket(sandbox_id).unlink(missing_ok=True)
        self.alive.discard(sandbox_id)
        self.leftovers.discard(sandbox_id)
        self.destroyed.append(sandbox_id)

    async def is_alive(self, sandbox_id: str) -> bool:
        return sandbox_id in self.alive

    def handle_for(self, sandbox_id: str) -> RuntimeHandle:
        return RuntimeHandle(sandbox_id=sandbox_id, runtime=self.name, socket_path=self._socket(sandbox_id),
                             sandbox_dir=self.base / sandbox_id)

    async def list_sandbox_ids(self) -> list[str]:
        return sorted(self.alive | self.leftovers)

    def shutdown(self) -> None:
        for server in self.servers.values():
            server.close()


@dataclass
class FakeTemplate:
    id: str
    rootfs: Path = Path("/nonexistent/rootfs")
    envs: dict[str, str] = field(default_factory=dict)
    workdir: str = "/home/user"
    user: str = "user"
    runtime: str | None = None
    start_cmd: str | None = None
    ready_cmd: str | None = None
    aliases: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str | None:
        return self.aliases[0] if self.aliases else None


class FakeTemplates:
    def __init__(self, *templates: FakeTemplate) -> None:
        self.templates = list(templates)

    def get(self, id_or_alias: str) -> FakeTemplate:
        for t in self.templates:
            if id_or_alias == t.id or id_or_alias in t.aliases:
                return t
        raise NotFoundError(f"template {id_or_alias!r} not found")


async def settle(manager: SandboxManager) -> None:
    """Wait for the manager's background teardowns to finish."""
    for _ in range(100):
        if not manager._background:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("background tasks did not finish")
