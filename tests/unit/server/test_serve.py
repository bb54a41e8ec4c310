"""serve(): wires DB, runtimes, templates, manager, API and gateway together, answers, and stops cleanly on SIGTERM
leaving sandboxes running."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from server_fakes import FakeRuntime, FakeTemplate, FakeTemplates

from corral.config import Settings
from corral.server.keys import create_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeGateway:
    instances: ClassVar[list[FakeGateway]] = []

    def __init__(self, resolve: Any, on_activity: Any = None, domain: str = "localhost", wake: Any = None,
                 **limits: Any) -> None:
        self.resolve, self.on_activity, self.domain, self.wake = resolve, on_activity, domain, wake
        self.started: tuple[str, int] | None = None
        self.closed = False
        self.busy = lambda _sandbox_id: False
        FakeGateway.instances.append(self)

    async def start(self, host: str, port: int) -> None:
        self.started = (host, port)

    async def close(self) -> None:
        self.closed = True


async def test_serve_runs_and_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import corral.runtime.factory
    import corral.server.gateway
    import corral.templates.catalog
    from corral.server.run import serve

    runtimes = {"gvisor": FakeRuntime("gvisor")}
    monkeypatch.setattr(corral.runtime.factory, "make_runtimes", lambda settings: runtimes)
    monkeypatch.setattr(corral.templates.catalog, "TemplateCatalog",
                        lambda settings: FakeTemplates(FakeTemplate("base")))
    monkeypatch.setattr(corral.server.gateway, "Gateway", FakeGateway)
    # net_enabled=False: a unit test must not touch the host's nftables and addresses (fake runtimes have no netns).
    settings = Settings(data_dir=tmp_path / "data", port=free_port(), gateway_port=free_port(), domain="d.test",
                        net_enabled=False)
    key = create_key(settings, "serve-test")

    task = asyncio.create_task(serve(settings))
    for _ in range(200):
        if "Corral ready" in capsys.readouterr().out or task.done():
            break
        await asyncio.sleep(0.05)
    assert not task.done()
    gw = FakeGateway.instances[-1]
    assert gw.started == ("127.0.0.1", settings.gateway_port) and gw.domain == "d.test"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", headers={"X-API-KEY": key}) as c:
        assert (await c.get("/health")).status_code == 204
        sid = (await c.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    route = gw.resolve(sid)  # the gateway resolves through the manager's route table
    assert route is not None and route.sandbox_id == sid
    gw.on_activity(sid)

    os.kill(os.getpid(), signal.SIGTERM)  # handled by serve()'s loop signal handler
    await asyncio.wait_for(task, 15)
    assert gw.closed and sid in runtimes["gvisor"].alive  # stopping the server leaves sandboxes running
    runtimes["gvisor"].shutdown()
