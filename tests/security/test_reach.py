"""From inside a sandbox nothing of Corral or of another sandbox answers; keys and tokens do not cross over."""

from __future__ import annotations

import os
import socket
import struct
from urllib.parse import urlparse

import httpx
import pytest
from e2b import Sandbox
from e2b.exceptions import NotFoundException, SandboxException

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create, wait_until
from tests.security.conftest import py, sh


def _host_addresses() -> list[str]:
    """This machine's own IPv4 addresses (loopback and its interfaces): the only targets a test may probe."""
    addrs = {"127.0.0.1"}
    try:
        addrs |= {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return sorted(a for a in addrs if a.startswith(("127.", "10.", "172.", "192.168.", "192.0.2.")))


def test_corral_api_gateway_and_neighbour_are_unreachable(box: Sandbox, sdk_env: CorralServer) -> None:
    ports = [urlparse(sdk_env.api_url).port, urlparse(sdk_env.sandbox_url).port]
    neighbour = create(box.tier, timeout=120)  # type: ignore[attr-defined]
    try:
        neighbour.commands.run("python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1", background=True,
                               user="root")
        assert wait_until(lambda: sh(neighbour, "curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8000")
                          .stdout == "200", timeout=20)
        neighbour_ips = sh(neighbour, "hostname -I 2>/dev/null").stdout.split()
        targets = [(a, p) for a in _host_addresses() for p in ports] + [("127.0.0.1", 8000)]
        targets += [(ip, 8000) for ip in neighbour_ips if not ip.startswith("127.")]
        out = py(box, f"""
import socket
for host, port in {targets!r}:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        print("CONNECTED", host, port)
    except OSError as e:
        print("REFUSED", host, port, e)
    finally:
        s.close()
""")
        assert "CONNECTED" not in out.stdout, out.stdout
        assert out.stdout.count("REFUSED") == len(targets)
        # The in-sandbox agent socket is the sandbox's own; the host's API is not behind it either.
        r = sh(box, "curl -s --max-time 3 --unix-socket /run/corral/agent.sock http://x/v2/sandboxes -o /dev/null "
                    "-w '%{http_code}'", user="root")
        assert r.stdout != "200"
    finally:
        neighbour.kill()


def test_other_teams_key_gets_404(box: Sandbox, sdk_env: CorralServer, other_team_key: str) -> None:
    with pytest.raises(NotFoundException):
        Sandbox.connect(box.sandbox_id, api_key=other_team_key)
    assert Sandbox.kill(box.sandbox_id, api_key=other_team_key) is False  # type: ignore[call-arg]  # 404 = False
    api = sdk_env.api_url
    theirs = {"X-API-KEY": other_team_key}
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/timeout"), ("POST", "/connect"),
                         ("GET", "/metrics"), ("POST", "/refreshes")):
        r = httpx.request(method, f"{api}/sandboxes/{box.sandbox_id}{path}", json={"timeout": 5}, headers=theirs)
        assert r.status_code == 404, (method, path, r.status_code)
        missing = httpx.request(method, f"{api}/sandboxes/{'x' * 20}{path}", json={"timeout": 5}, headers=theirs)
        assert r.json() == {**missing.json(), "message": missing.json()["message"].replace("x" * 20,
                                                                                             box.sandbox_id)}
    assert box.is_running()


def _envd_start(server: CorralServer, sid: str, token: str | None) -> httpx.Response:
    body = b'{"process": {"cmd": "/bin/echo", "args": ["hi"]}}'
    headers = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983", "Content-Type": "application/connect+json",
               "Authorization": "Basic cm9vdDo="}
    if token:
        headers["X-Access-Token"] = token
    return httpx.post(f"{server.sandbox_url}/process.Process/Start", content=struct.pack(">BI", 0, len(body)) + body,
                      headers=headers, timeout=30)


def test_replayed_access_token_of_a_killed_sandbox_is_rejected(box: Sandbox, sdk_env: CorralServer) -> None:
    victim = create(box.tier, timeout=120, secure=True)  # type: ignore[attr-defined]
    info = httpx.get(f"{sdk_env.api_url}/sandboxes/{victim.sandbox_id}",
                     headers={"X-API-KEY": os.environ["E2B_API_KEY"]}).json()
    token = info["envdAccessToken"]
    ok = _envd_start(sdk_env, victim.sandbox_id, token)
    assert ok.status_code == 200 and b'"start"' in ok.content and b"aGkK" in ok.content, ok.content
    victim.kill()
    r = _envd_start(sdk_env, victim.sandbox_id, token)
    # No process ran: no start event, no "hi\n" on stdout (base64 "aGkK" in the Connect stream). The error text names
    # the sandbox id, which may contain "hi" itself.
    assert r.status_code in (401, 404, 502) and b'"start"' not in r.content and b"aGkK" not in r.content, r.content
    # Nor does it open any other sandbox.
    fresh = create(box.tier, timeout=120, secure=True)  # type: ignore[attr-defined]
    try:
        r = _envd_start(sdk_env, fresh.sandbox_id, token)
        assert r.status_code == 401, r.status_code
        assert _envd_start(sdk_env, box.sandbox_id, token).status_code == 401  # the SDK's creates are secure
    finally:
        fresh.kill()
    with pytest.raises(SandboxException):
        Sandbox.connect(victim.sandbox_id)
