"""The /sandboxes and /v2/sandboxes endpoints: thin handlers that validate, call the SandboxManager, shape replies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from corral.errors import InvalidRequestError
from corral.net.policy import EgressPolicy
from corral.pausing import SHOWN_AS, VISIBLE
from corral.sandboxes import CreateRequest, SandboxManager
from corral.server.api_models import (
    ConnectV2In,
    NewSandboxIn,
    PauseIn,
    RefreshIn,
    ResumeIn,
    TimeoutIn,
    detail_out,
    listed_out,
    sandbox_out,
)
from corral.server.api_network import check_unsupported
from corral.server.api_volumes import volume_store
from corral.server.auth import require_team
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


def _create_request(body: NewSandboxIn, team_id: str, *, v2: bool, request: Request) -> CreateRequest:
    # Refuse what Corral cannot honour rather than silently dropping it.
    auto_resume = body.auto_resume is not None and body.auto_resume.enabled
    if auto_resume and not body.auto_pause:
        raise InvalidRequestError("autoResume: needs autoPause (lifecycle on_timeout 'pause')")
    if auto_resume and body.auto_pause_memory is False:
        raise InvalidRequestError("autoResume: a filesystem-only pause (autoPauseMemory false) cannot be auto-resumed")
    if body.mcp:
        raise InvalidRequestError("mcp: MCP gateways are not supported by this server")
    if body.iam and body.iam.get("tokens"):
        raise InvalidRequestError("iam: workload identity is not supported by this server")
    timeout = body.timeout if body.timeout is not None else (V2_DEFAULT_TIMEOUT if v2 else V1_DEFAULT_TIMEOUT)
    allow_public = (body.network or {}).get("allowPublicTraffic")
    check_unsupported(body.network or {}, "network")
    egress = EgressPolicy.from_wire(body.allow_internet_access, body.network)
    return CreateRequest(
        team_id=team_id, template=body.template_id, timeout_s=timeout, metadata=dict(body.metadata or {}),
        env_vars=dict(body.env_vars or {}), secure=True if v2 else bool(body.secure),
        allow_internet_access=body.allow_internet_access, require_traffic_token=allow_public is False, egress=egress,
        on_timeout="pause" if body.auto_pause else "kill", auto_resume=auto_resume,
        volumes=volume_store(request).resolve_mounts(
            team_id, body.volume_mounts, lambda: _manager(request).templates.get(body.template_id).rootfs))


async def _create(body: NewSandboxIn, request: Request, team: str, *, v2: bool) -> JSONResponse:
    req = _create_request(body, team, v2=v2, request=request)
    with volume_store(request).pinned(req.volumes):   # no destroy of a volume while it is being mounted
        row = await _manager(request).create(req)
    request.state.target_id = row.id   # for the audit log
    return JSONResponse(sandbox_out(row, _domain(request)), status_code=201)


@router.post("/sandboxes", status_code=201)
async def create_v1(body: NewSandboxIn, request: Request, team: Team) -> JSONResponse:
    return await _create(body, request, team, v2=False)


@router.post("/v2/sandboxes", status_code=201)
async def create_v2(body: NewSandboxIn, request: Request, team: Team) -> JSONResponse:
    return await _create(body, request, team, v2=True)


def _list(request: Request, team: str, *, metadata: str | None, state: list[str], template: str | None,
          started_after: datetime | None, order: str, limit: int | None,
          next_token: str | None) -> JSONResponse:
    states = parse_states(state)
    if started_after is not None and started_after.tzinfo is None:
        started_after = started_after.replace(tzinfo=UTC)  # a naive time is read as UTC
    # No state filter: running and paused (what the SDK's list means); mid-transition rows show what they were.
    wanted = states if states is not None else {"running", "paused"}
    db_states = [s for s in VISIBLE if SHOWN_AS.get(s, s) in wanted]
    rows = _manager(request).list(team, metadata=parse_metadata_query(metadata), template=template,
                                  started_after=started_after, states=db_states)
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
    out = detail_out(_manager(request).get(sandbox_id, team, states=VISIBLE), _domain(request))
    mounts = volume_store(request).mounts_of(sandbox_id)
    if mounts:
        out["volumeMounts"] = mounts
    return JSONResponse(out)


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


async def _connected(request: Request, sandbox_id: str, team: str, timeout: int, status: int | None) -> JSONResponse:
    """Resume a paused sandbox (201) or extend a running one (`status`, or 200)."""
    row, resumed = await _manager(request).pauser.resume(sandbox_id, team, timeout)
    return JSONResponse(sandbox_out(row, _domain(request)), status_code=201 if resumed else status or 200)


@router.post("/sandboxes/{sandbox_id}/connect")
async def connect_v1(sandbox_id: str, body: TimeoutIn, request: Request, team: Team) -> JSONResponse:
    return await _connected(request, sandbox_id, team, body.timeout, None)


@router.post("/v2/sandboxes/{sandbox_id}/connect")
async def connect_v2(sandbox_id: str, request: Request, team: Team, body: ConnectV2In | None = None) -> JSONResponse:
    # 201 = resumed from pause, 200 = was already running (the SDK reads both as success).
    timeout = body.timeout if body is not None and body.timeout is not None else V2_DEFAULT_TIMEOUT
    return await _connected(request, sandbox_id, team, timeout, None)


@router.post("/sandboxes/{sandbox_id}/resume")
async def resume(sandbox_id: str, request: Request, team: Team, body: ResumeIn | None = None) -> JSONResponse:
    timeout = body.timeout if body is not None and body.timeout is not None else V1_DEFAULT_TIMEOUT
    return await _connected(request, sandbox_id, team, timeout, 201)


@router.post("/sandboxes/{sandbox_id}/pause", status_code=204)
async def pause(sandbox_id: str, request: Request, team: Team, body: PauseIn | None = None) -> Response:
    # 409 when already paused (the SDK's pause() then returns False) or when it cannot be checkpointed.
    await _manager(request).pauser.pause(sandbox_id, team, memory=body.memory if body is not None else None)
    return Response(status_code=204)


@router.get("/sandboxes/{sandbox_id}/metrics")
async def metrics(sandbox_id: str, request: Request, team: Team) -> JSONResponse:
    # The SDK treats an empty list as "no samples yet"; Corral does not sample usage (yet).
    _manager(request).get(sandbox_id, team)
    return JSONResponse([])
