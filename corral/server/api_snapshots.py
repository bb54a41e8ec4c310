"""Snapshot and fork endpoints: POST /sandboxes/{id}/snapshots, GET /snapshots, DELETE /templates/{id}, fork."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from corral.db import SnapshotRecord
from corral.errors import CorralError, InvalidRequestError
from corral.sandboxes import SandboxManager
from corral.server.api_models import _WireIn, sandbox_out
from corral.server.auth import require_team
from corral.server.listing import MAX_LIMIT, paginate

router = APIRouter()
Team = Annotated[str, Depends(require_team)]
FORK_DEFAULT_TIMEOUT = 15   # the spec's default


class SnapshotIn(_WireIn):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")
    memory: bool | None = None


class ForkIn(_WireIn):
    timeout: int | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1, le=100)


def _manager(request: Request) -> SandboxManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _info(snap: SnapshotRecord) -> dict[str, Any]:
    return {"snapshotID": snap.id, "names": [snap.name] if snap.name else []}


@router.post("/sandboxes/{sandbox_id}/snapshots", status_code=201)
async def create_snapshot(sandbox_id: str, request: Request, team: Team, body: SnapshotIn | None = None) -> JSONResponse:
    if body is not None and body.memory is False:
        raise InvalidRequestError("memory: filesystem-only snapshots are not supported; snapshots keep memory")
    snap = await _manager(request).snapshots.capture(sandbox_id, team, body.name if body is not None else None)
    return JSONResponse(_info(snap), status_code=201)


@router.get("/snapshots")
async def list_snapshots(request: Request, team: Team,
                         sandbox_id: Annotated[str | None, Query(alias="sandboxID")] = None,
                         name: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
                         next_token: Annotated[str | None, Query(alias="nextToken")] = None) -> JSONResponse:
    rows = _manager(request).snapshots.listed(team, sandbox_id=sandbox_id, name=name)
    # The sandbox list's cursor format, keyed by (created_at, id) instead of (started_at, id).
    keyed = [SimpleNamespace(started_at=r.created_at, id=r.id, row=r) for r in rows]
    page, token = paginate(keyed, order="asc", limit=limit, next_token=next_token)  # type: ignore[arg-type]
    headers = {"X-Next-Token": token} if token else {}
    return JSONResponse([_info(k.row) for k in page], headers=headers)  # type: ignore[attr-defined]


@router.post("/sandboxes/{sandbox_id}/fork", status_code=201)
async def fork(sandbox_id: str, request: Request, team: Team, body: ForkIn | None = None) -> JSONResponse:
    count = body.count if body is not None and body.count is not None else 1
    timeout = body.timeout if body is not None and body.timeout is not None else FORK_DEFAULT_TIMEOUT
    domain = request.app.state.settings.domain
    results = await _manager(request).snapshots.fork(sandbox_id, team, count, timeout)
    out = [{"error": {"code": r.status_code, "message": r.message}} if isinstance(r, CorralError)
           else {"sandbox": sandbox_out(r, domain)} for r in results]
    return JSONResponse(out, status_code=201)
