"""Every error leaves the API as the spec's `{"code", "message"}` body: CorralErrors by status, 400 for bad input,
and a clean 500 (logged here, never sent) for anything unexpected."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.errors import CorralError, LimitExceededError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    # Drop the "body"/"query" prefix FastAPI adds; keep dict keys and list indexes ("metadata.owner").
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    msgs = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            msgs.append("body: invalid JSON")
        elif err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
            msgs.append("body: a JSON body is required")
        else:
            msgs.append(f"{_field_name(tuple(err.get('loc', ())))}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(msgs)


async def _corral_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CorralError)
    headers = None
    if isinstance(exc, LimitExceededError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    return error_response(exc.status_code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_message(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


class CatchAllMiddleware:
    """Turns an unhandled exception into a logged, trace-free 500 (Starlette's own handler would re-raise it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal server error")(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CorralError, _corral_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchAllMiddleware)
