"""The host-run agent driven by the stock e2b SDK: commands and PTY."""

from __future__ import annotations

import contextlib
import re
import threading
import time

import pytest
from e2b import CommandExitException, InvalidArgumentException, Sandbox, TimeoutException
from e2b.sandbox.commands.command_handle import PtySize

U = "root"  # on the host there is no `user` account


def test_health_and_running(sbx: Sandbox) -> None:
    assert sbx.is_running()


def test_run_foreground(sbx: Sandbox) -> None:
    r = sbx.commands.run("echo hello; echo oops >&2", user=U)
    assert r.exit_code == 0
    assert r.stdout == "hello\n"
    assert r.stderr == "oops\n"


def test_run_env_and_cwd(sbx: Sandbox, tmpdir_) -> None:  # type: ignore[no-untyped-def]
    r = sbx.commands.run("echo $FOO:$USER:$HOME; pwd", envs={"FOO": "bar"}, cwd=str(tmpdir_), user=U)
    assert r.stdout.splitlines() == ["bar:root:/root", str(tmpdir_)]


def test_nonzero_exit_raises(sbx: Sandbox) -> None:
    with pytest.raises(CommandExitException) as ei:
        sbx.commands.run("echo partial; exit 7", user=U)
    assert ei.value.exit_code == 7
    assert ei.value.stdout == "partial\n"


def test_callbacks_stream_as_output_arrives(sbx: Sandbox) -> None:
    seen: list[tuple[float, str]] = []
    errs: list[str] = []
    t0 = time.monotonic()
    sbx.commands.run(
        "echo first; sleep 1; echo second; echo e >&2",
        user=U,
        on_stdout=lambda s: seen.append((time.monotonic() - t0, s)),
        on_stderr=errs.append,
    )
    assert [s for _, s in seen] == ["first\n", "second\n"]
    # "first" arrived before the sleep ended: output is streamed, not batched
    assert seen[0][0] < 0.8 <= seen[1][0]
    assert errs == ["e\n"]


def test_background_list_kill(sbx: Sandbox) -> None:
    h = sbx.commands.run("sleep 30", background=True, user=U)
    assert any(p.pid == h.pid and p.cmd == "/bin/bash" for p in sbx.commands.list())
    assert sbx.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException) as ei:
        h.wait()
    assert ei.value.exit_code == -1
    assert all(p.pid != h.pid for p in sbx.commands.list())
    assert sbx.commands.kill(h.pid) is False  # gone: not found


def test_stdin(sbx: Sandbox) -> None:
    h = sbx.commands.run("read line; echo got:$line", background=True, stdin=True, user=U)
    h.send_stdin("hello\n")
    assert h.wait().stdout == "got:hello\n"


def test_stream_input(sbx: Sandbox) -> None:
    if not hasattr(sbx.commands, "stream_input"):
        pytest.skip("this e2b SDK has no commands.stream_input")
    h = sbx.commands.run("cat", background=True, stdin=True, user=U)
    sbx.commands.stream_input(h.pid, [b"one ", "two ", b"three"])
    sbx.commands.close_stdin(h.pid)
    assert h.wait().stdout == "one two three"


def test_close_stdin(sbx: Sandbox) -> None:
    h = sbx.commands.run("cat", background=True, stdin=True, user=U)
    sbx.commands.send_stdin(h.pid, b"abc")
    sbx.commands.close_stdin(h.pid)
    assert h.wait().stdout == "abc"


def test_timeout_kills_command(sbx: Sandbox) -> None:
    t0 = time.monotonic()
    with pytest.raises((TimeoutException, CommandExitException)):
        sbx.commands.run("sleep 20", timeout=1, user=U)
    assert time.monotonic() - t0 < 5
    time.sleep(0.3)
    assert not any("sleep 20" in " ".join(p.args) for p in sbx.commands.list())


def test_disconnect_keeps_process_and_connect_resumes(sbx: Sandbox) -> None:
    h = sbx.commands.run("sleep 1; echo done", background=True, user=U, timeout=0)
    h.disconnect()
    time.sleep(0.2)
    assert any(p.pid == h.pid for p in sbx.commands.list())
    h2 = sbx.commands.connect(h.pid)
    assert h2.wait().stdout == "done\n"


def test_background_daemon_does_not_hang_run(sbx: Sandbox) -> None:
    # A grandchild keeps stdout open; the command itself must still end.
    t0 = time.monotonic()
    r = sbx.commands.run("sleep 5 & echo started", user=U)
    assert r.stdout == "started\n"
    assert time.monotonic() - t0 < 2


def test_unknown_user_is_rejected(sbx: Sandbox) -> None:
    with pytest.raises(InvalidArgumentException, match="no-such-user-xyz"):
        sbx.commands.run("true", user="no-such-user-xyz")


def test_many_short_commands_are_reaped(sbx: Sandbox) -> None:
    for i in range(20):
        assert sbx.commands.run(f"echo {i}", user=U).stdout == f"{i}\n"


def test_pty(sbx: Sandbox) -> None:
    out = bytearray()
    got = threading.Event()

    def on_pty(b: bytes) -> None:
        out.extend(b)
        if re.search(rb"SIZE=\d+ \d+", out):
            got.set()

    h = sbx.pty.create(PtySize(rows=24, cols=80), user=U)
    t = threading.Thread(target=lambda: _wait_quiet(h, on_pty), daemon=True)
    t.start()
    sbx.pty.resize(h.pid, PtySize(rows=30, cols=100))
    # the quotes keep the echoed command line itself from matching
    sbx.pty.send_stdin(h.pid, b"tty -s && echo S''IZE=$(stty size)\n")
    assert got.wait(10), bytes(out)
    assert b"SIZE=30 100" in out
    assert sbx.pty.kill(h.pid) is True
    t.join(10)
    assert not t.is_alive()


def _wait_quiet(h, on_pty) -> None:  # type: ignore[no-untyped-def]
    # the PTY is killed at the end of the test: that exit is expected
    with contextlib.suppress(CommandExitException):
        h.wait(on_pty=on_pty)
