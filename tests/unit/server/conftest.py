"""Fixtures: a SandboxManager over FakeRuntimes and fake templates, the API app on an ASGI transport, two teams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from server_fakes import FakeRuntime, FakeTemplate, FakeTemplates

from corral.config import Settings
from corral.db import Database, open_database
from corral.sandboxes import SandboxManager
from corral.server.app import create_app
from corral.server.keys import add_key


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", domain="corral.test", max_timeout_s=3600)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings.db_url)
    yield database
    database.close()


@pytest.fixture
def runtimes() -> Iterator[dict[str, FakeRuntime]]:
    rts = {"gvisor": FakeRuntime("gvisor"), "runc": FakeRuntime("runc")}
    yield rts
    for rt in rts.values():
        rt.shutdown()


@pytest.fixture
def templates() -> FakeTemplates:
    return FakeTemplates(
        FakeTemplate("base", envs={"LANG": "C.UTF-8"}),
        FakeTemplate("code-interpreter", aliases=["code-interpreter-v1"], workdir="/home/user/work"),
        FakeTemplate("fast", runtime="runc"),
    )


@pytest.fixture
async def manager(settings: Settings, runtimes: dict[str, FakeRuntime], templates: FakeTemplates,
                  db: Database) -> AsyncIterator[SandboxManager]:
    mgr = SandboxManager(settings, runtimes, templates, db=db)  # type: ignore[arg-type]
    await mgr.start()
    yield mgr
    await mgr.close(drain_s=5)


@pytest.fixture
def api_key(db: Database) -> str:
    return add_key(db, "tests", "default")


@pytest.fixture
def other_key(db: Database) -> str:
    return add_key(db, "intruder", "other-team")


@pytest.fixture
async def client(settings: Settings, manager: SandboxManager, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"X-API-KEY": api_key}) as c:
        yield c
