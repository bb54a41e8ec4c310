"""pip inside a gVisor sandbox through Corral's proxy (chained to the machine's own proxy when one is configured).

The registry's host names come from pip itself at run time (this repo names no registry host)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2b import Sandbox

from tests.integration.corral_server import CorralServer
from tests.integration.templates.conftest import require_registries

PIP = "python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check -d /tmp/dl six"


@pytest.fixture
def tier() -> str:
    return "gvisor"


def _registry_hosts() -> list[str]:
    from pip._internal.models.index import PyPI

    return [PyPI.netloc, PyPI.file_storage_domain]


def test_pip_download_allowed_and_denied(e2b: CorralServer, sandboxes: Callable[..., Sandbox]) -> None:
    require_registries()   # Corral's proxy reaches them directly, or through the machine's proxy when one is set
    hosts = _registry_hosts()
    allowed = sandboxes(network={"deny_out": ["0.0.0.0/0"], "allow_out": hosts})
    r = allowed.commands.run(PIP, timeout=180)
    assert r.exit_code == 0 and "Saved" in r.stdout, r.stdout + r.stderr
    denied = sandboxes(network={"deny_out": [hosts[0]]})
    r = denied.commands.run(f"{PIP} --retries 0 --timeout 5 || echo PIP_FAILED", timeout=180)
    assert "PIP_FAILED" in r.stdout, r.stdout + r.stderr
    # pip hides why; curl shows it was the policy: Corral's proxy refused the tunnel.
    r = denied.commands.run(f"curl -sS -o /dev/null --max-time 10 https://{hosts[0]}/simple/six/ 2>&1 || true")
    assert "403" in r.stdout, r.stdout + r.stderr
