"""Template memory snapshots: a template whose start command runs is captured once (start command up and ready) and
later sandboxes of it on gVisor are restored from that image, the process already warm (Modal/E2B-style)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from corral.db import SnapshotRecord
from corral.ids import new_sandbox_id
from corral.pool import POOL_DIR, build_id, spec_for
from corral.runtime import suspend
from corral.runtime.layout import copy_layer_file
from corral.runtime.lifecycle import OciRuntime

if TYPE_CHECKING:
    from corral.sandboxes import SandboxManager, TemplateLike

log = logging.getLogger(__name__)

READY_FILE = "complete"


class TemplateSnapshots:
    """<data_dir>/template-snapshots/<template id>/<build hash>/{image/, layer.img, meta.json, complete}."""

    def __init__(self, manager: SandboxManager) -> None:
        self.m = manager
        self._capturing: dict[str, asyncio.Task[None]] = {}

    @property
    def base(self) -> Path:
        return self.m.settings.data_dir / "template-snapshots"

    def _dir(self, template: TemplateLike) -> Path:
        digest = hashlib.sha256(build_id(template).encode()).hexdigest()[:16]
        return self.base / template.id / digest

    def _eligible(self, template: TemplateLike, runtime_name: str) -> bool:
        rt = self.m.runtimes.get(runtime_name)
        return (self.m.settings.template_snapshots and bool(template.start_cmd) and isinstance(rt, OciRuntime)
                and rt.checkpoint_blocker("0" * 20) is None)

    def ready(self, template: TemplateLike, runtime_name: str) -> SnapshotRecord | None:
        """A transient snapshot record for the template's current build, or None (then one may be captured)."""
        if not self._eligible(template, runtime_name):
            return None
        d = self._dir(template)
        if not (d / READY_FILE).exists():
            self._ensure(template, runtime_name)
            return None
        meta = json.loads((d / "meta.json").read_text())
        spec = spec_for(self.m.settings, template, "0" * 20)
        # Never stored: start() reads these fields and the restore dir only.
        return SnapshotRecord(
            id=f"template:{template.id}", team_id="", source_sandbox_id="", template_id=template.id,
            alias=template.alias, runtime=runtime_name, cpu_count=spec.cpu_count, memory_mb=spec.memory_mb,
            disk_mb=spec.disk_mb, lowerdir=meta["lowerdir"], env_vars={}, envd_access_token=None, hidden=True)

    def discard(self, template: TemplateLike) -> None:
        shutil.rmtree(self._dir(template), ignore_errors=True)

    def restore_dir(self, template: TemplateLike) -> Path:
        return self._dir(template)

    def _ensure(self, template: TemplateLike, runtime_name: str) -> None:
        key = f"{template.id}/{runtime_name}"
        if key in self._capturing:
            return
        task = asyncio.ensure_future(self._capture(template, runtime_name))
        self._capturing[key] = task
        task.add_done_callback(lambda _t: self._capturing.pop(key, None))

    async def _capture(self, template: TemplateLike, runtime_name: str) -> None:
        rt = self.m.runtimes[runtime_name]
        assert isinstance(rt, OciRuntime)
        sandbox_id = new_sandbox_id()
        # Named like a warm pool member: leak checks and the next start's sweep treat it as ours, not a leftover.
        marker = self.m.settings.data_dir / POOL_DIR / sandbox_id
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        final = self._dir(template)
        tmp = final.with_name(final.name + ".tmp")
        try:
            handle = await rt.create(spec_for(self.m.settings, template, sandbox_id))
            # Defaults only: no client's env vars or token may end up in an image every later sandbox starts from.
            await self.m.boot(handle.socket_path, template, {}, None)
            await suspend.pause(rt, sandbox_id, suspend.MEMORY)
            info = suspend.paused_info(rt.layout_of(sandbox_id))
            assert info is not None
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            await asyncio.to_thread(shutil.copytree, suspend.image_dir(rt, sandbox_id), tmp / "image")
            await copy_layer_file(rt.layout_of(sandbox_id).layer_img, tmp / "layer.img")
            (tmp / "meta.json").write_text(json.dumps({"lowerdir": info.lowerdir, "build": build_id(template)}))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            (final / READY_FILE).touch()
            for old in final.parent.iterdir():
                if old != final:   # earlier builds of the template
                    shutil.rmtree(old, ignore_errors=True)
            log.info("template %s: memory snapshot captured (start command warm)", template.id)
        except Exception:
            log.exception("template %s: memory snapshot capture failed; sandboxes boot it cold", template.id)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            try:
                await rt.destroy(sandbox_id)
            finally:
                marker.unlink(missing_ok=True)

    def sweep(self) -> None:
        """Server start: drop half-written captures (a crash mid-copy)."""
        for tmp in self.base.glob("*/*.tmp") if self.base.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)

    async def close(self) -> None:
        for task in list(self._capturing.values()):
            task.cancel()
        await asyncio.gather(*self._capturing.values(), return_exceptions=True)
