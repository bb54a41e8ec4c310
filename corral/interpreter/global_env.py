"""The sandbox's env vars from its create, published by the agent at /init, for kernels that started before it.

The interpreter server may be older than the sandbox's /init (a template memory snapshot, a warm pool member): its
kernels never saw the create's `envs`. The agent writes them to ENV_FILE; a kernel gets what changed there before its
next cell, as E2B sandboxes do.
"""

from __future__ import annotations

import json
import os

from corral.interpreter import languages

ENV_FILE = os.environ.get("CORRAL_ENV_FILE", "/run/corral-init/envs.json")

Version = tuple[int, int, int]  # (mtime_ns, inode, size): the agent replaces the file by rename


def read_if_changed(seen: Version | None) -> tuple[Version, dict[str, str]] | None:
    """(version, env) when the file differs from `seen`, else None (also when it is missing or unreadable)."""
    try:
        st = os.stat(ENV_FILE)
        version = (st.st_mtime_ns, st.st_ino, st.st_size)
        if version == seen:
            return None
        with open(ENV_FILE) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    env = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str) and languages.ENV_NAME.match(k)}
    return version, env
