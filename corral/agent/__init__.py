"""The in-sandbox agent: a static Go binary (see build.py)."""
