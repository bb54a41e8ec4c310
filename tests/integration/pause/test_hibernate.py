"""Hibernation: a sandbox idle longer than CORRAL_HIBERNATE_AFTER_S is paused, and its next request resumes it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, teardown_server
from tests.integration.pause.helpers import assert_clean
from tests.integration.pause.test_crash_and_disk import _api, _exec
from tests.integration.sdk.helpers import wait_until


def test_idle_sandbox_hibernates_and_wakes_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    require_host()
    monkeypatch.setenv("CORRAL_HIBERNATE_AFTER_S", "2")
    srv = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-hibernate-")))
    try:
        srv.prepare()
        srv.start(("--pool-size", "0"))
        key = srv.create_key("hib")
        created = _api(srv, key, "POST", "/v2/sandboxes", json={"templateID": "base", "timeout": 300}).json()
        sid, token = created["sandboxID"], created["envdAccessToken"]
        _exec(srv, sid, token, "echo 41 > /tmp/n; sleep 1000 >/dev/null 2>&1 &")
        state = lambda: _api(srv, key, "GET", f"/sandboxes/{sid}").json()["state"]
        assert wait_until(lambda: state() == "paused", timeout=20)
        assert not any("runsc-sandbox" in line for line in _procs(sid))
        # Its next gateway request brings it back with memory and processes intact.
        assert _exec(srv, sid, token, "cat /tmp/n; pgrep -c sleep").split() == ["41", "1"]
        assert state() == "running"
        assert _api(srv, key, "DELETE", f"/sandboxes/{sid}").status_code == 204
        assert_clean(srv, [sid])
    finally:
        teardown_server(srv)


def _procs(sandbox_id: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if sandbox_id in line]
