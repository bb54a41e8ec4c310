"""Gateway routing: headers, Host, keep-alive across sandboxes, and the error answers the SDK relies on."""

from __future__ import annotations

import asyncio

import httpx
from connectrpc.code import Code
from e2b.envd.api import format_envd_api_exception, get_message
from e2b.envd.client_shared import plain_http_error
from e2b.exceptions import SandboxNotRunningException, SandboxUnreachableException

from corral.server.gateway_routing import is_internal_path

from .conftest import DEAD, SB1, SB2, Env


async def test_header_routing_reaches_the_agent(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers=env.headers())
    assert r.status_code == 204
    r = await client.get("/whoami?x=1", headers=env.headers(SB2, **{"X-Thing": "v", "Connection": "keep-alive"}))
    body = r.json()
    assert body["name"] == SB2 and body["query"] == "x=1"
    assert body["headers"]["x-thing"] == "v"
    assert env.agents[SB1].requests[0]["path"] == "/health"
    # Hop-by-hop headers, including those named in Connection, stay at the gateway.
    r = await client.get("/whoami", headers=env.headers(**{"Connection": "keep-alive, x-hop", "X-Hop": "1",
                                                           "Keep-Alive": "timeout=5", "X-Kept": "2"}))
    seen = r.json()["headers"]
    assert "x-hop" not in seen and "keep-alive" not in seen and seen["x-kept"] == "2"
    assert seen["e2b-sandbox-id"] == SB1


async def test_host_routing(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/whoami", headers={"Host": f"49983-{SB2}.sandboxes.example.com"})
    assert r.status_code == 200 and r.json()["name"] == SB2
    r = await client.get("/whoami", headers={"Host": f"49983-{SB1}.localhost:3002"})
    assert r.json()["name"] == SB1


async def test_many_sandboxes_on_one_keepalive_connection(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port)
    try:
        for i in range(6):
            sid = (SB1, SB2)[i % 2]
            writer.write(f"GET /whoami HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: {sid}\r\n"
                         f"E2b-Sandbox-Port: 49983\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            body = await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200") and sid.encode() in body
    finally:
        writer.close()
    # Upstream connections are pooled per sandbox: 3 requests each, one connection each.
    assert len(env.gw.pool._all) == 2


async def test_on_activity_called_per_routed_request(env: Env, client: httpx.AsyncClient) -> None:
    await client.get("/health", headers=env.headers(SB1))
    await client.get("/health", headers=env.headers(SB2))
    await client.get("/health")  # not routed: no activity
    assert env.activity == [SB1, SB1, SB2, SB2]  # at the start and at the end of each request


async def test_missing_or_malformed_routing_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 400 and r.json()["code"] == 400
    r = await client.get("/health", headers={"E2b-Sandbox-Id": "NOT-AN-ID", "E2b-Sandbox-Port": "49983"})
    assert r.status_code == 400
    r = await client.get("/health", headers={"E2b-Sandbox-Id": SB1})
    assert r.status_code == 400


async def test_unknown_sandbox_is_502_the_sdk_reads_as_not_running(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers=env.headers("z" * 20))
    assert r.status_code == 502
    assert isinstance(format_envd_api_exception(502, get_message(r)), SandboxNotRunningException)
    # The Connect RPC path (commands.run on a killed sandbox) maps the same answer to UNAVAILABLE.
    r = await client.post("/process.Process/Start", headers=env.headers("z" * 20), content=b"x")
    err = plain_http_error(r.status_code, r.headers["content-type"], r.content)
    assert err is not None and err.code is Code.UNAVAILABLE and "was not found" in err.message
    # And the connection stays usable after an error answer.
    assert (await client.get("/health", headers=env.headers())).status_code == 204


async def test_other_ports_are_502_port_not_open(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.post("/execute", headers=env.headers(SB1, 49999), json={"code": "1"})
    assert r.status_code == 502 and "port 49999" in r.json()["message"]
    assert isinstance(format_envd_api_exception(502, get_message(r)), SandboxUnreachableException)


async def test_dead_agent_socket_is_502(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers=env.headers(DEAD))
    assert r.status_code == 502 and "port is not open" in r.json()["message"]


async def test_internal_paths_are_403(env: Env, client: httpx.AsyncClient) -> None:
    for path in ("/init", "/%69nit", "/_corral/x", "/freeze"):
        r = await client.post(path, headers=env.headers(), content=b"{}")
        assert r.status_code == 403, path
    assert env.agents[SB1].requests == []
    for spelled in ("//init", "/files/../init", "/./init/", "/init/", "/%2finit", "/_CORRAL", "/_corral"):
        assert is_internal_path(spelled) or spelled == "/_CORRAL", spelled
    assert not is_internal_path("/files") and not is_internal_path("/initx")


async def test_oversized_head_is_431(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers=env.headers(**{"X-Big": "x" * 70_000}))
    assert r.status_code == 431


async def test_slow_head_is_dropped(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gw.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        data = await asyncio.wait_for(reader.read(), 5)
        assert data.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()


async def test_upstream_error_statuses_pass_through(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.get("/notfound", headers=env.headers())
    assert r.status_code == 404 and r.json()["code"] == "not_found"
