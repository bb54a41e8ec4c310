"""KernelContext's cell loop against a scripted fake kernel: ordering, R values, tslab aborts, death, abandonment."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

import pytest

from corral.interpreter import kernels
from corral.interpreter.kernels import KernelContext

Script = Callable[[str, bool], tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]]


class FakeKernel:
    """Both the manager and the client: `script(code, silent)` gives each request's iopub messages and reply."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.alive = True
        self.calls: list[tuple[str, bool]] = []
        self.interrupts = 0
        self.restarts = 0
        self.hang = False  # a cell that never finishes until interrupted
        self._iopub: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._shell: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: list[dict[str, Any]] = []

    # manager
    async def is_alive(self) -> bool:
        return self.alive

    async def restart_kernel(self, now: bool = False) -> None:
        self.restarts += 1
        self.alive = True

    async def interrupt_kernel(self) -> None:
        self.interrupts += 1
        for msg in self._pending:
            self._iopub.put_nowait(msg)
        self._pending = []

    # client
    def execute(self, code: str, silent: bool = False, store_history: bool = True, allow_stdin: bool = False) -> str:
        msg_id = f"m{len(self.calls)}"
        self.calls.append((code, silent))
        msgs, reply = self.script(code, silent)
        out = [{"msg_type": k, "parent_header": {"msg_id": msg_id}, "content": c} for k, c in msgs]
        out.append({"msg_type": "status", "parent_header": {"msg_id": msg_id}, "content": {"execution_state": "idle"}})
        if self.hang and not silent:
            self._pending = out  # released by an interrupt
        else:
            for m in out:
                self._iopub.put_nowait(m)
        self._shell.put_nowait({"parent_header": {"msg_id": msg_id}, "content": reply})
        return msg_id

    async def get_iopub_msg(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._iopub.get(), timeout)
        except TimeoutError:
            raise queue.Empty from None

    async def get_shell_msg(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._shell.get(), timeout)
        except TimeoutError:
            raise queue.Empty from None

    def stop_channels(self) -> None:
        pass

    def start_channels(self) -> None:
        pass

    async def wait_for_ready(self, timeout: float) -> None:
        pass

    def client(self) -> FakeKernel:
        return self


def ok(count: int = 1) -> dict[str, Any]:
    return {"status": "ok", "execution_count": count}


def make(language: str, script: Script) -> tuple[KernelContext, FakeKernel]:
    ctx = KernelContext(language, "k", "/")
    fake = FakeKernel(script)
    ctx._km = fake
    ctx._kc = fake
    return ctx, fake


async def run(ctx: KernelContext, code: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [e async for e in ctx.execute(code, env)]


async def test_python_cell_events_in_order() -> None:
    ctx, _ = make(
        "python",
        lambda code, silent: (
            [("stream", {"name": "stdout", "text": "hi\n"}), ("execute_result", {"data": {"text/plain": "2"}})],
            ok(3),
        ),
    )
    evs = await run(ctx, "print('hi'); 1+1")
    assert [e["type"] for e in evs] == ["stdout", "result", "number_of_executions"]
    assert evs[1]["is_main_result"] and evs[2]["execution_count"] == 3


async def test_env_vars_wrap_the_cell_in_silent_set_and_restore() -> None:
    ctx, fake = make("python", lambda code, silent: ([], ok()))
    await run(ctx, "x", {"A": "1"})
    assert [silent for _, silent in fake.calls] == [True, False, True]
    assert "os.environ.update" in fake.calls[0][0] and fake.calls[1][0] == "x"


async def test_r_last_visible_value_is_the_main_result() -> None:
    values = [("display_data", {"data": {"text/plain": "[1] 1"}}), ("display_data", {"data": {"text/plain": "[1] 2"}})]
    ctx, _ = make("r", lambda code, silent: (values, ok()))
    results = [e for e in await run(ctx, "1; 2") if e["type"] == "result"]
    assert [(r["text"], r["is_main_result"]) for r in results] == [("[1] 1", False), ("[1] 2", True)]


async def test_tslab_abort_window_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "ABORT_RETRY_S", 0.01)
    replies = [{"status": "abort"}, ok(2)]
    ctx, fake = make(
        "javascript",
        lambda code, silent: (
            [] if len(replies) == 2 else [("display_data", {"data": {"text/plain": "2"}})],
            replies.pop(0),
        ),
    )
    evs = await run(ctx, "x")
    assert len(fake.calls) == 2 and evs[-1] == {"type": "number_of_executions", "execution_count": 2}


async def test_error_only_in_stderr_is_named_from_it() -> None:
    stderr = "evalmachine:1\nthrow x\n\nTypeError: boom\n    at foo\n"
    ctx, _ = make(
        "javascript",
        lambda code, silent: (
            [("stream", {"name": "stderr", "text": stderr})],
            {"status": "error", "execution_count": 1},
        ),
    )
    err = next(e for e in await run(ctx, "x") if e["type"] == "error")
    assert (err["name"], err["value"], err["traceback"]) == ("TypeError", "boom", stderr)


async def test_dead_kernel_is_an_error_and_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "POLL_S", 0.01)
    ctx, fake = make("python", lambda code, silent: ([], ok()))
    fake.hang = True
    fake.alive = False  # dies while the cell runs: no idle ever comes
    fake.is_alive = _alive_after_first_check(fake)  # type: ignore[method-assign]
    evs = await run(ctx, "import os; os._exit(1)")
    assert evs[0]["type"] == "error" and evs[0]["name"] == "KernelDied" and fake.restarts == 1


def _alive_after_first_check(fake: FakeKernel) -> Callable[[], Any]:
    checks = iter([True])  # alive when the cell starts, dead on the next poll

    async def is_alive() -> bool:
        return next(checks, fake.alive)

    return is_alive


async def test_abandoned_cell_is_interrupted_and_the_context_stays_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "POLL_S", 0.01)
    ctx, fake = make("python", lambda code, silent: ([("stream", {"name": "stdout", "text": "."})], ok()))
    fake.hang = True
    gen = ctx.execute("import time; time.sleep(100)", {"A": "1"})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gen.__anext__(), 0.1)  # the client gives up (the SDK's timeout)
    await gen.aclose()
    fake.hang = False
    evs = await asyncio.wait_for(run(ctx, "1"), 2)  # waits for the drain, then runs
    assert fake.interrupts == 1 and evs[-1]["type"] == "number_of_executions"
    assert [silent for _, silent in fake.calls] == [True, False, True, False]  # set, cell, restore, next cell
