"""Corral's command line: `corral --help` lists every command."""

from corral.cli.main import app

__all__ = ["app"]
