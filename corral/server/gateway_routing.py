"""Which sandbox and port a gateway request is for, and whether the client may reach it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import posixpath
import re
import time
from urllib.parse import parse_qs, unquote

from corral.errors import AuthError, ForbiddenError, InvalidRequestError
from corral.server.route import Route

_SANDBOX_ID = re.compile(rb"^[a-z0-9]{20}$")
# `{port}-{sandboxID}.{any domain}`, optionally with `:gatewayport`.
_HOST = re.compile(rb"^([0-9]{1,5})-([a-z0-9]{20})(?:\.[^:]*)?(?::[0-9]+)?$")

# envd control-plane paths (x-internal in envd.yaml) plus Corral's own: only the host's manager calls them.
_INTERNAL_PATHS = frozenset({"/init", "/freeze", "/unfreeze", "/collapse", "/fsfreeze", "/fsthaw"})


def pick_target(sid: bytes | None, port: bytes | None, host: bytes | None) -> tuple[str, int]:
    """(sandbox_id, port) from `E2b-Sandbox-Id`/`E2b-Sandbox-Port`, else from a `{port}-{id}.{domain}` Host."""
    if sid is not None:
        if not _SANDBOX_ID.match(sid):
            raise InvalidRequestError("E2b-Sandbox-Id must be a 20-character sandbox id of [a-z0-9]")
        if port is None or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidRequestError("E2b-Sandbox-Port must name a port (1-65535) along with E2b-Sandbox-Id")
        return sid.decode(), int(port)
    if host is not None:
        m = _HOST.match(host.lower())
        if m and 0 < int(m.group(1)) < 65536:
            return m.group(2).decode(), int(m.group(1))
    raise InvalidRequestError(
        "no sandbox named: send E2b-Sandbox-Id and E2b-Sandbox-Port headers or a {port}-{sandboxID}.{domain} Host"
    )


def split_target(target: bytes) -> tuple[str, str]:
    """(path, query) of a request target; absolute-form targets are reduced to their path."""
    text = target.decode("latin-1")
    if text.startswith(("http://", "https://")):
        rest = text.split("://", 1)[1]
        slash = rest.find("/")
        text = rest[slash:] if slash >= 0 else "/"
    path, _, query = text.partition("?")
    return path, query


def is_internal_path(path: str) -> bool:
    """True for paths only the manager may call (`/init`, envd control ops, `/_corral*`), however spelled."""
    if "%" in path or "//" in path or "/." in path:
        # The agent decodes %-escapes and cleans `//`, `/./`, `/../` before routing, so compare the same form.
        path = re.sub(r"/+", "/", posixpath.normpath("/" + unquote(path).lstrip("/")))
    elif len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    return path in _INTERNAL_PATHS or path.startswith("/_corral")


def _token_ok(given: bytes | None, expected: str | None) -> bool:
    if given is None or not expected:
        return False
    return hmac.compare_digest(given, expected.encode())


def file_signature(path: str, operation: str, user: str, token: str, expiration: int | None) -> str:
    """The v1 signature of a file URL: sha256 over `path:op:user:token[:expiration]`, base64 without padding."""
    raw = f"{path}:{operation}:{user}:{token}" if expiration is None else f"{path}:{operation}:{user}:{token}:{expiration}"
    digest = hashlib.sha256(raw.encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode("ascii")


def _check_signed_file_url(method: str, query: str, token: str) -> None:
    params = parse_qs(query, keep_blank_values=True)
    signature = params.get("signature", [None])[0]
    if signature is None:
        raise AuthError("missing X-Access-Token header or file URL signature for a secure sandbox")
    exp_text = params.get("signature_expiration", [None])[0]
    expiration: int | None = None
    if exp_text is not None:
        try:
            expiration = int(exp_text)
        except ValueError:
            raise AuthError("invalid signature_expiration") from None
        if expiration < time.time():
            raise AuthError("file URL signature has expired")
    operation = "read" if method == "GET" else "write"
    expected = file_signature(
        params.get("path", [""])[0], operation, params.get("username", [""])[0], token, expiration
    )
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise AuthError("invalid file URL signature")


def check_access(route: Route, port: int, envd: bool, method: str, path: str, query: str,
                 access_token: bytes | None, traffic_token: bytes | None) -> None:
    """Raise ForbiddenError/AuthError unless this client may send this request to this sandbox port."""
    if envd:
        if is_internal_path(path):
            raise ForbiddenError(f"{path} is reserved for the Corral host")
        if not route.secure or (path == "/health" and method == "GET"):
            return  # envd serves its health check without a token too
        if _token_ok(access_token, route.envd_access_token):
            return
        if method in ("GET", "POST") and path == "/files" and route.envd_access_token:
            _check_signed_file_url(method, query, route.envd_access_token)
            return
        raise AuthError("missing or invalid X-Access-Token for a secure sandbox")
    if route.traffic_access_token and not _token_ok(traffic_token, route.traffic_access_token):
        raise AuthError(f"missing or invalid E2B-Traffic-Access-Token for port {port}")
