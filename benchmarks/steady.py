"""The benchmarks' steady state: wait until a warm pool holds its ready members (from the pool's marker files)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from corral.pool import POOL_DIR, pool_member_ids


def ready_members(data_dir: Path, tier: str, template: str = "base") -> int:
    """Warm pool members of `template` on `tier` waiting to be handed out (their markers say so)."""
    count = 0
    for sid in pool_member_ids(data_dir):
        try:
            meta = json.loads((data_dir / POOL_DIR / sid).read_text() or "{}")
        except (OSError, ValueError):
            continue
        count += meta.get("runtime") == tier and meta.get("template") == template and bool(meta.get("ready"))
    return count


def wait_pool_full(data_dir: Path, tier: str, size: int, timeout: float = 10.0, template: str = "base") -> None:
    """Steady state for latency samples: the warm pool of `template` on `tier` has refilled (creates slower than
    refills)."""
    deadline = time.monotonic() + timeout
    while ready_members(data_dir, tier, template) < size and time.monotonic() < deadline:
        time.sleep(0.02)
