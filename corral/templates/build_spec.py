"""What the SDK sends to start a build (TemplateBuildStartV2), validated before anything runs."""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.errors import InvalidRequestError

# What the SDK turns every builder call into (Dockerfiles are parsed client-side into the same five).
STEP_TYPES = ("RUN", "COPY", "ENV", "WORKDIR", "USER")
META_STEPS = ("ENV", "USER")          # change the build's state, never a file: no layer


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str
    args: list[str] = Field(default_factory=list)
    files_hash: str | None = Field(default=None, alias="filesHash")
    force: bool | None = False
    force_upload: bool | None = Field(default=None, alias="forceUpload")

    def cache_def(self) -> dict[str, Any]:
        """What decides the layer key (force flags do not change the result, so they are left out)."""
        return {"type": self.type, "args": self.args, "filesHash": self.files_hash}

    def describe(self) -> str:
        text = " ".join(self.args[:1] if self.type == "RUN" else self.args)
        return f"{self.type} {text}"[:200]


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_image: str | None = Field(default=None, alias="fromImage")
    from_template: str | None = Field(default=None, alias="fromTemplate")
    from_image_registry: dict[str, Any] | None = Field(default=None, alias="fromImageRegistry")
    force: bool | None = False
    steps: list[Step] = Field(default_factory=list)
    start_cmd: str | None = Field(default=None, alias="startCmd")
    ready_cmd: str | None = Field(default=None, alias="readyCmd")


def validate_spec(spec: BuildSpec) -> None:
    """Refuse what no build could do, naming the field (400 before any sandbox starts)."""
    if spec.from_image_registry is not None:
        raise InvalidRequestError("fromImageRegistry: private registries are not supported by this server; import "
                                  "the image with `corral image import FILE` and use its name")
    if bool(spec.from_image) == bool(spec.from_template):
        raise InvalidRequestError("fromImage / fromTemplate: exactly one of them must be set")
    for i, step in enumerate(spec.steps, 1):
        where = f"steps[{i}]"
        if step.type not in STEP_TYPES:
            raise InvalidRequestError(f"{where}.type: unsupported step {step.type!r} (supported: "
                                      f"{', '.join(STEP_TYPES)})")
        n = len(step.args)
        if step.type == "RUN" and not (1 <= n <= 2 and step.args[0].strip()):
            raise InvalidRequestError(f"{where}.args: RUN takes [command] or [command, user]")
        if step.type == "COPY":
            if n < 2 or not step.args[0] or not step.args[1]:
                raise InvalidRequestError(f"{where}.args: COPY takes [src, dest, user?, mode?]")
            if not step.files_hash:
                raise InvalidRequestError(f"{where}.filesHash: COPY needs the hash of its uploaded files")
            if n > 3 and step.args[3]:
                try:
                    int(step.args[3], 8)
                except ValueError:
                    raise InvalidRequestError(f"{where}.args[3]: mode {step.args[3]!r} is not octal") from None
        if step.type == "ENV" and (n == 0 or n % 2):
            raise InvalidRequestError(f"{where}.args: ENV takes name, value pairs")
        if step.type in ("WORKDIR", "USER") and (n != 1 or not step.args[0].strip()):
            raise InvalidRequestError(f"{where}.args: {step.type} takes one non-empty argument")


def resolve_dir(cwd: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(cwd or "/", path))


Level = Literal["debug", "info", "warn", "error"]
