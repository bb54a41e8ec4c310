"""API-key authentication: `X-API-KEY` -> the caller's team id, or 401."""

from __future__ import annotations

from fastapi import Request

from corral.errors import AuthError
from corral.server.keys import team_for_key

API_KEY_HEADER = "X-API-KEY"


def require_team(request: Request) -> str:
    """FastAPI dependency: the team of the request's API key."""
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        raise AuthError(f"missing {API_KEY_HEADER} header")
    team_id = team_for_key(request.app.state.manager.db, key.strip())
    if team_id is None:
        raise AuthError("invalid API key")
    return team_id
