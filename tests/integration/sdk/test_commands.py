"""Commands through the stock SDK: foreground, background, streaming, stdin, exit codes, signals, timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2b import Sandbox
from e2b.exceptions import TimeoutException
from e2b.sandbox.commands.command_handle import CommandExitException

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create, wait_until


@pytest.fixture
def sbx(e2b: CorralServer, tier: str) -> Iterator[Sandbox]:
    sandbox = create(tier)
    yield sandbox
    sandbox.kill()


def test_foreground_output_and_callbacks(sbx: Sandbox) -> None:
    out: list[str] = []
    err: list[str] = []
    result = sbx.commands.run("echo one; echo two >&2; echo three", on_stdout=out.append, on_stderr=err.append)
    assert result.stdout == "one\nthree\n"
    assert result.stderr == "two\n"
    assert "".join(out) == "one\nthree\n"
    assert "".join(err) == "two\n"


def test_non_zero_exit_raises(sbx: Sandbox) -> None:
    with pytest.raises(CommandExitException) as exc:
        sbx.commands.run("echo partial; exit 7")
    assert exc.value.exit_code == 7
    assert exc.value.stdout == "partial\n"


def test_user_root_and_cwd(sbx: Sandbox) -> None:
    assert sbx.commands.run("id -u", user="root").stdout.strip() == "0"
    assert sbx.commands.run("id -u").stdout.strip() == "1000"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout.strip() == "/tmp"


def test_background_connect_list_kill(sbx: Sandbox) -> None:
    handle = sbx.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done; sleep 60", background=True)
    assert handle.pid > 0
    assert wait_until(lambda: any(p.pid == handle.pid for p in sbx.commands.list()))
    listed = next(p for p in sbx.commands.list() if p.pid == handle.pid)
    assert listed.cmd == "/bin/bash"
    again = sbx.commands.connect(handle.pid)
    assert sbx.commands.kill(handle.pid) is True
    with pytest.raises(CommandExitException):
        again.wait()
    assert wait_until(lambda: all(p.pid != handle.pid for p in sbx.commands.list()))
    assert sbx.commands.kill(handle.pid) is False


def test_background_wait_collects_output(sbx: Sandbox) -> None:
    handle = sbx.commands.run("sleep 0.3; echo done", background=True)
    result = handle.wait()
    assert result.stdout == "done\n"
    assert result.exit_code == 0


def test_stdin(sbx: Sandbox) -> None:
    handle = sbx.commands.run("read line; echo got:$line", background=True, stdin=True)
    sbx.commands.send_stdin(handle.pid, "hello\n")
    assert handle.wait().stdout == "got:hello\n"


def test_close_stdin_ends_cat(sbx: Sandbox) -> None:
    if not hasattr(sbx.commands, "close_stdin"):
        pytest.skip("this SDK version has no close_stdin")
    handle = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(handle.pid, "abc")
    sbx.commands.close_stdin(handle.pid)
    assert handle.wait().stdout == "abc"


def test_command_timeout(sbx: Sandbox) -> None:
    with pytest.raises(TimeoutException):
        sbx.commands.run("sleep 30", timeout=1)
    assert sbx.commands.run("echo still-alive").stdout == "still-alive\n"


def test_binary_and_large_output(sbx: Sandbox) -> None:
    result = sbx.commands.run("head -c 3000000 /dev/zero | tr '\\0' 'x'")
    assert len(result.stdout) == 3_000_000
    assert set(result.stdout) == {"x"}
