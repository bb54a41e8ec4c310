"""`corral template build FILE` (a Python file defining a template, or a Dockerfile), `rm` and `gc`."""

from __future__ import annotations

import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.config import Settings
from corral.errors import InvalidRequestError

# What the SDK's Dockerfile parser turns into steps, or knowingly ignores; anything else is refused by name.
DOCKERFILE_HANDLED = {"FROM", "RUN", "COPY", "ADD", "WORKDIR", "USER", "ENV", "ARG", "CMD", "ENTRYPOINT",
                      "EXPOSE", "VOLUME", "LABEL", "MAINTAINER"}
_HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")


def is_dockerfile(path: Path) -> bool:
    return path.name == "Dockerfile" or path.name.endswith((".Dockerfile", ".dockerfile")) or \
        path.name.startswith("Dockerfile.")


def dockerfile_instructions(text: str) -> list[tuple[int, str]]:
    """(line number, INSTRUCTION) of every instruction, skipping comments, continuations and heredoc bodies."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    i, continued, heredoc = 0, False, None
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not continued:
            out.append((i, stripped.split(None, 1)[0].upper()))
        m = _HEREDOC.search(line)
        if m:
            heredoc = m.group(1)
        continued = line.endswith("\\")
    return out


def check_dockerfile(path: Path) -> None:
    for lineno, name in dockerfile_instructions(path.read_text()):
        if name not in DOCKERFILE_HANDLED:
            raise InvalidRequestError(f"{path}:{lineno}: unsupported Dockerfile instruction {name} (supported: "
                                      f"{', '.join(sorted(DOCKERFILE_HANDLED))})")


def load_template(path: Path) -> Any:
    """The template a file defines: a Dockerfile, or a Python file's module-level `template` (or the only one)."""
    from e2b import Template
    from e2b.template.main import TemplateBuilder, TemplateFinal

    if is_dockerfile(path):
        check_dockerfile(path)
        return Template(file_context_path=str(path.parent)).from_dockerfile(str(path))
    if path.suffix != ".py":
        raise InvalidRequestError(f"{path}: expected a Python file (.py) that defines `template`, or a Dockerfile")
    namespace = runpy.run_path(str(path), run_name="__corral_template__")
    if "template" in namespace:
        return namespace["template"]
    found = [v for v in namespace.values() if isinstance(v, TemplateBuilder | TemplateFinal)]
    if len(found) != 1:
        raise InvalidRequestError(f"{path}: define one module-level `template = Template()...` "
                                  f"(found {len(found)} templates)")
    return found[0]


def build_file(path: Path, name: str, *, api_url: str, api_key: str, skip_cache: bool,
               on_log: Callable[[str, str], None]) -> Any:
    """Build the file's template through this server's API with the stock SDK; on_log(level, message) per line."""
    from e2b import Template

    template = load_template(path)
    return Template.build(template, name, skip_cache=skip_cache, api_key=api_key, api_url=api_url,
                          on_build_logs=lambda e: on_log(str(e.level), str(e.message)))


def remove_template(settings: Settings, template_id: str) -> str:
    """Delete a team-built template by id or name (its layers stay until `corral template gc`)."""
    from corral.templates.catalog import TemplateCatalog

    catalog = TemplateCatalog(settings)
    info = catalog.user.get(template_id)
    catalog.user.delete(info.id)
    return info.id


def gc_layers(settings: Settings) -> tuple[list[str], int]:
    """Remove layers no template (current or old version, build in progress) uses; returns (keys, bytes freed)."""
    from corral.templates.catalog import TemplateCatalog
    from corral.templates.layers import LayerStore, referenced_layers

    catalog = TemplateCatalog(settings)
    for info in catalog.user.list():
        catalog.user.gc_old_versions(info.id)
    store = LayerStore(settings.data_dir / "layers")
    sizes = {k: int(store.meta(k).get("size_bytes", 0)) for k in store.layer_keys()}
    removed = store.gc(referenced_layers(catalog.user.root, store.root))
    return removed, sum(sizes.get(k, 0) for k in removed)
