"""API key administration (what `corral keys ...` calls) and the lookup the REST API authenticates with."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from corral.config import Settings
from corral.db import AdminKey, ApiKey, Database, Team, open_database
from corral.db.models import utcnow
from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.ids import hash_secret, new_api_key

DEFAULT_TEAM = "default"


def _open(settings: Settings) -> Database:
    return open_database(settings.db_url)


def ensure_team(db: Database, name: str) -> str:
    """The id of the team called `name`, created on first use."""
    if not name or len(name) > 200:
        raise InvalidRequestError("team: must be 1-200 characters")
    with db.session() as s:
        team = s.scalar(select(Team).where(Team.name == name))
        if team is None:
            team = Team(id="team_" + secrets.token_hex(8), name=name)
            s.add(team)
        return team.id


def add_key(db: Database, name: str, team: str = DEFAULT_TEAM) -> str:
    if not name or len(name) > 200:
        raise InvalidRequestError("name: must be 1-200 characters")
    team_id = ensure_team(db, team)
    key = new_api_key()
    with db.session() as s:
        # Names identify keys for `revoke`, so two live keys may not share one.
        clash = s.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
        if clash is not None:
            raise ConflictError(f"an active key named {name!r} already exists ({clash.id})")
        s.add(ApiKey(id="key_" + secrets.token_hex(6), team_id=team_id, name=name,
                     key_hash=hash_secret(key), key_prefix=key[:10]))
    return key


def team_for_key(db: Database, key: str) -> str | None:
    """The team id an active key belongs to, or None for an unknown or revoked key."""
    found = lookup_key(db, key)
    return found[1] if found else None


def lookup_key(db: Database, key: str) -> tuple[str, str] | None:
    """(key id, team id) of an active key, or None for an unknown or revoked key."""
    with db.session() as s:
        row = s.execute(select(ApiKey.id, ApiKey.team_id).where(ApiKey.key_hash == hash_secret(key),
                                                                ApiKey.revoked_at.is_(None))).first()
        return (row[0], row[1]) if row else None


def create_key(settings: Settings, name: str, team: str = DEFAULT_TEAM) -> str:
    """Create an API key for `team` (created if new) and return it in clear; it is only ever shown here."""
    db = _open(settings)
    try:
        return add_key(db, name, team)
    finally:
        db.close()


def _row(key: ApiKey, team_name: str) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {"id": key.id, "name": key.name, "team": team_name, "prefix": key.key_prefix + "...",
            "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at)}


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    """Every key (revoked ones too, marked), without the secret."""
    db = _open(settings)
    try:
        with db.session() as s:
            rows = s.execute(select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)
                             .order_by(ApiKey.created_at)).all()
            return [_row(key, team_name) for key, team_name in rows]
    finally:
        db.close()


def revoke_key(settings: Settings, key_id_or_name: str) -> dict[str, Any]:
    """Revoke the active key with this id or name; it stops authenticating at once."""
    db = _open(settings)
    try:
        with db.session() as s:
            keys = s.scalars(select(ApiKey).where(or_(ApiKey.id == key_id_or_name, ApiKey.name == key_id_or_name),
                                                  ApiKey.revoked_at.is_(None))).all()
            if not keys:
                admin = s.scalars(select(AdminKey).where(
                    or_(AdminKey.id == key_id_or_name, AdminKey.name == key_id_or_name), AdminKey.revoked_at.is_(None)
                )).all()
                if len(admin) == 1:
                    admin[0].revoked_at = utcnow()
                    return {"id": admin[0].id, "name": admin[0].name, "team": "(admin)",
                            "prefix": admin[0].key_prefix + "...", "created_at": admin[0].created_at.isoformat(),
                            "revoked_at": admin[0].revoked_at.isoformat()}
                raise NotFoundError(f"no active API key with id or name {key_id_or_name!r}")
            if len(keys) > 1:
                raise InvalidRequestError(f"{key_id_or_name!r} matches several keys; revoke by id")
            keys[0].revoked_at = utcnow()
            team_name = s.scalar(select(Team.name).where(Team.id == keys[0].team_id)) or ""
            return _row(keys[0], team_name)
    finally:
        db.close()
