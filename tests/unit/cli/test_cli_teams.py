"""`corral teams ...`, `corral keys create --admin` and `corral audit` against a temp data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", [["teams"], ["teams", "create"], ["teams", "list"], ["teams", "rm"],
                                     ["teams", "quota"], ["audit"]], ids=" ".join)
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_teams_lifecycle_and_quota(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    admin = runner.invoke(app, ["keys", "create", "--admin", "--name", "root", *d])
    assert admin.exit_code == 0 and admin.output.strip().startswith("corral_admin_")
    other = runner.invoke(app, ["keys", "create", "--admin", "--name", "spare", *d]).output.strip()
    assert runner.invoke(app, ["keys", "revoke", "spare", *d]).exit_code == 0
    from corral.db import open_database
    from corral.tenancy import admin_key_id
    db = open_database(f"sqlite:///{tmp_path / 'corral.db'}")
    assert admin_key_id(db, other) is None and admin_key_id(db, admin.output.strip()) is not None
    db.close()
    team_id = runner.invoke(app, ["teams", "create", "red", *d]).output.strip()
    assert team_id.startswith("team_")
    assert runner.invoke(app, ["teams", "create", "red", *d]).exit_code == 1
    key = runner.invoke(app, ["keys", "create", "--name", "k", "--team", "blue", *d]).output.strip()
    assert key.startswith("e2b_")  # only the key, and the team 'blue' now exists
    assert runner.invoke(app, ["teams", "quota", "blue", "--max-sandboxes", "3", "--creates-per-s", "1.5", *d]).exit_code == 0
    assert runner.invoke(app, ["teams", "quota", "blue", "--memory-mb", "2048", *d]).exit_code == 0
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["teams", "list", "--json", *d]).output)}
    assert rows["blue"]["max_sandboxes"] == 3 and rows["blue"]["creates_per_s"] == 1.5
    assert rows["blue"]["memory_mb"] == 2048 and rows["red"]["max_sandboxes"] is None
    assert runner.invoke(app, ["teams", "rm", "red", *d]).exit_code == 0
    assert runner.invoke(app, ["teams", "rm", "red", *d]).exit_code == 1
    out = runner.invoke(app, ["audit", "--json", "--since", "1h", *d])
    assert out.exit_code == 0 and json.loads(out.output) == []
    assert runner.invoke(app, ["audit", "--since", "yesterday", *d]).exit_code == 1
