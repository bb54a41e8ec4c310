"""One context = one Jupyter kernel (own state, own cwd); runs cells one at a time and streams their events."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from corral.interpreter import events, global_env, languages

log = logging.getLogger("corral.interpreter")

STARTUP = Path(__file__).with_name("kernel_startup.py")
TSLAB_HOOK = Path(__file__).with_name("tslab_hook.js")
POLL_S = 0.5  # how often a silent kernel is checked for being alive
READY_TIMEOUT_S = 60.0
ABORT_RETRY_S = 0.3
# "TypeError: x is not a function" in a kernel's stderr (tslab reports runtime errors only there).
_ERROR_LINE = re.compile(r"^(\w*(?:Error|Exception)): (.*)$", re.MULTILINE)


def kernel_env(kernel_name: str) -> dict[str, str]:
    """The server's environment minus what only the server needs (its own import path), plus kernel hooks."""
    env = dict(os.environ)
    ours = str(Path(__file__).resolve().parent.parent.parent)
    if env.get("PYTHONPATH") == ours:
        env.pop("PYTHONPATH")
    if kernel_name in ("jslab", "tslab"):
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} --require {TSLAB_HOOK}".strip()
    return env


class KernelContext:
    """A kernel plus the lock that keeps its cells in order; aborted cells are interrupted and drained."""

    def __init__(self, language: str, kernel_name: str, cwd: str) -> None:
        self.id = str(uuid.uuid4())
        self.language = language
        self.kernel_name = kernel_name
        self.cwd = cwd
        self._lock = asyncio.Lock()
        self._km: Any = None
        self._kc: Any = None
        self._aborts: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        self._aborted = False  # the last cell's execute_reply said "abort(ed)": it never ran
        self._inflight: str | None = None  # msg_id of the request the kernel is running for us, if any
        self._env_version: global_env.Version | None = None  # of the sandbox env vars applied in this kernel
        self._env: dict[str, str] = {}

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    async def start(self) -> None:
        from jupyter_client.manager import AsyncKernelManager

        km = AsyncKernelManager(kernel_name=self.kernel_name)
        extra: list[str] = []
        if self.language == "python":
            # Registers the chart formatter; the `;` keeps run_path's return value out of Out/_.
            extra = [f"--IPKernelApp.exec_lines=__import__('runpy').run_path({str(STARTUP)!r});"]
        await km.start_kernel(cwd=self.cwd, env=kernel_env(self.kernel_name), extra_arguments=extra)
        self._km = km
        await self._connect()

    async def _connect(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
        kc = self._km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=READY_TIMEOUT_S)
        self._kc = kc

    async def warm_up(self) -> None:
        """A silent cell (no output, no execution count) once the kernel has started."""
        async with self._lock:
            await self._run_silent("pass")

    async def restart(self) -> None:
        async with self._lock:
            await self._restart_locked()

    async def _restart_locked(self) -> None:
        self._env_version, self._env = None, {}  # a new kernel process: the sandbox env vars again
        await self._km.restart_kernel(now=True)
        await self._connect()

    async def shutdown(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
        if self._km is not None:
            try:
                await self._km.shutdown_kernel(now=True)
            except Exception:  # already dead: nothing left to stop
                log.exception("shutting down kernel %s", self.id)

    async def is_alive(self) -> bool:
        return self._km is not None and bool(await self._km.is_alive())

    async def execute(self, code: str, env_vars: dict[str, str] | None) -> AsyncIterator[events.Event]:
        """Run one cell; if the consumer stops early (client gone, timeout), the kernel is interrupted and drained."""
        await self._lock.acquire()
        self._inflight = None
        finished = False
        restore: str | None = None  # set while this cell's env vars are applied in the kernel
        try:
            if not await self.is_alive():
                # Died between cells (e.g. a background thread called os._exit): say so, then run the cell.
                code_ = self._exit_code()
                await self._restart_locked()
                yield events.stream_event("stderr", f"[the {self.language} kernel had died (exit code {code_}) "
                                          "and was restarted: its state was lost]\n")  # fmt: skip
            await self._apply_sandbox_env()
            snippets = languages.env_snippets(self.language, env_vars) if env_vars else None
            if snippets:
                restore = snippets[1]
                await self._run_silent(snippets[0])
            for attempt in range(2):
                self._aborted = False
                self._inflight = self._kc.execute(code, store_history=True, allow_stdin=False)
                async for event in self._collect(self._inflight):
                    yield event
                self._inflight = None
                if not self._aborted or attempt:
                    break
                # tslab aborts every request that arrives within 200 ms of a failed cell; this one never ran.
                await asyncio.sleep(ABORT_RETRY_S)
            if restore and await self.is_alive():
                await self._run_silent(restore)
            finished = True
        finally:
            if finished:
                self._lock.release()
            else:
                # Not awaited here: a cancelled generator must not block; the lock passes to the cleanup task.
                task = asyncio.get_running_loop().create_task(self._abort(self._inflight, restore))
                self._aborts.add(task)

    async def _abort(self, inflight: str | None, restore: str | None) -> None:
        try:
            if inflight is not None:
                log.info("interrupting kernel %s (request %s abandoned)", self.id, inflight)
                await self._km.interrupt_kernel()
                async for _ in self._collect(inflight, limit_s=30.0):
                    pass
            if restore and await self.is_alive():
                await self._run_silent(restore)
        except Exception:
            log.exception("kernel %s did not stop after an interrupt; restarting it", self.id)
            await self._restart_locked()
        finally:
            self._inflight = None
            self._lock.release()
            self._aborts.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _apply_sandbox_env(self) -> None:
        """The sandbox's env vars (global_env) that changed since this kernel last got them; they stay set."""
        changed = global_env.read_if_changed(self._env_version)
        if changed is None:
            return
        version, env = changed
        new = {k: v for k, v in env.items() if self._env.get(k) != v}
        snippets = languages.env_snippets(self.language, new) if new else None
        if snippets:
            await self._run_silent(snippets[0])
        self._env_version, self._env = version, env

    async def _run_silent(self, code: str) -> None:
        self._inflight = self._kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        async for _ in self._collect(self._inflight):
            pass
        self._inflight = None

    async def _collect(self, msg_id: str, limit_s: float | None = None) -> AsyncIterator[events.Event]:
        """Events of cell `msg_id` until its kernel goes idle, then its execute_reply; a dead kernel ends it."""
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s
        saw_error = False
        stderr: list[str] = []
        held: events.Event | None = None
        while True:
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"cell {msg_id} did not finish")
            try:
                msg = await self._kc.get_iopub_msg(timeout=POLL_S)
            except queue.Empty:
                if not await self.is_alive():
                    yield await self._died()
                    return
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                break
            event = events.translate_iopub(msg)
            if event is not None:
                saw_error = saw_error or event["type"] == "error"
                if event["type"] == "stderr":
                    stderr.append(event["text"])
                if held is not None:
                    yield held
                    held = None
                if self.language == "r" and events.is_value_display(event):
                    held = event  # IRkernel shows values as display_data: the cell's last one is its result
                    continue
                yield event
        if held is not None:
            held["is_main_result"] = True
            yield held
        async for event in self._reply(msg_id, saw_error, "".join(stderr)):
            yield event

    async def _reply(self, msg_id: str, saw_error: bool, stderr: str) -> AsyncIterator[events.Event]:
        while True:
            try:
                reply = await self._kc.get_shell_msg(timeout=READY_TIMEOUT_S)
            except queue.Empty:
                return
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
        content = reply.get("content", {})
        if content.get("status") in ("abort", "aborted"):
            self._aborted = True
            return
        if not saw_error:
            err = events.reply_error(content)
            if err is not None:
                found = _ERROR_LINE.findall(stderr)
                if not content.get("ename") and stderr.strip():  # tslab: no ename/evalue, only stderr
                    err["name"], err["value"] = found[-1] if found else ("Error", stderr.strip().splitlines()[0])
                    err["traceback"] = stderr
                yield err
        count = content.get("execution_count")
        if isinstance(count, int):
            yield events.count_event(count)

    def _exit_code(self) -> int | None:
        proc = getattr(getattr(self._km, "provisioner", None), "process", None)
        return proc.poll() if proc is not None else None

    async def _died(self) -> events.Event:
        code = self._exit_code()
        log.warning("kernel %s (%s) died (exit code %s); restarting", self.id, self.kernel_name, code)
        await self._restart_locked()
        return events.error_event(
            "KernelDied",
            f"the {self.language} kernel died (exit code {code}) and was restarted: its state is lost",
            "",
        )


def installed_kernels() -> set[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return set(KernelSpecManager().find_kernel_specs())


def list_kernels(out: Callable[[str], None] = print) -> int:
    """For the template build: print every kernel spec; fail if Python's is missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().get_all_specs()
    for name, spec in sorted(specs.items()):
        out(f"{name}: {spec['spec'].get('language')} {' '.join(spec['spec'].get('argv', []))}")
    out(f"languages: {', '.join(languages.supported(set(specs)))} (python {sys.version.split()[0]})")
    return 0 if "python3" in specs else 1
