"""Request and response bodies of the REST API, shaped exactly as openapi.yml and the stock SDK expect them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.db import SandboxRecord
from corral.pausing import PAUSE_MODE_KEY, SHOWN_AS

ENVD_VERSION = "0.6.4"
# Deprecated in the spec but still required; the SDK never reads it.
CLIENT_ID = "corral"


class _WireIn(BaseModel):
    # These bodies are E2B's protocol, not ours: newer SDKs add fields, and those must not break old servers.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class AutoResumeIn(_WireIn):
    enabled: bool = False


class NewSandboxIn(_WireIn):
    """NewSandbox (POST /sandboxes) and NewSandboxV2 (POST /v2/sandboxes): v2 has no `secure`, it is always secure."""

    template_id: str = Field(alias="templateID", min_length=1, max_length=255)
    timeout: int | None = Field(default=None, ge=0)
    auto_pause: bool = Field(default=False, alias="autoPause")
    auto_pause_memory: bool | None = Field(default=None, alias="autoPauseMemory")
    auto_resume: AutoResumeIn | None = Field(default=None, alias="autoResume")
    secure: bool | None = None
    allow_internet_access: bool | None = None
    network: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    env_vars: dict[str, str] | None = Field(default=None, alias="envVars")
    mcp: dict[str, Any] | None = None
    iam: dict[str, Any] | None = None
    volume_mounts: list[dict[str, Any]] | None = Field(default=None, alias="volumeMounts")


class TimeoutIn(_WireIn):
    """SandboxTimeoutRequest and ConnectSandbox: `timeout` in seconds from now."""

    timeout: int = Field(ge=0)


class ConnectV2In(_WireIn):
    timeout: int | None = Field(default=None, ge=0)
    memory: bool | None = None


class ResumeIn(_WireIn):
    timeout: int | None = Field(default=None, ge=0)
    auto_pause: bool | None = Field(default=None, alias="autoPause")


class PauseIn(_WireIn):
    """SandboxPauseRequest: memory false = filesystem-only (processes are lost, resume cold-boots)."""

    memory: bool | None = None
    require_healthy_guest: bool | None = Field(default=None, alias="requireHealthyGuest")


class RefreshIn(_WireIn):
    duration: int | None = Field(default=None, ge=0, le=3600)


class _WireOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SandboxOut(_WireOut):
    template_id: str = Field(alias="templateID")
    sandbox_id: str = Field(alias="sandboxID")
    alias: str | None = None
    client_id: str = Field(default=CLIENT_ID, alias="clientID")
    envd_version: str = Field(default=ENVD_VERSION, alias="envdVersion")
    envd_access_token: str | None = Field(default=None, alias="envdAccessToken")
    traffic_access_token: str | None = Field(default=None, alias="trafficAccessToken")
    domain: str | None = None


class ListedSandboxOut(_WireOut):
    template_id: str = Field(alias="templateID")
    alias: str | None = None
    sandbox_id: str = Field(alias="sandboxID")
    client_id: str = Field(default=CLIENT_ID, alias="clientID")
    started_at: datetime = Field(alias="startedAt")
    end_at: datetime = Field(alias="endAt")
    cpu_count: int = Field(alias="cpuCount")
    memory_mb: int = Field(alias="memoryMB")
    disk_size_mb: int = Field(alias="diskSizeMB")
    metadata: dict[str, str] = Field(default_factory=dict)
    state: str = "running"
    envd_version: str = Field(default=ENVD_VERSION, alias="envdVersion")


class SandboxDetailOut(ListedSandboxOut):
    envd_access_token: str | None = Field(default=None, alias="envdAccessToken")
    allow_internet_access: bool | None = Field(default=None, alias="allowInternetAccess")
    domain: str | None = None
    lifecycle: dict[str, Any] = Field(default_factory=lambda: {"autoResume": False, "onTimeout": "kill"})


def sandbox_out(row: SandboxRecord, domain: str | None) -> dict[str, Any]:
    return SandboxOut.model_validate({
        "template_id": row.template_id, "sandbox_id": row.id, "alias": row.alias,
        "envd_access_token": row.envd_access_token if row.secure else None,
        "traffic_access_token": row.traffic_access_token, "domain": domain}).wire()


def _listed_fields(row: SandboxRecord) -> dict[str, Any]:
    state = SHOWN_AS.get(row.state, row.state)
    metadata = dict(row.metadata_ or {})
    if state == "paused" and row.pause_mode:
        # "memory" (processes continue on resume) or "filesystem" (files only: resume cold-boots it).
        metadata[PAUSE_MODE_KEY] = row.pause_mode
    return {"template_id": row.template_id, "alias": row.alias, "sandbox_id": row.id, "started_at": row.started_at,
            "end_at": row.end_at, "cpu_count": row.cpu_count, "memory_mb": row.memory_mb,
            "disk_size_mb": row.disk_mb, "metadata": metadata, "state": state}


def listed_out(row: SandboxRecord) -> dict[str, Any]:
    return ListedSandboxOut.model_validate(_listed_fields(row)).wire()


def detail_out(row: SandboxRecord, domain: str | None) -> dict[str, Any]:
    return SandboxDetailOut.model_validate({
        **_listed_fields(row), "envd_access_token": row.envd_access_token if row.secure else None,
        "allow_internet_access": row.allow_internet_access, "domain": domain,
        "lifecycle": {"autoResume": bool(row.auto_resume), "onTimeout": row.on_timeout or "kill"}}).wire()
