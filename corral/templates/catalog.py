"""Every template a server serves: the system ones (base, code-interpreter-v1) and the ones teams build.

Team-built templates live in `<data_dir>/user-templates/<id>/` (template.json, an empty rootfs/ and the `lowers` layer
stack) with `owner.json` saying which team owns it and whether it is public.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from corral.config import Settings
from corral.errors import ConflictError, NotFoundError
from corral.templates.store import TemplateInfo, TemplateStore
from corral.templates.tags import DEFAULT_TAG, TAGS_DIR, split_name
from corral.templates.tags import load as tag_load

OWNER_JSON = "owner.json"


class TemplateOwner(BaseModel):
    """Who owns a built template, and what its last build was."""

    model_config = ConfigDict(extra="forbid")

    team: str
    name: str | None = None
    public: bool = False
    build_id: str
    cpu_count: int = 2
    memory_mb: int = 512
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    build_count: int = 1
    top_key: str | None = None
    layers: list[str] = Field(default_factory=list)


class TemplateCatalog:
    """Lookups over both stores (team-built first); what the sandbox manager and the template API read."""

    def __init__(self, settings: Settings) -> None:
        self.system = TemplateStore(settings)
        self.user = TemplateStore(settings, root=settings.data_dir / "user-templates")

    def get(self, id_or_alias: str) -> TemplateInfo:
        """Any template by id or alias, `name:tag` for a tagged version (the manager's TemplateSource)."""
        name, tag = split_name(id_or_alias)
        if tag is not None and tag != DEFAULT_TAG:
            return tag_load(self.user.get(name).rootfs.parent, tag)
        try:
            return self.user.get(name)
        except NotFoundError:
            return self.system.get(name)

    def owner(self, info: TemplateInfo) -> TemplateOwner | None:
        """The owner record of a team-built template; None for system templates (public to every team)."""
        tdir = info.rootfs.parent
        if tdir.parent.name == TAGS_DIR:       # a tagged version: its template's record
            tdir = tdir.parent.parent
        path = tdir / OWNER_JSON
        if not path.is_file():
            return None
        return TemplateOwner.model_validate_json(path.read_text())

    def visible_to(self, info: TemplateInfo, team: str) -> bool:
        owner = self.owner(info)
        return owner is None or owner.public or owner.team == team

    def get_for_team(self, id_or_alias: str, team: str) -> TemplateInfo:
        """Like get, but another team's private template answers 404 like a missing one."""
        info = self.get(id_or_alias)
        if not self.visible_to(info, team):
            raise NotFoundError(f"template {id_or_alias!r} not found")
        return info

    def owned(self, id_or_alias: str, team: str) -> tuple[TemplateInfo, TemplateOwner]:
        """A template this team built (404 otherwise: system templates and others' are not theirs to change)."""
        try:
            info = self.user.get(id_or_alias)
        except NotFoundError:
            raise NotFoundError(f"template {id_or_alias!r} not found") from None
        owner = self.owner(info)
        if owner is None or owner.team != team:
            raise NotFoundError(f"template {id_or_alias!r} not found")
        return info, owner

    def list_for_team(self, team: str) -> list[tuple[TemplateInfo, TemplateOwner | None]]:
        out: list[tuple[TemplateInfo, TemplateOwner | None]] = []
        for info in self.user.list():
            owner = self.owner(info)
            if owner is not None and (owner.public or owner.team == team):
                out.append((info, owner))
        return out

    def check_name(self, name: str, team: str) -> TemplateInfo | None:
        """The team's existing template of that name (a rebuild), None when free, ConflictError when taken."""
        try:
            info = self.get(name)
        except NotFoundError:
            return None
        owner = self.owner(info)
        if owner is None or owner.team != team:
            raise ConflictError(f"template name {name!r} is already used by another template; pick another name")
        return info

    def save_owner(self, info: TemplateInfo, owner: TemplateOwner) -> None:
        path: Path = info.rootfs.with_name(OWNER_JSON)
        tmp = path.with_name(f".{OWNER_JSON}.tmp")
        tmp.write_text(owner.model_dump_json(indent=1) + "\n")
        tmp.replace(path)
