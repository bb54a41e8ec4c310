"""Identifiers: sandbox ids, API keys, access tokens."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits
SANDBOX_ID_LENGTH = 20


def new_sandbox_id() -> str:
    # Fixed length and no '-' or '.': ids are parsed out of Host headers and runsc prefix-matches ids.
    return "".join(secrets.choice(_ALPHABET) for _ in range(SANDBOX_ID_LENGTH))


def is_sandbox_id(value: str) -> bool:
    return len(value) == SANDBOX_ID_LENGTH and all(c in _ALPHABET for c in value)


def new_api_key() -> str:
    # The SDK (2.45.x) checks the shape `e2b_` + hex client-side.
    return "e2b_" + secrets.token_hex(20)


def new_access_token() -> str:
    return secrets.token_hex(24)


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
