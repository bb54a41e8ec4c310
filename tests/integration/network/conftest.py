"""Network tests: a Corral server whose resolver knows the test sites, and the sites themselves."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, leftovers, serving
from tests.integration.network.internet import Internet, net_info, net_leftovers
from tests.integration.sdk.helpers import create, wait_until


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
    with serving(server, log_lines=600) as running:
        yield running


@pytest.fixture(scope="session")
def api_key(corral_server: CorralServer) -> str:
    """Overrides the session key too: a session fixture caches one value, and the parent's belongs to its server."""
    return corral_server.create_key("network")


@pytest.fixture
def sandboxes(e2b: CorralServer, tier: str) -> Iterator[Callable[..., Sandbox]]:
    """Creates sandboxes on the tier; afterwards kills them and proves no netns, veth, nft chain or other state."""
    made: list[Sandbox] = []
    infos = []

    def make(**kwargs: Any) -> Sandbox:
        sbx = create(tier, **kwargs)
        made.append(sbx)
        infos.append(net_info(e2b.data_dir, sbx.sandbox_id))
        return sbx

    yield make
    for sbx in made:
        sbx.kill()
    ids = [s.sandbox_id for s in made]
    assert wait_until(lambda: not net_leftovers(e2b.net_tag, infos, e2b.data_dir) and not leftovers(e2b.data_dir, ids), 20), \
        net_leftovers(e2b.net_tag, infos, e2b.data_dir) + leftovers(e2b.data_dir, ids)
