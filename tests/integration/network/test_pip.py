"""pip inside a gVisor sandbox through Corral's proxy, chained to the machine's own proxy (the only way out here).

The registry's host names come from pip itself at run time (this repo names no registry host)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from e2b import Sandbox

from tests.integration.corral_server import CorralServer

PIP = "python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check -d /tmp/dl six"


@pytest.fixture
def tier() -> str:
    return "gvisor"


def _registry_hosts() -> list[str]:
    from pip._internal.models.index import PyPI

    return [PyPI.netloc, PyPI.file_storage_domain]


def test_pip_download_allowed_and_denied(e2b: CorralServer, sandboxes: Callable[..., Sandbox]) -> None:
    if not any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        reason = "no HTTP(S)_PROXY in the environment: the machine has no way to the package registry"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    hosts = _registry_hosts()
    allowed = sandboxes(network={"deny_out": ["0.0.0.0/0"], "allow_out": hosts})
    r = allowed.commands.run(PIP, timeout=180)
    assert r.exit_code == 0 and "Saved" in r.stdout, r.stdout + r.stderr
    denied = sandboxes(network={"deny_out": [hosts[0]]})
    r = denied.commands.run(f"{PIP} --retries 0 --timeout 5 || echo PIP_FAILED", timeout=180)
    assert "PIP_FAILED" in r.stdout and "403" in r.stdout + r.stderr, r.stdout + r.stderr
