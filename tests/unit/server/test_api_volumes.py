"""The /volumes and /volumecontent APIs over fake runtimes: validation, team isolation, tokens, mounts on create,
destroy refused while mounted (or being mounted), and the content operations end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from server_fakes import FakeRuntime

from corral.config import Settings
from corral.errors import RuntimeFailure


async def _volume(client: httpx.AsyncClient, name: str = "data") -> dict[str, Any]:
    r = await client.post("/volumes", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_create_list_get_destroy_and_validation(client: httpx.AsyncClient, other_key: str,
                                                      settings: Settings) -> None:
    vol = await _volume(client)
    assert set(vol) == {"volumeID", "name", "token"} and vol["name"] == "data"
    data = settings.volumes_dir / vol["volumeID"] / "data"
    assert data.is_dir() and (data.stat().st_uid, data.stat().st_gid) == (1000, 1000)
    assert settings.volumes_dir.stat().st_mode & 0o777 == 0o700
    for bad in ("", "a b", "../x", "x" * 101, 5, None):
        r = await client.post("/volumes", json={"name": bad})
        assert r.status_code == 400 and r.json()["message"].startswith("name:"), (bad, r.text)
    assert (await client.post("/volumes", json=[])).status_code == 400
    r = await client.post("/volumes", json={"name": "data"})
    assert r.status_code == 409 and "already exists" in r.json()["message"]
    assert (await client.get("/volumes")).json() == [{"volumeID": vol["volumeID"], "name": "data"}]
    assert (await client.get(f"/volumes/{vol['volumeID']}")).json() == vol
    assert (await client.get("/volumes", headers={"X-API-KEY": "e2b_bad"})).status_code == 401

    other = {"X-API-KEY": other_key}
    assert (await client.get(f"/volumes/{vol['volumeID']}", headers=other)).status_code == 404
    assert (await client.delete(f"/volumes/{vol['volumeID']}", headers=other)).status_code == 404
    assert (await client.get("/volumes", headers=other)).json() == []
    assert (await client.post("/volumes", json={"name": "data"}, headers=other)).status_code == 201
    assert (await client.get("/volumes/../../etc")).status_code == 404
    assert (await client.get("/volumes/vol_zzzz")).status_code == 404

    assert (await client.delete(f"/volumes/{vol['volumeID']}")).status_code == 204
    assert not (settings.volumes_dir / vol["volumeID"]).exists()
    assert (await client.get(f"/volumes/{vol['volumeID']}")).status_code == 404
    assert (await client.delete(f"/volumes/{vol['volumeID']}")).status_code == 404


async def test_mounts_on_create_and_destroy_while_mounted(client: httpx.AsyncClient, runtimes: dict[str, FakeRuntime],
                                                          settings: Settings, other_key: str) -> None:
    vol = await _volume(client)
    r = await client.post("/v2/sandboxes", json={"templateID": "base", "volumeMounts": [
        {"name": "data", "path": "/mnt/data/"}]})
    assert r.status_code == 201, r.text
    sid = r.json()["sandboxID"]
    (bind,) = runtimes["gvisor"].specs[sid].volumes
    assert bind.source == settings.volumes_dir / vol["volumeID"] / "data" and bind.destination == "/mnt/data"
    assert (await client.get(f"/sandboxes/{sid}")).json()["volumeMounts"] == [{"name": "data", "path": "/mnt/data"}]
    r = await client.delete(f"/volumes/{vol['volumeID']}")
    assert r.status_code == 409 and sid in r.json()["message"]
    assert (settings.volumes_dir / vol["volumeID"] / "data").is_dir()
    await client.delete(f"/sandboxes/{sid}")
    assert (await client.delete(f"/volumes/{vol['volumeID']}")).status_code == 204

    r = await client.post("/v2/sandboxes", json={"templateID": "base", "volumeMounts": [
        {"name": "data", "path": "/x"}]}, headers={"X-API-KEY": other_key})
    assert r.status_code == 400 and "volumeMounts[0].name" in r.json()["message"]


async def test_bad_mounts_name_the_field_and_leave_nothing(client: httpx.AsyncClient,
                                                           runtimes: dict[str, FakeRuntime]) -> None:
    await _volume(client)
    cases = [
        ([{"name": "nope", "path": "/x"}], "volumeMounts[0].name"),
        ([{"name": "data", "path": "rel"}], "volumeMounts[0].path"),
        ([{"name": "data", "path": "/a/../b"}], "volumeMounts[0].path"),
        ([{"name": "data", "path": "/"}], "volumeMounts[0].path"),
        ([{"name": "data", "path": "/run/corral"}], "volumeMounts[0].path"),
        ([{"name": "data", "path": "/proc/sys"}], "volumeMounts[0].path"),
        ([{"name": "data", "path": "/a"}, {"name": "data", "path": "/a/"}], "volumeMounts[1].path"),
        ([{"path": "/a"}], "volumeMounts[0].name"),
        (["data"], "volumeMounts"),
    ]
    for mounts, field in cases:
        r = await client.post("/v2/sandboxes", json={"templateID": "base", "volumeMounts": mounts})
        assert r.status_code == 400 and field in r.json()["message"], (mounts, r.text)
    assert not runtimes["gvisor"].specs
    assert (await client.get("/v2/sandboxes")).json() == []


async def test_failed_create_unpins_and_a_create_in_flight_blocks_destroy(
        client: httpx.AsyncClient, runtimes: dict[str, FakeRuntime]) -> None:
    vol = await _volume(client)
    body = {"templateID": "base", "volumeMounts": [{"name": "data", "path": "/d"}]}
    runtimes["gvisor"].fail_create = RuntimeFailure("boom")
    assert (await client.post("/v2/sandboxes", json=body)).status_code == 503
    runtimes["gvisor"].fail_create = None
    runtimes["gvisor"].create_delay = 0.3
    creating = asyncio.ensure_future(client.post("/v2/sandboxes", json=body))
    await asyncio.sleep(0.1)
    r = await client.delete(f"/volumes/{vol['volumeID']}")
    assert r.status_code == 409 and "being mounted" in r.json()["message"]
    sid = (await creating).json()["sandboxID"]
    await client.delete(f"/sandboxes/{sid}")
    assert (await client.delete(f"/volumes/{vol['volumeID']}")).status_code == 204


async def test_content_api_auth_and_operations(client: httpx.AsyncClient, other_key: str) -> None:
    vol = await _volume(client)
    mine = await _volume(client, "second")
    base = f"/volumecontent/{vol['volumeID']}"
    auth = {"Authorization": f"Bearer {vol['token']}", "X-API-KEY": ""}
    assert (await client.get(f"{base}/path", params={"path": "/"}, headers={"X-API-KEY": ""})).status_code == 401
    assert (await client.get(f"{base}/path", params={"path": "/"},
                             headers={"Authorization": "Bearer wrong"})).status_code == 401
    r = await client.get(f"{base}/path", params={"path": "/"}, headers={"Authorization": f"Bearer {mine['token']}"})
    assert r.status_code == 404   # a token of another volume opens nothing here
    assert (await client.get("/volumecontent/vol_0000000000000000/path", params={"path": "/"},
                             headers=auth)).status_code == 404

    r = await client.put(f"{base}/file", params={"path": "/d/e/f.txt"}, content=b"hi", headers=auth)
    assert r.status_code == 404
    r = await client.put(f"{base}/file", params={"path": "/d/e/f.txt", "force": "true", "mode": 0o600},
                         content=b"hi", headers=auth)
    assert r.status_code == 201 and r.json()["size"] == 2 and r.json()["mode"] == 0o600
    assert r.json()["uid"] == 1000 and r.json()["path"] == "/d/e/f.txt" and r.json()["type"] == "file"
    r = await client.get(f"{base}/file", params={"path": "d/e/f.txt"}, headers=auth)
    assert r.status_code == 200 and r.content == b"hi"
    assert (await client.get(f"{base}/file", params={"path": "/d"}, headers=auth)).status_code == 400
    assert (await client.get(f"{base}/file", params={"path": "/nope"}, headers=auth)).status_code == 404
    r = await client.get(f"{base}/file", params={"path": "/../etc/passwd"}, headers=auth)
    assert r.status_code == 400 and r.json()["message"].startswith("path:")
    r = await client.get(f"{base}/file", headers=auth)
    assert r.status_code == 400 and "path" in r.json()["message"]

    r = await client.post(f"{base}/dir", params={"path": "/d/new", "uid": 0, "gid": 0}, headers=auth)
    assert r.status_code == 201 and (r.json()["uid"], r.json()["type"]) == (0, "directory")
    assert (await client.post(f"{base}/dir", params={"path": "/d/new"}, headers=auth)).status_code == 409
    r = await client.get(f"{base}/dir", params={"path": "/", "depth": 3}, headers=auth)
    assert [e["path"] for e in r.json()] == ["/d", "/d/e", "/d/e/f.txt", "/d/new"]
    assert (await client.get(f"{base}/dir", params={"path": "/", "depth": 0}, headers=auth)).status_code == 400
    r = await client.patch(f"{base}/path", params={"path": "/d/e/f.txt"}, json={"mode": 0o640, "uid": 7},
                           headers=auth)
    assert r.status_code == 200 and (r.json()["mode"], r.json()["uid"]) == (0o640, 7)
    r = await client.patch(f"{base}/path", params={"path": "/d/e/f.txt"}, json={"mode": "x"}, headers=auth)
    assert r.status_code == 400 and "mode" in r.json()["message"]
    assert (await client.delete(f"{base}/path", params={"path": "/d"}, headers=auth)).status_code == 204
    assert (await client.get(f"{base}/path", params={"path": "/d"}, headers=auth)).status_code == 404
    assert (await client.delete(f"{base}/path", params={"path": "/"}, headers=auth)).status_code == 400
