"""The host-run agent driven by the stock async SDK: streamed watch, stream_input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from e2b import AsyncSandbox
from e2b.sandbox.filesystem.watch_handle import FilesystemEventType

U = "root"


@pytest.fixture
async def asbx(agent, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", agent.url)
    monkeypatch.setenv("E2B_API_KEY", "e2b_" + "0" * 40)
    monkeypatch.delenv("E2B_API_URL", raising=False)
    return await AsyncSandbox.create()


async def test_watch_dir_stream(asbx: AsyncSandbox, tmpdir_: Path) -> None:
    got: list = []
    seen = asyncio.Event()

    def on_event(e) -> None:  # type: ignore[no-untyped-def]
        got.append(e)
        if e.name == "w.txt" and e.type == FilesystemEventType.WRITE:
            seen.set()

    h = await asbx.files.watch_dir(str(tmpdir_), on_event=on_event, user=U, include_entry=True)
    try:
        await asbx.files.write(str(tmpdir_ / "w.txt"), "data", user=U)
        await asyncio.wait_for(seen.wait(), 5)
        creates = [e for e in got if e.type == FilesystemEventType.CREATE]
        assert creates and creates[0].entry is not None and creates[0].entry.name == "w.txt"
    finally:
        await h.stop()


async def test_async_run_and_stream_input(asbx: AsyncSandbox) -> None:
    r = await asbx.commands.run("echo async", user=U)
    assert r.stdout == "async\n"
    if not hasattr(asbx.commands, "stream_input"):
        pytest.skip("this e2b SDK has no commands.stream_input")
    h = await asbx.commands.run("cat", background=True, stdin=True, user=U)
    ih = asbx.commands.stream_input(h.pid)
    await ih.send(b"one ")
    await ih.send("two")
    await ih.close()
    await asbx.commands.close_stdin(h.pid)
    res = await h.wait()
    assert res.stdout == "one two"
