"""Teams as tenants: admin keys, team CRUD, quota rows, and the one ownership check every team-scoped object uses."""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, select

from corral.config import Settings
from corral.db import AdminKey, ApiKey, Database, SandboxRecord, Team, TeamQuota
from corral.db.models import utcnow
from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.ids import hash_secret
from corral.server.keys import add_key, ensure_team

TEAM_ID_RE = re.compile(r"^team_[0-9a-f]{16}$")
KEY_ID_RE = re.compile(r"^key_[0-9a-f]{12}$")
T = TypeVar("T")


def owned(obj: T | None, team_id: str, what: str, obj_id: str) -> T:
    """`obj` if it exists and belongs to `team_id`; else NotFoundError, so another team's id looks like no id at all.

    Every team-scoped object (sandboxes now; templates, snapshots, volumes later) goes through this check."""
    if obj is None or getattr(obj, "team_id", None) != team_id:
        raise NotFoundError(f"{what} {obj_id!r} not found")
    return obj


# ---- admin keys ----

def add_admin_key(db: Database, name: str) -> str:
    if not name or len(name) > 200:
        raise InvalidRequestError("name: must be 1-200 characters")
    key = "corral_admin_" + secrets.token_hex(20)
    with db.session() as s:
        s.add(AdminKey(id="adm_" + secrets.token_hex(6), name=name, key_hash=hash_secret(key), key_prefix=key[:16]))
    return key


def admin_key_id(db: Database, key: str) -> str | None:
    """The id of an active admin key, or None."""
    with db.session() as s:
        return s.scalar(select(AdminKey.id).where(AdminKey.key_hash == hash_secret(key),
                                                  AdminKey.revoked_at.is_(None)))


# ---- teams ----

@dataclass(frozen=True)
class Quota:
    """Effective limits of a team (None = unlimited)."""

    max_sandboxes: int | None = None
    creates_per_s: float | None = None
    memory_mb: int | None = None
    disk_mb: int | None = None


def default_quota(settings: Settings) -> Quota:
    return Quota(settings.quota_max_sandboxes, settings.quota_creates_per_s, settings.quota_memory_mb,
                 settings.quota_disk_mb)


def team_row(db: Database, team_id: str) -> Team:
    """The team with this id, or 404 (malformed ids never reach the DB)."""
    if not TEAM_ID_RE.match(team_id):
        raise NotFoundError(f"team {team_id!r} not found")
    with db.session() as s:
        team = s.get(Team, team_id)
    if team is None:
        raise NotFoundError(f"team {team_id!r} not found")
    return team


def find_team(db: Database, id_or_name: str) -> Team:
    with db.session() as s:
        team = s.scalar(select(Team).where((Team.id == id_or_name) | (Team.name == id_or_name)))
    if team is None:
        raise NotFoundError(f"team {id_or_name!r} not found")
    return team


def create_team(db: Database, name: str) -> Team:
    with db.session() as s:
        if s.scalar(select(Team.id).where(Team.name == name)) is not None:
            raise ConflictError(f"a team named {name!r} already exists")
    return team_row(db, ensure_team(db, name))


def list_teams(db: Database) -> list[Team]:
    with db.session() as s:
        return list(s.scalars(select(Team).order_by(Team.created_at)))


def remove_team(db: Database, team_id: str) -> None:
    """Delete a team, its keys, quota and sandbox history; refused (409) while it has running sandboxes."""
    team_row(db, team_id)
    with db.session() as s:
        running = s.scalar(select(SandboxRecord.id).where(SandboxRecord.team_id == team_id,
                                                          SandboxRecord.state == "running"))
        if running is not None:
            raise ConflictError(f"team {team_id!r} still has running sandboxes (e.g. {running}); kill them first")
        s.execute(delete(ApiKey).where(ApiKey.team_id == team_id))
        s.execute(delete(TeamQuota).where(TeamQuota.team_id == team_id))
        s.execute(delete(SandboxRecord).where(SandboxRecord.team_id == team_id))
        s.execute(delete(Team).where(Team.id == team_id))


def get_quota(db: Database, settings: Settings, team_id: str) -> Quota:
    """The team's effective quota: its own row's values, the settings' defaults for the rest."""
    base = default_quota(settings)
    with db.session() as s:
        row = s.get(TeamQuota, team_id)
    if row is None:
        return base
    return Quota(*(getattr(row, f) if getattr(row, f) is not None else getattr(base, f) for f in asdict(base)))


def set_quota(db: Database, team_id: str, **values: Any) -> None:
    """Set the named quota fields of a team (None = back to the server default); unnamed fields are kept."""
    team_row(db, team_id)
    for name, value in values.items():
        if name not in Quota.__dataclass_fields__:
            raise InvalidRequestError(f"{name}: unknown quota field")
        if value is not None and value < 0:
            raise InvalidRequestError(f"{name}: must be >= 0, got {value}")
    with db.session() as s:
        row = s.get(TeamQuota, team_id)
        if row is None:
            row = TeamQuota(team_id=team_id)
            s.add(row)
        for name, value in values.items():
            setattr(row, name, value)


# ---- team keys (admin API) ----

def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def key_out(key: ApiKey) -> dict[str, Any]:
    """The spec's TeamAPIKey."""
    return {"id": key.id, "name": key.name, "createdAt": _iso(key.created_at), "createdBy": None, "lastUsed": None,
            "mask": {"prefix": "e2b_", "valueLength": 44, "maskedValuePrefix": key.key_prefix[4:],
                     "maskedValueSuffix": ""}}


def team_keys(db: Database, team_id: str) -> list[ApiKey]:
    team_row(db, team_id)
    with db.session() as s:
        return list(s.scalars(select(ApiKey).where(ApiKey.team_id == team_id, ApiKey.revoked_at.is_(None))
                              .order_by(ApiKey.created_at)))


def create_team_key(db: Database, team_id: str, name: str) -> dict[str, Any]:
    """A new key of an existing team, as the spec's CreatedTeamAPIKey (the only time the key is shown)."""
    team = team_row(db, team_id)
    key = add_key(db, name, team.name)
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_secret(key)))
    assert row is not None
    return {**key_out(row), "key": key}


def _team_key(db: Database, team_id: str, key_id: str) -> ApiKey:
    if not KEY_ID_RE.match(key_id):
        raise NotFoundError(f"API key {key_id!r} not found")
    with db.session() as s:
        key = s.get(ApiKey, key_id)
    key = owned(key, team_id, "API key", key_id)
    if key.revoked_at is not None:
        raise NotFoundError(f"API key {key_id!r} not found")
    return key


def rename_team_key(db: Database, team_id: str, key_id: str, name: str) -> ApiKey:
    _team_key(db, team_id, key_id)
    with db.session() as s:
        clash = s.scalar(select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None),
                                                 ApiKey.id != key_id))
        if clash is not None:
            raise ConflictError(f"an active key named {name!r} already exists ({clash})")
        key = s.get(ApiKey, key_id)
        assert key is not None
        key.name = name
        return key


def revoke_team_key(db: Database, team_id: str, key_id: str) -> None:
    _team_key(db, team_id, key_id)
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None
        key.revoked_at = utcnow()
