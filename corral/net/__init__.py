"""Sandbox networking: per-sandbox netns + veth, nftables egress policy, the DNS resolver and the HTTP(S) proxy."""
