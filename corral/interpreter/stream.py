"""An ASGI response that streams events as NDJSON and stops the producer as soon as the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from corral.interpreter import events

log = logging.getLogger("corral.interpreter")


class EventStream:
    """Why not StreamingResponse: a cell that prints nothing never fails a send, so a client that timed out would go
    unnoticed; here a task watches `receive()` for http.disconnect and cancels the producer (-> kernel interrupt)."""

    def __init__(self, source: AsyncIterator[events.Event]) -> None:
        self.source = source

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store")],
            }
        )
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(self._watch(receive))
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task

    async def _pump(self, send: Any) -> None:
        try:
            async for event in self.source:
                await send({"type": "http.response.body", "body": events.encode(event), "more_body": True})
        except (asyncio.CancelledError, OSError):
            # Closing the generator runs its cleanup now (interrupt + drain), even if it was parked at a yield.
            with contextlib.suppress(Exception):
                await self.source.aclose()  # type: ignore[attr-defined]
            raise
        except Exception as e:  # the headers are out: report it in-band, the SDK shows it as the cell's error
            log.exception("execution failed")
            err = events.error_event("InterpreterError", f"{type(e).__name__}: {e}", "")
            await send({"type": "http.response.body", "body": events.encode(err), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _watch(receive: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
