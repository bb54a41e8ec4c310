"""The /sandboxes and /v2/sandboxes endpoints: thin handlers that validate, call the SandboxManager, shape replies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import InvalidRequestError
from corral.sandboxes import CreateRequest, SandboxManager
from corral.server.api_models import (
    ConnectV2In,
    NewSandboxIn,
    RefreshIn,
    ResumeIn,
    TimeoutIn,
    detail_out,
    listed_out,
    sandbox_out,
)
from corral.server.auth import require_team
from corral.server.http_errors import error_response
from corral.server.listing import paginate, parse_metadata_query, parse_states

router = APIRouter()
Team = Annotated[str, Depends(require_team)]
# The spec's defaults: NewSandbox (v1) lives 15 s unless told, NewSandboxV2 300 s.
V1_DEFAULT_TIMEOUT = 15
V2_DEFAULT_TIMEOUT = 300


def _manager(request: Request) -> SandboxManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _domain(request: Request) -> str | None:
    return request.app.state.settings.domain  # type: ignore[no-any-return]


def _create_request(body: NewSandboxIn, team_id: str, *, v2: bool) -> CreateRequest:
    # Refuse what Corral cannot honour rather than silently dropping it.
    if body.auto_pause:
        raise InvalidRequestError("autoPause: pausing sandboxes is not supported by this server")
    if body.auto_resume is not None and body.auto_resume.enabled:
        raise InvalidRequestError("autoResume: pausing sandboxes is not supported by this server")
    if body.volume_mounts:
        raise InvalidRequestError("volumeMounts: volumes are not supported by this server")
    if body.mcp:
        raise InvalidRequestError("mcp: MCP gateways are not supported by this server")
    if body.iam and body.iam.get("tokens"):
        raise InvalidRequestError("iam: workload identity is not supported by this server")
    timeout = body.timeout if body.timeout is not None else (V2_DEFAULT_TIMEOUT if v2 else V1_DEFAULT_TIMEOUT)
    allow_public = (body.network or {}).get("allowPublicTraffic")
    return CreateRequest(
        team_id=team_id, template=body.template_id, timeout_s=timeout, metadata=dict(body.metadata or {}),
        env_vars=dict(body.env_vars or {}), secure=True if v2 else bool(body.secure),
        allow_internet_access=body.allow_internet_access, require_traffic_token=allow_public is False)


@router.post("/sandboxes", status_code=201)
async def create_v1(body: NewSandboxIn, request: Request, team: Team) -> JSONResponse:
    row = await _manager(request).create(_create_request(body, team, v2=False))
    request.state.target_id = row.id
    return JSONResponse(sandbox_out(row, _domain(request)), status_code=201)


@router.post("/v2/sandboxes", status_code=201)
async def create_v2(body: NewSandboxIn, request: Request, team: Team) -> JSONResponse:
    row = await _manager(request).create(_create_request(body, team, v2=True))
    request.state.target_id = row.id
    return JSONResponse(sandbox_out(row, _domain(request)), status_code=201)


def _list(request: Request, team: str, *, metadata: str | None, state: list[str], template: str | None,
          started_after: datetime | None, order: str, limit: int | None,
          next_token: str | None) -> JSONResponse:
    states = parse_states(state)
    if started_after is not None and started_after.tzinfo is None:
        started_after = started_after.replace(tzinfo=UTC)  # a naive time is read as UTC
    rows = [] if states is not None and "running" not in states else _manager(request).list(
        team, metadata=parse_metadata_query(metadata), template=template, started_after=started_after)
    page, token = paginate(rows, order=order, limit=limit, next_token=next_token)
    headers = {"X-Total-Running": str(len(rows))}
    if token:
        headers["X-Next-Token"] = token
    return JSONResponse([listed_out(r) for r in page], headers=headers)


@router.get("/v2/sandboxes")
async def list_v2(request: Request, team: Team, metadata: str | None = None,
                  state: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
                  template: str | None = None, order: str = "desc",
                  started_after: Annotated[datetime | None, Query(alias="startedAfter")] = None,
                  limit: int = 100, next_token: Annotated[str | None, Query(alias="nextToken")] = None,
                  ) -> JSONResponse:
    return _list(request, team, metadata=metadata, state=state, template=template, started_after=started_after,
                 order=order, limit=limit, next_token=next_token)


@router.get("/sandboxes")
async def list_v1(request: Request, team: Team, metadata: str | None = None) -> JSONResponse:
    # Deprecated v1 list: every running sandbox, no paging.
    return _list(request, team, metadata=metadata, state=[], template=None, started_after=None, order="desc",
                 limit=None, next_token=None)


@router.get("/sandboxes/{sandbox_id}")
async def get_sandbox(sandbox_id: str, request: Request, team: Team) -> JSONResponse:
    return JSONResponse(detail_out(_manager(request).get(sandbox_id, team), _domain(request)))


@router.delete("/sandboxes/{sandbox_id}", status_code=204)
async def kill_sandbox(sandbox_id: str, request: Request, team: Team) -> Response:
    await _manager(request).kill(sandbox_id, team)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/timeout", status_code=204)
async def set_timeout(sandbox_id: str, body: TimeoutIn, request: Request, team: Team) -> Response:
    _manager(request).set_timeout(sandbox_id, team, body.timeout)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/refreshes", status_code=204)
async def refresh(sandbox_id: str, request: Request, team: Team, body: RefreshIn | None = None) -> Response:
    duration = body.duration if body is not None and body.duration is not None else V1_DEFAULT_TIMEOUT
    _manager(request).extend(sandbox_id, team, duration, field_name="duration")
    return Response(status_code=204)


def _connected(request: Request, sandbox_id: str, team: str, timeout: int, status: int) -> JSONResponse:
    row = _manager(request).extend(sandbox_id, team, timeout)
    return JSONResponse(sandbox_out(row, _domain(request)), status_code=status)


@router.post("/sandboxes/{sandbox_id}/connect")
async def connect_v1(sandbox_id: str, body: TimeoutIn, request: Request, team: Team) -> JSONResponse:
    # 200 = "was already running" (the only kind of sandbox Corral has; there is no pause).
    return _connected(request, sandbox_id, team, body.timeout, 200)


@router.post("/v2/sandboxes/{sandbox_id}/connect")
async def connect_v2(sandbox_id: str, request: Request, team: Team, body: ConnectV2In | None = None) -> JSONResponse:
    timeout = body.timeout if body is not None and body.timeout is not None else V2_DEFAULT_TIMEOUT
    return _connected(request, sandbox_id, team, timeout, 200)


@router.post("/sandboxes/{sandbox_id}/resume")
async def resume(sandbox_id: str, request: Request, team: Team, body: ResumeIn | None = None) -> JSONResponse:
    timeout = body.timeout if body is not None and body.timeout is not None else V1_DEFAULT_TIMEOUT
    return _connected(request, sandbox_id, team, timeout, 201)


@router.get("/sandboxes/{sandbox_id}/metrics")
async def metrics(sandbox_id: str, request: Request, team: Team) -> JSONResponse:
    # The SDK treats an empty list as "no samples yet"; Corral does not sample usage (yet).
    _manager(request).get(sandbox_id, team)
    return JSONResponse([])


@router.post("/sandboxes/{sandbox_id}/pause")
@router.post("/sandboxes/{sandbox_id}/snapshots")
@router.post("/sandboxes/{sandbox_id}/fork")
async def unsupported(sandbox_id: str, request: Request, team: Team) -> JSONResponse:
    # A clear "not here" instead of a bare 404, which the SDK would report as "sandbox not found".
    _manager(request).get(sandbox_id, team)
    action = request.url.path.rsplit("/", 1)[-1]
    return error_response(501, f"{action}: not supported by this server (sandboxes cannot be paused or snapshotted)")
