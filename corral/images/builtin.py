"""The built-in bases: Debian releases the machine's mirror serves, with Python and Node from Debian on top."""

from __future__ import annotations

from dataclasses import dataclass

from corral.images.refs import ImageRef

BASE_SUITE = "bookworm"  # what the `base` template is built from; its rootfs serves the bookworm family


@dataclass(frozen=True)
class Builtin:
    """One built-in image; `name` is its canonical ref and `key` its directory under images/builtin/."""

    name: str  # e.g. "python:3.13"
    suite: str  # the Debian release it comes from
    packages: tuple[str, ...] = ()  # apt packages on top of the plain release (empty: the release itself)
    check: str = "true"  # a shell check the built rootfs must pass
    parent: str | None = None  # the builtin it is derived from
    files: tuple[str, ...] = ()  # paths a rootfs must hold to serve this image as it is (no build on top)

    @property
    def key(self) -> str:
        return self.name.replace(":", "-").replace("/", "-")

    @property
    def from_base_template(self) -> bool:
        """Bookworm images are the base template's rootfs: it already holds Debian, python3+pip+venv, nodejs+npm."""
        return self.suite == BASE_SUITE


DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13", "bullseye": "11"}
PYTHON_BY_SUITE = {"bookworm": "3.11", "trixie": "3.13", "bullseye": "3.9"}
NODE_BY_SUITE = {"bookworm": "18", "trixie": "20"}  # bullseye's nodejs 12 is too old to offer
PYTHON_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3")
NODE_PACKAGES = ("nodejs", "npm")


def _catalogue() -> dict[str, tuple[Builtin, tuple[str, ...]]]:
    """Canonical name -> (image, the other tags that name it)."""
    out: dict[str, tuple[Builtin, tuple[str, ...]]] = {}
    for suite, number in DEBIAN_VERSIONS.items():
        extra: tuple[str, ...] = ("latest", "stable") if suite == BASE_SUITE else ()
        tags = (number, f"{suite}-slim", f"{number}-slim", *extra)
        out[f"debian:{suite}"] = (Builtin(f"debian:{suite}", suite, check="test -x /bin/sh"), tags)
    for suite, version in PYTHON_BY_SUITE.items():
        check = f"python3 -c 'import sys, venv, pip; assert sys.version.startswith(\"{version}.\")' && pip --version"
        img = Builtin(f"python:{version}", suite, PYTHON_PACKAGES, check + " && python --version", f"debian:{suite}",
                      ("usr/bin/python3", "usr/bin/python", "usr/bin/pip"))
        extra = ("3", "latest") if suite == BASE_SUITE else ()
        out[img.name] = (img, (f"{version}-{suite}", f"{version}-slim", f"{version}-slim-{suite}", *extra))
    for suite, major in NODE_BY_SUITE.items():
        check = f"node -e 'process.exit(process.versions.node.split(\".\")[0] === \"{major}\" ? 0 : 1)' && npm --version"
        img = Builtin(f"node:{major}", suite, NODE_PACKAGES, check, f"debian:{suite}", ("usr/bin/node", "usr/bin/npm"))
        # `lts` is the newest Node a Debian release here carries (node:lts upstream is newer; nodejs.org is unreachable)
        extra = ("lts",) if major == max(NODE_BY_SUITE.values(), key=int) else ()
        out[img.name] = (img, (f"{major}-{suite}", f"{major}-slim", f"{major}-{suite}-slim", *extra))
    # The SDK's Template() default (from_base_image): Corral's own base template is the closest match.
    out["e2bdev/base:latest"] = (Builtin("e2bdev/base:latest", BASE_SUITE), ())
    return out


CATALOGUE = _catalogue()
_BY_REF: dict[str, Builtin] = {}
for _name, (_img, _tags) in CATALOGUE.items():
    _repo = _name.split(":", 1)[0]
    for _tag in (_name.split(":", 1)[1], *_tags):
        _BY_REF[f"docker.io/{'' if '/' in _repo else 'library/'}{_repo}:{_tag}"] = _img


def lookup(ref: ImageRef) -> Builtin | None:
    """The built-in image a normalised reference names, if any."""
    return _BY_REF.get(str(ref))


def by_name(name: str) -> Builtin:
    return CATALOGUE[name][0]


def available_for(ref: ImageRef) -> list[str]:
    """The built-in names of the same repository (for `python:3.12`: the Pythons Corral can offer)."""
    if ref.registry != "docker.io":
        return []
    return [n for n in CATALOGUE if n.split(":", 1)[0] in (ref.repository, ref.repository.removeprefix("library/"))]


def aliases(name: str) -> list[str]:
    repo = name.split(":", 1)[0]
    return [f"{repo}:{t}" for t in CATALOGUE[name][1]]
