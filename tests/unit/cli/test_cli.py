"""The CLI without a server: --help everywhere, keys against a temp data dir, doctor's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli.main import app

runner = CliRunner()

COMMANDS = [[], ["serve"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["ls"], ["exec"],
            ["shell"], ["kill"], ["doctor"], ["template"], ["template", "build"], ["template", "list"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "corral")
def test_help_everywhere(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_keys_create_prints_only_the_key_then_list_and_revoke(tmp_path: Path) -> None:
    created = runner.invoke(app, ["keys", "create", "--name", "ci", "--team", "t1", "--data-dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    assert key.startswith("e2b_") and all(c in "0123456789abcdef" for c in key[4:])
    listed = runner.invoke(app, ["keys", "list", "--json", "--data-dir", str(tmp_path)])
    rows = json.loads(listed.output)
    assert [r["name"] for r in rows] == ["ci"]
    assert key not in listed.output  # keys are stored hashed and never shown again
    revoked = runner.invoke(app, ["keys", "revoke", "ci", "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    after = json.loads(runner.invoke(app, ["keys", "list", "--json", "--data-dir", str(tmp_path)]).output)
    assert after[0]["revoked_at"]


def test_ls_without_key_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    result = runner.invoke(app, ["ls"])
    assert result.exit_code == 2
    assert "keys create" in result.output


def test_doctor_json_names_every_check(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--json", "--data-dir", str(tmp_path)])
    checks = json.loads(result.output)
    names = {c["name"] for c in checks}
    assert {"runsc", "runc", "cgroups", "overlayfs", "debootstrap", "disk", "agent", "base template"} <= names
    missing = [c for c in checks if not c["ok"]]
    assert all(c["fix"] for c in missing)
    # An empty data dir has no base template: doctor must say so and fail.
    assert any(c["name"] == "base template" and not c["ok"] for c in checks)
    assert result.exit_code == 1
