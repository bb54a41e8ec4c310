"""HTTP/1.1 byte-level helpers shared by the gateway's client and upstream sides."""

from __future__ import annotations

import json

# Hop-by-hop headers (RFC 9110 7.6.1) plus framing headers the gateway recomputes itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_REASONS = {
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}

Headers = list[tuple[bytes, bytes]]


def connection_tokens(headers: Headers) -> set[bytes]:
    """Header names listed in `Connection:` (they are hop-by-hop for this message only)."""
    out: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            for tok in value.split(b","):
                tok = tok.strip().lower()
                if tok:
                    out.add(tok)
    return out


def forwardable(headers: Headers) -> Headers:
    """Drop hop-by-hop headers; everything else (Content-Encoding included) passes untouched."""
    extra = connection_tokens(headers)
    if not extra or extra <= {b"keep-alive", b"close"}:
        return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP]
    return [(n, v) for n, v in headers if (low := n.lower()) not in HOP_BY_HOP and low not in extra]


def serialize_headers(headers: Headers) -> bytes:
    return b"".join(n + b": " + v + b"\r\n" for n, v in headers)


def chunk(data: bytes) -> bytes:
    """One chunked-encoding frame."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def error_response(status: int, message: str, close: bool, extra: dict[str, object] | None = None) -> bytes:
    """A complete JSON error response `{"code": status, "message": ...}` (the shape the E2B SDK reads)."""
    payload: dict[str, object] = {"code": status, "message": message}
    if extra:
        payload.update(extra)
    body = json.dumps(payload).encode()
    head = b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
    )
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body
