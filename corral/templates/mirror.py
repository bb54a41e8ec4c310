"""Derive the Debian mirror from the machine's own apt configuration (never a host name written in the repo)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from corral.errors import NotFoundError

ETC_APT = Path("/etc/apt")
# Schemes debootstrap and apt can both fetch from; cdrom:/mirror+file: and the like cannot seed a rootfs.
_USABLE_SCHEMES = ("http://", "https://", "file://")


@dataclass(frozen=True)
class AptSource:
    """One enabled `deb` source: a one-line entry, or one deb822 stanza (which may name several URIs/suites)."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str  # the file it came from, for error messages


def parse_deb822(text: str, origin: str = "<deb822>") -> list[AptSource]:
    """Parse a deb822 `.sources` file: stanzas separated by blank lines, `#` comments, folded continuation lines."""
    sources: list[AptSource] = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:  # a continuation of the previous field
                fields[key] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip().lower()  # deb822 field names are case-insensitive
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        uris = tuple(u.rstrip("/") for u in fields.get("uris", "").split())
        suites = tuple(fields.get("suites", "").split())
        if uris and suites:
            sources.append(AptSource(uris, suites, tuple(fields.get("components", "").split()), origin))
    return sources


def parse_one_line(text: str, origin: str = "<sources.list>") -> list[AptSource]:
    """Parse the classic `deb [opts] URI SUITE COMPONENT...` format (`deb-src` lines are ignored)."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb ") and not line.startswith("deb\t"):
            continue
        rest = line[3:].strip()
        if rest.startswith("["):  # options may contain spaces: `[ arch=amd64 signed-by=/x.gpg ]`
            end = rest.find("]")
            if end < 0:
                continue
            rest = rest[end + 1 :].strip()
        parts = rest.split()
        if len(parts) >= 2:
            sources.append(AptSource((parts[0].rstrip("/"),), (parts[1],), tuple(parts[2:]), origin))
    return sources


def read_apt_sources(etc_apt: Path = ETC_APT) -> list[AptSource]:
    """All enabled `deb` sources, in apt's own order: sources.list, then sources.list.d/ by name."""
    files: list[Path] = []
    if (etc_apt / "sources.list").is_file():
        files.append(etc_apt / "sources.list")
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        # apt reads only *.list and *.sources; anything else (e.g. `x.list.disabled`) is ignored, as here.
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    sources: list[AptSource] = []
    for f in files:
        text = f.read_text(errors="replace")
        sources += parse_deb822(text, str(f)) if f.suffix == ".sources" else parse_one_line(text, str(f))
    return sources


def find_mirror(suite: str, etc_apt: Path = ETC_APT) -> str:
    """The URI of the first enabled `deb` source that serves `suite`, e.g. the machine's bookworm mirror."""
    for src in read_apt_sources(etc_apt):
        if suite in src.suites:
            for uri in src.uris:
                if uri.startswith(_USABLE_SCHEMES):
                    return uri
    raise NotFoundError(
        f"no enabled apt source for suite {suite!r} in {etc_apt}/sources.list or {etc_apt}/sources.list.d/"
        f"*.sources|*.list; add one (e.g. `deb <your Debian mirror> {suite} main`) so Corral can build from it"
    )


def find_optional_mirror(suite: str, etc_apt: Path = ETC_APT) -> str | None:
    """Like find_mirror, but None when the machine has no source for `suite` (e.g. no security mirror)."""
    try:
        return find_mirror(suite, etc_apt)
    except NotFoundError:
        return None
