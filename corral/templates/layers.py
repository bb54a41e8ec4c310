"""Content-addressed build layers: `<data_dir>/layers/<key>/root/` (an overlay upper dir, used as a lower), stored once.

A key is sha256(parent key, the step's definition, the hashes of the files it copies): the same step on the same parent
is the same layer, whichever template asks for it. A template is a stack of layers over a base image rootfs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from corral.errors import ConflictError
from corral.runtime.layout import LOWERS_FILE
from corral.templates.store import rootfs_in_use

LAYER_JSON = "layer.json"


def layer_key(parent: str, step: dict[str, Any]) -> str:
    blob = json.dumps({"parent": parent, "step": step}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def dir_size(path: Path) -> int:
    """Bytes used on disk (allocated blocks, hard links once) under `path`, never following symlinks."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


@dataclass(frozen=True)
class Layer:
    key: str
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def empty(self) -> bool:
        """True when the step changed no file (ENV, USER, a no-op command): it adds nothing to the stack."""
        try:
            return not any(self.root.iterdir())
        except FileNotFoundError:
            return True


class LayerStore:
    """The layers directory; commits are atomic renames, so a reader never sees half a layer."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> Layer | None:
        d = self.root / key
        return Layer(key, d) if (d / LAYER_JSON).is_file() else None

    def staging(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        d = self.root / f".stage-{uuid.uuid4().hex[:12]}"
        (d / "root").mkdir(parents=True)
        return d

    def commit(self, key: str, staged: Path, meta: dict[str, Any]) -> Layer:
        """Move a staged dir (with root/) into place as layer `key`; a concurrent identical commit wins harmlessly."""
        meta = {**meta, "key": key, "size_bytes": dir_size(staged / "root")}
        (staged / LAYER_JSON).write_text(json.dumps(meta, indent=1) + "\n")
        target = self.root / key
        try:
            os.rename(staged, target)
        except OSError:      # already there (same content by construction): keep the existing one
            shutil.rmtree(staged, ignore_errors=True)
            if not (target / LAYER_JSON).is_file():
                raise
        return Layer(key, target)

    def meta(self, key: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / key / LAYER_JSON).read_text())
            return data
        except (OSError, ValueError):
            return {}

    def layer_keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir())

    def lock(self, exclusive: bool) -> IO[str] | None:
        """Builds hold the gc lock shared (their new layers are not referenced yet), gc exclusive.
        Returns the open lock file (closing it releases the lock), or None when the other side holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / ".gc.lock", "a")  # noqa: SIM115 - the caller closes it
        try:
            fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        return f

    def gc(self, referenced: set[str]) -> list[str]:
        """Delete layers no template references and no mounted overlay uses, and stale staging dirs."""
        held = self.lock(exclusive=True)
        if held is None:
            raise ConflictError("a template build is running; run `corral template gc` when it is done")
        with held:
            return self._gc(referenced)

    def _gc(self, referenced: set[str]) -> list[str]:
        removed = []
        for key in self.layer_keys():
            if key in referenced or rootfs_in_use(self.root / key / "root"):
                continue
            trash = self.root / f".trash-{key}"
            os.rename(self.root / key, trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(key)
        for stale in self.root.glob(".stage-*") if self.root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        return removed


def referenced_layers(templates_root: Path, layers_root: Path, record_name: str = "owner.json") -> set[str]:
    """Layer keys a templates dir uses (current and old versions, builds in progress): every `lowers` stack, plus
    the `layers` list of each template's JSON record (`record_name`)."""
    keys: set[str] = set()
    if not templates_root.is_dir():
        return keys
    prefix = str(layers_root) + os.sep
    for tdir in templates_root.iterdir():   # dot dirs too: old versions and build scratch dirs
        # The template's own stack and those of its tags (corral/templates/tags.py).
        for stack in [tdir / LOWERS_FILE, *tdir.glob(f"tags/*/{LOWERS_FILE}")]:
            if not stack.is_file():
                continue
            for line in stack.read_text().splitlines():
                if line.startswith(prefix):
                    keys.add(Path(line).parent.name)
        # Layers that changed no file are not in the stack but keep the cache warm: the record lists every key.
        if (tdir / record_name).is_file():
            try:
                keys.update(json.loads((tdir / record_name).read_text()).get("layers", []))
            except (OSError, ValueError):
                pass
    return keys


def write_lowers(tdir: Path, lowers: list[Path]) -> None:
    """Give `tdir` an empty rootfs/ and the `lowers` file that makes runtime.layout mount the stack instead."""
    (tdir / "rootfs").mkdir(parents=True, exist_ok=True)
    (tdir / LOWERS_FILE).write_text("".join(f"{p}\n" for p in lowers))


def read_lowers(rootfs: Path) -> list[Path]:
    """The lower stack of a template's rootfs (top first): its `lowers` file, or the rootfs itself."""
    stack = rootfs.with_name(LOWERS_FILE)
    if stack.is_file():
        return [Path(line) for line in stack.read_text().splitlines() if line.strip()]
    return [rootfs]
