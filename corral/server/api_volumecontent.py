"""The volume content API (openapi-volumecontent.yml) on the API port: the SDK's Volume file operations.

The SDK sends these to E2B_VOLUME_API_URL (set it to the API URL) with `Authorization: Bearer <volume token>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from corral.errors import AuthError, InvalidRequestError, NotFoundError
from corral.server.api_volumes import volume_store
from corral.volumes import content
from corral.volumes.store import VolumeStore

router = APIRouter(prefix="/volumecontent/{volume_id}")
READ_CHUNK = 1 << 20
WRITE_BATCH = 1 << 20


def volume_root(volume_id: str, request: Request) -> Any:
    """FastAPI dependency: the data directory the request's bearer token opens (401 without a known token)."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing Authorization: Bearer <volume token> header")
    store: VolumeStore = volume_store(request)
    try:
        row = store.for_token(volume_id, token)
    except NotFoundError:
        if not store.token_known(token):
            raise AuthError("invalid volume token") from None
        raise
    return store.data_dir(row.id)


Root = Annotated[Any, Depends(volume_root)]
PathQ = Annotated[str, Query(min_length=1)]
U32 = Annotated[int | None, Query(ge=0, le=2**32 - 1)]


class MetadataIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uid: int | None = Field(default=None, ge=0, le=2**32 - 1)
    gid: int | None = Field(default=None, ge=0, le=2**32 - 1)
    mode: int | None = Field(default=None, ge=0, le=0o7777)


@router.get("/path")
async def stat_path(root: Root, path: PathQ) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(content.stat_path, root, path))


@router.patch("/path")
async def update_metadata(root: Root, path: PathQ, body: MetadataIn) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(
        lambda: content.update_metadata(root, path, uid=body.uid, gid=body.gid, mode=body.mode)))


@router.delete("/path", status_code=204)
async def remove(root: Root, path: PathQ) -> Response:
    await run_in_threadpool(content.remove, root, path)
    return Response(status_code=204)


@router.get("/dir")
async def list_dir(root: Root, path: PathQ, depth: Annotated[int, Query(ge=1, le=content.MAX_LIST_DEPTH)] = 1,
                   ) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(content.list_dir, root, path, depth))


@router.post("/dir", status_code=201)
async def make_dir(root: Root, path: PathQ, uid: U32 = None, gid: U32 = None, mode: U32 = None,
                   force: bool = False) -> JSONResponse:
    out = await run_in_threadpool(lambda: content.make_dir(root, path, uid=uid, gid=gid, mode=mode, force=force))
    return JSONResponse(out, status_code=201)


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    # Exactly the Content-Length announced, even if a sandbox grows or truncates the file meanwhile.
    try:
        while size > 0:
            chunk = os.read(fd, min(READ_CHUNK, size)) or b"\0" * min(READ_CHUNK, size)
            size -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


@router.get("/file")
async def read_file(root: Root, path: PathQ) -> StreamingResponse:
    fd = await run_in_threadpool(content.open_for_read, root, path)
    size = os.fstat(fd).st_size
    return StreamingResponse(_chunks(fd, size), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


@router.put("/file", status_code=201)
async def write_file(request: Request, root: Root, path: PathQ, uid: U32 = None, gid: U32 = None, mode: U32 = None,
                     force: bool = False) -> JSONResponse:
    if mode is not None and mode > 0o7777:
        raise InvalidRequestError(f"mode: must be between 0 and 0o7777, got {mode}")
    upload = await run_in_threadpool(
        lambda: content.begin_write(root, path, uid=uid, gid=gid, mode=mode, force=force))
    try:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) >= WRITE_BATCH:
                await run_in_threadpool(upload.write, bytes(buf))
                buf.clear()
        if buf:
            await run_in_threadpool(upload.write, bytes(buf))
    except BaseException:
        upload.abort()
        raise
    return JSONResponse(await run_in_threadpool(upload.commit), status_code=201)
