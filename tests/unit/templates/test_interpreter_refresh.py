"""code-interpreter-v1 built by an older Corral: the next build refreshes only the server, a current one is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings
from corral.templates import code_interpreter as ci
from corral.templates.store import TemplateInfo


def _info(rootfs: Path, ready_cmd: str = "old ready") -> TemplateInfo:
    return TemplateInfo(id=ci.TEMPLATE_ID, aliases=[ci.TEMPLATE_ID], rootfs=rootfs, ready_cmd=ready_cmd)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """build_template stubbed: returns the installed template, records forced builds and runs their build_into."""
    rootfs = tmp_path / "installed" / "rootfs"
    (rootfs / ci.SERVER_LIB.lstrip("/")).mkdir(parents=True)
    state: dict[str, Any] = {"info": _info(rootfs), "forced": []}

    def build_template(settings: Any, store: Any, template_id: str, build_into: Any, *, force: bool,
                       log: Any) -> TemplateInfo:
        if not force:
            return state["info"]
        state["forced"].append(build_into(tmp_path / f"staging-{len(state['forced'])}"))
        return state["forced"][-1]

    def refresh(old: TemplateInfo, staging: Path, log: Any) -> TemplateInfo:
        return old.model_copy(update={"rootfs": staging / "rootfs", "ready_cmd": ci.READY_CMD})

    monkeypatch.setattr(ci, "build_base_template", lambda settings, log: _info(tmp_path / "base"))
    monkeypatch.setattr(ci, "build_template", build_template)
    monkeypatch.setattr(ci, "_refresh_into", refresh)
    return state


def test_an_older_server_is_refreshed(installed: dict[str, Any], tmp_path: Path) -> None:
    digest = installed["info"].rootfs / ci.DIGEST_FILE.lstrip("/")
    digest.write_text("an older corral\n")
    got = ci.build_code_interpreter_template(Settings(data_dir=tmp_path / "d"), log=lambda _m: None)
    assert len(installed["forced"]) == 1 and got.ready_cmd == ci.READY_CMD


def test_no_digest_means_older(installed: dict[str, Any], tmp_path: Path) -> None:
    ci.build_code_interpreter_template(Settings(data_dir=tmp_path / "d"), log=lambda _m: None)
    assert len(installed["forced"]) == 1


def test_a_current_server_is_reused(installed: dict[str, Any], tmp_path: Path) -> None:
    (installed["info"].rootfs / ci.DIGEST_FILE.lstrip("/")).write_text(ci.server_digest() + "\n")
    got = ci.build_code_interpreter_template(Settings(data_dir=tmp_path / "d"), log=lambda _m: None)
    assert installed["forced"] == [] and got is installed["info"]


def test_digest_covers_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    before = ci.server_digest()
    monkeypatch.setattr(ci, "READY_CMD", ci.READY_CMD + " ")
    assert ci.server_digest() != before
