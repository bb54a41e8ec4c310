"""`corral image ...` commands: JSON listing, clear one-line errors with exit codes, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from corral.cli.main import app
from tests.unit.images.archives import Entry, config, layer, oci_archive

runner = CliRunner()


def test_import_list_tag_rm(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    archive = oci_archive(tmp_path / "a.tar", [layer([Entry("hello", data=b"hi")])], config(), name="me/app:1")
    r = runner.invoke(app, ["image", "import", str(archive), "--data-dir", data, "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["image", "tag", "me/app:1", "ubuntu:22.04", "--data-dir", data])
    assert r.exit_code == 0 and "ubuntu:22.04" in r.output
    r = runner.invoke(app, ["image", "list", "--json", "--data-dir", data])
    assert {row["ref"] for row in json.loads(r.stdout)} >= {"me/app:1", "ubuntu:22.04"}
    r = runner.invoke(app, ["image", "inspect", "docker.io/library/ubuntu:22.04", "--data-dir", data])
    assert json.loads(r.stdout)["ref"] == "ubuntu:22.04"
    for ref in ("me/app:1", "ubuntu:22.04"):
        assert runner.invoke(app, ["image", "rm", ref, "--data-dir", data]).exit_code == 0
    assert json.loads(runner.invoke(app, ["image", "list", "--json", "--data-dir", data]).stdout) == []


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = runner.invoke(app, ["image", "tag", "ubuntu:22.04", "x:1", "--data-dir", data])
    assert r.exit_code == 1 and "corral image import FILE" in " ".join(r.output.split())
    r = runner.invoke(app, ["image", "import", str(tmp_path / "missing.tar"), "--data-dir", data])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(app, ["image", "rm", "BAD REF", "--data-dir", data])
    assert r.exit_code == 2 and "invalid image reference" in r.output
    r = runner.invoke(app, ["image", "build-base", "ubuntu:22.04", "--data-dir", data])
    assert r.exit_code == 1 and "not a built-in base" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
