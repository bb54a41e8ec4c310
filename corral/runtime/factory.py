"""Build the isolation backends a server offers, keyed by their `name` ("gvisor", "runc")."""

from __future__ import annotations

from corral.config import Settings
from corral.runtime.base import Runtime
from corral.runtime.gvisor import GVisorRuntime
from corral.runtime.runc import RuncRuntime


def make_runtimes(settings: Settings) -> dict[str, Runtime]:
    """Both backends; each keeps its state under settings.data_dir (runsc-root / runc-root, sandboxes/)."""
    runtimes: list[Runtime] = [GVisorRuntime(settings), RuncRuntime(settings)]
    return {r.name: r for r in runtimes}
