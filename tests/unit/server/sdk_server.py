"""The real API app on a loopback port (uvicorn in a thread) over FakeRuntimes, for tests that drive the stock SDK."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Self

import uvicorn
from server_fakes import FakeRuntime, FakeTemplate, FakeTemplates

from corral.config import Settings
from corral.db import open_database
from corral.sandboxes import SandboxManager
from corral.server.app import create_app
from corral.server.keys import add_key


class ApiServerThread:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, domain="corral.test")
        self.db = open_database(self.settings.db_url)
        self.key = add_key(self.db, "sdk")
        self.other_key = add_key(self.db, "sdk-other", "other")
        self.runtimes = {"gvisor": FakeRuntime("gvisor"), "runc": FakeRuntime("runc")}
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.server: uvicorn.Server | None = None

    async def _main(self) -> None:
        templates = FakeTemplates(FakeTemplate("base"))
        self.manager = SandboxManager(self.settings, self.runtimes, templates, db=self.db)  # type: ignore[arg-type]
        await self.manager.start()
        config = uvicorn.Config(create_app(self.settings, self.manager), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        self._ready.set()
        await task
        await self.manager.close(drain_s=5)
        for rt in self.runtimes.values():
            rt.shutdown()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10), "API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self._thread.join(10)
        self.db.close()
