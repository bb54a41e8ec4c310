"""Corral: self-hosted code-execution sandboxes for AI agents, speaking the E2B protocol."""

__version__ = "0.1.0"
