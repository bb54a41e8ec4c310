"""Create through both API versions: response shape, what the agent's /init gets, runtime choice, rollback."""

from __future__ import annotations

import httpx
import pytest
from server_fakes import FakeRuntime, settle

from corral.db import Database, SandboxRecord
from corral.errors import RuntimeFailure
from corral.sandboxes import SandboxManager


async def test_create_v2_response_and_init(client: httpx.AsyncClient, manager: SandboxManager,
                                           runtimes: dict[str, FakeRuntime]) -> None:
    r = await client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60, "metadata": {"owner": "me"},
                                                 "envVars": {"FOO": "bar"}})
    assert r.status_code == 201, r.text
    body = r.json()
    sid = body["sandboxID"]
    assert body["templateID"] == "base" and body["envdVersion"] == "0.6.4" and body["clientID"]
    assert body["domain"] == "corral.test"
    # v2 is always secure: the SDK sends this token as X-Access-Token.
    token = body["envdAccessToken"]
    assert token and body.get("trafficAccessToken") is None
    init = runtimes["gvisor"].init_bodies[sid]
    assert init["envVars"] == {"FOO": "bar"} and init["accessToken"] == token
    assert init["defaultUser"] == "user" and init["defaultWorkdir"] == "/home/user" and init["timestamp"]
    spec = runtimes["gvisor"].specs[sid]
    assert spec.env == {"LANG": "C.UTF-8"} and spec.template_rootfs.name == "rootfs"
    route = manager.route(sid)
    assert route is not None and route.secure and route.envd_access_token == token
    assert route.socket_path == runtimes["gvisor"].handle_for(sid).socket_path


async def test_create_v1_not_secure_has_no_token(client: httpx.AsyncClient, manager: SandboxManager,
                                                 runtimes: dict[str, FakeRuntime]) -> None:
    r = await client.post("/sandboxes", json={"templateID": "code-interpreter-v1", "secure": False})
    assert r.status_code == 201, r.text
    body = r.json()
    assert "envdAccessToken" not in body and body["templateID"] == "code-interpreter"
    assert body["alias"] == "code-interpreter-v1"
    assert "accessToken" not in runtimes["gvisor"].init_bodies[body["sandboxID"]]
    assert runtimes["gvisor"].init_bodies[body["sandboxID"]]["defaultWorkdir"] == "/home/user/work"
    route = manager.route(body["sandboxID"])
    assert route is not None and not route.secure and route.envd_access_token is None


async def test_v1_default_timeout_is_15s(client: httpx.AsyncClient) -> None:
    sid = (await client.post("/sandboxes", json={"templateID": "base", "secure": True})).json()["sandboxID"]
    info = (await client.get(f"/sandboxes/{sid}")).json()
    from datetime import datetime
    lifetime = datetime.fromisoformat(info["endAt"]) - datetime.fromisoformat(info["startedAt"])
    assert 14 <= lifetime.total_seconds() <= 16


async def test_traffic_token_when_public_traffic_off(client: httpx.AsyncClient, manager: SandboxManager) -> None:
    r = await client.post("/v2/sandboxes", json={"templateID": "base", "network": {"allowPublicTraffic": False}})
    body = r.json()
    assert body["trafficAccessToken"]
    route = manager.route(body["sandboxID"])
    assert route is not None and route.traffic_access_token == body["trafficAccessToken"]


async def test_unknown_template_is_404(client: httpx.AsyncClient, runtimes: dict[str, FakeRuntime]) -> None:
    r = await client.post("/v2/sandboxes", json={"templateID": "nope-template"})
    assert r.status_code == 404 and "nope-template" in r.json()["message"]
    assert not runtimes["gvisor"].specs


@pytest.mark.parametrize("body,expected", [
    ({"templateID": "base"}, "gvisor"),                                            # settings.default_runtime
    ({"templateID": "fast"}, "runc"),                                              # the template's runtime
    ({"templateID": "base", "metadata": {"corral.runtime": "runc"}}, "runc"),      # the request's metadata
    ({"templateID": "fast", "metadata": {"corral.runtime": "gvisor"}}, "gvisor"),  # metadata beats template
])
async def test_runtime_choice(client: httpx.AsyncClient, runtimes: dict[str, FakeRuntime], body: dict,
                              expected: str, db: Database) -> None:
    sid = (await client.post("/v2/sandboxes", json=body)).json()["sandboxID"]
    assert sid in runtimes[expected].alive
    with db.session() as s:
        assert s.get(SandboxRecord, sid).runtime == expected  # type: ignore[union-attr]


async def _assert_nothing_left(client: httpx.AsyncClient, manager: SandboxManager, rt: FakeRuntime,
                               db: Database) -> None:
    await settle(manager)
    assert (await client.get("/v2/sandboxes")).json() == []
    with db.session() as s:
        assert s.query(SandboxRecord).count() == 0
    assert not manager._routes and not manager._timers
    assert rt.specs and set(rt.specs) <= set(rt.destroyed)
    assert await rt.list_sandbox_ids() == []


async def test_runtime_failure_rolls_back(client: httpx.AsyncClient, manager: SandboxManager,
                                          runtimes: dict[str, FakeRuntime], db: Database) -> None:
    runtimes["gvisor"].fail_create = RuntimeFailure("runsc create: exit status 1")
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 503 and "runsc create" in r.json()["message"]
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)


async def test_unexpected_runtime_error_rolls_back(client: httpx.AsyncClient, manager: SandboxManager,
                                                   runtimes: dict[str, FakeRuntime], db: Database) -> None:
    runtimes["gvisor"].fail_create = OSError("no space left on device")
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 503 and r.json()["code"] == 503
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)


async def test_init_failure_rolls_back(client: httpx.AsyncClient, manager: SandboxManager,
                                       runtimes: dict[str, FakeRuntime], db: Database) -> None:
    runtimes["gvisor"].init_status = 500
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 503 and "/init" in r.json()["message"]
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)


async def test_db_failure_rolls_back(client: httpx.AsyncClient, manager: SandboxManager,
                                     runtimes: dict[str, FakeRuntime], db: Database,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_session = db.session
    calls = {"n": 0}

    def failing_session():  # type: ignore[no-untyped-def]
        # The auth lookup and the quota read use the first sessions; the insert of the new row is the one that fails.
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError("disk I/O error")
        return real_session()

    monkeypatch.setattr(db, "session", failing_session)
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    monkeypatch.setattr(db, "session", real_session)
    assert r.status_code == 503
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)


async def test_template_start_cmd_runs_after_init(client: httpx.AsyncClient, templates: object,
                                                  runtimes: dict[str, FakeRuntime], db: Database,
                                                  manager: SandboxManager) -> None:
    from server_fakes import FakeTemplate
    templates.templates.append(FakeTemplate("jupyter", start_cmd="jupyter server --port 8888"))  # type: ignore[attr-defined]
    body = (await client.post("/v2/sandboxes", json={"templateID": "jupyter"})).json()
    [(start, headers)] = runtimes["gvisor"].started[body["sandboxID"]]
    assert start["process"]["args"] == ["-l", "-c", "jupyter server --port 8888"]
    assert start["process"]["cwd"] == "/home/user"
    assert headers["x-access-token"] == body["envdAccessToken"]
    assert headers["authorization"] == "Basic dXNlcjo="  # "user:"
    # No start command, no Process/Start call.
    plain = (await client.post("/v2/sandboxes", json={"templateID": "base"})).json()["sandboxID"]
    assert plain not in runtimes["gvisor"].started
    # A start command that cannot start fails the create, leaving nothing behind.
    runtimes["gvisor"].start_fails = True
    r = await client.post("/v2/sandboxes", json={"templateID": "jupyter"})
    assert r.status_code == 503 and "no shell" in r.json()["message"]
    await settle(manager)
    with db.session() as s:
        assert s.query(SandboxRecord).count() == 2


async def test_template_ready_cmd_gates_create(client: httpx.AsyncClient, templates: object,
                                               runtimes: dict[str, FakeRuntime], db: Database,
                                               manager: SandboxManager) -> None:
    from server_fakes import FakeTemplate
    templates.templates.append(FakeTemplate(  # type: ignore[attr-defined]
        "served", start_cmd="serve --port 49999", ready_cmd="curl -sf localhost:49999/health"))
    runtimes["gvisor"].ready_exit_codes = [7, 7, 0]
    body = (await client.post("/v2/sandboxes", json={"templateID": "served"})).json()
    calls = [req["process"]["args"] for req, _ in runtimes["gvisor"].started[body["sandboxID"]]]
    # The start command once, then the ready check until it exits 0 (non-login bash: it is polled).
    assert calls == [["-l", "-c", "serve --port 49999"]] + [["-c", "curl -sf localhost:49999/health"]] * 3
    # A ready check that never succeeds fails the create within the ready timeout and leaves nothing behind.
    manager.ready_timeout_s = 0.3
    r = await client.post("/v2/sandboxes", json={"templateID": "served"})
    assert r.status_code == 503 and "ready command" in r.json()["message"]
    await settle(manager)
    with db.session() as s:
        assert s.query(SandboxRecord).count() == 1


async def test_hung_runtime_times_out_and_rolls_back(client: httpx.AsyncClient, manager: SandboxManager,
                                                     runtimes: dict[str, FakeRuntime], db: Database) -> None:
    manager.create_timeout_s = 0.2
    runtimes["gvisor"].create_delay = 30
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 503 and "did not start within" in r.json()["message"]
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)


async def test_rollback_retries_a_failed_teardown(client: httpx.AsyncClient, manager: SandboxManager,
                                                  runtimes: dict[str, FakeRuntime], db: Database) -> None:
    manager.destroy_backoff_s = 0.01
    runtimes["gvisor"].init_status = 500
    runtimes["gvisor"].fail_destroy_times = 2  # the inline cleanup and the first background retry fail
    r = await client.post("/v2/sandboxes", json={"templateID": "base"})
    assert r.status_code == 503
    await _assert_nothing_left(client, manager, runtimes["gvisor"], db)
