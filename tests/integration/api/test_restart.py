"""A server that crashes (SIGKILL) and restarts re-attaches to running sandboxes and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import httpx

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, leftovers, teardown_server
from tests.integration.sdk.helpers import wait_until


def stdout_of(response: httpx.Response) -> bytes:
    """Decode the stdout bytes out of a Connect server stream of process events."""
    import base64
    import json
    import struct

    data, out = response.content, b""
    while len(data) >= 5:
        flags, length = struct.unpack(">BI", data[:5])
        message = json.loads(data[5:5 + length] or b"{}")
        data = data[5 + length:]
        if not flags & 0x02:
            out += base64.b64decode(message.get("event", {}).get("data", {}).get("stdout", ""))
    return out


def run(server: CorralServer, key: str, sid: str, token: str | None, cmd: str) -> httpx.Response:
    """Start a command through the gateway with a raw Connect request (no SDK state across restarts)."""
    import json
    import struct

    body = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd]}}).encode()
    headers = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983", "Content-Type": "application/connect+json",
               "Authorization": "Basic dXNlcjo="}
    if token:
        headers["X-Access-Token"] = token
    return httpx.post(f"{server.sandbox_url}/process.Process/Start", content=struct.pack(">BI", 0, len(body)) + body,
                      headers=headers, timeout=30)


def test_sigkill_restart_reattaches_and_cleans(tmp_path: Path) -> None:
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-restart-")))
    server.prepare()
    server.start()
    try:
        key = server.create_key("restart")
        api = server.api_url
        created = [httpx.post(f"{api}/sandboxes", json={"templateID": "base", "secure": True},
                              headers={"X-API-KEY": key}, timeout=60).json() for _ in range(2)]
        ids = [c["sandboxID"] for c in created]
        assert run(server, key, ids[0], created[0].get("envdAccessToken"), "echo before > /tmp/state").status_code == 200
        server.stop(signal.SIGKILL)
        server.start()
        # The sandbox survived the crash, kept its files, and is reachable again.
        listed = {s["sandboxID"] for s in httpx.get(f"{api}/v2/sandboxes", headers={"X-API-KEY": key}).json()}
        assert set(ids) <= listed
        r = run(server, key, ids[0], created[0].get("envdAccessToken"), "cat /tmp/state")
        assert r.status_code == 200 and stdout_of(r) == b"before\n"
        for sid in ids:
            assert httpx.delete(f"{api}/sandboxes/{sid}", headers={"X-API-KEY": key}).status_code == 204
        assert wait_until(lambda: not leftovers(server.data_dir, ids), timeout=20), leftovers(server.data_dir, ids)
    finally:
        teardown_server(server)


def test_sigkill_with_sandboxes_then_restart_without_them(tmp_path: Path) -> None:
    """Sandboxes whose processes died while the server was down are marked killed and cleaned on start."""
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-restart2-")))
    server.prepare()
    server.start()
    try:
        key = server.create_key("restart2")
        created = httpx.post(f"{server.api_url}/sandboxes", json={"templateID": "base"},
                             headers={"X-API-KEY": key}, timeout=60).json()
        sid = created["sandboxID"]
        server.stop(signal.SIGKILL)
        # Kill the sandbox's own processes (started by our server, found by their id) behind Corral's back.
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if sid.encode() in cmd and b"pytest" not in cmd:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        server.start()
        r = httpx.get(f"{server.api_url}/sandboxes/{sid}", headers={"X-API-KEY": key})
        assert r.status_code == 404 or r.json().get("state") != "running"
        assert wait_until(lambda: not leftovers(server.data_dir, [sid]), timeout=20), leftovers(server.data_dir, [sid])
    finally:
        teardown_server(server)
