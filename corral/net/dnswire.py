"""The little of the DNS wire format the sandbox resolver needs: read the question, build answers, read A records."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TYPE_A = 1
RCODE_NXDOMAIN = 3
RCODE_SERVFAIL = 2


class DnsFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    qid: int
    name: str          # lower case, no trailing dot
    qtype: int
    end: int           # offset just after the (first) question


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Returns (name, offset after the name in place), following compression pointers."""
    labels: list[str] = []
    end = -1
    for _ in range(128):   # bounds pointer loops
        if off >= len(msg):
            raise DnsFormatError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsFormatError("truncated pointer")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n == 0:
            return ".".join(labels).lower(), (end if end >= 0 else off + 1)
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", errors="replace"))
        off += 1 + n
    raise DnsFormatError("too many labels")


def parse_question(msg: bytes) -> Question:
    if len(msg) < 12:
        raise DnsFormatError("short header")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qd != 1:
        raise DnsFormatError("not a single-question query")
    name, off = _read_name(msg, 12)
    if off + 4 > len(msg):
        raise DnsFormatError("truncated question")
    qtype, _qclass = struct.unpack("!HH", msg[off:off + 4])
    return Question(qid, name, qtype, off + 4)


def answer(query: bytes, q: Question, ips: list[str], ttl: int, rcode: int = 0) -> bytes:
    """A response to `query` carrying A records for its question (none for other types: NODATA)."""
    flags = 0x8180 | rcode      # QR, RD, RA
    records = b""
    count = 0
    if rcode == 0 and q.qtype == TYPE_A:
        for ip in ips:
            records += struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, ttl, 4) + socket.inet_aton(ip)
            count += 1
    header = struct.pack("!HHHHHH", q.qid, flags, 1, count, 0, 0)
    return header + query[12:q.end] + records


def error(query: bytes, q: Question, rcode: int) -> bytes:
    return answer(query, q, [], 0, rcode)


def a_records(msg: bytes) -> tuple[list[str], int]:
    """IPv4 addresses in the answer section and their smallest TTL (0 when none)."""
    if len(msg) < 12:
        return [], 0
    _qid, _flags, qd, an = struct.unpack("!HHHH", msg[:8])
    off = 12
    try:
        for _ in range(qd):
            _, off = _read_name(msg, off)
            off += 4
        ips: list[str] = []
        ttl = 0
        for _ in range(an):
            _, off = _read_name(msg, off)
            rtype, _cls, rttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if rtype == TYPE_A and rdlen == 4:
                ips.append(socket.inet_ntoa(msg[off:off + 4]))
                ttl = rttl if not ttl else min(ttl, rttl)
            off += rdlen
        return ips, ttl
    except (DnsFormatError, struct.error):
        return [], 0


def query_a(name: str, qid: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", TYPE_A, 1)
