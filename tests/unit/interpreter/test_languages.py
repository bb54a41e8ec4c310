"""Language -> kernel resolution, and the env-var snippets (run for real in Python and bash here)."""

from __future__ import annotations

import os
import subprocess

import pytest

from corral.interpreter import languages

ALL = {"python3", "bash", "jslab", "tslab"}


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (None, ("python", "python3")), ("Python", ("python", "python3")), ("bash", ("bash", "bash")),
        ("js", ("javascript", "jslab")), ("javascript", ("javascript", "jslab")),
        ("typescript", ("typescript", "tslab")), ("ts", ("typescript", "tslab")),
    ],
)  # fmt: skip
def test_resolve(asked: str | None, expected: tuple[str, str]) -> None:
    assert languages.resolve(asked, ALL) == expected


def test_unknown_or_uninstalled_languages() -> None:
    assert languages.resolve("cobol", ALL) is None
    assert languages.resolve("r", ALL) is None  # no IRkernel installed
    assert languages.resolve("javascript", {"python3", "javascript"}) == ("javascript", "javascript")  # ijavascript
    assert languages.supported({"python3", "bash"}) == ["bash", "python"]


def test_python_env_snippet_sets_then_restores() -> None:
    snippets = languages.env_snippets("python", {"CORRAL_T_NEW": "x y", "CORRAL_T_OLD": "new"})
    assert snippets is not None
    os.environ["CORRAL_T_OLD"] = "old"
    ns: dict[str, object] = {}
    try:
        exec(snippets[0], ns)  # noqa: S102 - the very code the kernel runs
        assert os.environ["CORRAL_T_NEW"] == "x y" and os.environ["CORRAL_T_OLD"] == "new"
        exec(snippets[1], ns)  # noqa: S102
        assert "CORRAL_T_NEW" not in os.environ and os.environ["CORRAL_T_OLD"] == "old"
        assert set(ns) == {"__builtins__"}  # nothing leaks into the user's namespace
    finally:
        os.environ.pop("CORRAL_T_OLD", None)
        os.environ.pop("CORRAL_T_NEW", None)


def test_bash_env_snippet_sets_then_restores() -> None:
    snippets = languages.env_snippets("bash", {"A": "it's $HOME", "B": "new"})
    assert snippets is not None
    script = f'B=old; export B\n{snippets[0]}\necho "$A|$B"\n{snippets[1]}\necho "${{A-unset}}|$B"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "it's $HOME|new\nunset|old\n"


def test_js_env_snippets_exist_and_unknown_language_has_none() -> None:
    assert languages.env_snippets("javascript", {"A": "1"}) is not None
    assert languages.env_snippets("cobol", {"A": "1"}) is None
