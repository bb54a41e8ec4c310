"""Red-team fixtures: one real Corral server for the suite, keys of two teams, an admin key, and a hostile sandbox
per tier (module-scoped: many attacks run in the same sandbox), plus a host-side secret the attacks go after."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import Sandbox
from e2b.sandbox.commands.command_handle import CommandExitException, CommandResult

from tests.integration.conftest import require_host
from tests.integration.corral_server import CorralServer, teardown_server
from tests.integration.sdk.helpers import create

TIERS = ["gvisor", "runc"]
# The suite's server: small disks so fillers hit the quota quickly.
SERVER_ENV = {"CORRAL_DEFAULT_DISK_MB": "256"}


@pytest.fixture(scope="session")
def sec_server() -> Iterator[CorralServer]:
    require_host()
    saved = {k: os.environ.get(k) for k in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    data_dir = Path(tempfile.mkdtemp(prefix="corral-sec-"))
    server = CorralServer(data_dir=data_dir)
    server.prepare()
    try:
        server.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield server
    finally:
        teardown_server(server, 40)


@pytest.fixture(scope="session")
def team_key(sec_server: CorralServer) -> str:
    return sec_server.create_key("red-team", team="red")


@pytest.fixture(scope="session")
def other_team_key(sec_server: CorralServer) -> str:
    return sec_server.create_key("blue-team", team="blue")


@pytest.fixture(scope="session")
def admin_key(sec_server: CorralServer) -> str:
    return sec_server.cli("keys", "create", "--admin", "--name", "sec-admin")


@pytest.fixture(scope="session")
def sdk_env(sec_server: CorralServer, team_key: str) -> Iterator[CorralServer]:
    """The stock SDK's environment, pointed at the suite's server with the red team's key."""
    wanted = {"E2B_API_URL": sec_server.api_url, "E2B_SANDBOX_URL": sec_server.sandbox_url, "E2B_API_KEY": team_key}
    saved = {k: os.environ.get(k) for k in [*wanted, "E2B_DEBUG", "E2B_DOMAIN"]}
    os.environ.update(wanted)
    os.environ.pop("E2B_DEBUG", None)
    os.environ.pop("E2B_DOMAIN", None)
    yield sec_server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module", params=TIERS)
def box(request: pytest.FixtureRequest, sdk_env: CorralServer) -> Iterator[Sandbox]:
    """A sandbox to attack from, on each tier."""
    sbx = create(str(request.param), timeout=600)
    sbx.tier = str(request.param)  # type: ignore[attr-defined]
    yield sbx
    sbx.kill()


@pytest.fixture(scope="session")
def host_secret() -> Iterator[tuple[Path, str]]:
    """A file on the host that no sandbox may read: (path, content)."""
    d = Path(tempfile.mkdtemp(prefix="corral-host-secret-"))
    value = "HOST-SECRET-" + secrets.token_hex(16)
    path = d / "secret.txt"
    path.write_text(value)
    yield path, value
    shutil.rmtree(d, ignore_errors=True)


def sh(sbx: Sandbox, cmd: str, user: str = "root", timeout: float = 60) -> CommandResult:
    """Run a command in the sandbox; a non-zero exit is a result here, not an exception."""
    try:
        return sbx.commands.run(cmd, user=user, timeout=timeout)  # type: ignore[arg-type]
    except CommandExitException as e:
        return e


def py(sbx: Sandbox, script: str, user: str = "root", timeout: float = 60) -> CommandResult:
    """Run a Python script inside the sandbox (the base template ships python3)."""
    path = f"/tmp/attack-{secrets.token_hex(4)}.py"
    sbx.files.write(path, script, user="root")  # type: ignore[arg-type]
    sh(sbx, f"chmod 0755 {path}")
    return sh(sbx, f"python3 {path}", user=user, timeout=timeout)
