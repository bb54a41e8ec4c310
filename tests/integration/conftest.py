"""Integration fixtures: one real Corral server per test session, driven by the stock e2b SDK."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.corral_server import BASE_TEMPLATES, CorralServer, serving


def require_host() -> None:
    """Integration tests need root and the built base template; in CI a missing piece is a failure, not a skip."""
    reason = None
    if os.geteuid() != 0:
        reason = "integration tests need root"
    elif not (BASE_TEMPLATES / "base" / "rootfs" / "bin").exists():
        reason = f"base template not built at {BASE_TEMPLATES}/base (run: corral template build base)"
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def corral_server() -> Iterator[CorralServer]:
    require_host()
    data_dir = Path(tempfile.mkdtemp(prefix="corral-it-"))
    with serving(CorralServer(data_dir=data_dir)) as server:
        yield server


@pytest.fixture(scope="session")
def api_key(corral_server: CorralServer) -> str:
    return corral_server.create_key("integration")


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, server: CorralServer, key: str) -> CorralServer:
    """E2B_* for the stock SDK; the volume content API is served on the API port (E2B_VOLUME_API_URL)."""
    monkeypatch.setenv("E2B_API_URL", server.api_url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.sandbox_url)
    monkeypatch.setenv("E2B_VOLUME_API_URL", server.api_url)
    monkeypatch.setenv("E2B_API_KEY", key)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    return server


@pytest.fixture
def e2b(corral_server: CorralServer, api_key: str, monkeypatch: pytest.MonkeyPatch) -> CorralServer:
    return point_sdk_at(monkeypatch, corral_server, api_key)


@pytest.fixture(params=["gvisor", "runc"])
def tier(request: pytest.FixtureRequest) -> str:
    """The isolation tier a test's sandboxes use; every SDK test runs on both."""
    return str(request.param)
