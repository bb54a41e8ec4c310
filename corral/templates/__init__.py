"""Templates: the read-only root filesystems sandboxes start from, and where they are stored."""

from corral.templates.store import BuildInfo, TemplateInfo, TemplateStore

__all__ = ["BuildInfo", "TemplateInfo", "TemplateStore"]
