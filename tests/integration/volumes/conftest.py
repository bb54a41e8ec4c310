"""A Corral server of its own for the volume tests (they restart it), driven by the stock SDK's Volume API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import point_sdk_at, require_host
from tests.integration.corral_server import CorralServer, teardown_server


@contextmanager
def own_server(prefix: str, **env: str) -> Iterator[CorralServer]:
    """A started server (no warm pool) on a fresh data dir, with extra CORRAL_* settings in its environment."""
    require_host()
    server = CorralServer(data_dir=Path(tempfile.mkdtemp(prefix=prefix)))
    server.prepare()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)   # inherited by the server process, restarts included
        server.start(("--pool-size", "0"))
        try:
            yield server
        finally:
            teardown_server(server)


@pytest.fixture(scope="module")
def vol_server() -> Iterator[CorralServer]:
    with own_server("corral-vol-") as server:
        yield server


@pytest.fixture(scope="module")
def vol_key(vol_server: CorralServer) -> str:
    return vol_server.create_key("volumes")


@pytest.fixture
def vol_env(vol_server: CorralServer, vol_key: str, monkeypatch: pytest.MonkeyPatch) -> CorralServer:
    return point_sdk_at(monkeypatch, vol_server, vol_key)
