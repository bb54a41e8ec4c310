"""EgressPolicy: wire parsing (errors name the field), precedence, protected ranges, domain patterns."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequestError
from corral.net.policy import EgressPolicy, matches


def test_default_is_internet_allowed() -> None:
    p = EgressPolicy.from_wire(None, None)
    assert p.allow_internet and p.ip_allowed("198.51.100.7")
    assert not p.ip_allowed("10.0.0.1") and not p.ip_allowed("169.254.169.254") and not p.ip_allowed("127.0.0.1")


def test_deny_all_traffic_means_no_internet_and_entries_are_sorted_by_kind() -> None:
    p = EgressPolicy.from_wire(True, {"denyOut": ["0.0.0.0/0", "Bad.Example.com"],
                                      "allowOut": ["8.8.8.8", "*.pypi.org", "192.168.1.0/24"]})
    assert not p.allow_internet
    assert p.allow_cidrs == ["8.8.8.8/32", "192.168.1.0/24"] and p.allow_domains == ["*.pypi.org"]
    assert p.deny_cidrs == [] and p.deny_domains == ["bad.example.com"]
    assert p.ip_allowed("8.8.8.8") and not p.ip_allowed("8.8.4.4")
    # An allow entry inside a protected range opens exactly that range.
    assert p.ip_allowed("192.168.1.9") and not p.ip_allowed("192.168.2.9")


def test_allow_wins_over_deny_but_not_over_protected_unless_inside() -> None:
    p = EgressPolicy.from_wire(True, {"allowOut": ["0.0.0.0/0"], "denyOut": ["198.51.100.0/24"]})
    assert p.ip_allowed("198.51.100.1")          # allow takes precedence (as E2B documents)
    assert not p.ip_allowed("10.1.2.3")            # 0.0.0.0/0 is not an explicit allow of private ranges


def test_name_verdicts() -> None:
    p = EgressPolicy.from_wire(False, {"allowOut": ["pypi.org", "*.example.com"]})
    assert p.name_verdict("PyPI.org.") is True and p.name_verdict("a.b.example.com") is True
    assert p.name_verdict("example.com") is False and p.name_verdict("other.org") is False
    q = EgressPolicy.from_wire(True, {"denyOut": ["evil.test"]})
    assert q.name_verdict("evil.test") is False and q.name_verdict("fine.test") is None
    assert matches(["*.x.test"], "a.x.test") and not matches(["*.x.test"], "x.test")


@pytest.mark.parametrize(("network", "field"), [
    ({"allowOut": "pypi.org"}, "network.allowOut"),
    ({"allowOut": ["ok.org", 5]}, "network.allowOut[1]"),
    ({"denyOut": ["not a name"]}, "network.denyOut[0]"),
    ({"denyOut": ["::1/128"]}, "network.denyOut[0]"),
    ({"allowOut": ["1.2.3.4/40"]}, "network.allowOut[0]"),
])
def test_bad_entries_name_the_field(network: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field.replace("[", r"\[").replace("]", r"\]")):
        EgressPolicy.from_wire(None, network)


def test_json_round_trip() -> None:
    p = EgressPolicy.from_wire(False, {"allowOut": ["a.test", "1.2.3.0/24"]})
    assert EgressPolicy.from_json(p.to_json()) == p
    assert EgressPolicy.from_json(None) == EgressPolicy()
