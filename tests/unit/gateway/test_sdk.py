"""The stock e2b SDK through the gateway (against the fake agent): the answers make it behave as on E2B."""

from __future__ import annotations

import asyncio

import pytest
from e2b import Sandbox
from e2b.connection_config import ConnectionConfig
from e2b.exceptions import AuthenticationException, SandboxNotRunningException
from packaging.version import Version

from .conftest import ENVD_TOKEN, SB1, SECURE, Env


def sdk_sandbox(url: str, sandbox_id: str, token: str | None = None) -> Sandbox:
    """What Sandbox.connect builds when E2B_SANDBOX_URL points at the gateway."""
    headers = {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": "49983"}
    if token:
        headers["X-Access-Token"] = token
    config = ConnectionConfig(sandbox_url=url, api_key="e2b_test", extra_sandbox_headers=headers)
    return Sandbox(sandbox_id=sandbox_id, sandbox_domain=None, envd_version=Version("0.6.4"),
                   envd_access_token=token, traffic_access_token=None, connection_config=config)


async def test_sdk_is_running_and_commands(env: Env) -> None:
    for agent in env.agents.values():
        agent.release_stream.set()

    def work() -> None:
        live = sdk_sandbox(env.url, SB1)
        assert live.is_running() is True
        assert live.commands.run("true").exit_code == 0
        secure = sdk_sandbox(env.url, SECURE, ENVD_TOKEN)
        assert secure.commands.run("true").exit_code == 0
        with pytest.raises(AuthenticationException):
            sdk_sandbox(env.url, SECURE, "wrong").commands.run("true")
        dead = sdk_sandbox(env.url, "z" * 20)
        assert dead.is_running() is False
        with pytest.raises(SandboxNotRunningException):
            dead.commands.run("true")

    await asyncio.to_thread(work)
