"""The resolver's DNS wire helpers: parse a query, answer it, read A records back (with compression)."""

from __future__ import annotations

import pytest

from corral.net import dnswire


def test_query_answer_round_trip() -> None:
    q = dnswire.query_a("Site-A.test", 0x1234)
    parsed = dnswire.parse_question(q)
    assert (parsed.qid, parsed.name, parsed.qtype) == (0x1234, "site-a.test", dnswire.TYPE_A)
    reply = dnswire.answer(q, parsed, ["198.51.100.2", "198.51.100.3"], 60)
    assert reply[:2] == q[:2]
    assert dnswire.a_records(reply) == (["198.51.100.2", "198.51.100.3"], 60)


def test_nxdomain_has_no_records() -> None:
    q = dnswire.query_a("denied.test", 7)
    reply = dnswire.error(q, dnswire.parse_question(q), dnswire.RCODE_NXDOMAIN)
    assert reply[3] & 0x0F == dnswire.RCODE_NXDOMAIN and dnswire.a_records(reply) == ([], 0)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 11, dnswire.query_a("a.test", 1)[:-3],
                                 b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"])
def test_malformed_queries_raise_format_error(bad: bytes) -> None:
    with pytest.raises(dnswire.DnsFormatError):
        dnswire.parse_question(bad)


def test_garbage_answers_yield_nothing() -> None:
    assert dnswire.a_records(b"\x00\x01\x81\x80\x00\x01\x00\x05" + b"\xff" * 20) == ([], 0)
