"""The template endpoints the SDK's Template.build / build_in_background / get_build_status / exists use, plus
list, get, update and delete; the COPY upload links point back at this server (`PUT /_corral/template-files/TOKEN`)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.ids import new_sandbox_id
from corral.server.auth import require_team
from corral.templates import tags as tags_mod
from corral.templates.build_spec import BuildSpec, validate_spec
from corral.templates.builder import uploads_path
from corral.templates.builds import BuildRecord, BuildService
from corral.templates.catalog import TemplateCatalog, TemplateOwner
from corral.templates.store import _ID_RE, TemplateInfo

router = APIRouter()
Team = Annotated[str, Depends(require_team)]
ENVD_VERSION = "0.6.4"
MAX_LOG_PAGE = 100


class BuildRequestV3(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, max_length=128)
    alias: str | None = Field(default=None, max_length=128)
    tags: list[str] | None = None
    team_id: str | None = Field(default=None, alias="teamID")
    cpu_count: int | None = Field(default=None, alias="cpuCount", ge=1, le=16)
    memory_mb: int | None = Field(default=None, alias="memoryMB", ge=128)
    min_free_disk_mb: int | None = Field(default=None, alias="minFreeDiskMb", ge=0)


class AssignTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    tags: list[str] = Field(min_length=1)


class DeleteTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    tags: list[str] = Field(min_length=1)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public: bool | None = None


def _service(request: Request) -> BuildService:
    svc: BuildService | None = getattr(request.app.state, "template_builds", None)
    if svc is None:
        catalog = request.app.state.manager.templates
        if not isinstance(catalog, TemplateCatalog):
            catalog = TemplateCatalog(request.app.state.settings)
        svc = request.app.state.template_builds = BuildService(request.app.state.settings, catalog,
                                                               request.app.state.manager.network)
    return svc


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


# ---- build -------------------------------------------------------------------------------------------------------
@router.post("/v3/templates", status_code=202)
async def request_build(body: BuildRequestV3, team: Team, request: Request) -> dict[str, Any]:
    svc = _service(request)
    raw = body.name or body.alias
    if not raw:
        raise InvalidRequestError("name: a template name is required")
    name, tag = tags_mod.split_name(raw)
    tags = sorted({tags_mod.check_tag(t) for t in [*(body.tags or []), *([tag] if tag else [])]})
    if not _ID_RE.match(name):
        raise InvalidRequestError(f"name: {name!r} must be lowercase letters, digits, '-' or '_' (max 63)")
    existing = svc.catalog.check_name(name, team)   # 409 when another team (or the system) has that name
    template_id = existing.id if existing is not None else new_sandbox_id()
    rec = svc.new_build(template_id, team, name, body.cpu_count or 2, body.memory_mb or 512, tags)
    public = bool(existing is not None and (o := svc.catalog.owner(existing)) and o.public)
    return {"templateID": template_id, "buildID": rec.build_id, "public": public, "aliases": [name],
            "names": [name], "tags": tags}


@router.get("/templates/{template_id}/files/{files_hash}", status_code=201)
async def file_upload_link(template_id: str, files_hash: str, team: Team, request: Request) -> dict[str, Any]:
    svc = _service(request)
    if not files_hash.isalnum() or len(files_hash) > 128:
        raise InvalidRequestError("hash: must be the hex files hash the SDK computed")
    _known_template(svc, template_id, team)
    if uploads_path(svc.settings, team, files_hash).is_file():
        return {"present": True}
    base = svc.settings.public_api_url.rstrip("/") or str(request.base_url).rstrip("/")
    return {"present": False, "url": f"{base}/_corral/template-files/{svc.signer.sign(team, files_hash)}"}


@router.put("/_corral/template-files/{token}", status_code=201)
async def upload_files(token: str, request: Request) -> Response:
    svc = _service(request)
    team, files_hash = svc.signer.verify(token)
    final = uploads_path(svc.settings, team, files_hash)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}")
    limit = svc.settings.build_upload_max_mb << 20
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidRequestError(f"upload: {int(declared) >> 20} MiB is over the {limit >> 20} MiB limit")
    try:
        with open(tmp, "wb") as f:  # noqa: ASYNC230 - local disk, chunked
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise InvalidRequestError(f"upload: over the {limit >> 20} MiB limit")
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return Response(status_code=201)


@router.post("/v2/templates/{template_id}/builds/{build_id}", status_code=202)
async def start_build(template_id: str, build_id: str, body: BuildSpec, team: Team, request: Request) -> Response:
    svc = _service(request)
    rec = svc.get(template_id, build_id, team)
    if rec.status != "waiting":
        raise ConflictError(f"build {build_id} was already started (status {rec.status})")
    try:
        validate_spec(body)
    except InvalidRequestError as e:
        rec.fail(e.message, None)
        raise
    existing = _maybe_owned(svc, template_id, team)
    owner = TemplateOwner(team=team, name=rec.name, build_id=build_id, cpu_count=rec.cpu_count,
                          memory_mb=rec.memory_mb, public=existing.public if existing else False,
                          created_at=existing.created_at if existing else datetime.now(UTC),
                          build_count=(existing.build_count + 1) if existing else 1)
    svc.start(rec, body, owner)
    return Response(status_code=202)


def _maybe_owned(svc: BuildService, template_id: str, team: str) -> TemplateOwner | None:
    try:
        return svc.catalog.owned(template_id, team)[1]
    except NotFoundError:
        return None


def _known_template(svc: BuildService, template_id: str, team: str) -> None:
    """The id of a build this team requested, or of a template it owns: else 404."""
    if any(r.template_id == template_id and r.team == team for r in svc.records.values()):
        return
    svc.catalog.owned(template_id, team)


@router.get("/templates/{template_id}/builds/{build_id}/status")
async def build_status(template_id: str, build_id: str, team: Team, request: Request,
                       logs_offset: Annotated[int, Query(alias="logsOffset", ge=0)] = 0,
                       limit: Annotated[int, Query(ge=0, le=MAX_LOG_PAGE)] = MAX_LOG_PAGE,
                       level: str | None = None) -> dict[str, Any]:
    rec = _service(request).get(template_id, build_id, team)
    entries = _filter(rec.entries, level)[logs_offset:logs_offset + limit]
    out: dict[str, Any] = {"templateID": template_id, "buildID": build_id, "status": rec.status,
                           "logs": [f"[{e['timestamp']}] {e['message']}" for e in entries], "logEntries": entries}
    if rec.reason is not None:
        out["reason"] = rec.reason
    return out


@router.get("/templates/{template_id}/builds/{build_id}/logs")
async def build_logs(template_id: str, build_id: str, team: Team, request: Request,
                     cursor: Annotated[int | None, Query(ge=0)] = None,
                     limit: Annotated[int, Query(ge=0, le=MAX_LOG_PAGE)] = MAX_LOG_PAGE,
                     direction: str = "forward", level: str | None = None,
                     source: str | None = None) -> dict[str, Any]:
    """Entries from `cursor` (unix ms, inclusive) on, oldest first; `direction=backward`: newest first up to it."""
    if direction not in ("forward", "backward"):
        raise InvalidRequestError("direction: must be 'forward' or 'backward'")
    rec = _service(request).get(template_id, build_id, team)
    entries = _filter(rec.entries, level)
    if cursor is not None:
        ms = [int(datetime.fromisoformat(e["timestamp"]).timestamp() * 1000) for e in entries]
        entries = [e for e, t in zip(entries, ms, strict=True) if (t >= cursor if direction == "forward" else t <= cursor)]
    if direction == "backward":
        entries = entries[::-1]
    return {"logs": entries[:limit]}


def _filter(entries: list[dict[str, Any]], level: str | None) -> list[dict[str, Any]]:
    order = ["debug", "info", "warn", "error"]
    if level is None:
        return entries
    if level not in order:
        raise InvalidRequestError(f"level: must be one of {', '.join(order)}")
    return [e for e in entries if order.index(e["level"]) >= order.index(level)]


# ---- tags -------------------------------------------------------------------------------------------------------
@router.post("/templates/tags", status_code=201)
async def assign_tags(body: AssignTags, team: Team, request: Request) -> dict[str, Any]:
    """Point each of `tags` at the build `target` ("name" or "name:tag") names."""
    svc = _service(request)
    name, source = tags_mod.split_name(body.target)
    info, _ = svc.catalog.owned(name, team)
    build_id = ""
    for tag in body.tags:
        build_id = tags_mod.copy_tag(info.rootfs.parent, source or tags_mod.DEFAULT_TAG, tags_mod.check_tag(tag))
    return {"tags": body.tags, "buildID": build_id}


@router.delete("/templates/tags", status_code=204)
async def delete_tags(body: DeleteTags, team: Team, request: Request) -> Response:
    svc = _service(request)
    info, _ = svc.catalog.owned(tags_mod.split_name(body.name)[0], team)
    if tags_mod.DEFAULT_TAG in body.tags:
        raise InvalidRequestError(f"tags: {tags_mod.DEFAULT_TAG!r} always names the latest build")
    for tag in body.tags:
        tags_mod.remove(info.rootfs.parent, tag)
    return Response(status_code=204)


@router.get("/templates/{template_id}/tags")
async def list_tags(template_id: str, team: Team, request: Request) -> list[dict[str, str]]:
    svc = _service(request)
    info = svc.catalog.get_for_team(tags_mod.split_name(template_id)[0], team)
    return tags_mod.listing(info.rootfs.parent)


# ---- list / get / alias / update / delete ----------------------------------------------------------------------
def _template_out(info: TemplateInfo, owner: TemplateOwner, builds: list[BuildRecord]) -> dict[str, Any]:
    names = list(info.aliases)
    return {"templateID": info.id, "buildID": owner.build_id, "cpuCount": owner.cpu_count,
            "memoryMB": owner.memory_mb, "diskSizeMB": 1024, "public": owner.public, "aliases": names,
            "names": names, "createdAt": _iso(owner.created_at), "updatedAt": _iso(info.created_at),
            "createdBy": None, "lastSpawnedAt": None, "spawnCount": 0, "buildCount": owner.build_count,
            "envdVersion": ENVD_VERSION, "buildStatus": "ready"}


@router.get("/templates")
@router.get("/v2/templates")
async def list_templates(team: Team, request: Request) -> list[dict[str, Any]]:
    svc = _service(request)
    return [_template_out(info, owner, []) for info, owner in svc.catalog.list_for_team(team) if owner is not None]


@router.get("/templates/aliases/{alias}")
async def alias_info(alias: str, team: Team, request: Request) -> JSONResponse:
    svc = _service(request)
    try:
        info = svc.catalog.get(alias)
    except NotFoundError:
        return JSONResponse({"code": 404, "message": f"template alias {alias!r} not found"}, status_code=404)
    owner = svc.catalog.owner(info)
    if owner is not None and owner.team != team:
        return JSONResponse({"code": 403, "message": f"template {alias!r} belongs to another team"},
                            status_code=403)
    return JSONResponse({"templateID": info.id, "public": owner.public if owner else True})


@router.get("/templates/{template_id}")
async def get_template(template_id: str, team: Team, request: Request) -> dict[str, Any]:
    svc = _service(request)
    info = svc.catalog.get_for_team(template_id, team)
    owner = svc.catalog.owner(info)
    if owner is None:
        raise NotFoundError(f"template {template_id!r} is a system template; it has no builds to show")
    builds = [{"buildID": r.build_id, "status": r.status, "createdAt": _iso(r.created_at),
               "updatedAt": _iso(r.finished_at or r.created_at), "finishedAt": _iso(r.finished_at),
               "cpuCount": r.cpu_count, "memoryMB": r.memory_mb, "envdVersion": ENVD_VERSION}
              for r in svc.builds_of(info.id)]
    out = _template_out(info, owner, [])
    return {k: out[k] for k in ("templateID", "public", "aliases", "names", "createdAt", "updatedAt",
                                "lastSpawnedAt", "spawnCount")} | {"builds": builds}


@router.patch("/templates/{template_id}")
@router.patch("/v2/templates/{template_id}")
async def update_template(template_id: str, body: TemplateUpdate, team: Team, request: Request) -> dict[str, Any]:
    svc = _service(request)
    info, owner = svc.catalog.owned(template_id, team)
    if body.public is not None:
        owner.public = body.public
        svc.catalog.save_owner(info, owner)
    return {"names": list(info.aliases)}


@router.delete("/templates/{template_id}", status_code=204)
async def delete_template(template_id: str, team: Team, request: Request) -> Response:
    snapshots = request.app.state.manager.snapshots
    if snapshots.find(team, template_id) is not None:
        # Snapshots are templates in E2B's API: the SDK deletes one through DELETE /templates/{id}.
        await snapshots.delete(team, template_id)
        return Response(status_code=204)
    svc = _service(request)
    info, _ = svc.catalog.owned(template_id, team)
    # Running sandboxes keep their layers (gc skips mounted ones); the template stops being served at once.
    svc.catalog.user.delete(info.id)
    return Response(status_code=204)
