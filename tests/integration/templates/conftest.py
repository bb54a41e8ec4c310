"""A Corral server of its own for the template-build tests (short step limit, no warm pool), and the SDK env."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, started

STEP_TIMEOUT_S = "45"


def registries_reachable() -> bool:
    """Whether the package registries answer from this machine (through its proxy when one is configured)."""
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def require_registries() -> None:
    if registries_reachable():
        return
    reason = "no proxy configured (HTTP_PROXY/HTTPS_PROXY) and pypi.org unreachable: apt/pip steps cannot run"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tpl_server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[CorralServer]:
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix="corral-tpl-")))
    server.prepare()
    monkeypatch_module.setenv("CORRAL_BUILD_STEP_TIMEOUT_S", STEP_TIMEOUT_S)   # read by `corral serve` at start
    with started(server, ("--pool-size", "0")):
        monkeypatch_module.delenv("CORRAL_BUILD_STEP_TIMEOUT_S")
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def tpl_key(tpl_server: CorralServer) -> str:
    return tpl_server.create_key("templates", team="tpl-team")


@pytest.fixture
def sdk_env(tpl_server: CorralServer, tpl_key: str, monkeypatch: pytest.MonkeyPatch) -> CorralServer:
    monkeypatch.setenv("E2B_API_URL", tpl_server.api_url)
    monkeypatch.setenv("E2B_SANDBOX_URL", tpl_server.sandbox_url)
    monkeypatch.setenv("E2B_API_KEY", tpl_key)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    return tpl_server
