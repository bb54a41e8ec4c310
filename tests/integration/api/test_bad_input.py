"""Bad input against the real server: clear 4xx errors in the spec's Error shape, never a 500 or a half-made sandbox."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.corral_server import CorralServer


@pytest.fixture
def api(corral_server: CorralServer, api_key: str) -> httpx.Client:
    with httpx.Client(base_url=corral_server.api_url, headers={"X-API-KEY": api_key}, timeout=30) as client:
        yield client


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    for w in words:
        assert w in body["message"], body["message"]
    assert "Traceback" not in r.text


def test_missing_and_wrong_key(corral_server: CorralServer) -> None:
    r = httpx.get(f"{corral_server.api_url}/v2/sandboxes")
    assert_error(r, 401)
    r = httpx.get(f"{corral_server.api_url}/v2/sandboxes", headers={"X-API-KEY": "e2b_" + "0" * 40})
    assert_error(r, 401)


def test_unknown_sandbox_is_404(api: httpx.Client) -> None:
    assert_error(api.get("/sandboxes/" + "z" * 20), 404)
    assert_error(api.delete("/sandboxes/" + "z" * 20), 404)
    assert_error(api.post("/sandboxes/" + "z" * 20 + "/timeout", json={"timeout": 10}), 404)


def test_unknown_template_is_404_and_leaves_nothing(api: httpx.Client, corral_server: CorralServer) -> None:
    before = api.get("/v2/sandboxes").json()
    assert_error(api.post("/sandboxes", json={"templateID": "nope-template"}), 404, "nope-template")
    assert api.get("/v2/sandboxes").json() == before


@pytest.mark.parametrize("body,field", [
    ({"templateID": 5}, "templateID"),
    ({"templateID": "base", "timeout": "soon"}, "timeout"),
    ({"templateID": "base", "metadata": ["not", "a", "map"]}, "metadata"),
    ({"templateID": "base", "envVars": {"A": 1}}, "envVars"),
])
def test_malformed_body_names_the_field(api: httpx.Client, body: dict, field: str) -> None:
    assert_error(api.post("/sandboxes", json=body), 400, field)


def test_not_json_is_400(api: httpx.Client) -> None:
    r = api.post("/sandboxes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400)


def test_gateway_rejects_unknown_sandbox_and_init(corral_server: CorralServer, api_key: str) -> None:
    gw = corral_server.sandbox_url
    r = httpx.get(f"{gw}/health", headers={"E2b-Sandbox-Id": "q" * 20, "E2b-Sandbox-Port": "49983"})
    assert r.status_code in (404, 502)
    created = httpx.post(f"{corral_server.api_url}/sandboxes", json={"templateID": "base", "secure": True},
                         headers={"X-API-KEY": api_key}, timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["sandboxID"]
    token = created.json()["envdAccessToken"]
    try:
        headers = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
        # No token on a secure sandbox: refused.
        assert httpx.get(f"{gw}/files", params={"path": "/etc/hostname"}, headers=headers).status_code == 401
        ok = httpx.get(f"{gw}/files", params={"path": "/etc/hostname", "username": "user"},
                       headers={**headers, "X-Access-Token": token})
        assert ok.status_code == 200
        # Only the server may call /init (it sets env vars and the access token).
        r = httpx.post(f"{gw}/init", json={"accessToken": "mine"}, headers={**headers, "X-Access-Token": token})
        assert r.status_code == 403
    finally:
        assert httpx.delete(f"{corral_server.api_url}/sandboxes/{sid}", headers={"X-API-KEY": api_key}).status_code == 204
