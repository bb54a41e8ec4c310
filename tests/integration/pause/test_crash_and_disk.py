"""Crash safety of pause/resume (SIGKILL of the server mid-way, then restart) and a full checkpoint disk."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, destroy_remaining, teardown_server
from tests.integration.pause.helpers import assert_clean
from tests.integration.sdk.helpers import wait_until


@pytest.fixture
def server() -> Iterator[CorralServer]:
    require_host()
    srv = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-pausecrash-")))
    srv.prepare()
    srv.start(("--pool-size", "0"))
    try:
        yield srv
    finally:
        teardown_server(srv)


def _api(srv: CorralServer, key: str, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, f"{srv.api_url}{path}", headers={"X-API-KEY": key}, timeout=60, **kw)  # type: ignore[arg-type]


def _exec(srv: CorralServer, sid: str, token: str, cmd: str) -> str:
    from tests.integration.api.test_restart import run, stdout_of
    r = run(srv, "", sid, token, cmd)
    assert r.status_code == 200, r.text
    return stdout_of(r).decode()


@pytest.mark.parametrize("delay", [0.03, 0.1, 0.25])  # before, inside, after the runsc call
@pytest.mark.parametrize("action", ["pause", "resume"])
def test_sigkill_during_pause_or_resume_settles(server: CorralServer, action: str, delay: float) -> None:
    key = server.create_key("crash")
    created = _api(server, key, "POST", "/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()
    sid, token = created["sandboxID"], created["envdAccessToken"]
    _exec(server, sid, token, "echo durable > /home/user/d.txt; sleep 1000 >/dev/null 2>&1 &")
    if action == "resume":
        assert _api(server, key, "POST", f"/sandboxes/{sid}/pause").status_code == 204
    path = f"/sandboxes/{sid}/pause" if action == "pause" else f"/v2/sandboxes/{sid}/connect"
    body = {} if action == "pause" else {"timeout": 300}
    threading.Thread(target=lambda: _safe(lambda: _api(server, key, "POST", path, json=body)), daemon=True).start()
    time.sleep(delay)
    server.stop(signal.SIGKILL)
    server.start(("--pool-size", "0"))
    info = _api(server, key, "GET", f"/sandboxes/{sid}").json()
    assert info["state"] in ("running", "paused"), info
    # Whatever it settled on, it works: resume it (201) or find it running (200), and nothing was lost.
    r = _api(server, key, "POST", f"/v2/sandboxes/{sid}/connect", json={"timeout": 300})
    assert r.status_code == (201 if info["state"] == "paused" else 200), r.text
    assert _exec(server, sid, token, "cat /home/user/d.txt; pgrep -c sleep").split() == ["durable", "1"]
    assert _api(server, key, "DELETE", f"/sandboxes/{sid}").status_code == 204
    assert_clean(server, [sid])


def _safe(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except httpx.HTTPError:
        pass


def test_disk_full_refuses_pause_and_keeps_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_host()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(tiny)], check=True)
    srv = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-pausefull-")))
    try:
        monkeypatch.setenv("CORRAL_CHECKPOINT_DIR", str(tiny))
        srv.prepare()
        srv.start(("--pool-size", "0"))
        key = srv.create_key("full")
        created = _api(srv, key, "POST", "/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()
        sid, token = created["sandboxID"], created["envdAccessToken"]
        _exec(srv, sid, token, "echo 1 > /tmp/x; sleep 1000 >/dev/null 2>&1 &")
        r = _api(srv, key, "POST", f"/sandboxes/{sid}/pause")
        assert r.status_code == 507, r.text
        assert "disk" in r.json()["message"] and "keeps running" in r.json()["message"]
        assert _api(srv, key, "GET", f"/sandboxes/{sid}").json()["state"] == "running"
        assert _exec(srv, sid, token, "cat /tmp/x; pgrep -c sleep").split() == ["1", "1"]
        assert not list(tiny.iterdir())
        assert _api(srv, key, "DELETE", f"/sandboxes/{sid}").status_code == 204
        assert_clean(srv, [sid])
    finally:
        srv.stop()
        destroy_remaining(srv)
        subprocess.run(["umount", str(tiny)], check=False)
        subprocess.run(["rm", "-rf", str(srv.data_dir)], check=False)
        assert wait_until(lambda: not tiny.is_mount(), timeout=5)
