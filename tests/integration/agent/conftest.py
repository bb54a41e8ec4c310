"""Fixtures for driving a host-run corral-agent with the stock e2b SDK.

The agent runs ON THE HOST (no sandbox, no template), so these tests do not
need the base template the other integration tests need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.agent.build import build_agent
from tests.integration.corral_server import free_port, stop_process


@dataclass
class Agent:
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 204:
                    return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("agent did not become healthy")


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    # CORRAL_AGENT_BINARY runs the suite against another build (e.g. `go build -race`)
    binary = Path(os.environ["CORRAL_AGENT_BINARY"]) if os.environ.get("CORRAL_AGENT_BINARY") else build_agent()
    workdir = Path(tempfile.mkdtemp(prefix="corral-agent-it-"))
    port = free_port()
    log = workdir / "agent.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"tcp:127.0.0.1:{port}"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, time.monotonic() + 10)
        yield Agent(url=url, proc=proc, workdir=workdir, log=log)
        problems = [m for m in ("DATA RACE", "panic:") if m in log.read_text(errors="replace")]
        assert not problems, f"agent log shows {problems}:\n" + log.read_text(errors="replace")[-8000:]
    finally:
        stop_process(proc, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def sbx(agent: Agent, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A stock-SDK Sandbox in debug mode, pointed at the host-run agent."""
    from e2b import Sandbox

    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", agent.url)
    monkeypatch.setenv("E2B_API_KEY", "e2b_" + "0" * 40)
    monkeypatch.delenv("E2B_API_URL", raising=False)
    return Sandbox.create()


@pytest.fixture
def tmpdir_(agent: Agent) -> Iterator[Path]:
    """A scratch directory under /tmp for file operations."""
    d = Path(tempfile.mkdtemp(prefix="corral-agent-files-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


os.environ.setdefault("GOCACHE", "/tmp/corral-go-cache")
