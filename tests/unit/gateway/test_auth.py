"""Secure sandboxes: X-Access-Token, signed file URLs (computed here the way the SDK does), traffic tokens."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.parse

import httpx

from .conftest import ENVD_TOKEN, SECURE, TRAFFIC_TOKEN, Env


def sign(path: str, op: str, user: str | None, token: str, expires_in: int | None = None) -> dict[str, str]:
    """Independent re-statement of the SDK's v1 file URL signature, as query params."""
    expiration = int(time.time()) + expires_in if expires_in is not None else None
    raw = f"{path}:{op}:{user or ''}:{token}" + (f":{expiration}" if expiration is not None else "")
    sig = "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode().rstrip("=")
    q = {"path": path}
    if user:
        q["username"] = user
    q["signature"] = sig
    if expiration is not None:
        q["signature_expiration"] = str(expiration)
    return q


def url(q: dict[str, str]) -> str:
    return "/files?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)


async def test_secure_envd_needs_the_access_token(env: Env, client: httpx.AsyncClient) -> None:
    assert (await client.get("/envs", headers=env.headers(SECURE))).status_code == 401
    r = await client.get("/envs", headers=env.headers(SECURE, **{"X-Access-Token": "wrong"}))
    assert r.status_code == 401 and r.json()["code"] == 401
    r = await client.get("/envs", headers=env.headers(SECURE, **{"X-Access-Token": ENVD_TOKEN}))
    assert r.status_code == 418  # past the gateway (the fake agent has no /envs)
    # Like envd, the health check needs no token.
    assert (await client.get("/health", headers=env.headers(SECURE))).status_code == 204
    # /init stays closed even with the right token.
    r = await client.post("/init", headers=env.headers(SECURE, **{"X-Access-Token": ENVD_TOKEN}), json={})
    assert r.status_code == 403


async def test_signed_download_and_upload_urls(env: Env, client: httpx.AsyncClient) -> None:
    h = env.headers(SECURE)
    # The agent's /files is not faked, so anything past the gateway answers 418: that means "let through".
    assert (await client.get(url(sign("/home/user/a b.txt", "read", None, ENVD_TOKEN)), headers=h)).status_code == 418
    assert (await client.get(url(sign("a.txt", "read", "root", ENVD_TOKEN, 60)), headers=h)).status_code == 418
    r = await client.post(url(sign("a.txt", "write", "user", ENVD_TOKEN)), headers=h, files={"file": b"x"})
    assert r.status_code == 418


async def test_bad_signatures_are_401(env: Env, client: httpx.AsyncClient) -> None:
    h = env.headers(SECURE)
    cases = [
        sign("a.txt", "write", None, ENVD_TOKEN),            # write signature used to read
        sign("a.txt", "read", None, "other-token"),
        sign("a.txt", "read", None, ENVD_TOKEN, -10),        # expired
        {**sign("a.txt", "read", None, ENVD_TOKEN), "path": "b.txt"},
        {**sign("a.txt", "read", "root", ENVD_TOKEN), "username": "user"},
        {**sign("a.txt", "read", None, ENVD_TOKEN, 60), "signature_expiration": str(int(time.time()) + 999)},
        {"path": "a.txt"},
    ]
    for q in cases:
        r = await client.get(url(q), headers=h)
        assert r.status_code == 401, q
    # Signatures only open /files.
    q = sign("a.txt", "read", None, ENVD_TOKEN)
    r = await client.get("/envs?" + urllib.parse.urlencode(q), headers=h)
    assert r.status_code == 401
    assert env.agents[SECURE].requests == []


async def test_traffic_token_on_other_ports(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.post("/execute", headers=env.headers(SECURE, 49999), json={})
    assert r.status_code == 401
    r = await client.post("/execute", headers=env.headers(SECURE, 49999, **{"E2B-Traffic-Access-Token": TRAFFIC_TOKEN}),
                          json={})
    assert r.status_code == 502 and "port 49999" in r.json()["message"]
