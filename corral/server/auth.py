"""Authentication: `X-API-KEY` -> the caller's team id; the admin key (X-Admin-Token or Bearer) for the admin API."""

from __future__ import annotations

from fastapi import Request

from corral.errors import AuthError
from corral.server.keys import lookup_key
from corral.tenancy import admin_key_id

API_KEY_HEADER = "X-API-KEY"
ADMIN_TOKEN_HEADER = "X-Admin-Token"
TEAM_ID_HEADER = "X-Team-ID"


def require_team(request: Request) -> str:
    """FastAPI dependency: the team of the request's API key (also noted on request.state for the audit log)."""
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        raise AuthError(f"missing {API_KEY_HEADER} header")
    found = lookup_key(request.app.state.manager.db, key.strip())
    if found is None:
        raise AuthError("invalid API key")
    request.state.key_id, request.state.team_id = found
    return found[1]


def require_admin(request: Request) -> str:
    """FastAPI dependency: the request carries an active admin key, as `X-Admin-Token` or `Authorization: Bearer`."""
    token = request.headers.get(ADMIN_TOKEN_HEADER, "").strip()
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
    if not token:
        raise AuthError(f"missing admin key: send {ADMIN_TOKEN_HEADER} (or Authorization: Bearer)")
    key_id = admin_key_id(request.app.state.manager.db, token)
    if key_id is None:
        raise AuthError("invalid admin key")
    request.state.key_id = key_id
    return key_id
