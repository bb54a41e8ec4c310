"""uvicorn's h11 protocol with a read deadline: a client must deliver each request (head and body) in time.

uvicorn only times out idle keep-alive connections, and any byte resets that; a client that opens connections and
trickles headers (slowloris) or a body would hold them forever. Here every connection gets `read_timeout` seconds
from its start, and again after each response, to deliver a whole request; time the app spends on a complete
request does not count."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    read_timeout = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
        self._guard = self.loop.call_later(self.read_timeout, self._expired)

    def _expired(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        still_reading = cycle is None or cycle.response_complete or cycle.more_body
        if still_reading:
            self.transport.close()  # connection_lost tells a waiting app (http.disconnect)
        else:
            self._arm()  # the request is complete and the app is working on it


def guarded_protocol(read_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn.Config(http=...), with this deadline."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"read_timeout": read_timeout})
