"""The watchdog: a sandbox that died on its own is killed, freed from the quota, and reported with its reason."""

from __future__ import annotations

import httpx
from server_fakes import FakeRuntime

from corral import audit
from corral.db import Database
from corral.sandboxes import SandboxManager


async def test_dead_sandbox_is_reaped_and_reported(client: httpx.AsyncClient, manager: SandboxManager,
                                                   runtimes: dict[str, FakeRuntime], db: Database) -> None:
    sid = (await client.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    other = (await client.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    assert await manager.watchdog.sweep() == []
    runtimes["gvisor"].alive.discard(sid)  # as if the host OOM killer took the whole sandbox
    assert await manager.watchdog.sweep() == [sid]
    r = await client.get(f"/sandboxes/{sid}")
    assert r.status_code == 404 and "it was killed, its processes exited" in r.json()["message"]
    assert manager.route(sid) is None and manager.route(other) is not None
    assert manager.quotas.usage(manager.get(other, manager.route(other).team_id).team_id)[0] == 1  # type: ignore[union-attr]
    events = [e for e in audit.entries(db) if e["method"] == "EVENT"]
    assert events and events[0]["target"] == sid and "died" in events[0]["route"]
