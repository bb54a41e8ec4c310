"""Image references are normalised like docker's, and malformed ones are refused naming the problem."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequestError
from corral.images.refs import normalize, parse_ref


@pytest.mark.parametrize(("text", "full"), [
    ("python:3.11", "docker.io/library/python:3.11"),
    ("python", "docker.io/library/python:latest"),
    ("docker.io/library/python:3.11", "docker.io/library/python:3.11"),
    ("index.docker.io/library/python:3.11", "docker.io/library/python:3.11"),
    ("e2bdev/base", "docker.io/e2bdev/base:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("registry.example:5000/team/app:1.2", "registry.example:5000/team/app:1.2"),
    ("ubuntu@sha256:" + "a" * 64, "docker.io/library/ubuntu@sha256:" + "a" * 64),
    ("ubuntu:22.04@sha256:" + "b" * 64, "docker.io/library/ubuntu:22.04@sha256:" + "b" * 64),
])  # fmt: skip
def test_normalise(text: str, full: str) -> None:
    assert normalize(text) == full


def test_familiar_forms() -> None:
    assert parse_ref("docker.io/library/python:3.11").familiar == "python:3.11"
    assert parse_ref("e2bdev/base").familiar == "e2bdev/base:latest"
    assert parse_ref("localhost:5000/app:1").familiar == "localhost:5000/app:1"
    assert parse_ref("python:3.11") == parse_ref("docker.io/library/python:3.11")


@pytest.mark.parametrize("bad", ["", "Python:3", "python:", "py thon", "python:3.11@sha256:xyz", "a/../b", ":tag",
                                 "python:" + "x" * 200, "UPPER/case"])
def test_malformed_refs_name_the_problem(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid image reference"):
        parse_ref(bad)
