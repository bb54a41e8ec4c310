"""The nftables script of one sandbox: deny-all without a policy; rule order allows > protected > deny > default."""

from __future__ import annotations

from corral.config import Settings
from corral.net.netns import NetInfo
from corral.net.nft import policy_script
from corral.net.policy import EgressPolicy

INFO = NetInfo(sandbox_id="abc", netns="corral-abc", host_iface="corral5", host_ip="10.231.0.21",
               sandbox_ip="10.231.0.22", service_ip="10.231.0.1")


def _rules(script: str) -> list[str]:
    return [ln.split(" s_abc ", 1)[1] for ln in script.splitlines() if ln.startswith("add rule")]


def test_no_policy_rejects_everything() -> None:
    rules = _rules(policy_script(Settings(), INFO, None))
    assert rules[0] == "ip saddr != 10.231.0.22 drop" and rules[-1] == "goto reject_fast"
    assert not any("accept" in r and "established" not in r for r in rules)


def test_rule_order() -> None:
    p = EgressPolicy.from_wire(False, {"allowOut": ["192.168.5.0/24", "8.8.8.8"], "denyOut": ["1.1.1.1"]})
    script = policy_script(Settings(), INFO, p)
    rules = _rules(script)
    order = [r for r in rules if "@" in r]
    assert order == ["ip daddr @s_abc_allowp accept", "ip daddr @protected goto reject_fast",
                     "ip daddr @s_abc_allow accept", "ip daddr @s_abc_dnsallow accept",
                     "ip daddr @s_abc_dnsdeny goto reject_fast", "ip daddr @s_abc_deny goto reject_fast"]
    assert rules[-1] == "goto reject_fast"
    assert "add element inet corral s_abc_allowp { 192.168.5.0/24 }" in script
    assert "add element inet corral s_abc_allow { 8.8.8.8/32 }" in script
    assert "flush set inet corral s_abc_dnsallow" not in script   # resolved names survive a policy change
    assert _rules(policy_script(Settings(), INFO, EgressPolicy()))[-1] == "accept"
