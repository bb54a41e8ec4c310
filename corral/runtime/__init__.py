"""How a sandbox is isolated: one module per backend, all behind the `Runtime` protocol."""

from corral.runtime.base import Runtime, RuntimeHandle, SandboxSpec

__all__ = ["GVisorRuntime", "RuncRuntime", "Runtime", "RuntimeHandle", "SandboxSpec", "make_runtimes"]


def __getattr__(name: str) -> object:
    # Backends load lazily so importing base types stays cheap (and cycle-free: backends import corral.runtime.*).
    if name == "GVisorRuntime":
        from corral.runtime.gvisor import GVisorRuntime

        return GVisorRuntime
    if name == "RuncRuntime":
        from corral.runtime.runc import RuncRuntime

        return RuncRuntime
    if name == "make_runtimes":
        from corral.runtime.factory import make_runtimes

        return make_runtimes
    raise AttributeError(name)
