"""Request bodies the server accepts (the SDK sends exactly these fields; anything else is a client bug)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ExecuteRequest(BaseModel):
    """POST /execute: `context_id` and `language` are exclusive in the SDK; both unset = the default Python context."""

    model_config = ConfigDict(extra="forbid")

    code: str
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


class CreateContextRequest(BaseModel):
    """POST /contexts."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = None
    cwd: str | None = None
