"""Mirror derivation from apt configuration: deb822, one-line, mixed, and none."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import NotFoundError
from corral.templates.mirror import find_mirror, find_optional_mirror, parse_deb822, parse_one_line, read_apt_sources

# Host names here are fixtures for the parser only (example.org is reserved for documentation).
DEB822_MULTI = """\
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security/
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def make_etc(tmp_path: Path, sources_list: str | None = None, **d_files: str) -> Path:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (etc / "sources.list").write_text(sources_list)
    for name, text in d_files.items():
        (etc / "sources.list.d" / name.replace("__", ".")).write_text(text)
    return etc


def test_deb822_several_stanzas(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, debian__sources=DEB822_MULTI)
    assert find_mirror("bookworm", etc) == "http://mirror.example.org/debian"
    assert find_mirror("bookworm-updates", etc) == "http://mirror.example.org/debian"
    # A trailing slash is dropped so callers can append paths.
    assert find_mirror("bookworm-security", etc) == "http://mirror.example.org/debian-security"


def test_deb822_second_stanza_matches_and_field_quirks() -> None:
    text = (
        "Types: deb-src\nURIs: http://src.example.org/debian\nSuites: bookworm\nComponents: main\n"
        "\n"
        "types: deb deb-src\nuris: http://a.example.org/debian\n  http://b.example.org/debian\n"
        "suites: bookworm\ncomponents: main contrib\n"
        "\n  \n"
        "Types: deb\nEnabled: no\nURIs: http://off.example.org/debian\nSuites: bookworm\n"
    )
    sources = parse_deb822(text)
    assert len(sources) == 1  # deb-src only and Enabled: no are skipped
    assert sources[0].uris == ("http://a.example.org/debian", "http://b.example.org/debian")
    assert sources[0].components == ("main", "contrib")


def test_one_line_format_with_options_and_comments(tmp_path: Path) -> None:
    text = (
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb-src http://src.example.org/debian bookworm main\n"
        "deb [ arch=amd64 signed-by=/usr/share/keyrings/x.gpg ] http://old.example.org/debian/ bookworm main # x\n"
        "deb http://old.example.org/debian-security bookworm-security main\n"
    )
    etc = make_etc(tmp_path, sources_list=text)
    assert find_mirror("bookworm", etc) == "http://old.example.org/debian"
    assert find_mirror("bookworm-security", etc) == "http://old.example.org/debian-security"
    assert parse_one_line("deb [broken http://x bookworm main\n") == []


def test_apt_order_and_ignored_files(tmp_path: Path) -> None:
    # sources.list comes first; *.disabled and deb822 without our suite do not count; cdrom: is unusable.
    etc = make_etc(
        tmp_path,
        sources_list="deb cdrom:[Debian 12]/ bookworm main\n",
        a__list__disabled="deb http://disabled.example.org/debian bookworm main\n",
        b__list="deb http://backports.example.org/debian bookworm-backports main\n",
        c__sources="Types: deb\nURIs: https://third.example.org/debian\nSuites: bookworm\nComponents: main\n",
        z__sources="Types: deb\nURIs: http://later.example.org/debian\nSuites: bookworm\nComponents: main\n",
    )
    assert [s.origin.rsplit("/", 1)[-1] for s in read_apt_sources(etc)] == [
        "sources.list",
        "b.list",
        "c.sources",
        "z.sources",
    ]
    assert find_mirror("bookworm", etc) == "https://third.example.org/debian"


def test_none_is_a_clear_error(tmp_path: Path) -> None:
    etc = make_etc(tmp_path, x__list="deb http://backports.example.org/debian bookworm-backports main\n")
    with pytest.raises(NotFoundError, match=r"no enabled apt source for suite 'bookworm'.*sources.list"):
        find_mirror("bookworm", etc)
    assert find_optional_mirror("bookworm-security", etc) is None
    empty = tmp_path / "nothing"
    with pytest.raises(NotFoundError):
        find_mirror("bookworm", empty)


def test_this_machine_has_a_bookworm_mirror() -> None:
    """The build depends on it; a machine without one fails here first, with the message above."""
    if not Path("/etc/apt").is_dir():
        pytest.skip("not a Debian machine")
    assert find_mirror("bookworm").startswith(("http://", "https://", "file://"))
