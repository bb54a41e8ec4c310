"""Team isolation on the real server: another team's key sees nothing and gets 404 for every id."""

from __future__ import annotations

import httpx

from tests.integration.corral_server import CorralServer


def test_other_team_gets_404(corral_server: CorralServer, api_key: str) -> None:
    other = corral_server.create_key("intruder", team="other-team")
    mine = {"X-API-KEY": api_key}
    theirs = {"X-API-KEY": other}
    api = corral_server.api_url
    created = httpx.post(f"{api}/sandboxes", json={"templateID": "base"}, headers=mine, timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["sandboxID"]
    try:
        assert httpx.get(f"{api}/sandboxes/{sid}", headers=theirs).status_code == 404
        assert httpx.post(f"{api}/sandboxes/{sid}/timeout", json={"timeout": 5}, headers=theirs).status_code == 404
        assert httpx.delete(f"{api}/sandboxes/{sid}", headers=theirs).status_code == 404
        assert sid not in {s["sandboxID"] for s in httpx.get(f"{api}/v2/sandboxes", headers=theirs).json()}
        assert httpx.get(f"{api}/sandboxes/{sid}", headers=mine).status_code == 200
    finally:
        assert httpx.delete(f"{api}/sandboxes/{sid}", headers=mine).status_code == 204
