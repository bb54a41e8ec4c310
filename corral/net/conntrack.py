"""Whether a networked gVisor sandbox holds TCP state that `runsc checkpoint` cannot save, read from host conntrack.

The 20240729 runsc panics while encoding a netstack TCP endpoint that is connected or lingering in TIME_WAIT
(measured: a `curl` through the proxy, then a checkpoint, killed the sandbox). Such endpoints no longer show in the
sandbox's /proc/net/tcp once their file is closed, but every one of them crossed the veth, so the host's conntrack
table still has the flow: its state, and for TIME_WAIT the seconds left of the host's 120 s timer.
"""

from __future__ import annotations

from pathlib import Path

CONNTRACK = Path("/proc/net/nf_conntrack")
# gVisor keeps a closed endpoint in TIME_WAIT for 60 s; conntrack starts its own 120 s timer at the same moment.
GVISOR_TIME_WAIT_S = 60
HOST_TIME_WAIT_S = 120


def tcp_blocker(sandbox_ip: str, table: Path = CONNTRACK) -> str | None:
    """Why the sandbox at `sandbox_ip` cannot be checkpointed now, or None."""
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return None      # no conntrack procfs: nothing to go by (the checkpoint itself is the judge)
    src = f"src={sandbox_ip} "
    open_flows, lingering, wait_s = 0, 0, 0
    for line in lines:
        fields = line.split()
        if len(fields) < 7 or fields[2] != "tcp" or src not in line + " ":
            continue
        state, timeout = fields[5], int(fields[4]) if fields[4].isdigit() else HOST_TIME_WAIT_S
        if state == "TIME_WAIT" or state == "CLOSE":
            left = timeout - (HOST_TIME_WAIT_S - GVISOR_TIME_WAIT_S)
            if left > 0:
                lingering += 1
                wait_s = max(wait_s, left)
        else:
            open_flows += 1
    if open_flows:
        return (f"it has {open_flows} open TCP connection(s) through its network, which gVisor cannot checkpoint; "
                "close them (or stop the process holding them) and retry")
    if lingering:
        return (f"{lingering} TCP connection(s) it closed are still in TIME_WAIT, which gVisor cannot checkpoint; "
                f"retry in {wait_s} s")
    return None
