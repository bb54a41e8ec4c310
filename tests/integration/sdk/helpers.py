"""Shared helpers for the SDK-driven integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from e2b import Sandbox

RUNTIME_METADATA_KEY = "corral.runtime"


def create(tier: str, **kwargs: Any) -> Sandbox:
    """Create a sandbox on an isolation tier through the stock SDK; the tier travels as metadata."""
    metadata = {RUNTIME_METADATA_KEY: tier, **kwargs.pop("metadata", {})}
    return Sandbox.create(metadata=metadata, **kwargs)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
