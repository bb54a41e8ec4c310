"""Per-team quotas enforced at create time: concurrent sandboxes, creates per second, total memory and disk.

Race-free without locks: the check and the reservation happen in one synchronous step on the event loop, before any
await, so concurrent creates each see the others' reservations. A reservation turns into a sandbox's usage when it
starts, and is released when the create fails or the sandbox is killed."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.errors import LimitExceededError, RuntimeFailure
from corral.tenancy import Quota


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True)
class Usage:
    team_id: str
    memory_mb: int
    disk_mb: int


class QuotaKeeper:
    """Holds every team's live usage (running sandboxes + creates in flight) and its create-rate token bucket."""

    def __init__(self, quota_of: Callable[[str], Quota], clock: Callable[[], float] = time.monotonic) -> None:
        self._quota_of = quota_of
        self._clock = clock
        self._usage: dict[str, Usage] = {}          # sandbox id or reservation token -> usage
        self._buckets: dict[str, _Bucket] = {}
        self._tokens = itertools.count()

    def usage(self, team_id: str) -> tuple[int, int, int]:
        """(sandboxes, memory MiB, disk MiB) the team holds now, creates in flight included."""
        mine = [u for u in self._usage.values() if u.team_id == team_id]
        return len(mine), sum(u.memory_mb for u in mine), sum(u.disk_mb for u in mine)

    def reserve(self, team_id: str, memory_mb: int, disk_mb: int) -> str:
        """Reserve one sandbox's worth for `team_id` or raise LimitExceededError (429 + Retry-After)."""
        try:
            q = self._quota_of(team_id)
        except Exception as e:  # the DB is unreadable: refuse the create cleanly (503), never unmetered
            raise RuntimeFailure(f"could not read the team's quota: {e}") from e
        count, mem, disk = self.usage(team_id)
        if q.max_sandboxes is not None and count + 1 > q.max_sandboxes:
            raise LimitExceededError(f"quota: the team may run {q.max_sandboxes} sandboxes at once "
                                     f"({count} running or starting)", retry_after=5)
        if q.memory_mb is not None and mem + memory_mb > q.memory_mb:
            raise LimitExceededError(f"quota: the team's sandboxes may use {q.memory_mb} MiB of memory in all "
                                     f"({mem} MiB in use, this one needs {memory_mb} MiB)", retry_after=5)
        if q.disk_mb is not None and disk + disk_mb > q.disk_mb:
            raise LimitExceededError(f"quota: the team's sandboxes may use {q.disk_mb} MiB of disk in all "
                                     f"({disk} MiB in use, this one needs {disk_mb} MiB)", retry_after=5)
        self._take_token(team_id, q.creates_per_s)
        token = f"reservation-{next(self._tokens)}"
        self._usage[token] = Usage(team_id, memory_mb, disk_mb)
        return token

    def _take_token(self, team_id: str, rate: float | None) -> None:
        if rate is None:
            return
        if rate <= 0:
            raise LimitExceededError("quota: the team may not create sandboxes (creates per second is 0)",
                                     retry_after=60)
        burst = max(1.0, rate)
        now = self._clock()
        b = self._buckets.setdefault(team_id, _Bucket(tokens=burst, at=now))
        b.tokens = min(burst, b.tokens + (now - b.at) * rate)
        b.at = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / rate
            raise LimitExceededError(f"quota: the team may create {rate:g} sandboxes per second; "
                                     f"retry in {wait:.2f}s", retry_after=max(1, math.ceil(wait)))
        b.tokens -= 1.0

    def commit(self, token: str, sandbox_id: str) -> None:
        """The reserved create succeeded: its usage now belongs to the sandbox."""
        usage = self._usage.pop(token, None)
        if usage is not None:
            self._usage[sandbox_id] = usage

    def adopt(self, sandbox_id: str, team_id: str, memory_mb: int, disk_mb: int) -> None:
        """A sandbox running without a reservation (re-attached after a restart) counts from now on."""
        self._usage.setdefault(sandbox_id, Usage(team_id, memory_mb, disk_mb))

    def release(self, token_or_sandbox_id: str) -> None:
        """A failed create's reservation, or a killed sandbox's usage, is free again. Idempotent."""
        self._usage.pop(token_or_sandbox_id, None)
