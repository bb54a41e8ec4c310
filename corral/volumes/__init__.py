"""Volumes: persistent, team-owned directories that sandboxes mount and the volume content API serves."""
