"""Warm pools: sandboxes started ahead per (template, runtime), handed out whole on create; no user code ever ran in one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corral.config import Settings
from corral.errors import NotFoundError
from corral.ids import is_sandbox_id, new_sandbox_id
from corral.runtime.base import Runtime, RuntimeHandle, SandboxSpec
from corral.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PoolKey = tuple[str, str]  # (template id, runtime name)
# Marker directory (under the data dir) naming every pool member: leak checks and restarts tell them apart by it.
POOL_DIR = "pool"


class PoolTemplate(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def rootfs(self) -> Path: ...
    @property
    def envs(self) -> dict[str, str]: ...


def build_id(template: Any) -> str:
    """What changes when a template is rebuilt: template.json's created_at (TemplateStore) plus the rootfs path."""
    return f"{getattr(template, 'created_at', '')}|{template.rootfs}"


def pool_member_ids(data_dir: Path) -> set[str]:
    """Ids of the sandboxes a server's warm pools hold (or were creating/destroying) right now."""
    try:
        return {p.name for p in (data_dir / POOL_DIR).iterdir() if is_sandbox_id(p.name)}
    except FileNotFoundError:
        return set()


def sandbox_cpus(settings: Settings, wanted: int | None = None) -> int:
    """vCPUs of one sandbox: the template's (else the setting), but never every core of a multi-core host (one stays
    for the server and the neighbours: a spinner with all cores tripled a neighbour's command latency on 2 cores)."""
    cores = os.cpu_count() or 1
    return max(1, min(wanted or settings.default_cpu_count, cores - 1 if cores > 1 else 1))


def spec_for(settings: Settings, template: PoolTemplate, sandbox_id: str) -> SandboxSpec:
    """The one spec every sandbox of a template gets (nothing in it depends on the create request)."""
    return SandboxSpec(sandbox_id=sandbox_id, template_rootfs=template.rootfs,
                       cpu_count=sandbox_cpus(settings, getattr(template, "cpu_count", None)),
                       memory_mb=getattr(template, "memory_mb", None) or settings.default_memory_mb,
                       disk_mb=settings.default_disk_mb,
                       pids_limit=settings.sandbox_pids, nofile=settings.sandbox_nofile,
                       tmp_mb=settings.sandbox_tmp_mb, output_buffer_bytes=settings.agent_output_buffer_bytes,
                       env=dict(template.envs))


@dataclass
class _Pool:
    build: str
    ready: deque[RuntimeHandle] = field(default_factory=deque)
    claims: deque[float] = field(default_factory=deque)  # monotonic times of recent claims (hits and misses)
    last_demand: float = field(default_factory=time.monotonic)
    failed_until: float = 0.0  # after a failed refill, wait before trying this key again
    prewarm: bool = False
    refilling: asyncio.Future[None] | None = None  # done when the refill running now for this key ends
    waiting: bool = False  # a create already waits for that refill (it yields one sandbox)
    # Members run the template's start command (e.g. Jupyter: ~90 MB and ~1 % of a core each while idle, vs ~13 MB
    # and ~0 for a plain member): kept at pool_size, not grown with demand.
    runs_start_cmd: bool = False


class WarmPool:
    """Keeps `pool_size`..`pool_max` started sandboxes per (template, runtime) in demand; one refill at a time.

    A member is only ever reachable by the manager (no route, no DB row) until `take()` hands it out, so it has never
    run a user command nor been /init'ed (a restore of a template memory snapshot holds the start command that ran,
    with the template's defaults only, when it was captured). Members are destroyed when their template's build
    changes, when their key goes idle, and at server stop (a restart sweeps any left by a crash: no DB row).
    """

    def __init__(self, settings: Settings, runtimes: dict[str, Runtime], templates: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.runtimes = runtimes
        self.templates = templates
        self.clock = clock
        self.pools: dict[PoolKey, _Pool] = {}
        self.marker_dir = settings.data_dir / POOL_DIR
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._destroying: set[asyncio.Task[None]] = set()
        self.refill_backoff_s = 5.0
        self.check_interval_s = 2.0  # how often template rebuilds and idle keys are noticed without a create
        # Member hooks (the manager's networking): run on a new member before it is ready (a failure discards it),
        # and when a member is destroyed unclaimed.
        self.on_ready: Callable[[RuntimeHandle], Awaitable[None]] | None = None
        self.on_gone: Callable[[str], None] | None = None
        # A template with a start command (the code interpreter's Jupyter server) gets members only as restores of
        # its template memory snapshot (`restore_spec` gives that spec, or None while there is none): the start
        # command runs in them already, as in every sandbox restored from it. A cold member would still have to run
        # it on the create path, slower than restoring the snapshot there.
        self.restore_spec: Callable[[Any, str, str], SandboxSpec | None] | None = None
        self._started: set[str] = set()  # members whose start command runs already

    # ---- the request path ----

    def take(self, template: PoolTemplate, runtime_name: str) -> RuntimeHandle | None:
        """A ready member for this template and runtime (now no longer a pool member), or None (cold create)."""
        key = (template.id, runtime_name)
        pool = self._note_demand(key, template)
        if pool is None or not pool.ready:
            return None
        return self._pop(pool)

    async def wait_refill(self, template: PoolTemplate, runtime_name: str) -> RuntimeHandle | None:
        """After a miss: wait for the refill already running for this key (it ends sooner than a cold create would,
        and costs no second `runsc run` on a busy machine); None when there is none, or it fails or is taken."""
        pool = self.pools.get((template.id, runtime_name))
        if pool is None or pool.refilling is None or pool.waiting:
            return None
        pool.waiting = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pool.refilling), self.settings.pool_wait_s)
        finally:
            pool.waiting = False
        # Whatever happened meanwhile (cancelled waiter, rebuild), an unclaimed member simply stays in the pool.
        return self._pop(pool) if pool.ready and pool.build == build_id(template) else None

    def started_ahead(self, sandbox_id: str) -> bool:
        """Whether a member just handed out runs its template's start command already (the create only /inits it)."""
        if sandbox_id in self._started:
            self._started.discard(sandbox_id)
            return True
        return False

    def _pop(self, pool: _Pool) -> RuntimeHandle:
        handle = pool.ready.popleft()
        self._unmark(handle.sandbox_id)
        self._wake.set()
        return handle

    def _note_demand(self, key: PoolKey, template: PoolTemplate) -> _Pool | None:
        if self.settings.pool_size <= 0:
            return None
        now = self.clock()
        pool = self.pools.get(key)
        build = build_id(template)
        if pool is None:
            pool = self.pools[key] = _Pool(build=build, runs_start_cmd=bool(getattr(template, "start_cmd", None)))
        elif pool.build != build:
            self._drain(key, "template rebuilt")
            pool.build = build
        pool.claims.append(now)
        pool.last_demand = now
        self._wake.set()
        return pool

    def target(self, key: PoolKey) -> int:
        """pool_size, more when more creates than that came in the last pool_window_s, at most pool_max."""
        pool = self.pools.get(key)
        if pool is None:
            return 0
        now = self.clock()
        while pool.claims and pool.claims[0] < now - self.settings.pool_window_s:
            pool.claims.popleft()
        if not pool.prewarm and now - pool.last_demand > self.settings.pool_idle_s:
            return 0
        if pool.runs_start_cmd:
            return self.settings.pool_size
        return min(self.settings.pool_max, max(self.settings.pool_size, len(pool.claims)))

    # ---- lifecycle ----

    def start(self) -> None:
        """Prewarm the configured templates and run the refill loop (call after the manager's restart sweep)."""
        if self.settings.pool_size <= 0:
            return
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.marker_dir.iterdir():
            # Members of a crashed server: the manager's start() sweep destroys them (no DB row); forget the marker.
            stale.unlink(missing_ok=True)
        for name in self.settings.pool_prewarm:
            try:
                template = self.templates.get(name)
            except NotFoundError:
                log.info("warm pool: template %r not found; not prewarming it", name)
                continue
            runtime_name = template.runtime or self.settings.default_runtime
            if runtime_name in self.runtimes:
                self.pools[(template.id, runtime_name)] = _Pool(
                    build=build_id(template), prewarm=True, runs_start_cmd=bool(getattr(template, "start_cmd", None)))
        self._task = asyncio.ensure_future(self._refill_loop())

    async def close(self) -> None:
        """Server stop: members are destroyed (they were never handed out, so nothing of a user's is lost)."""
        await cancel_and_wait(self._task)
        self._task = None
        for key in list(self.pools):
            self._drain(key, "server stop")
        if self._destroying:
            await asyncio.wait(set(self._destroying), timeout=30)

    def size(self, key: PoolKey) -> int:
        pool = self.pools.get(key)
        return len(pool.ready) if pool else 0

    # ---- background ----

    async def _refill_loop(self) -> None:
        while True:
            try:
                self._check_templates()
                key = self._neediest()
                if key is not None:
                    await self._refill_one(key)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("warm pool: refill loop error")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.check_interval_s)

    def _neediest(self) -> PoolKey | None:
        if sum(len(p.ready) for p in self.pools.values()) >= self.settings.pool_max_total:
            return None
        now = self.clock()
        best, best_gap = None, 0
        for key, pool in self.pools.items():
            gap = self.target(key) - len(pool.ready)
            if gap > best_gap and pool.failed_until <= now and key[1] in self.runtimes:
                best, best_gap = key, gap
        return best

    def _check_templates(self) -> None:
        for key, pool in list(self.pools.items()):
            try:
                build = build_id(self.templates.get(key[0]))
            except NotFoundError:
                self._drain(key, "template removed")
                del self.pools[key]
                continue
            if build != pool.build:
                self._drain(key, "template rebuilt")
                pool.build = build
            elif self.target(key) == 0 and pool.ready:
                self._drain(key, "idle")

    async def _refill_one(self, key: PoolKey) -> None:
        pool = self.pools[key]
        pool.refilling = done = asyncio.get_running_loop().create_future()
        try:
            await self._add_member(key, pool)
        finally:
            pool.refilling = None
            done.set_result(None)  # a create waiting in wait_refill() looks at pool.ready now

    async def _add_member(self, key: PoolKey, pool: _Pool) -> None:
        template = self.templates.get(key[0])
        build = build_id(template)
        sandbox_id = new_sandbox_id()
        spec = None
        if getattr(template, "start_cmd", None):
            spec = self.restore_spec(template, key[1], sandbox_id) if self.restore_spec else None
            if spec is None:
                pool.failed_until = self.clock() + self.refill_backoff_s  # look again later: it may be captured
                return
        self._mark(sandbox_id, key, build)
        started = time.monotonic()
        try:
            handle = await self.runtimes[key[1]].create(spec or spec_for(self.settings, template, sandbox_id))
        except asyncio.CancelledError:
            self._unmark(sandbox_id)  # create() rolled itself back
            raise
        except Exception:
            self._unmark(sandbox_id)
            pool.failed_until = self.clock() + self.refill_backoff_s
            log.exception("warm pool %s/%s: refill failed; retrying in %.0fs", *key, self.refill_backoff_s)
            return
        if self.pools.get(key) is not pool or pool.build != build:
            self._destroy(key[1], sandbox_id)  # the template changed while this one started
            return
        if self.on_ready is not None:
            try:
                await self.on_ready(handle)
            except asyncio.CancelledError:
                # Server stop while the member was being prepared: it is in no pool, so drain cannot see it.
                self._destroy(key[1], sandbox_id)
                raise
            except Exception:
                self._destroy(key[1], sandbox_id)
                pool.failed_until = self.clock() + self.refill_backoff_s
                log.exception("warm pool %s/%s: preparing %s failed", *key, sandbox_id)
                return
        if spec is not None:
            self._started.add(sandbox_id)
        pool.ready.append(handle)
        self._mark(sandbox_id, key, build, ready=True)
        log.info("warm pool %s/%s: +%s in %.2fs%s (%d ready)", *key, sandbox_id, time.monotonic() - started,
                 ", restored from the template snapshot" if spec is not None else "", len(pool.ready))

    def _drain(self, key: PoolKey, why: str) -> None:
        pool = self.pools.get(key)
        if pool is None or not pool.ready:
            return
        log.info("warm pool %s/%s: draining %d (%s)", *key, len(pool.ready), why)
        while pool.ready:
            self._destroy(key[1], pool.ready.popleft().sandbox_id)

    def _destroy(self, runtime_name: str, sandbox_id: str) -> None:
        async def run() -> None:
            try:
                await self.runtimes[runtime_name].destroy(sandbox_id)
            except Exception:
                # No DB row: the next server start's sweep removes it.
                log.exception("warm pool: destroying %s failed", sandbox_id)
            finally:
                self._unmark(sandbox_id)
                self._started.discard(sandbox_id)
                if self.on_gone is not None:
                    self.on_gone(sandbox_id)

        task = asyncio.ensure_future(run())
        self._destroying.add(task)
        task.add_done_callback(self._destroying.discard)

    # ---- markers ----

    def _mark(self, sandbox_id: str, key: PoolKey, build: str, ready: bool = False) -> None:
        """The marker says what a member is (the sweep and leak checks read it) and, once it waits, `ready`."""
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        (self.marker_dir / sandbox_id).write_text(
            json.dumps({"template": key[0], "runtime": key[1], "build": build, "ready": ready}))

    def _unmark(self, sandbox_id: str) -> None:
        (self.marker_dir / sandbox_id).unlink(missing_ok=True)
