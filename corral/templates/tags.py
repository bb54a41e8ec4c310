"""Template tags (`name:tag`): a tag is a frozen version of a template, `<template dir>/tags/<tag>/` holding that
build's template.json, an empty rootfs/ and its `lowers` stack (layers are immutable, so a version costs a few bytes).

`default` always names the latest build; `name` alone means `name:default`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from corral.errors import InvalidRequestError, NotFoundError
from corral.templates.layers import read_lowers, write_lowers
from corral.templates.store import TemplateInfo

DEFAULT_TAG = "default"
TAGS_DIR = "tags"
TAG_JSON = "tag.json"
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidRequestError(f"tags: {tag!r} must match {_TAG_RE.pattern}")
    return tag


def split_name(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.partition(":")
    return name.strip(), (tag.strip() or None)


def tags_dir(tdir: Path) -> Path:
    return tdir / TAGS_DIR


def snapshot(tdir: Path, tag: str, info: TemplateInfo, lowers: list[Path], build_id: str) -> None:
    """Make (or move) `tag` point at this build: written beside, then renamed over the old one."""
    check_tag(tag)
    root = tags_dir(tdir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{tag}.{uuid.uuid4().hex[:8]}"
    write_lowers(tmp, lowers)
    (tmp / "template.json").write_text(info.model_dump_json(indent=1, exclude={"rootfs"}) + "\n")
    (tmp / TAG_JSON).write_text(json.dumps({"buildID": build_id, "createdAt": datetime.now(UTC).isoformat()}))
    old = root / f".{tag}.old-{uuid.uuid4().hex[:8]}"
    if (root / tag).exists():
        os.rename(root / tag, old)
    os.rename(tmp, root / tag)
    shutil.rmtree(old, ignore_errors=True)


def copy_tag(tdir: Path, source: str, target: str) -> str:
    """Point `target` at the version `source` names; returns that build's id."""
    src = tags_dir(tdir) / check_tag(source)
    if not (src / TAG_JSON).is_file():
        raise NotFoundError(f"tag {source!r} not found")
    info = load(tdir, source)
    build_id = str(json.loads((src / TAG_JSON).read_text())["buildID"])
    snapshot(tdir, target, info, read_lowers(src / "rootfs"), build_id)
    return build_id


def remove(tdir: Path, tag: str) -> None:
    d = tags_dir(tdir) / check_tag(tag)
    if not d.is_dir():
        raise NotFoundError(f"tag {tag!r} not found")
    trash = tags_dir(tdir) / f".{tag}.deleted-{uuid.uuid4().hex[:8]}"
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


def load(tdir: Path, tag: str) -> TemplateInfo:
    """The template as tag `tag` froze it (rootfs = the tag's own dir, so sandboxes mount its stack)."""
    d = tags_dir(tdir) / check_tag(tag)
    if not (d / "template.json").is_file():
        raise NotFoundError(f"template {tdir.name!r} has no tag {tag!r}")
    data = json.loads((d / "template.json").read_text())
    return TemplateInfo.model_validate({**data, "rootfs": d / "rootfs"})


def listing(tdir: Path) -> list[dict[str, str]]:
    root = tags_dir(tdir)
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.name.startswith(".") or not (d / TAG_JSON).is_file():
            continue
        meta = json.loads((d / TAG_JSON).read_text())
        out.append({"tag": d.name, "buildID": meta["buildID"], "createdAt": meta["createdAt"]})
    return out


def carry_over(previous: Path, staged: Path) -> None:
    """Keep the tags of the version being replaced (a rebuild moves `default` and its own tags only)."""
    if tags_dir(previous).is_dir():
        shutil.copytree(tags_dir(previous), tags_dir(staged), symlinks=True,
                        ignore=shutil.ignore_patterns(".*"))
