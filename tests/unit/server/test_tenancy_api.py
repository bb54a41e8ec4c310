"""Admin API (teams, keys, quotas), team isolation, quota 429s, the audit log and the request guards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from server_fakes import FakeRuntime

from corral import audit
from corral.config import Settings
from corral.db import Database
from corral.sandboxes import SandboxManager
from corral.server.app import create_app
from corral.tenancy import add_admin_key


@pytest.fixture
async def admin(settings: Settings, manager: SandboxManager, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"X-Admin-Token": add_admin_key(db, "root")}) as c:
        yield c


def _as(client: httpx.AsyncClient, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url="http://api", headers={"X-API-KEY": key})


async def test_admin_creates_team_and_key_and_the_key_is_isolated(admin: httpx.AsyncClient,
                                                                    client: httpx.AsyncClient) -> None:
    team = (await admin.post("/teams", json={"name": "blue"})).json()
    assert team["name"] == "blue" and team["teamID"].startswith("team_")
    assert (await admin.post("/teams", json={"name": "blue"})).status_code == 409
    created = await admin.post(f"/admin/teams/{team['teamID']}/api-keys", json={"name": "blue-ci"})
    assert created.status_code == 201 and created.json()["key"].startswith("e2b_")
    listed = (await admin.get("/api-keys", headers={"X-Team-ID": team["teamID"]})).json()
    assert [k["name"] for k in listed] == ["blue-ci"] and "key" not in listed[0]
    mine = (await client.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    async with _as(client, created.json()["key"]) as blue:
        for method, path in (("GET", f"/sandboxes/{mine}"), ("DELETE", f"/sandboxes/{mine}"),
                             ("POST", f"/sandboxes/{mine}/timeout")):
            r = await blue.request(method, path, json={"timeout": 10})
            assert r.status_code == 404 and r.json()["message"] == f"sandbox {mine!r} not found"
        assert (await blue.get("/v2/sandboxes")).json() == []
    # Team keys are not admin keys, and the admin key is not a team key.
    assert (await client.get("/teams", headers={"X-Admin-Token": "e2b_" + "0" * 40})).status_code == 401
    assert (await admin.get("/v2/sandboxes")).status_code == 401
    # Removing a team with running sandboxes is refused; renaming and revoking keys works.
    key_id = created.json()["id"]
    r = await admin.patch(f"/api-keys/{key_id}", json={"name": "renamed"}, headers={"X-Team-ID": team["teamID"]})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert (await admin.delete(f"/api-keys/{key_id}", headers={"X-Team-ID": team["teamID"]})).status_code == 204
    async with _as(client, created.json()["key"]) as blue:
        assert (await blue.get("/v2/sandboxes")).status_code == 401
    assert (await admin.delete(f"/teams/{team['teamID']}")).status_code == 204
    assert team["teamID"] not in [t["teamID"] for t in (await admin.get("/teams")).json()]


async def test_admin_auth_and_bearer(admin: httpx.AsyncClient, db: Database) -> None:
    token = add_admin_key(db, "bearer")
    r = await admin.get("/teams", headers={"X-Admin-Token": "", "Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert (await admin.get("/teams", headers={"X-Admin-Token": "nope"})).status_code == 401
    assert (await admin.get("/api-keys", headers={"X-Team-ID": "team_0123456789abcdef"})).status_code == 404


async def test_quota_max_sandboxes_gives_429_with_retry_after(admin: httpx.AsyncClient, client: httpx.AsyncClient,
                                                               manager: SandboxManager,
                                                               runtimes: dict[str, FakeRuntime]) -> None:
    team_id = next(t["teamID"] for t in (await admin.get("/teams")).json() if t["name"] == "default")
    r = await admin.put(f"/teams/{team_id}/quota", json={"maxSandboxes": 2})
    assert r.status_code == 200 and r.json()["maxSandboxes"] == 2
    runtimes["gvisor"].create_delay = 0.2
    # Five concurrent creates: exactly two get through (reservations are taken before anything starts).
    results = await asyncio.gather(*(client.post("/v2/sandboxes", json={"templateID": "base"}) for _ in range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 429, 429, 429]
    refused = next(r for r in results if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1 and "quota" in refused.json()["message"]
    first = next(r for r in results if r.status_code == 201).json()["sandboxID"]
    assert (await client.delete(f"/sandboxes/{first}")).status_code == 204
    assert (await client.post("/v2/sandboxes", json={"templateID": "base"})).status_code == 201
    usage = (await admin.get(f"/teams/{team_id}/quota")).json()["usage"]
    assert usage["sandboxes"] == 2 and usage["memoryMB"] == 2 * manager.settings.default_memory_mb


async def test_quota_failed_create_releases_its_reservation(admin: httpx.AsyncClient, client: httpx.AsyncClient,
                                                             runtimes: dict[str, FakeRuntime]) -> None:
    team_id = next(t["teamID"] for t in (await admin.get("/teams")).json() if t["name"] == "default")
    await admin.put(f"/teams/{team_id}/quota", json={"maxSandboxes": 1})
    runtimes["gvisor"].fail_create = RuntimeError("boom")
    assert (await client.post("/v2/sandboxes", json={"templateID": "base"})).status_code == 503
    runtimes["gvisor"].fail_create = None
    assert (await client.post("/v2/sandboxes", json={"templateID": "base"})).status_code == 201


async def test_creates_per_second_token_bucket(admin: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    team_id = next(t["teamID"] for t in (await admin.get("/teams")).json() if t["name"] == "default")
    await admin.put(f"/teams/{team_id}/quota", json={"createsPerSecond": 0.5, "memoryMB": 100000})
    assert (await client.post("/v2/sandboxes", json={"templateID": "base"})).status_code == 201
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"


async def test_memory_quota(admin: httpx.AsyncClient, client: httpx.AsyncClient, manager: SandboxManager) -> None:
    team_id = next(t["teamID"] for t in (await admin.get("/teams")).json() if t["name"] == "default")
    await admin.put(f"/teams/{team_id}/quota", json={"memoryMB": manager.settings.default_memory_mb})
    assert (await client.post("/v2/sandboxes", json={"templateID": "base"})).status_code == 201
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 429 and "memory" in r.json()["message"]


async def test_audit_log_records_mutations(client: httpx.AsyncClient, db: Database, other_key: str) -> None:
    sid = (await client.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    await client.delete(f"/sandboxes/{sid}")
    await client.get("/v2/sandboxes")  # reads are not audited
    async with _as(client, other_key) as other:
        await other.delete(f"/sandboxes/{sid}")
    rows = audit.entries(db)
    assert [(r["method"], r["route"], r["target"], r["status"]) for r in rows] == [
        ("POST", "/v2/sandboxes", sid, 201), ("DELETE", "/sandboxes/{sandbox_id}", sid, 204),
        ("DELETE", "/sandboxes/{sandbox_id}", sid, 404)]
    assert rows[0]["team"] and rows[0]["key"].startswith("key_") and rows[2]["team"] != rows[0]["team"]


async def test_guards_ids_and_body_size(client: httpx.AsyncClient, db: Database,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_db():  # type: ignore[no-untyped-def]
        raise AssertionError("a malformed id reached the database")

    monkeypatch.setattr(db, "session", no_db)
    for path in ("/sandboxes/..%2F..%2Fetc", "/sandboxes/" + "a" * 500, "/sandboxes/ABCDEFGHIJKLMNOPQRST",
                 "/v2/sandboxes/x/connect"):
        r = await client.get(path)
        assert r.status_code == 404 and r.json()["message"] == "sandbox not found"
    monkeypatch.undo()
    r = await client.post("/v2/sandboxes", content=b"{" + b" " * (2 << 20) + b"}",
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    r = await client.post("/v2/sandboxes", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = await client.get("/v2/sandboxes", headers={"X-Big": "a" * (20 << 10)})
    assert r.status_code == 431


async def test_file_uploads_have_their_own_cap(client: httpx.AsyncClient) -> None:
    """A 2 MiB volume file or COPY archive passes the 1 MiB JSON cap (the route answers, here 401: no token)."""
    big = b"x" * (2 << 20)
    r = await client.put("/volumecontent/vol_0123456789abcdef/file?path=/a", content=big)
    assert r.status_code != 413, r.text
    r = await client.put("/_corral/template-files/not-a-token", content=big)
    assert r.status_code != 413, r.text
    r = await client.put("/volumecontent/vol_0123456789abcdef/dir", content=big)   # not an upload route
    assert r.status_code == 413
