"""ASGI guards in front of the REST API: path-id validation, body-size caps, and the audit log of mutations."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import audit
from corral.db import Database
from corral.server.http_errors import error_response

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SANDBOX_ID = r"[a-z0-9]{20}"
# A path segment that names an object must have that object's id shape; anything else is 404 at once, like an id
# that never existed, and never reaches the database (or a log line as an arbitrary string).
_ID_RULES = [
    (re.compile(r"^/(?:v2/)?sandboxes/([^/]+)"), re.compile(f"^{_SANDBOX_ID}$"), "sandbox"),
    (re.compile(r"^/(?:admin/)?teams/([^/]+)"), re.compile(r"^team_[0-9a-f]{16}$"), "team"),
    (re.compile(r"^/(?:admin/teams/[^/]+/)?api-keys/([^/]+)"), re.compile(r"^key_[0-9a-f]{12}$"), "API key"),
]


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Rejects oversized heads (431), malformed ids (404) and bodies over `max_body` bytes (413, declared or streamed)."""

    def __init__(self, app: ASGIApp, max_body: int, max_header_bytes: int = 16 << 10,
                 uploads: Sequence[tuple[str, re.Pattern[str], int]] = ()) -> None:
        self.app = app
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        # (method, path pattern, cap): file uploads (volume content, template COPY archives) have their own caps.
        self.uploads = uploads

    def _cap(self, method: str, path: str) -> int:
        for upload_method, where, cap in self.uploads:
            if method == upload_method and where.fullmatch(path):
                return cap
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_header_bytes:
            # The HTTP layer refuses heads that arrive in pieces; this catches one that arrived whole.
            await error_response(431, f"headers: larger than {self.max_header_bytes} bytes")(scope, receive, send)
            return
        path: str = scope.get("path", "")
        for where, shape, what in _ID_RULES:
            m = where.match(path)
            if m and not shape.match(m.group(1)):
                await error_response(404, f"{what} not found")(scope, receive, send)
                return
        cap = self._cap(scope.get("method", ""), path)
        declared = dict(headers).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            await error_response(413, f"body: larger than {cap} bytes")(scope, receive, send)
            return
        seen = 0
        too_large = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > cap:
                    too_large = True
                    raise _TooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            # Whatever the app answers to a body it could not finish reading (FastAPI says 400), the client gets 413.
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await error_response(413, f"body: larger than {cap} bytes")(scope, receive, send)
                return
            await send(msg)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            await guarded_send({"type": "http.response.start"})


class AuditLog:
    """Records every mutating call once its status is known (auth and handlers note who/what on scope["state"])."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 500

        async def status_send(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, status_send)
        finally:
            self._record(scope, status)

    def _record(self, scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
        params: dict[str, Any] = scope.get("path_params") or {}
        target = state.get("target_id") or next(iter(params.values()), None)
        try:
            audit.record(self.db, team_id=state.get("team_id"), key_id=state.get("key_id"),
                         method=str(scope.get("method")), route=str(route), target_id=target, status=status)
        except Exception:
            # The call already happened; losing its audit line is logged loudly but must not turn it into a 500.
            log.exception("could not write the audit log entry for %s %s", scope.get("method"), route)
