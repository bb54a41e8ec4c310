"""Pause/resume integration tests."""
