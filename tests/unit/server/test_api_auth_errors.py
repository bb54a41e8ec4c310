"""Auth (401), the Error body shape, 400s that name the field, and the clean catch-all 500."""

from __future__ import annotations

import httpx
import pytest

from corral.config import Settings
from corral.db import Database
from corral.errors import LimitExceededError
from corral.sandboxes import SandboxManager
from corral.server.app import create_app
from corral.server.keys import add_key


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == status and body["message"]
    for w in words:
        assert w in body["message"], body["message"]
    assert "Traceback" not in r.text


@pytest.fixture
async def anon(settings: Settings, manager: SandboxManager) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings, manager)), base_url="http://api")


async def test_missing_key_is_401(anon: httpx.AsyncClient) -> None:
    assert_error(await anon.get("/v2/sandboxes"), 401, "X-API-KEY")
    assert_error(await anon.post("/v2/sandboxes", json={"templateID": "base"}), 401)


async def test_wrong_key_is_401(anon: httpx.AsyncClient, api_key: str) -> None:
    r = await anon.get("/v2/sandboxes", headers={"X-API-KEY": "e2b_" + "0" * 40})
    assert_error(r, 401, "invalid")
    assert (await anon.get("/v2/sandboxes", headers={"X-API-KEY": api_key})).status_code == 200


async def test_revoked_key_is_401(anon: httpx.AsyncClient, settings: Settings, db: Database) -> None:
    from corral.server.keys import revoke_key
    key = add_key(db, "short-lived")
    assert (await anon.get("/v2/sandboxes", headers={"X-API-KEY": key})).status_code == 200
    revoke_key(settings, "short-lived")
    assert_error(await anon.get("/v2/sandboxes", headers={"X-API-KEY": key}), 401)


async def test_health_needs_no_key(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/health")).status_code == 204


async def test_unknown_path_uses_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/no/such/path"), 404)


@pytest.mark.parametrize("body,field", [
    ({"templateID": 5}, "templateID"),
    ({}, "templateID"),
    ({"templateID": "base", "timeout": "soon"}, "timeout"),
    ({"templateID": "base", "timeout": True}, "timeout"),
    ({"templateID": "base", "timeout": 1.5}, "timeout"),
    ({"templateID": "base", "allow_internet_access": "yes"}, "allow_internet_access"),
    ({"templateID": "base", "timeout": -1}, "timeout"),
    ({"templateID": "base", "metadata": ["not", "a", "map"]}, "metadata"),
    ({"templateID": "base", "envVars": {"A": 1}}, "envVars.A"),
    ({"templateID": "base", "autoResume": {"enabled": True}}, "autoResume"),
    ({"templateID": "base", "volumeMounts": [{"name": "v", "path": "/v"}]}, "volumeMounts"),
    ({"templateID": "base", "timeout": 10**6}, "timeout"),
    ({"templateID": "base", "metadata": {"corral.runtime": "docker"}}, "corral.runtime"),
])
async def test_malformed_create_names_the_field(client: httpx.AsyncClient, body: dict, field: str) -> None:
    assert_error(await client.post("/v2/sandboxes", json=body), 400, field)
    assert_error(await client.post("/sandboxes", json=body), 400, field)
    assert (await client.get("/v2/sandboxes")).json() == []


async def test_not_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/sandboxes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "JSON")


async def test_bad_timeout_body_names_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/sandboxes/" + "a" * 20 + "/timeout", json={"timeout": "x"})
    assert_error(r, 400, "timeout")


async def test_unexpected_exception_is_clean_500(client: httpx.AsyncClient, templates: object,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_: str) -> None:
        raise KeyError("secret internal detail")

    monkeypatch.setattr(templates, "get", boom)
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert_error(r, 500)
    assert "secret internal detail" not in r.text


async def test_limit_error_carries_retry_after(client: httpx.AsyncClient, templates: object,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(_: str) -> None:
        raise LimitExceededError("too many sandboxes", retry_after=2.5)

    monkeypatch.setattr(templates, "get", busy)
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert_error(r, 429, "too many")
    assert r.headers["Retry-After"] == "3"
