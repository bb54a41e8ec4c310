"""The admin API: teams, their API keys and quotas (openapi.yml's /teams, /api-keys, /admin/teams/... parts).

Auth: an admin key (`corral keys create --admin`) as `X-Admin-Token` or `Authorization: Bearer`; the /api-keys
routes name their team with `X-Team-ID`, as the spec's AdminTeamAuth does. Team API keys are never admin keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from corral.db import Team
from corral.sandboxes import SandboxManager
from corral.server.auth import require_admin
from corral.tenancy import (
    create_team,
    create_team_key,
    get_quota,
    key_out,
    list_teams,
    remove_team,
    rename_team_key,
    revoke_team_key,
    set_quota,
    team_keys,
    team_row,
)

router = APIRouter(dependencies=[Depends(require_admin)])
TeamHeader = Annotated[str, Header(alias="X-Team-ID", min_length=1, max_length=64)]


class _AdminIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NameIn(_AdminIn):
    name: str = Field(min_length=1, max_length=200)


class QuotaIn(_AdminIn):
    """null (or absent) = the server's default for that limit."""

    maxSandboxes: int | None = Field(default=None, ge=0)
    createsPerSecond: float | None = Field(default=None, ge=0)
    memoryMB: int | None = Field(default=None, ge=0)
    diskMB: int | None = Field(default=None, ge=0)


def _manager(request: Request) -> SandboxManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _target(request: Request, target: str) -> None:
    request.state.target_id = target  # for the audit log


def team_out(team: Team) -> dict[str, Any]:
    # The spec's Team; keys are stored hashed, so `apiKey` is never available.
    return {"teamID": team.id, "name": team.name, "apiKey": "", "isDefault": team.name == "default"}


@router.get("/teams")
async def get_teams(request: Request) -> JSONResponse:
    return JSONResponse([team_out(t) for t in list_teams(_manager(request).db)])


@router.post("/teams", status_code=201)
async def post_team(body: NameIn, request: Request) -> JSONResponse:
    team = create_team(_manager(request).db, body.name)
    _target(request, team.id)
    return JSONResponse(team_out(team), status_code=201)


@router.delete("/teams/{teamID}", status_code=204)
async def delete_team(teamID: str, request: Request) -> Response:
    _target(request, teamID)
    remove_team(_manager(request).db, teamID)
    return Response(status_code=204)


def _quota_out(request: Request, team_id: str) -> dict[str, Any]:
    m = _manager(request)
    q = get_quota(m.db, m.settings, team_id)
    count, mem, disk = m.quotas.usage(team_id)
    return {"teamID": team_id, "maxSandboxes": q.max_sandboxes, "createsPerSecond": q.creates_per_s,
            "memoryMB": q.memory_mb, "diskMB": q.disk_mb,
            "usage": {"sandboxes": count, "memoryMB": mem, "diskMB": disk}}


@router.get("/teams/{teamID}/quota")
async def get_team_quota(teamID: str, request: Request) -> JSONResponse:
    team_row(_manager(request).db, teamID)
    return JSONResponse(_quota_out(request, teamID))


@router.put("/teams/{teamID}/quota")
async def put_team_quota(teamID: str, body: QuotaIn, request: Request) -> JSONResponse:
    _target(request, teamID)
    set_quota(_manager(request).db, teamID, max_sandboxes=body.maxSandboxes, creates_per_s=body.createsPerSecond,
              memory_mb=body.memoryMB, disk_mb=body.diskMB)
    return JSONResponse(_quota_out(request, teamID))


@router.post("/admin/teams/{teamID}/sandboxes/kill")
async def kill_team_sandboxes(teamID: str, request: Request) -> JSONResponse:
    _target(request, teamID)
    m = _manager(request)
    team_row(m.db, teamID)
    killed = 0
    for row in m.list(teamID):
        await m.kill(row.id, teamID)
        killed += 1
    return JSONResponse({"killedCount": killed, "failedCount": 0})


# ---- API keys ----

@router.get("/api-keys")
async def get_api_keys(request: Request, team: TeamHeader) -> JSONResponse:
    return JSONResponse([key_out(k) for k in team_keys(_manager(request).db, team)])


async def _new_key(request: Request, team: str, body: NameIn) -> JSONResponse:
    created = create_team_key(_manager(request).db, team, body.name)
    _target(request, created["id"])
    return JSONResponse(created, status_code=201)


@router.post("/api-keys", status_code=201)
async def post_api_key(body: NameIn, request: Request, team: TeamHeader) -> JSONResponse:
    return await _new_key(request, team, body)


@router.post("/admin/teams/{teamID}/api-keys", status_code=201)
async def admin_post_api_key(teamID: str, body: NameIn, request: Request) -> JSONResponse:
    return await _new_key(request, teamID, body)


@router.patch("/api-keys/{apiKeyID}")
async def patch_api_key(apiKeyID: str, body: NameIn, request: Request, team: TeamHeader) -> JSONResponse:
    _target(request, apiKeyID)
    return JSONResponse(key_out(rename_team_key(_manager(request).db, team, apiKeyID, body.name)))


@router.delete("/api-keys/{apiKeyID}", status_code=204)
async def delete_api_key(apiKeyID: str, request: Request, team: TeamHeader) -> Response:
    _target(request, apiKeyID)
    revoke_team_key(_manager(request).db, team, apiKeyID)
    return Response(status_code=204)


@router.delete("/admin/teams/{teamID}/api-keys/{apiKeyID}", status_code=204)
async def admin_delete_api_key(teamID: str, apiKeyID: str, request: Request) -> Response:
    _target(request, apiKeyID)
    revoke_team_key(_manager(request).db, teamID, apiKeyID)
    return Response(status_code=204)
