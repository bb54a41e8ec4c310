"""The /volumes endpoints (openapi.yml): create, list, get and destroy a team's volumes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from corral.db import VolumeRecord
from corral.server.auth import require_team
from corral.volumes.store import VolumeStore

router = APIRouter()
Team = Annotated[str, Depends(require_team)]


class NewVolumeIn(BaseModel):
    # E2B's protocol, not ours: unknown fields from newer SDKs are ignored; the name is checked by the store.
    model_config = ConfigDict(extra="ignore")

    name: Any = None


def volume_store(request: Request) -> VolumeStore:
    return request.app.state.volumes  # type: ignore[no-any-return]


def _out(row: VolumeRecord, with_token: bool) -> dict[str, str]:
    out = {"volumeID": row.id, "name": row.name}
    if with_token:
        out["token"] = row.token
    return out


@router.post("/volumes", status_code=201)
async def create_volume(body: NewVolumeIn, request: Request, team: Team) -> JSONResponse:
    return JSONResponse(_out(await volume_store(request).create(team, body.name), True), status_code=201)


@router.get("/volumes")
async def list_volumes(request: Request, team: Team) -> JSONResponse:
    return JSONResponse([_out(r, False) for r in volume_store(request).team_volumes(team)])


@router.get("/volumes/{volume_id}")
async def get_volume(volume_id: str, request: Request, team: Team) -> JSONResponse:
    return JSONResponse(_out(volume_store(request).get(volume_id, team), True))


@router.delete("/volumes/{volume_id}", status_code=204)
async def destroy_volume(volume_id: str, request: Request, team: Team) -> Response:
    store = volume_store(request)
    await run_in_threadpool(store.purge, await store.destroy(volume_id, team))
    return Response(status_code=204)
