"""Runs one build: resolve the base, then each step as a cached layer, then install the template atomically.

Nothing half-built is served: the template dir is swapped in (TemplateStore.install) only after every step succeeded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from corral.config import Settings
from corral.errors import CorralError, InvalidRequestError
from corral.images.store import ImageStore
from corral.runtime.layout import lower_dirs
from corral.templates import tags as template_tags
from corral.templates.build_sandbox import BuildRuntime, proxy_env, run_step
from corral.templates.build_spec import META_STEPS, BuildSpec, Step, resolve_dir
from corral.templates.catalog import OWNER_JSON, TemplateCatalog, TemplateOwner
from corral.templates.copy_step import copy_script, unpack
from corral.templates.layers import Layer, LayerStore, layer_key, read_lowers, write_lowers
from corral.templates.store import TemplateInfo

# Build-time only: Debian marks its python "externally managed"; E2B's pip_install(g=True) means the system python.
BUILD_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_ROOT_USER_ACTION": "ignore"}
# The kernel takes one page of mount options: leave room for upperdir/workdir.
MAX_LOWERDIR_CHARS = 3500


class BuildFailed(CorralError):
    """A step failed: `step` is its 1-based number as the SDK reports it."""

    status_code = 400

    def __init__(self, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class BuildState:
    envs: dict[str, str]
    user: str
    workdir: str
    lowers: list[Path]          # top first
    parent: str                  # key chain
    scratch: Path                # has rootfs/ + lowers: the build sandbox's template
    reused: int = 0
    built: int = 0
    layer_keys: list[str] = field(default_factory=list)


class Logger(Protocol):
    """Where a build writes its log (corral.templates.builds.BuildRecord implements it)."""

    def log(self, level: str, message: str, step: str | None = None) -> None: ...


def uploads_path(settings: Settings, team: str, files_hash: str) -> Path:
    digest = hashlib.sha256(f"{team}\0{files_hash}".encode()).hexdigest()
    return settings.data_dir / "template-files" / digest[:2] / digest


def _rootfs_identity(rootfs: Path) -> str:
    st = os.stat(rootfs)
    return f"{os.path.realpath(rootfs)}:{st.st_ino}:{st.st_mtime_ns}"


def _default_user(rootfs: Path) -> tuple[str, str]:
    """E2B's convention when an image names no user: `user` in /home/user if the image has that account, else root."""
    try:
        lines = (rootfs / "etc" / "passwd").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 6 and fields[0] == "user":
            return "user", fields[5] or "/"
    return "root", "/"


class Builder:
    def __init__(self, settings: Settings, catalog: TemplateCatalog, runtime: BuildRuntime) -> None:
        self.settings = settings
        self.catalog = catalog
        self.runtime = runtime
        self.layers = LayerStore(settings.data_dir / "layers")

    # ---- before the build ----------------------------------------------------------------------------------
    def check(self, spec: BuildSpec, team: str) -> None:
        """Fail fast (before the build is accepted): the base exists and every COPY's files were uploaded."""
        if spec.from_template:
            self.catalog.get_for_team(spec.from_template, team)
        else:
            ImageStore(self.settings.data_dir, self.settings).check(spec.from_image or "")
        for i, step in enumerate(spec.steps, 1):
            if step.type == "COPY" and not uploads_path(self.settings, team, step.files_hash or "").is_file():
                raise InvalidRequestError(f"steps[{i}].filesHash: the files of COPY {step.args[0]} were never "
                                          f"uploaded (GET /templates/{{id}}/files/{step.files_hash} first)")

    def _base(self, spec: BuildSpec, team: str, log: Logger) -> tuple[list[Path], dict[str, str], str, str, str]:
        """(lowers, env, user, workdir, key) of the build's starting point (may build a base image: minutes)."""
        if spec.from_template:
            info = self.catalog.get_for_team(spec.from_template, team)
            owner = self.catalog.owner(info)
            top = owner.top_key if owner and owner.top_key else _rootfs_identity(info.rootfs)
            return (read_lowers(info.rootfs), dict(info.envs), info.user, info.workdir,
                    f"template:{info.id}:{top}")
        image = ImageStore(self.settings.data_dir, self.settings).resolve(
            spec.from_image or "", log=lambda line: log.log("info", line, step="base"))
        user, home = _default_user(image.rootfs)
        return ([image.rootfs], dict(image.env), image.user or user, image.workdir or home,
                f"image:{image.ref}:{_rootfs_identity(image.rootfs)}")

    # ---- the build ---------------------------------------------------------------------------------------------
    async def build(self, spec: BuildSpec, *, template_id: str, owner: TemplateOwner, log: Logger,
                    tags: list[str] | None = None) -> TemplateInfo:
        t0 = time.monotonic()
        # In a thread: a built-in base is debootstrapped on first use, and a configured registry is pulled from.
        lowers, envs, user, workdir, key = await asyncio.to_thread(self._base, spec, owner.team, log)
        scratch = self.catalog.user.root / f".build-{owner.build_id}"
        self.catalog.user.root.mkdir(parents=True, exist_ok=True)
        state = BuildState(envs=envs, user=user, workdir=workdir, lowers=lowers, parent=key, scratch=scratch)
        log.log("info", f"[base] {spec.from_image or 'template ' + str(spec.from_template)}", step="base")
        while (gc_lock := self.layers.lock(exclusive=False)) is None:
            await asyncio.sleep(0.2)      # `corral template gc` is running (it takes a moment)
        try:
            forced = bool(spec.force)
            for i, step in enumerate(spec.steps, 1):
                forced = forced or bool(step.force)
                await self._step(i, len(spec.steps), step, state, forced, owner, log)
            info = self._install(spec, template_id, owner, state, tags or [])
        finally:
            gc_lock.close()
            shutil.rmtree(scratch, ignore_errors=True)
        log.log("info", f"build done in {time.monotonic() - t0:.2f}s: {state.reused} layers reused, "
                        f"{state.built} built", step="finalize")
        return info

    async def _step(self, i: int, n: int, step: Step, state: BuildState, forced: bool, owner: TemplateOwner,
                    log: Logger) -> None:
        label = f"[{i}/{n}] {step.describe()}"
        parent, key = state.parent, layer_key(state.parent, step.cache_def())
        state.parent = key
        if step.type in META_STEPS:
            if step.type == "ENV":
                state.envs.update(dict(zip(step.args[::2], step.args[1::2], strict=True)))
            else:
                state.user = step.args[0]
            log.log("info", label, step=str(i))
            return
        if step.type == "WORKDIR":
            state.workdir = resolve_dir(state.workdir, step.args[0])
        layer = self.layers.get(key)
        if layer is not None and not forced:
            log.log("info", f"CACHED {label}", step=str(i))
            state.reused += 1
        else:
            log.log("info", label, step=str(i))
            t = time.monotonic()
            layer = await self._execute(i, step, state, owner, log, key, parent)
            state.built += 1
            log.log("info", f"[{i}/{n}] done in {time.monotonic() - t:.2f}s", step=str(i))
        if not layer.empty:
            state.lowers.insert(0, layer.root)
        state.layer_keys.append(key)

    async def _execute(self, i: int, step: Step, state: BuildState, owner: TemplateOwner, log: Logger,
                       key: str, parent: str) -> Layer:
        user, cwd, context = state.user, state.workdir, None
        if step.type == "RUN":
            cmd = step.args[0]
            user = step.args[1] if len(step.args) > 1 and step.args[1] else state.user
        elif step.type == "WORKDIR":
            cmd, user, cwd = f"mkdir -p {shlex.quote(state.workdir)}", "root", "/"
        else:  # COPY
            context = state.scratch / f"ctx-{i}"
            unpack(uploads_path(self.settings, owner.team, step.files_hash or ""), context)
            copy_owner = step.args[2] if len(step.args) > 2 and step.args[2] else state.user
            mode = step.args[3] if len(step.args) > 3 else ""
            cmd = copy_script(context, step.args[0], step.args[1], copy_owner, mode, state.workdir)
            user, cwd = "root", "/"
        write_lowers(state.scratch, state.lowers)
        if len(lower_dirs(state.scratch / "rootfs")) > MAX_LOWERDIR_CHARS:
            raise BuildFailed(f"step {i}: the template has too many layers for one overlay mount; merge steps "
                              f"(e.g. several commands in one run_cmd)", step=str(i))
        staged = self.layers.staging()
        envs = {**state.envs, **BUILD_ENV, **(proxy_env() if not self.settings.net_enabled else {})}
        try:
            async with asyncio.timeout(self.settings.build_step_timeout_s):
                code = await run_step(self.runtime, self.settings, state.scratch / "rootfs", ["/bin/bash", "-c", cmd],
                                      user=user, cwd=cwd, envs=envs, context=context, layer_root=staged / "root",
                                      on_output=lambda level, line: log.log(level, line, step=str(i)))
        except TimeoutError:
            shutil.rmtree(staged, ignore_errors=True)
            raise BuildFailed(f"step {i} ({step.describe()}) did not finish within "
                              f"{self.settings.build_step_timeout_s:g}s; it was stopped", step=str(i)) from None
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        finally:
            if context is not None:
                shutil.rmtree(context, ignore_errors=True)
        if code != 0:
            shutil.rmtree(staged, ignore_errors=True)
            raise BuildFailed(f"step {i} ({step.describe()}) failed with exit code {code}", step=str(i))
        return self.layers.commit(key, staged, {"step": step.cache_def(), "parent": parent})

    def _install(self, spec: BuildSpec, template_id: str, owner: TemplateOwner, state: BuildState,
                 tags: list[str]) -> TemplateInfo:
        staged = self.catalog.user.root / f".build-{owner.build_id}-final"
        shutil.rmtree(staged, ignore_errors=True)
        write_lowers(staged, state.lowers)
        template_tags.carry_over(self.catalog.user.root / template_id, staged)
        owner.top_key = state.parent
        owner.layers = state.layer_keys
        (staged / OWNER_JSON).write_text(owner.model_dump_json(indent=1) + "\n")
        info = TemplateInfo(id=template_id, aliases=[owner.name] if owner.name else [], envs=state.envs,
                            workdir=state.workdir, user=state.user, start_cmd=spec.start_cmd or None,
                            ready_cmd=spec.ready_cmd or None, cpu_count=owner.cpu_count, memory_mb=owner.memory_mb)
        for tag in {template_tags.DEFAULT_TAG, *tags}:
            template_tags.snapshot(staged, tag, info, state.lowers, owner.build_id)
        try:
            return self.catalog.user.install(staged, info)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise

