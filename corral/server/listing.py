"""Sandbox list filters and cursor paging, as the SDK sends them (`metadata=k=v&k2=v2`, `state=a,b`, nextToken)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import parse_qsl, unquote

from corral.db import SandboxRecord
from corral.errors import InvalidRequestError

STATES = ("running", "paused")
MAX_LIMIT = 100


def parse_metadata_query(raw: str | None) -> dict[str, str]:
    """`metadata` is itself a query string whose keys and values the SDK percent-encoded once more."""
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError as e:
        raise InvalidRequestError(f"metadata: expected 'key=value&key2=value2', got {raw!r}") from e
    return {unquote(k): unquote(v) for k, v in pairs}


def parse_states(raw: Sequence[str]) -> set[str] | None:
    states = {s.strip() for item in raw for s in item.split(",") if s.strip()}
    if not states:
        return None
    bad = states - set(STATES)
    if bad:
        raise InvalidRequestError(f"state: unknown state(s) {sorted(bad)}; expected {list(STATES)}")
    return states


def _key(row: SandboxRecord) -> tuple[str, str]:
    return (row.started_at.isoformat(), row.id)


def encode_token(row: SandboxRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(_key(row))).encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        started, sandbox_id = json.loads(raw)
        datetime.fromisoformat(started)
        return str(started), str(sandbox_id)
    except (ValueError, TypeError, binascii.Error) as e:
        raise InvalidRequestError("nextToken: not a token this server issued") from e


def paginate(rows: list[SandboxRecord], *, order: str, limit: int | None,
             next_token: str | None) -> tuple[list[SandboxRecord], str | None]:
    """Sort by start time (then id, to break ties), skip past the cursor, cut a page; return it and the next cursor."""
    if order not in ("asc", "desc"):
        raise InvalidRequestError(f"order: expected 'asc' or 'desc', got {order!r}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    desc = order == "desc"
    rows = sorted(rows, key=_key, reverse=desc)
    if next_token:
        cursor = decode_token(next_token)
        rows = [r for r in rows if (_key(r) < cursor if desc else _key(r) > cursor)]
    if limit is None or len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_token(page[-1])
