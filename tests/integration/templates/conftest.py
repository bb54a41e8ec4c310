"""A Corral server of its own for the template-build tests (short step limit, no warm pool), and the SDK env."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import point_sdk_at, require_host
from tests.integration.corral_server import CorralServer, started

STEP_TIMEOUT_S = "45"


def require_registries() -> None:
    """apt/pip/npm steps reach the package registries (PyPI, Debian, npm), which these machines serve.

    No probe of an outside host here: a machine without them opts out with CORRAL_TEST_NO_REGISTRIES=1.
    """
    if os.environ.get("CORRAL_TEST_NO_REGISTRIES") != "1":
        return
    reason = "CORRAL_TEST_NO_REGISTRIES=1: apt/pip/npm build steps cannot run here"
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
    return point_sdk_at(monkeypatch, tpl_server, tpl_key)
