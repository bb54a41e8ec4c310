"""Network tests: a Corral server whose resolver knows the test sites, and the sites themselves."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, serving
from tests.integration.network.internet import Internet


@pytest.fixture(scope="session")
def internet() -> Iterator[Internet]:
    require_host()
    workdir = Path(tempfile.mkdtemp(prefix="corral-inet-"))
    net = Internet()
    try:
        net.start(workdir)
        yield net
    finally:
        net.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def corral_server(internet: Internet) -> Iterator[CorralServer]:
    """Overrides the session server: the same harness, plus static names for the test sites and no pools."""
    data_dir = Path(tempfile.mkdtemp(prefix="corral-net-"))
    server = CorralServer(data_dir=data_dir, env={"CORRAL_NET_STATIC_HOSTS": json.dumps(internet.static_hosts)})
    with serving(server) as running:
        yield running
