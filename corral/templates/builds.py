"""Builds in flight and finished: their status and logs (kept in memory, saved as JSON when done), signed upload links."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.config import Settings
from corral.errors import AuthError, CorralError, NotFoundError
from corral.net.service import NetworkService
from corral.templates.build_sandbox import BuildRuntime
from corral.templates.build_spec import BuildSpec
from corral.templates.builder import Builder, BuildFailed
from corral.templates.catalog import TemplateCatalog, TemplateOwner

log = logging.getLogger(__name__)
REASON_LOG_ENTRIES = 30


@dataclass
class BuildRecord:
    build_id: str
    template_id: str
    team: str
    name: str | None
    status: str = "waiting"                       # waiting | building | ready | error
    entries: list[dict[str, Any]] = field(default_factory=list)
    reason: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    cpu_count: int = 2
    memory_mb: int = 512
    tags: list[str] = field(default_factory=list)

    def log(self, level: str, message: str, step: str | None = None) -> None:
        entry: dict[str, Any] = {"timestamp": datetime.now(UTC).isoformat(), "level": level, "message": message}
        if step is not None:
            entry["step"] = step
        self.entries.append(entry)

    def fail(self, message: str, step: str | None) -> None:
        self.log("error", message, step)
        self.status = "error"
        self.reason = {"message": message, "logEntries": self.entries[-REASON_LOG_ENTRIES:]}
        if step is not None:
            self.reason["step"] = step

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "template_id": self.template_id, "team": self.team, "name": self.name,
                "status": self.status, "entries": self.entries, "reason": self.reason,
                "created_at": self.created_at.isoformat(), "cpu_count": self.cpu_count, "memory_mb": self.memory_mb,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None, "tags": self.tags}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BuildRecord:
        rec = cls(build_id=d["build_id"], template_id=d["template_id"], team=d["team"], name=d.get("name"),
                  status=d["status"], entries=d.get("entries", []), reason=d.get("reason"),
                  cpu_count=d.get("cpu_count", 2), memory_mb=d.get("memory_mb", 512), tags=d.get("tags", []))
        rec.created_at = datetime.fromisoformat(d["created_at"])
        rec.finished_at = datetime.fromisoformat(d["finished_at"]) if d.get("finished_at") else None
        return rec


class UploadSigner:
    """Short-lived HMAC tokens naming (team, files hash): the SDK PUTs the COPY archive to a URL carrying one."""

    def __init__(self, settings: Settings) -> None:
        self.ttl = settings.build_upload_ttl_s
        path = settings.data_dir / "upload.key"
        if not path.is_file():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        self.key = path.read_text().strip().encode()

    def sign(self, team: str, files_hash: str) -> str:
        expires = int(time.time()) + self.ttl
        body = f"{team}.{files_hash}.{expires}"
        mac = hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def verify(self, token: str) -> tuple[str, str]:
        try:
            team, files_hash, expires, mac = token.rsplit(".", 3)
            good = hmac.new(self.key, f"{team}.{files_hash}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]
            ok = hmac.compare_digest(mac, good) and int(expires) >= time.time()
        except ValueError:
            ok = False
        if not ok:
            raise AuthError("upload link is invalid or expired; ask for a new one")
        return team, files_hash


class BuildService:
    """Accepts builds, runs them one at a time in the background, answers status and logs."""

    def __init__(self, settings: Settings, catalog: TemplateCatalog, network: NetworkService | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.builder = Builder(settings, catalog, BuildRuntime(settings, network))
        self.signer = UploadSigner(settings)
        self.records: dict[str, BuildRecord] = {}
        self.dir = settings.data_dir / "builds"
        self._slots = asyncio.Semaphore(1)      # 2 shared cores: one build at a time
        self._tasks: set[asyncio.Task[None]] = set()

    def new_build(self, template_id: str, team: str, name: str | None, cpu: int, mem: int,
                  tags: list[str]) -> BuildRecord:
        rec = BuildRecord(build_id=str(uuid.uuid4()), template_id=template_id, team=team, name=name, cpu_count=cpu,
                          memory_mb=mem, tags=tags)
        self.records[rec.build_id] = rec
        return rec

    def get(self, template_id: str, build_id: str, team: str) -> BuildRecord:
        rec = self.records.get(build_id)
        if rec is None:
            path = self.dir / f"{build_id}.json"
            if path.name == f"{build_id}.json" and "/" not in build_id and path.is_file():
                rec = BuildRecord.from_json(json.loads(path.read_text()))
        if rec is None or rec.team != team or rec.template_id != template_id:
            raise NotFoundError(f"build {build_id!r} of template {template_id!r} not found")
        return rec

    def builds_of(self, template_id: str) -> list[BuildRecord]:
        return [r for r in self.records.values() if r.template_id == template_id]

    def start(self, rec: BuildRecord, spec: BuildSpec, owner: TemplateOwner) -> None:
        """Validate fast (raises for bad input, the build is marked error), then run it in the background."""
        if rec.status != "waiting" or rec.build_id in {t.get_name() for t in self._tasks}:
            raise CorralError(f"build {rec.build_id} was already started")
        try:
            self.builder.check(spec, rec.team)
        except CorralError as e:
            rec.fail(e.message, "base")
            self._save(rec)
            raise
        task = asyncio.create_task(self._run(rec, spec, owner), name=rec.build_id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rec: BuildRecord, spec: BuildSpec, owner: TemplateOwner) -> None:
        async with self._slots:
            rec.status = "building"
            try:
                async with asyncio.timeout(self.settings.build_timeout_s):
                    await self.builder.build(spec, template_id=rec.template_id, owner=owner, log=rec, tags=rec.tags)
                rec.status = "ready"
            except BuildFailed as e:
                rec.fail(e.message, e.step)
            except TimeoutError:
                rec.fail(f"the build ran past its limit of {self.settings.build_timeout_s:g}s and was stopped; "
                         f"the previous version of the template is still served", None)
            except CorralError as e:
                rec.fail(e.message, None)
            except Exception as e:
                log.exception("build %s crashed", rec.build_id)
                rec.fail(f"internal error: {e!r}", None)
            finally:
                rec.finished_at = datetime.now(UTC)
                self._save(rec)

    def _save(self, rec: BuildRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{rec.build_id}.tmp"
        tmp.write_text(json.dumps(rec.to_json()))
        tmp.replace(self.dir / f"{rec.build_id}.json")

    async def close(self) -> None:
        """Stop running builds (their sandboxes are destroyed; the previous template versions stay served)."""
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except BaseException:  # noqa: BLE001, S110 - stopping: the record below says how it ended
                pass
        for rec in self.records.values():
            if rec.status in ("waiting", "building"):
                rec.fail("the server stopped before this build finished; start it again", None)
                rec.finished_at = datetime.now(UTC)
                self._save(rec)


def store_upload(settings: Settings, path: Path, chunks_done: Path) -> None:
    """Move a fully received upload into place (atomic: a reader never sees a partial archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks_done.replace(path)
