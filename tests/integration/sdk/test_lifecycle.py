"""Sandbox lifecycle through the stock SDK: create, connect, info, list, timeout, kill."""

from __future__ import annotations

import uuid

import pytest
from e2b import Sandbox, SandboxQuery
from e2b.exceptions import NotFoundException, SandboxException

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.sdk.helpers import create, wait_until


def test_create_run_kill_leaves_nothing(e2b: CorralServer, tier: str) -> None:
    sbx = create(tier)
    try:
        result = sbx.commands.run("uname -a; id -un; pwd")
        lines = result.stdout.splitlines()
        assert lines[1] == "user"
        assert lines[2] == "/home/user"
        assert result.exit_code == 0
        if tier == "gvisor":
            # gVisor's kernel identifies itself in dmesg; the host kernel never runs this code.
            assert "gVisor" in sbx.commands.run("dmesg", user="root").stdout
    finally:
        sbx.kill()
    assert not sbx.is_running()
    assert wait_until(lambda: not leftovers(e2b.data_dir, [sbx.sandbox_id]), timeout=15), \
        leftovers(e2b.data_dir, [sbx.sandbox_id])


def test_get_info_and_connect(e2b: CorralServer, tier: str) -> None:
    marker = uuid.uuid4().hex
    sbx = create(tier, metadata={"marker": marker}, envs={"CORRAL_SANDBOX_ENV": "sbx-level"})
    try:
        info = sbx.get_info()
        assert info.sandbox_id == sbx.sandbox_id
        assert info.template_id
        assert info.metadata["marker"] == marker
        assert info.end_at > info.started_at
        same = Sandbox.connect(sbx.sandbox_id)
        assert same.commands.run("echo $CORRAL_SANDBOX_ENV").stdout.strip() == "sbx-level"
        out = same.commands.run("echo $CORRAL_SANDBOX_ENV $CMD_ENV", envs={"CMD_ENV": "cmd-level"}).stdout
        assert out.strip() == "sbx-level cmd-level"
    finally:
        sbx.kill()


def test_set_timeout_extends_and_expiry_kills(e2b: CorralServer, tier: str) -> None:
    sbx = create(tier, timeout=3)
    try:
        before = sbx.get_info().end_at
        sbx.set_timeout(60)
        assert sbx.get_info().end_at > before
        sbx.set_timeout(1)
        assert wait_until(lambda: not sbx.is_running(), timeout=15)
        with pytest.raises((NotFoundException, SandboxException)):
            Sandbox.connect(sbx.sandbox_id)
    finally:
        Sandbox.kill(sbx.sandbox_id)
    assert wait_until(lambda: not leftovers(e2b.data_dir, [sbx.sandbox_id]), timeout=15)


def test_list_filters_and_paging(e2b: CorralServer) -> None:
    group = uuid.uuid4().hex
    sandboxes = [create("gvisor", metadata={"group": group, "n": str(i)}) for i in range(3)]
    try:
        paginator = Sandbox.list(query=SandboxQuery(metadata={"group": group}), limit=2)
        first = paginator.next_items()
        assert len(first) == 2
        assert paginator.has_next
        second = paginator.next_items()
        assert len(second) == 1
        assert not paginator.has_next
        ids = {s.sandbox_id for s in first + second}
        assert ids == {s.sandbox_id for s in sandboxes}
        one = Sandbox.list(query=SandboxQuery(metadata={"group": group, "n": "1"})).next_items()
        assert [s.sandbox_id for s in one] == [sandboxes[1].sandbox_id]
        assert all(s.state.value == "running" for s in first)
    finally:
        for s in sandboxes:
            s.kill()
    assert Sandbox.list(query=SandboxQuery(metadata={"group": group})).next_items() == []


def test_kill_unknown_and_connect_unknown(e2b: CorralServer) -> None:
    assert Sandbox.kill("a" * 20) is False
    with pytest.raises((NotFoundException, SandboxException)):
        Sandbox.connect("b" * 20)


def test_unknown_template_is_a_clear_error(e2b: CorralServer) -> None:
    with pytest.raises(SandboxException) as err:
        Sandbox.create("no-such-template")
    assert "no-such-template" in str(err.value)
