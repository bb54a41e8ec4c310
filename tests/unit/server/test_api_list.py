"""Listing: metadata filter as the SDK encodes it, state filter, template filter, limit/nextToken paging."""

from __future__ import annotations

import urllib.parse
from datetime import UTC

import httpx


def sdk_metadata(metadata: dict[str, str]) -> str:
    # Exactly what e2b's paginator does before handing `metadata` to httpx as a query parameter.
    return urllib.parse.urlencode({urllib.parse.quote(k): urllib.parse.quote(v) for k, v in metadata.items()})


async def make(client: httpx.AsyncClient, **metadata: str) -> str:
    r = await client.post("/v2/sandboxes", json={"templateID": "base", "metadata": metadata})
    assert r.status_code == 201, r.text
    return r.json()["sandboxID"]


async def test_metadata_filter(client: httpx.AsyncClient) -> None:
    a = await make(client, user="alice & bob", app="prod")
    b = await make(client, user="carol", app="prod")
    await make(client, app="dev")

    async def ids(meta: dict[str, str]) -> set[str]:
        r = await client.get("/v2/sandboxes", params={"metadata": sdk_metadata(meta)})
        assert r.status_code == 200, r.text
        return {s["sandboxID"] for s in r.json()}

    assert await ids({"app": "prod"}) == {a, b}
    assert await ids({"user": "alice & bob", "app": "prod"}) == {a}
    assert await ids({"user": "alice & bob", "app": "dev"}) == set()
    listed = (await client.get("/v2/sandboxes", params={"metadata": sdk_metadata({"user": "carol"})})).json()
    assert listed[0]["metadata"] == {"user": "carol", "app": "prod"}
    v1 = (await client.get("/sandboxes", params={"metadata": sdk_metadata({"app": "prod"})})).json()
    assert {s["sandboxID"] for s in v1} == {a, b}


async def test_listed_shape(client: httpx.AsyncClient) -> None:
    sid = await make(client)
    [item] = (await client.get("/v2/sandboxes")).json()
    assert item["sandboxID"] == sid and item["state"] == "running" and item["envdVersion"] == "0.6.4"
    for key in ("templateID", "clientID", "startedAt", "endAt", "cpuCount", "memoryMB", "diskSizeMB"):
        assert key in item
    assert "envdAccessToken" not in item


async def test_state_filter(client: httpx.AsyncClient) -> None:
    sid = await make(client)
    assert [s["sandboxID"] for s in (await client.get("/v2/sandboxes", params={"state": "running"})).json()] == [sid]
    assert (await client.get("/v2/sandboxes", params={"state": "paused"})).json() == []
    both = await client.get("/v2/sandboxes", params={"state": "running,paused"})
    assert [s["sandboxID"] for s in both.json()] == [sid]
    bad = await client.get("/v2/sandboxes", params={"state": "sleeping"})
    assert bad.status_code == 400 and "state" in bad.json()["message"]


async def test_template_filter(client: httpx.AsyncClient) -> None:
    await make(client)
    r = await client.post("/v2/sandboxes", json={"templateID": "code-interpreter-v1"})
    ci = r.json()["sandboxID"]
    for name in ("code-interpreter", "code-interpreter-v1"):
        assert [s["sandboxID"] for s in (await client.get("/v2/sandboxes", params={"template": name})).json()] == [ci]


async def test_paging_visits_every_sandbox_once(client: httpx.AsyncClient) -> None:
    created = {await make(client) for _ in range(5)}
    for order in ("desc", "asc"):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            params = {"limit": 2, "order": order, **({"nextToken": token} if token else {})}
            r = await client.get("/v2/sandboxes", params=params)
            assert r.status_code == 200, r.text
            assert r.headers["X-Total-Running"] == "5"
            seen += [s["sandboxID"] for s in r.json()]
            pages += 1
            token = r.headers.get("X-Next-Token")
            if not token:
                break
        assert pages == 3 and len(seen) == 5 and set(seen) == created
        starts = [s["startedAt"] for s in (await client.get("/v2/sandboxes", params={"order": order})).json()]
        assert starts == sorted(starts, reverse=order == "desc")


async def test_bad_paging_params(client: httpx.AsyncClient) -> None:
    for params, field in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "x"}, "limit"),
                          ({"nextToken": "garbage!"}, "nextToken"), ({"order": "up"}, "order")]:
        r = await client.get("/v2/sandboxes", params=params)
        assert r.status_code == 400 and field in r.json()["message"], (params, r.text)


async def test_started_after(client: httpx.AsyncClient) -> None:
    from datetime import datetime, timedelta
    sid = await make(client)
    now = datetime.now(UTC)
    for when, expected in [(now - timedelta(minutes=1), [sid]), (now + timedelta(minutes=1), [])]:
        for value in (when.isoformat(), when.replace(tzinfo=None).isoformat()):  # aware and naive (UTC)
            r = await client.get("/v2/sandboxes", params={"startedAfter": value})
            assert r.status_code == 200, r.text
            assert [s["sandboxID"] for s in r.json()] == expected
