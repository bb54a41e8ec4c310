"""The checkpoint guard of networked gVisor sandboxes reads the host's conntrack table."""

from __future__ import annotations

from pathlib import Path

from corral.net.conntrack import tcp_blocker

ROW = ("ipv4     2 tcp      6 {t} {state} src={src} dst=10.9.0.1 sport=40000 dport=3128 src=10.9.0.1 dst={src} "
       "sport=3128 dport=40000 [ASSURED] mark=0 zone=0 use=2")


def table(tmp_path: Path, *rows: str) -> Path:
    p = tmp_path / "nf_conntrack"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_open_connection_blocks(tmp_path: Path) -> None:
    why = tcp_blocker("10.9.0.2", table(tmp_path, ROW.format(t=431999, state="ESTABLISHED", src="10.9.0.2")))
    assert why is not None and "open TCP" in why


def test_time_wait_blocks_until_gvisor_forgets_it(tmp_path: Path) -> None:
    young = table(tmp_path, ROW.format(t=110, state="TIME_WAIT", src="10.9.0.2"))
    why = tcp_blocker("10.9.0.2", young)
    assert why is not None and "retry in 50 s" in why
    old = table(tmp_path, ROW.format(t=55, state="TIME_WAIT", src="10.9.0.2"))  # gVisor's 60 s are over
    assert tcp_blocker("10.9.0.2", old) is None


def test_other_sandboxes_and_udp_do_not_count(tmp_path: Path) -> None:
    rows = [ROW.format(t=431999, state="ESTABLISHED", src="10.9.0.22"),
            ("ipv4     2 udp      17 20 src=10.9.0.2 dst=10.9.0.1 sport=5000 dport=53 src=10.9.0.1 dst=10.9.0.2 "
             "sport=53 dport=5000 mark=0 zone=0 use=2")]
    assert tcp_blocker("10.9.0.2", table(tmp_path, *rows)) is None


def test_no_conntrack_table(tmp_path: Path) -> None:
    assert tcp_blocker("10.9.0.2", tmp_path / "missing") is None
