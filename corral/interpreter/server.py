"""The HTTP surface on :49999 (/execute, /contexts, /health) over a registry of kernel contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from corral.interpreter import languages
from corral.interpreter.kernels import KernelContext, installed_kernels
from corral.interpreter.models import CreateContextRequest, ExecuteRequest
from corral.interpreter.stream import EventStream

log = logging.getLogger("corral.interpreter")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("starting the default Python context failed: %r", task.exception())


class Registry:
    """Every live context, plus the one default context per language that runs cells sent with only a language."""

    def __init__(self, default_cwd: str, installed: set[str] | None = None) -> None:
        self.default_cwd = default_cwd
        self.installed = installed if installed is not None else installed_kernels()
        self.contexts: dict[str, KernelContext] = {}
        self._defaults: dict[str, asyncio.Future[KernelContext]] = {}
        self._warm: asyncio.Future[None] | None = None

    def resolve(self, language: str | None) -> tuple[str, str]:
        found = languages.resolve(language, self.installed)
        if found is None:
            names = ", ".join(languages.supported(self.installed))
            raise HTTPError(400, f"unsupported language {language!r}; supported: {names}")
        return found

    async def create(self, language: str | None, cwd: str | None) -> KernelContext:
        canon, kernel = self.resolve(language)
        cwd = cwd or self.default_cwd
        if not os.path.isdir(cwd):
            raise HTTPError(400, f"cwd {cwd!r} is not a directory")
        ctx = KernelContext(canon, kernel, cwd)
        await ctx.start()
        self.contexts[ctx.id] = ctx
        return ctx

    def get(self, context_id: str) -> KernelContext:
        ctx = self.contexts.get(context_id)
        if ctx is None:
            raise HTTPError(404, f"context {context_id!r} not found")
        return ctx

    async def default_for(self, language: str | None) -> KernelContext:
        canon, _ = self.resolve(language)
        task = self._defaults.get(canon)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # One start even when many first calls race; a failed start is retried by the next call.
            task = asyncio.ensure_future(self.create(canon, None))
            self._defaults[canon] = task
        return await asyncio.shield(task)

    def warm(self) -> None:
        """Start the default Python context in the background: the port answers at once, cells wait for it."""
        self._warm = asyncio.ensure_future(self._warm_up())
        self._warm.add_done_callback(_log_failure)

    async def _warm_up(self) -> None:
        ctx = await self.default_for("python")
        # One silent cell through kernel and IOPub while nobody waits: a template memory snapshot taken after
        # /ready then holds a kernel that has run code, not one still settling after its start.
        await ctx.warm_up()

    def warmed(self) -> bool:
        """Whether the warm-up is over (also when it failed: the first cell then reports the kernel's error)."""
        return self._warm is None or self._warm.done()

    async def delete(self, context_id: str) -> None:
        ctx = self.get(context_id)
        del self.contexts[context_id]
        for lang, task in list(self._defaults.items()):
            if task.done() and not task.cancelled() and task.exception() is None and task.result() is ctx:
                del self._defaults[lang]
        await ctx.shutdown()

    async def close(self) -> None:
        for ctx in list(self.contexts.values()):
            await ctx.shutdown()
        self.contexts.clear()


async def _body(request: Request, model: Any) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        raise HTTPError(400, f"invalid body: {e.errors(include_url=False)}") from e


def make_app(default_cwd: str, *, installed: set[str] | None = None, warm: bool = True) -> Starlette:
    registry = Registry(default_cwd, installed)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        """The template's ready command: 200 once the default Python kernel has run its warm-up cell."""
        if registry.warmed():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    async def execute(request: Request) -> Any:
        req = await _body(request, ExecuteRequest)
        if req.context_id and req.language:
            raise HTTPError(400, "give context_id or language, not both")
        ctx = registry.get(req.context_id) if req.context_id else await registry.default_for(req.language)
        for name in req.env_vars or {}:
            if not languages.ENV_NAME.match(name):
                raise HTTPError(400, f"env var name {name!r} is not a valid identifier")
        return EventStream(ctx.execute(req.code, req.env_vars))

    async def create_context(request: Request) -> Response:
        req = await _body(request, CreateContextRequest)
        ctx = await registry.create(req.language, req.cwd)
        return JSONResponse(ctx.describe())

    async def list_contexts(request: Request) -> Response:
        return JSONResponse([c.describe() for c in registry.contexts.values()])

    async def delete_context(request: Request) -> Response:
        await registry.delete(request.path_params["context_id"])
        return Response(status_code=204)

    async def restart_context(request: Request) -> Response:
        await registry.get(request.path_params["context_id"]).restart()
        return Response(status_code=204)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        return PlainTextResponse(exc.message, status_code=exc.status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:
            registry.warm()
        yield
        await registry.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/execute", execute, methods=["POST"]),
            Route("/contexts", create_context, methods=["POST"]),
            Route("/contexts", list_contexts, methods=["GET"]),
            Route("/contexts/{context_id}", delete_context, methods=["DELETE"]),
            Route("/contexts/{context_id}/restart", restart_context, methods=["POST"]),
        ],
        exception_handlers={HTTPError: on_http_error},
        lifespan=lifespan,
    )
    app.state.registry = registry
    return app
