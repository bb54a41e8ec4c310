"""The stock e2b SDK (the installed newest, and e2b==2.45.1 from .venv-e2b245 when present) against the real API app:
create, info, list with metadata filter and paging, timeout, connect, kill, and its exception mapping."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_server import ApiServerThread

e2b = pytest.importorskip("e2b")

OLD_SDK_PYTHON = Path(__file__).resolve().parents[3] / ".venv-e2b245" / "bin" / "python"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServerThread]:
    with ApiServerThread(tmp_path / "data") as srv:
        monkeypatch.setenv("E2B_API_URL", srv.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", "http://127.0.0.1:9")  # never reached by REST-only calls
        monkeypatch.setenv("E2B_API_KEY", srv.key)
        monkeypatch.delenv("E2B_DOMAIN", raising=False)
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        yield srv


def test_newest_sdk_lifecycle(server: ApiServerThread) -> None:
    from e2b import Sandbox, SandboxQuery

    sbx = Sandbox.create(template="base", timeout=120, metadata={"suite": "compat", "odd": "a&b=c d%"},
                         envs={"X": "1"})
    sid = sbx.sandbox_id
    assert len(sid) == 20
    assert server.runtimes["gvisor"].init_bodies[sid]["envVars"] == {"X": "1"}
    info = sbx.get_info()
    assert info.sandbox_id == sid and info.template_id == "base" and info.state == "running"
    assert info.metadata == {"suite": "compat", "odd": "a&b=c d%"}
    assert info.cpu_count == min(2, max(1, (os.cpu_count() or 1) - 1))  # never every core of the host
    other = Sandbox.create(template="base", metadata={"suite": "compat"})

    found = Sandbox.list(query=SandboxQuery(metadata={"odd": "a&b=c d%"})).next_items()
    assert [s.sandbox_id for s in found] == [sid]
    pager = Sandbox.list(query=SandboxQuery(metadata={"suite": "compat"}), limit=1)
    seen = []
    while pager.has_next:
        seen += [s.sandbox_id for s in pager.next_items()]
    assert sorted(seen) == sorted([sid, other.sandbox_id])

    sbx.set_timeout(200)
    assert 190 < (Sandbox.get_info(sid).end_at - info.started_at).total_seconds() <= 201
    again = Sandbox.connect(sid)
    assert again.sandbox_id == sid

    with pytest.raises(Exception, match="nope-template"):
        Sandbox.create(template="nope-template")
    with pytest.raises(e2b.AuthenticationException):
        Sandbox.list(api_key="e2b_" + "0" * 40).next_items()
    with pytest.raises(e2b.SandboxNotFoundException):
        Sandbox.get_info(sid, api_key=server.other_key)  # another team's sandbox looks missing

    assert sbx.kill() is True
    assert Sandbox.kill(sid) is False
    with pytest.raises(e2b.SandboxNotFoundException):
        Sandbox.get_info(sid)
    assert other.kill() is True


OLD_SDK_SCRIPT = r"""
import json, sys
from e2b import Sandbox, SandboxQuery
out = {}
sbx = Sandbox.create(template="base", timeout=60, metadata={"v": "old"}, secure=True)
out["id"] = sbx.sandbox_id
info = sbx.get_info()
out["state"] = str(info.state.value if hasattr(info.state, "value") else info.state)
out["listed"] = [s.sandbox_id for s in Sandbox.list(query=SandboxQuery(metadata={"v": "old"})).next_items()]
sbx.set_timeout(90)
out["connected"] = Sandbox.connect(sbx.sandbox_id).sandbox_id
out["killed"] = sbx.kill()
out["killed_again"] = Sandbox.kill(sbx.sandbox_id)
print(json.dumps(out))
"""


@pytest.mark.skipif(not OLD_SDK_PYTHON.exists(), reason="no .venv-e2b245 with e2b==2.45.1")
def test_e2b_2_45_sdk(server: ApiServerThread) -> None:
    env = {**os.environ, "E2B_API_URL": server.url, "E2B_API_KEY": server.key,
           "E2B_SANDBOX_URL": "http://127.0.0.1:9"}
    run = subprocess.run([str(OLD_SDK_PYTHON), "-c", OLD_SDK_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["state"] == "running" and out["listed"] == [out["id"]] and out["connected"] == out["id"]
    assert out["killed"] is True and out["killed_again"] is False
    # 2.45 creates with POST /sandboxes (v1) and secure=True: the agent got the access token.
    assert server.runtimes["gvisor"].init_bodies[out["id"]].get("accessToken")
