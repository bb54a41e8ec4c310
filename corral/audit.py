"""The audit log: one row per mutating API call (who, what, when, result), and reading it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from corral.db import AuditEntry, Database


def record(db: Database, *, team_id: str | None, key_id: str | None, method: str, route: str,
           target_id: str | None, status: int) -> None:
    with db.session() as s:
        s.add(AuditEntry(team_id=team_id, key_id=key_id, method=method, route=route[:200],
                         target_id=target_id[:200] if target_id else None, status=status))


def entries(db: Database, since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest `limit` entries at or after `since`, oldest first."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    with db.session() as s:
        rows = list(s.scalars(q))
    return [{"at": r.at.isoformat(), "team": r.team_id, "key": r.key_id, "method": r.method, "route": r.route,
             "target": r.target_id, "status": r.status} for r in reversed(rows)]
