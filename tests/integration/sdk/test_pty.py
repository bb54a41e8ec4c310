"""PTYs through the stock SDK: create, input, resize, kill."""

from __future__ import annotations

import threading

from e2b import PtySize
from e2b.sandbox.commands.command_handle import CommandExitException

from tests.integration.corral_server import CorralServer
from tests.integration.sdk.helpers import create, wait_until


def test_pty_roundtrip_resize_kill(e2b: CorralServer, tier: str) -> None:
    sbx = create(tier)
    try:
        output = bytearray()
        lock = threading.Lock()

        def on_data(data: bytes) -> None:
            with lock:
                output.extend(data)

        handle = sbx.pty.create(PtySize(rows=24, cols=80), timeout=30)
        def wait() -> None:
            try:
                handle.wait(on_pty=on_data)
            except CommandExitException:  # a killed PTY ends with a non-zero exit, which the SDK raises
                pass

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        sbx.pty.send_stdin(handle.pid, b"stty size; echo marker-$((6*7))\n")
        assert wait_until(lambda: b"marker-42" in output and b"24 80" in output, timeout=15), bytes(output)
        sbx.pty.resize(handle.pid, PtySize(rows=40, cols=120))
        sbx.pty.send_stdin(handle.pid, b"stty size\n")
        assert wait_until(lambda: b"40 120" in output, timeout=15), bytes(output)
        assert sbx.pty.kill(handle.pid) is True
        waiter.join(timeout=15)
        assert not waiter.is_alive()
    finally:
        sbx.kill()
