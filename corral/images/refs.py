"""Image references normalised like docker's: `python:3.11` is `docker.io/library/python:3.11`, the tag defaults to `latest`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.errors import InvalidRequestError

DEFAULT_REGISTRY = "docker.io"
_REGISTRY_ALIASES = {"index.docker.io": DEFAULT_REGISTRY, "registry-1.docker.io": DEFAULT_REGISTRY}
# Grammar from the distribution spec (reference.go), simplified: lowercase path components, tags, sha256 digests.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference; `str(ref)` is the canonical full form used as a key everywhere."""

    registry: str
    repository: str  # e.g. library/python
    tag: str | None  # None only when a digest pins the image
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}{self._suffix}"

    @property
    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar(self) -> str:
        """The short form docker prints: `python:3.11`, `me/app:1`, `localhost:5000/app:1`."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/") + self._suffix
        return str(self)

    @property
    def short_name(self) -> str:
        """The repository's last component (`python` for docker.io/library/python)."""
        return self.repository.rsplit("/", 1)[-1]


def parse_ref(text: str) -> ImageRef:
    """Parse and normalise a reference; InvalidRequestError naming the problem for anything malformed."""
    raw = text.strip()
    if not raw or len(raw) > 255:
        raise InvalidRequestError(f"invalid image reference {text!r}: must be 1-255 characters")
    name, digest = raw, None
    if "@" in raw:
        name, digest = raw.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidRequestError(f"invalid image reference {text!r}: digest must be sha256:<64 hex digits>")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:  # a colon in the last component is a tag; one earlier is a registry port
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidRequestError(f"invalid image reference {text!r}: bad tag {tag!r}")
    parts = name.split("/")
    registry = DEFAULT_REGISTRY
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
        if not _HOST.match(registry):
            raise InvalidRequestError(f"invalid image reference {text!r}: bad registry {registry!r}")
        registry = _REGISTRY_ALIASES.get(registry.lower(), registry.lower())
    if not parts or not all(_COMPONENT.match(p) for p in parts):
        raise InvalidRequestError(
            f"invalid image reference {text!r}: repository names are lowercase letters, digits and . _ - separators"
        )
    if registry == DEFAULT_REGISTRY and len(parts) == 1:
        parts.insert(0, "library")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry=registry, repository="/".join(parts), tag=tag, digest=digest)


def normalize(text: str) -> str:
    """The canonical string of a reference (`python:3.11` -> `docker.io/library/python:3.11`)."""
    return str(parse_ref(text))
