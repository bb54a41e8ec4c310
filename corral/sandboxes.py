"""The lifecycle manager: creates, times out, kills and re-attaches sandboxes, and owns the live route table."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select

from corral.config import Settings
from corral.db import Database, SandboxRecord, SandboxVolumeMount, open_database
from corral.db.models import utcnow
from corral.errors import ConflictError, CorralError, InvalidRequestError, NotFoundError, RuntimeFailure
from corral.ids import new_access_token, new_sandbox_id
from corral.net.policy import EgressPolicy
from corral.pool import PoolTemplate, WarmPool, spec_for
from corral.quotas import QuotaKeeper
from corral.runtime.base import Runtime, RuntimeHandle, SandboxSpec, VolumeBind
from corral.server.agent_calls import init_agent, start_command, wait_ready
from corral.server.route import Route
from corral.tenancy import get_quota, owned
from corral.watchdog import Watchdog

if TYPE_CHECKING:
    from corral.net.service import NetworkService
    from corral.pausing import Pauser

log = logging.getLogger(__name__)

# Metadata key a client may set to choose the isolation backend of one sandbox ("gvisor" or "runc").
RUNTIME_METADATA_KEY = "corral.runtime"
RUNNING = "running"
KILLED = "killed"
PAUSE_STATES = ("paused", "pausing", "resuming")   # see corral/pausing.py
DEFAULT_USER = "user"
_DESTROY_ATTEMPTS = 5


class TemplateLike(PoolTemplate, Protocol):
    """What the manager reads from a template (corral.templates.store.TemplateInfo satisfies it)."""

    @property
    def workdir(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def runtime(self) -> str | None: ...
    @property
    def start_cmd(self) -> str | None: ...
    @property
    def ready_cmd(self) -> str | None: ...
    @property
    def alias(self) -> str | None: ...


class TemplateSource(Protocol):
    def get(self, id_or_alias: str) -> TemplateLike: ...


# POSTs the envd /init body to the agent listening on a host unix socket.
AgentInit = Callable[[Path, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class CreateRequest:
    """One validated create call, whatever API version it came through."""

    team_id: str
    template: str
    timeout_s: int
    metadata: dict[str, str] = field(default_factory=dict)
    env_vars: dict[str, str] = field(default_factory=dict)
    secure: bool = True
    allow_internet_access: bool | None = None
    # E2B requires a traffic token on non-envd ports only when public traffic is switched off.
    require_traffic_token: bool = False
    volumes: tuple[VolumeBind, ...] = ()   # resolved by corral.volumes.store.VolumeStore.resolve_mounts
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    on_timeout: str = "kill"            # "pause": pause at the timeout instead of killing (corral/pausing.py)
    auto_resume: bool = False           # a gateway request to it while paused resumes it


class SandboxManager:
    """All sandbox state changes go through here; the DB row and the in-memory route move together."""

    def __init__(self, settings: Settings, runtimes: dict[str, Runtime], templates: TemplateSource, *,
                 db: Database | None = None, agent_init: AgentInit = init_agent, warm_pool: bool = False,
                 network: NetworkService | None = None) -> None:
        self.settings = settings
        self.runtimes = runtimes
        self.templates = templates
        self.db = db if db is not None else open_database(settings.db_url)
        self._agent_init = agent_init
        self.network = network   # corral.net: egress policy of networked sandboxes (None: no networking)
        # Off unless asked (the server asks when settings.pool_size > 0): embedders and unit tests see only their creates.
        self.pool: WarmPool | None = WarmPool(settings, runtimes, templates) if warm_pool else None
        if self.pool is not None and network is not None:
            # Members get the default policy while they wait (no user code runs in them before a create): a create
            # asking for the default — most do — skips the nft update on its path.
            net = network
            self.pool.on_ready = lambda h: net.apply(h.sandbox_id, h.sandbox_dir, EgressPolicy())
            self.pool.on_gone = net.forget
        if self.pool is not None and settings.pool_snapshot_restores:
            self.pool.restore_spec = self._pool_restore_spec
        self.quotas = QuotaKeeper(lambda team_id: get_quota(self.db, settings, team_id))
        self._routes: dict[str, Route] = {}
        self.watchdog = Watchdog(self, settings.watchdog_interval_s)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_activity: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.destroy_backoff_s = 0.5  # doubled after each failed teardown attempt
        self.killed_retention = timedelta(days=30)
        self.ready_timeout_s = 60.0  # how long a template's ready_cmd may keep failing
        self.create_timeout_s = 120.0  # runtime start + /init + start_cmd; a hung backend must not hang the API
        from corral.pausing import Pauser  # pausing imports this module's types
        self.busy: Callable[[str], bool] = lambda _sandbox_id: False   # the gateway's in-flight check (run.py)
        self.pauser: Pauser = Pauser(self)
        from corral.snapshots import Snapshots
        self.snapshots = Snapshots(self)
        from corral.template_snapshots import TemplateSnapshots
        self.template_snapshots = TemplateSnapshots(self)

    # ---- gateway hooks (hot path: O(1), never block) ----

    def route(self, sandbox_id: str) -> Route | None:
        return self._routes.get(sandbox_id)

    def touch(self, sandbox_id: str) -> None:
        if sandbox_id in self._routes:
            self._last_activity[sandbox_id] = time.monotonic()

    # ---- create ----

    def _check_timeout(self, timeout_s: int, field_name: str = "timeout") -> None:
        if timeout_s < 0 or timeout_s > self.settings.max_timeout_s:
            raise InvalidRequestError(
                f"{field_name}: must be between 0 and {self.settings.max_timeout_s} seconds, got {timeout_s}")

    def _pick_runtime(self, req: CreateRequest, template: TemplateLike) -> str:
        wanted = req.metadata.get(RUNTIME_METADATA_KEY)
        name = wanted or template.runtime or self.settings.default_runtime
        if name not in self.runtimes:
            where = f"metadata.{RUNTIME_METADATA_KEY}" if wanted else "runtime"
            raise InvalidRequestError(f"{where}: runtime {name!r} is not available on this server "
                                      f"(available: {', '.join(sorted(self.runtimes)) or 'none'})")
        return name

    async def create(self, req: CreateRequest) -> SandboxRecord:
        """Start a sandbox and return its row; on any failure nothing is left (no row, no route, no runtime state)."""
        self._check_timeout(req.timeout_s)
        # A catalog with team-built templates answers another team's private template as not found.
        for_team = getattr(self.templates, "get_for_team", None)
        try:
            template = for_team(req.template, req.team_id) if for_team else self.templates.get(req.template)
        except NotFoundError:
            snapshot = self.snapshots.find(req.team_id, req.template)
            if snapshot is None:
                raise
            return await self.snapshots.start(req, snapshot)   # a snapshot id/name is used as a template
        runtime_name = self._pick_runtime(req, template)
        spec = spec_for(self.settings, template, "")
        # Reserved before anything starts (429 when over quota); freed on failure, moved to the sandbox on success.
        reservation = self.quotas.reserve(req.team_id, spec.memory_mb, spec.disk_mb)
        try:
            record = await self._create_reserved(req, template, runtime_name)
        except BaseException:
            self.quotas.release(reservation)
            raise
        self.quotas.commit(reservation, record.id)
        return record

    def _pool_restore_spec(self, template: TemplateLike, runtime_name: str, sandbox_id: str) -> SandboxSpec | None:
        """A pool member of a template with a memory snapshot is a restore of it (its start command runs already)."""
        snap = self.template_snapshots.ready(template, runtime_name)
        if snap is None:
            return None
        return replace(spec_for(self.settings, template, sandbox_id), template_rootfs=Path(snap.lowerdir),
                       restore_from=self.template_snapshots.restore_dir(template))

    async def _create_reserved(self, req: CreateRequest, template: TemplateLike, runtime_name: str) -> SandboxRecord:
        # Pool members and template memory snapshots were started without the request's volume mounts.
        pool = None if req.volumes else self.pool
        warm = pool.take(template, runtime_name) if pool is not None else None
        warm_image = None if req.volumes or warm is not None else self.template_snapshots.ready(template, runtime_name)
        if warm_image is not None:
            # Its start command already runs in the image: restored, not booted (corral/template_snapshots.py).
            try:
                return await self.snapshots.start(req, warm_image, self.template_snapshots.restore_dir(template))
            except RuntimeFailure as e:
                log.warning("template %s: its memory snapshot did not restore (%s); booting cold", template.id, e)
                self.template_snapshots.discard(template)
        if warm is None and pool is not None:
            warm = await pool.wait_refill(template, runtime_name)
        if warm is not None:
            try:
                return await self._create(req, template, runtime_name, warm)
            except RuntimeFailure as e:
                # A pool member that died while waiting (or whose start_cmd failed): one cold try, as without pools.
                log.warning("warm sandbox %s failed to start (%s); creating a fresh one", warm.sandbox_id, e)
        return await self._create(req, template, runtime_name, None)

    async def _create(self, req: CreateRequest, template: TemplateLike, runtime_name: str,
                      warm: RuntimeHandle | None) -> SandboxRecord:
        runtime = self.runtimes[runtime_name]
        sandbox_id = warm.sandbox_id if warm is not None else new_sandbox_id()
        envd_token = new_access_token() if req.secure else None
        traffic_token = new_access_token() if req.require_traffic_token else None
        spec = replace(spec_for(self.settings, template, sandbox_id), volumes=req.volumes)
        started_ahead = warm is not None and self.pool is not None and self.pool.started_ahead(warm.sandbox_id)
        started = time.monotonic()
        try:
            try:
                async with asyncio.timeout(self.create_timeout_s):
                    handle = warm if warm is not None else await runtime.create(spec)
                    if self.network is not None and (warm is None or req.egress != EgressPolicy()):
                        await self.network.apply(sandbox_id, handle.sandbox_dir, req.egress)
                    await self.boot(handle.socket_path, template, req.env_vars, envd_token, start=not started_ahead)
            except TimeoutError as e:
                raise RuntimeFailure(f"sandbox did not start within {self.create_timeout_s:g}s") from e
            now = utcnow()
            record = SandboxRecord(
                id=sandbox_id, team_id=req.team_id, template_id=template.id, alias=template.alias,
                runtime=runtime_name, state=RUNNING, cpu_count=spec.cpu_count, memory_mb=spec.memory_mb,
                disk_mb=spec.disk_mb, metadata_=dict(req.metadata), secure=req.secure,
                envd_access_token=envd_token, traffic_access_token=traffic_token,
                allow_internet_access=req.allow_internet_access, network=req.egress.to_json(), started_at=now,
                end_at=now + timedelta(seconds=req.timeout_s), on_timeout=req.on_timeout,
                auto_resume=req.auto_resume, env_vars=dict(req.env_vars))
            with self.db.session() as s:
                s.add(record)
                s.flush()   # the mount rows reference the sandbox row
                s.add_all(SandboxVolumeMount(sandbox_id=sandbox_id, path=v.destination, volume_id=v.volume_id,
                                             volume_name=v.volume_name) for v in req.volumes)
        except BaseException as e:
            # Shielded: a cancelled request must still not leave a half-created sandbox behind.
            if self.network is not None:
                self.network.forget(sandbox_id)
            await asyncio.shield(self._destroy_now(runtime_name, sandbox_id))
            if isinstance(e, CorralError) or not isinstance(e, Exception):
                raise
            raise RuntimeFailure(f"could not start sandbox: {e}") from e
        self._register(record, handle.socket_path)
        log.info("sandbox %s started (%s, template %s%s) in %.3fs", sandbox_id, runtime_name, template.id,
                 ", warm" if warm is not None else "", time.monotonic() - started)
        return record

    async def boot(self, socket_path: Path, template: TemplateLike, env_vars: dict[str, str],
                    envd_token: str | None, *, start: bool = True) -> None:
        """/init the agent, then (unless it runs already: `start=False`) the template's start command, and wait for
        its ready command."""
        user = template.user or DEFAULT_USER
        init_body: dict[str, Any] = {
            "envVars": dict(env_vars), "defaultUser": user,
            "defaultWorkdir": template.workdir, "timestamp": utcnow().isoformat().replace("+00:00", "Z")}
        if envd_token:
            init_body["accessToken"] = envd_token
        await self._agent_init(socket_path, init_body)
        if template.start_cmd and start:
            # E.g. the code interpreter's Jupyter server: it must run before the SDK's first call.
            await start_command(socket_path, template.start_cmd, user=user, cwd=template.workdir,
                                access_token=envd_token)
            if template.ready_cmd:
                # Create returns only once the start command serves (e.g. :49999 answers), as on E2B.
                await wait_ready(socket_path, template.ready_cmd, user=user, cwd=template.workdir,
                                 access_token=envd_token, timeout=self.ready_timeout_s)

    async def boot_agent(self, row: SandboxRecord, socket_path: Path) -> None:
        """A cold-booted sandbox (filesystem-only resume) gets the same /init and start command as at create."""
        await self.boot(socket_path, self.templates.get(row.template_id), row.env_vars or {},
                         row.envd_access_token if row.secure else None)

    async def _destroy_now(self, runtime_name: str, sandbox_id: str) -> None:
        try:
            await self.runtimes[runtime_name].destroy(sandbox_id)
        except Exception:
            # It may still be running: keep trying in the background (and start() would clean it up too).
            log.exception("cleanup of half-created sandbox %s failed; retrying in the background", sandbox_id)
            self._spawn(self._destroy_reliably(runtime_name, sandbox_id))

    def _register(self, record: SandboxRecord, socket_path: Path) -> None:
        self._routes[record.id] = Route(
            sandbox_id=record.id, team_id=record.team_id, socket_path=socket_path, secure=record.secure,
            envd_access_token=record.envd_access_token, traffic_access_token=record.traffic_access_token)
        self._last_activity[record.id] = time.monotonic()
        self.quotas.adopt(record.id, record.team_id, record.memory_mb, record.disk_mb)
        self._schedule(record.id, record.end_at)

    # ---- pause/resume hooks (corral/pausing.py) ----

    def unroute(self, sandbox_id: str) -> bool:
        """Stop routing and timing a sandbox that is being paused; True when it was routed."""
        timer = self._timers.pop(sandbox_id, None)
        if timer is not None:
            timer.cancel()
        self._last_activity.pop(sandbox_id, None)
        return self._routes.pop(sandbox_id, None) is not None

    def reroute(self, record: SandboxRecord) -> None:
        self._register(record, self.runtimes[record.runtime].handle_for(record.id).socket_path)

    def check_timeout(self, timeout_s: int) -> None:
        self._check_timeout(timeout_s)

    def adopt(self, record: SandboxRecord, socket_path: Path) -> None:
        """Record and route a sandbox started outside create() (from a snapshot)."""
        with self.db.session() as s:
            s.add(record)
        self._register(record, socket_path)

    async def destroy_now(self, runtime_name: str, sandbox_id: str) -> None:
        await self._destroy_now(runtime_name, sandbox_id)

    async def kill_now(self, sandbox_id: str) -> None:
        await self._kill(sandbox_id)

    def spawn(self, coro: Awaitable[None]) -> None:
        self._spawn(coro)

    def idle_since(self, monotonic_t: float) -> list[str]:
        """Routed sandboxes whose last gateway request (or start) is older than `monotonic_t`."""
        return [sid for sid in self._routes
                if self._last_activity.get(sid, monotonic_t) < monotonic_t and not self.busy(sid)]

    async def wake(self, sandbox_id: str) -> Route | None:
        """Gateway hook for an unrouted id: auto-resume a paused sandbox (or raise why not); None = unknown."""
        return await self.pauser.wake(sandbox_id)

    # ---- timers ----

    def _schedule(self, sandbox_id: str, end_at: datetime) -> None:
        old = self._timers.pop(sandbox_id, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, (end_at - utcnow()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[sandbox_id] = loop.call_later(delay, self._on_expire, sandbox_id)

    def _on_expire(self, sandbox_id: str) -> None:
        self._timers.pop(sandbox_id, None)
        log.info("sandbox %s reached its timeout", sandbox_id)
        if self.pauser.on_timeout(sandbox_id):
            return
        self._spawn(self._kill(sandbox_id))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # ---- queries ----

    def get(self, sandbox_id: str, team_id: str, states: Sequence[str] = (RUNNING,)) -> SandboxRecord:
        """A sandbox of this team in one of `states`; another team's sandbox is reported exactly like a missing one."""
        with self.db.session() as s:
            row = s.get(SandboxRecord, sandbox_id)
        row = owned(row, team_id, "sandbox", sandbox_id)
        if row.state not in states:
            reason = self.watchdog.reasons.get(sandbox_id)
            raise NotFoundError(f"sandbox {sandbox_id!r} not found" + (f": it was killed, {reason}" if reason else ""))
        return row

    def list(self, team_id: str, *, metadata: dict[str, str] | None = None, template: str | None = None,
             started_after: datetime | None = None, states: Sequence[str] = (RUNNING,)) -> list[SandboxRecord]:
        """Sandboxes of a team in `states` matching every filter (metadata: all pairs must match exactly)."""
        with self.db.session() as s:
            rows = list(s.scalars(select(SandboxRecord).where(SandboxRecord.team_id == team_id,
                                                               SandboxRecord.state.in_(list(states)))))
        out = []
        for row in rows:
            if metadata and any(row.metadata_.get(k) != v for k, v in metadata.items()):
                continue
            if template and template not in (row.template_id, row.alias):
                continue
            if started_after and row.started_at < started_after:
                continue
            out.append(row)
        return out

    # ---- timeouts ----

    def _update_end(self, sandbox_id: str, team_id: str, timeout_s: int, *, only_extend: bool,
                    field_name: str) -> SandboxRecord:
        self._check_timeout(timeout_s, field_name)
        self.get(sandbox_id, team_id)
        with self.db.session() as s:
            row = s.get(SandboxRecord, sandbox_id)
            if row is None or row.state != RUNNING:
                raise NotFoundError(f"sandbox {sandbox_id!r} not found")
            new_end = utcnow() + timedelta(seconds=timeout_s)
            if not only_extend or new_end > row.end_at:
                row.end_at = new_end
        self._schedule(sandbox_id, row.end_at)
        return row

    def set_timeout(self, sandbox_id: str, team_id: str, timeout_s: int) -> SandboxRecord:
        """The sandbox now ends `timeout_s` from now (shorter or longer than before)."""
        return self._update_end(sandbox_id, team_id, timeout_s, only_extend=False, field_name="timeout")

    def extend(self, sandbox_id: str, team_id: str, timeout_s: int, field_name: str = "timeout") -> SandboxRecord:
        """Connect/refresh: the sandbox lives at least `timeout_s` more; an end already later is kept."""
        return self._update_end(sandbox_id, team_id, timeout_s, only_extend=True, field_name=field_name)

    # ---- kill ----

    async def kill(self, sandbox_id: str, team_id: str) -> None:
        self.get(sandbox_id, team_id, states=(RUNNING, *PAUSE_STATES))
        await self._kill(sandbox_id)

    async def _kill(self, sandbox_id: str) -> None:
        # Unroutable at once; the slow teardown runs in the background with retries.
        self._routes.pop(sandbox_id, None)
        self._last_activity.pop(sandbox_id, None)
        self.quotas.release(sandbox_id)
        timer = self._timers.pop(sandbox_id, None)
        if timer is not None:
            timer.cancel()
        if self.network is not None:
            self.network.forget(sandbox_id)
        with self.db.session() as s:
            row = s.get(SandboxRecord, sandbox_id)
            if row is None or row.state == KILLED:
                return
            row.state = KILLED
            row.killed_at = utcnow()
            runtime_name = row.runtime
        self._spawn(self._destroy_reliably(runtime_name, sandbox_id))

    async def update_network(self, sandbox_id: str, team_id: str, policy: EgressPolicy) -> None:
        """Replace a running sandbox's egress policy (takes effect at once; stored for re-attach)."""
        row = self.get(sandbox_id, team_id)
        sandbox_dir = self.runtimes[row.runtime].handle_for(sandbox_id).sandbox_dir
        if self.network is None or not self.network.has_network(sandbox_dir):
            raise ConflictError(f"sandbox {sandbox_id} has no network (networking was off when it started)")
        await self.network.apply(sandbox_id, sandbox_dir, policy)
        with self.db.session() as s:
            stored = s.get(SandboxRecord, sandbox_id)
            if stored is not None:
                stored.network = policy.to_json()
                stored.allow_internet_access = policy.allow_internet

    async def _destroy_reliably(self, runtime_name: str, sandbox_id: str) -> None:
        runtime = self.runtimes.get(runtime_name)
        if runtime is None:
            log.error("sandbox %s: runtime %r is not configured; cannot destroy it", sandbox_id, runtime_name)
            return
        for attempt in range(1, _DESTROY_ATTEMPTS + 1):
            try:
                await runtime.destroy(sandbox_id)
                log.info("sandbox %s destroyed", sandbox_id)
                return
            except Exception:
                log.exception("destroying sandbox %s failed (attempt %d/%d)", sandbox_id, attempt, _DESTROY_ATTEMPTS)
                await asyncio.sleep(min(self.destroy_backoff_s * 2 ** (attempt - 1), 10.0))
        # The row says killed, so the next start() destroys whatever is left.
        log.error("sandbox %s could not be destroyed; it will be retried at next server start", sandbox_id)

    # ---- server start / stop ----

    async def start(self) -> None:
        """Re-attach to sandboxes that survived a server restart; destroy everything else the runtimes hold."""
        await self._reattach_and_sweep()
        self.snapshots.sweep()
        self.template_snapshots.sweep()
        self.pauser.start()
        self.watchdog.start()
        if self.pool is not None:
            self.pool.start()  # after the sweep: it must not see the new members as leftovers

    async def _reattach_and_sweep(self) -> None:
        with self.db.session() as s:
            # History of killed sandboxes is kept for a while (debugging, `corral ls --all` later), then dropped.
            s.execute(delete(SandboxRecord).where(
                SandboxRecord.state == KILLED, SandboxRecord.killed_at < utcnow() - self.killed_retention))
            rows = list(s.scalars(select(SandboxRecord).where(SandboxRecord.state.in_([RUNNING, *PAUSE_STATES]))))
        kept: set[str] = set()
        dead: set[str] = set()
        now = utcnow()
        for row in rows:
            if row.state in PAUSE_STATES:
                # Paused, or caught mid pause/resume by a crash: settle on paused or running, never half.
                settled = await self.pauser.reconcile(row)
                if settled == "paused":
                    kept.add(row.id)
                    continue
                with self.db.session() as s:
                    row = s.get(SandboxRecord, row.id)  # type: ignore[assignment]
                if settled == "dead":
                    dead.add(row.id)
                    await self._kill(row.id)
                    continue
            runtime = self.runtimes.get(row.runtime)
            alive = False
            if runtime is not None:
                try:
                    alive = await runtime.is_alive(row.id)
                except Exception:
                    log.exception("sandbox %s: is_alive failed; treating it as dead", row.id)
            if alive and runtime is not None and row.end_at > now:
                try:
                    handle = runtime.handle_for(row.id)
                except Exception:
                    log.exception("sandbox %s: no handle; treating it as dead", row.id)
                else:
                    if self.network is not None and self.network.has_network(handle.sandbox_dir):
                        try:
                            await self.network.apply(row.id, handle.sandbox_dir, EgressPolicy.from_json(row.network))
                        except Exception:
                            log.exception("sandbox %s: cannot restore its network policy; killing it", row.id)
                            dead.add(row.id)
                            await self._kill(row.id)
                            continue
                    self._register(row, handle.socket_path)
                    kept.add(row.id)
                    log.info("re-attached sandbox %s (ends %s)", row.id, row.end_at.isoformat())
                    continue
            log.info("sandbox %s did not survive the restart (alive=%s); cleaning up", row.id, alive)
            dead.add(row.id)
            await self._kill(row.id)
        owners: dict[str, list[str]] = {}
        for name, runtime in self.runtimes.items():
            try:
                ids = await runtime.list_sandbox_ids()
            except Exception:
                log.exception("runtime %s: cannot list its sandboxes", name)
                continue
            for sandbox_id in ids:
                if sandbox_id not in kept and sandbox_id not in dead and sandbox_id not in self._routes:
                    owners.setdefault(sandbox_id, []).append(name)
        if not owners:
            return
        with self.db.session() as s:
            recorded = {sid: rt for sid, rt in s.execute(select(SandboxRecord.id, SandboxRecord.runtime)
                                                         .where(SandboxRecord.id.in_(list(owners))))}
        for sandbox_id, names in owners.items():
            # Backends may share the sandboxes/ directory and both list an id: tear down with the recorded
            # backend when there is a row, else with each lister in turn (never two teardowns at once).
            if recorded.get(sandbox_id) in names:
                names = [recorded[sandbox_id]]
            log.info("removing leftover sandbox %s (%s)", sandbox_id, ", ".join(names))
            self._spawn(self._destroy_leftover(sandbox_id, names))

    async def _destroy_leftover(self, sandbox_id: str, runtime_names: Sequence[str]) -> None:
        for name in runtime_names:
            await self._destroy_reliably(name, sandbox_id)

    async def close(self, drain_s: float = 30.0) -> None:
        """Server stop: sandboxes keep running (start() re-attaches); timers stop; pending teardowns get drain_s.

        Warm pool members are destroyed instead: re-adopting them would need their template build and health
        re-checked, and a crash leaves them to the next start's sweep anyway (they have no DB row)."""
        await self.watchdog.close()
        if self.pool is not None:
            await self.pool.close()
        await self.pauser.close()
        await self.template_snapshots.close()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=drain_s)
            for task in pending:
                task.cancel()
        self._routes.clear()
