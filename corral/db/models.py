"""SQLAlchemy 2 models: teams, API keys (hashed), sandboxes (one row per sandbox ever started), quotas, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite forgets the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KeyColumns:
    """What every stored key has (team API keys and admin keys)."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 of the whole key: the plaintext is shown once at creation and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # First characters of the key, enough for a human to recognise it in `corral keys list`.
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(KeyColumns, Base):
    __tablename__ = "api_keys"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)


class SandboxRecord(Base):
    __tablename__ = "sandboxes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    template_id: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str | None] = mapped_column(String(200), nullable=True)
    runtime: Mapped[str] = mapped_column(String(32))
    # "running", "paused" or "killed" ("pausing"/"resuming" mid-transition); killed rows are history, never served.
    state: Mapped[str] = mapped_column(String(16), index=True)
    cpu_count: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    secure: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in clear: connect must hand it back to the SDK and the gateway compares it on every request.
    envd_access_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    traffic_access_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    allow_internet_access: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # corral.net.policy.EgressPolicy.to_json(); NULL: the default policy (internet allowed).
    network: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    killed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Pause/resume (corral/pausing.py). on_timeout: "kill" | "pause"; auto_resume: a gateway request resumes it.
    on_timeout: Mapped[str] = mapped_column(String(16), default="kill", server_default="kill")
    auto_resume: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    pause_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)   # "memory" | "filesystem"
    paused_by: Mapped[str | None] = mapped_column(String(16), nullable=True)    # "api" | "timeout" | "hibernate"
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The create's envVars: a filesystem-only resume cold-boots the agent and must /init it again.
    env_vars: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class SnapshotRecord(Base):
    """A sandbox's memory image + writable layer that new sandboxes start from (corral/snapshots.py)."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source_sandbox_id: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str | None] = mapped_column(String(200), nullable=True)
    runtime: Mapped[str] = mapped_column(String(32))
    cpu_count: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    lowerdir: Mapped[str] = mapped_column(String(1000))    # the template layer the image was taken on
    env_vars: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # The restored agent still holds the source's token until it is /init-ed with the new sandbox's own.
    envd_access_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")   # fork's own, never listed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AdminKey(KeyColumns, Base):
    """A key for the admin API (teams, their keys and quotas); never valid as a sandbox X-API-KEY."""

    __tablename__ = "admin_keys"


class TeamQuota(Base):
    """A team's limits; a NULL column falls back to the settings' default (itself None = unlimited)."""

    __tablename__ = "team_quotas"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    max_sandboxes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    creates_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disk_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AuditEntry(Base):
    """One mutating API call: who (team, key), what (method, route, target), when, and the status it got."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    team_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(200))
    target_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
