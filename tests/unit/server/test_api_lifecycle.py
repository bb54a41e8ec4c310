"""get / kill / timeout / connect / resume / refreshes, and team isolation (another team's sandbox is a 404)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
from server_fakes import FakeRuntime, settle

from corral.config import Settings
from corral.sandboxes import SandboxManager
from corral.server.app import create_app


def end_in(info: dict) -> float:
    return (datetime.fromisoformat(info["endAt"]) - datetime.now(UTC)).total_seconds()


async def make(client: httpx.AsyncClient, timeout: int = 100) -> str:
    r = await client.post("/v2/sandboxes", json={"templateID": "base", "timeout": timeout})
    assert r.status_code == 201, r.text
    return r.json()["sandboxID"]


async def test_get_detail(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v2/sandboxes", json={"templateID": "base", "metadata": {"k": "v"},
                                                        "allow_internet_access": False})).json()
    info = (await client.get(f"/sandboxes/{created['sandboxID']}")).json()
    assert info["sandboxID"] == created["sandboxID"] and info["state"] == "running"
    assert info["envdAccessToken"] == created["envdAccessToken"] and info["metadata"] == {"k": "v"}
    assert info["cpuCount"] == min(2, max(1, (os.cpu_count() or 1) - 1)) and info["memoryMB"] == 512 and info["diskSizeMB"] == 1024
    assert info["allowInternetAccess"] is False and info["domain"] == "corral.test"
    assert info["lifecycle"] == {"autoResume": False, "onTimeout": "kill"}
    assert 290 <= end_in(info) <= 300


async def test_kill(client: httpx.AsyncClient, manager: SandboxManager, runtimes: dict[str, FakeRuntime]) -> None:
    sid = await make(client)
    assert manager.route(sid) is not None
    r = await client.delete(f"/sandboxes/{sid}")
    assert r.status_code == 204 and r.content == b""
    assert manager.route(sid) is None  # unroutable before the teardown even ran
    await settle(manager)
    assert sid in runtimes["gvisor"].destroyed and sid not in runtimes["gvisor"].alive
    assert (await client.get(f"/sandboxes/{sid}")).status_code == 404
    assert (await client.delete(f"/sandboxes/{sid}")).status_code == 404
    assert (await client.get("/v2/sandboxes")).json() == []


async def test_kill_survives_destroy_failures(client: httpx.AsyncClient, manager: SandboxManager,
                                              runtimes: dict[str, FakeRuntime]) -> None:
    manager.destroy_backoff_s = 0.01
    sid = await make(client)
    runtimes["gvisor"].fail_destroy_times = 2
    assert (await client.delete(f"/sandboxes/{sid}")).status_code == 204
    await settle(manager)
    assert sid in runtimes["gvisor"].destroyed


async def test_set_timeout_overwrites(client: httpx.AsyncClient) -> None:
    sid = await make(client, timeout=1000)
    assert (await client.post(f"/sandboxes/{sid}/timeout", json={"timeout": 50})).status_code == 204
    assert 45 <= end_in((await client.get(f"/sandboxes/{sid}")).json()) <= 50
    r = await client.post(f"/sandboxes/{sid}/timeout", json={"timeout": 10**7})
    assert r.status_code == 400 and "timeout" in r.json()["message"]


async def test_connect_only_extends(client: httpx.AsyncClient) -> None:
    sid = await make(client, timeout=100)
    r = await client.post(f"/sandboxes/{sid}/connect", json={"timeout": 10})
    assert r.status_code == 200 and r.json()["sandboxID"] == sid and r.json()["envdAccessToken"]
    assert end_in((await client.get(f"/sandboxes/{sid}")).json()) > 90
    r = await client.post(f"/v2/sandboxes/{sid}/connect", json={"timeout": 500})
    assert r.status_code == 200
    assert 490 <= end_in((await client.get(f"/sandboxes/{sid}")).json()) <= 500
    r = await client.post(f"/sandboxes/{sid}/resume", json={"timeout": 900})
    assert r.status_code == 201 and r.json()["sandboxID"] == sid
    assert end_in((await client.get(f"/sandboxes/{sid}")).json()) > 890
    assert (await client.post(f"/sandboxes/{sid}/refreshes", json={"duration": 3600})).status_code == 204
    assert end_in((await client.get(f"/sandboxes/{sid}")).json()) > 3590
    assert (await client.post(f"/sandboxes/{sid}/refreshes")).status_code == 204


async def test_connect_unknown_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/sandboxes/{}/connect", "/v2/sandboxes/{}/connect", "/sandboxes/{}/resume"):
        r = await client.post(path.format("z" * 20), json={"timeout": 10})
        assert r.status_code == 404 and r.json()["code"] == 404


async def test_other_team_sees_404(client: httpx.AsyncClient, settings: Settings, manager: SandboxManager,
                                   other_key: str, runtimes: dict[str, FakeRuntime]) -> None:
    sid = await make(client)
    missing = "q" * 20
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, manager)),
                                 base_url="http://api", headers={"X-API-KEY": other_key}) as other:
        calls = [("GET", "/sandboxes/{}", None), ("DELETE", "/sandboxes/{}", None),
                 ("POST", "/sandboxes/{}/timeout", {"timeout": 5}), ("POST", "/sandboxes/{}/connect", {"timeout": 5}),
                 ("POST", "/v2/sandboxes/{}/connect", {"timeout": 5}), ("POST", "/sandboxes/{}/refreshes", {})]
        for method, path, body in calls:
            theirs = await other.request(method, path.format(sid), json=body)
            nobody = await other.request(method, path.format(missing), json=body)
            assert theirs.status_code == nobody.status_code == 404
            # Identical apart from the id: nothing tells the intruder the sandbox exists.
            assert theirs.json()["message"].replace(sid, missing) == nobody.json()["message"]
        assert (await other.get("/v2/sandboxes")).json() == []
        own = (await other.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
        assert [s["sandboxID"] for s in (await other.get("/v2/sandboxes")).json()] == [own]
    assert sid in runtimes["gvisor"].alive
    assert [s["sandboxID"] for s in (await client.get("/v2/sandboxes")).json()] == [sid]
    assert (await client.get(f"/sandboxes/{sid}")).status_code == 200


async def test_timestamps_are_utc_iso(client: httpx.AsyncClient) -> None:
    sid = await make(client)
    info = (await client.get(f"/sandboxes/{sid}")).json()
    started = datetime.fromisoformat(info["startedAt"])
    assert started.tzinfo is not None and abs(datetime.now(UTC) - started) < timedelta(seconds=10)


async def test_pause_snapshot_fork_need_a_checkpointing_runtime(client: httpx.AsyncClient) -> None:
    sid = await make(client)
    for action in ("pause", "snapshots", "fork"):
        r = await client.post(f"/sandboxes/{sid}/{action}", json={})
        assert r.status_code == 409 and "cannot" in r.json()["message"]
        assert (await client.post(f"/sandboxes/{'z' * 20}/{action}", json={})).status_code == 404
    assert (await client.get(f"/sandboxes/{sid}/metrics")).json() == []
    assert (await client.get(f"/sandboxes/{'z' * 20}/metrics")).status_code == 404
