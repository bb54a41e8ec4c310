"""`corral shell`: an interactive PTY in a sandbox, wired to the local terminal."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import sys
import termios
import threading
import tty
from typing import Any

from corral.cli.envd_client import EnvdClient, SandboxEndpoint


def run_shell(endpoint: SandboxEndpoint) -> int:
    """Run a login shell on a PTY until it exits; return its exit code."""
    client = EnvdClient(endpoint)
    input_client = EnvdClient(endpoint)  # a second connection: the first is busy with the output stream
    cols, rows = shutil.get_terminal_size()
    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin.fileno()) if interactive else None
    state: dict[str, Any] = {"pid": None, "code": 0}

    def pump_stdin() -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data or state["pid"] is None:
                return
            input_client.send_pty_input(state["pid"], data)

    def on_resize(*_: object) -> None:
        if state["pid"] is not None:
            c, r = shutil.get_terminal_size()
            input_client.resize(state["pid"], c, r)

    try:
        if saved is not None:
            tty.setraw(sys.stdin.fileno())
        signal.signal(signal.SIGWINCH, on_resize)
        for event in client.start("", pty=(cols, rows)):
            if "start" in event:
                state["pid"] = int(event["start"]["pid"])
                threading.Thread(target=pump_stdin, daemon=True).start()
            elif "data" in event and "pty" in event["data"]:
                sys.stdout.buffer.write(base64.b64decode(event["data"]["pty"]))
                sys.stdout.buffer.flush()
            elif "end" in event:
                state["code"] = int(event["end"].get("exitCode", 0))
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        client.close()
        input_client.close()
    return int(state["code"])
