"""The image store: resolve a reference to a read-only rootfs (built-in base, imported archive, tag, or registry pull)."""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral.config import Settings
from corral.errors import ConflictError, ImageNotFoundError, InvalidRequestError, NotFoundError
from corral.images import build as builder
from corral.images import registry
from corral.images.builtin import CATALOGUE, Builtin, aliases, available_for, by_name, lookup
from corral.images.importer import IMAGE_JSON, ROOTFS, ImageMeta, import_archive, read_meta, write_meta
from corral.images.refs import ImageRef, parse_ref
from corral.templates.base import ENVS as BASE_ENVS
from corral.templates.building import rmtree_checked
from corral.templates.store import TemplateInfo, TemplateStore, rootfs_in_use

__all__ = ["ImageInfo", "ImageNotFoundError", "ImageStore"]

Log = Callable[[str], None]
BUILTIN_PREFIX = "builtin:"
REGISTRY_SETTING = "CORRAL_REGISTRIES"


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ImageInfo:
    """A resolved image: `rootfs` is read-only (use it as an overlay lower), the rest is its runtime config."""

    ref: str
    rootfs: Path
    env: dict[str, str]
    workdir: str | None
    user: str | None
    cmd: list[str] | None
    image_id: str = ""  # sha256 hex of the config of an imported image, or "builtin:<name>"
    source: str = ""
    size_bytes: int = 0
    aliases: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, str]:
        """One flat row for `corral image list`."""
        iid = self.image_id.removeprefix(BUILTIN_PREFIX) if self.image_id.startswith(BUILTIN_PREFIX) else self.image_id[:12]
        return {"ref": self.ref, "id": iid, "size": f"{self.size_bytes / 1e6:.0f} MB" if self.size_bytes else "?",
                "source": self.source, "aliases": ",".join(self.aliases), "rootfs": str(self.rootfs)}  # fmt: skip


class ImageStore:
    """Images under `<data_dir>/images`: `sha256/<id>/` (imported), `builtin/<name>/` (built), `refs.json` (tags)."""

    def __init__(self, data_dir: Path, settings: Settings | None = None) -> None:
        self.settings = settings.model_copy(update={"data_dir": data_dir}) if settings else Settings(data_dir=data_dir)
        self.data_dir = data_dir
        self.root = data_dir / "images"

    # ---- lookup -------------------------------------------------------------------------------------------------
    def resolve(self, ref: str, log: Log | None = None) -> ImageInfo:
        """The image `ref` names; builds a built-in base or pulls from a configured registry when needed.

        A name nothing can provide fails at once (no network wait) with ImageNotFoundError saying how to fix it.
        """
        log = log or _quiet
        r = parse_ref(ref)
        target = self._refs().get(str(r))
        if target:
            info = self._target(target, r, log, build=True)
            assert info is not None
            return info
        image = lookup(r)
        if image:
            info = self._builtin(image, log, build=True)
            assert info is not None
            return replace(info, ref=r.familiar)
        if registry.pull_source(self.settings, r):
            return self._pull(r, log)
        raise ImageNotFoundError(self.hint(r))

    def check(self, ref: str) -> None:
        """Raise ImageNotFoundError now if resolve(ref) could not provide `ref`; never builds, pulls or waits."""
        r = parse_ref(ref)
        target = self._refs().get(str(r))
        if target:
            if not target.startswith(BUILTIN_PREFIX) and read_meta(self.root / "sha256" / target) is None:
                raise ImageNotFoundError(f"{r.familiar} names image {target[:12]}, which is gone. " + self.hint(r))
            return
        if lookup(r) or registry.pull_source(self.settings, r):
            return
        raise ImageNotFoundError(self.hint(r))

    def list(self) -> builtins.list[ImageInfo]:
        """Tagged and imported images, then the built-in bases that are ready now (none is built by listing)."""
        out: builtins.list[ImageInfo] = []
        refs = self._refs()
        for key, target in sorted(refs.items()):
            info = self._target(target, parse_ref(key), _quiet, build=False)
            if info is not None:
                out.append(info)
        for name, (image, _) in CATALOGUE.items():
            if str(parse_ref(name)) in refs:
                continue
            info = self._builtin(image, _quiet, build=False)
            if info is not None:
                out.append(replace(info, aliases=aliases(name)))
        return out

    def hint(self, r: ImageRef) -> str:
        """Why `r` cannot be resolved, and the three ways to fix that."""
        name = r.familiar
        parts = [f"image {name!r} not found"]
        same = available_for(r)
        if same:
            parts.append(f"Corral builds only {', '.join(same)} of {r.short_name} from the machine's Debian mirror")
        if r.short_name == "node" and same:
            parts.append("newer Node.js releases come from nodejs.org, which is not reachable")
        if self.settings.registries:
            parts.append(f"no registry in {REGISTRY_SETTING} serves {r.registry} "
                         f"(configured: {', '.join(sorted(self.settings.registries))})")  # fmt: skip
        else:
            parts.append(f"no registry is configured ({REGISTRY_SETTING}), so Corral does not pull")
        fix = (f"import it with `corral image import FILE --name {name}` (an OCI layout or `docker save` archive), "
               f"`corral image tag SOURCE {name}` (give a local image this name), or "
               f"{REGISTRY_SETTING}='{{\"{r.registry}\": \"HOST:PORT\"}}' to pull it from your registry with skopeo")  # fmt: skip
        return "; ".join(parts) + ". Fix: " + fix

    # ---- changes ------------------------------------------------------------------------------------------------
    def tag(self, source: str, target: str) -> ImageInfo:
        """Give the image `source` resolves to another name (`corral image tag python:3.11 myorg/py:1`)."""
        t = parse_ref(target)
        if t.digest:
            raise InvalidRequestError(f"cannot tag {target!r}: a tag target cannot pin a digest")
        src = self.resolve(source)
        with self._locked():
            refs = self._refs()
            refs[str(t)] = src.image_id
            self._write_refs(refs)
        return self.resolve(target)

    def remove(self, ref: str) -> None:
        """Remove a tag (and its image once nothing names it), or a built built-in base so it is rebuilt next time."""
        r = parse_ref(ref)
        with self._locked():
            refs = self._refs()
            if str(r) in refs:
                del refs[str(r)]
                self._write_refs(refs)
                self._gc_locked(refs)
                return
        image = lookup(r)
        if image is None:
            raise ImageNotFoundError(f"no image {r.familiar!r} to remove (`corral image list` shows what there is)")
        if not self._drop_builtin(image):
            raise InvalidRequestError(f"{r.familiar} is a built-in base with nothing built to remove")

    def _drop_builtin(self, image: Builtin) -> bool:
        """Delete a built built-in base (it is rebuilt on next use); False when nothing of it is built."""
        d = self.root / "builtin" / image.key
        with self._locked(f".build-{image.key}.lock"):
            if read_meta(d) is None:
                return False
            if rootfs_in_use(d / ROOTFS):
                raise ConflictError(f"{image.name} is in use by a running sandbox; stop it first")
            rmtree_checked(d)
            return True

    def import_archive(self, path: Path, name: str | None = None, log: Log | None = None) -> ImageInfo:
        """Import an OCI layout or docker-save archive; tagged `name`, else with the names the archive records."""
        want = str(parse_ref(name)) if name else None
        self._ensure_root()
        meta, names = import_archive(self.root, path, want, max_bytes=self.settings.image_max_bytes, log=log or _quiet)
        targets = [want] if want else names
        with self._locked():
            refs = self._refs()
            refs.update({t: meta.id for t in targets})
            self._write_refs(refs)
        return self.resolve(targets[0])

    def build_builtin(self, ref: str, *, force: bool = False, log: Log | None = None) -> ImageInfo:
        """Build (or with force, rebuild) a built-in base now; `corral image build-base NAME`."""
        r = parse_ref(ref)
        image = lookup(r)
        if image is None:
            raise ImageNotFoundError(f"{r.familiar!r} is not a built-in base; built-in: {', '.join(CATALOGUE)}")
        if force:  # the base template's own images are rebuilt with `corral template build base --force`
            self._drop_builtin(image)
        info = self._builtin(image, log or _quiet, build=True)
        assert info is not None
        return replace(info, ref=r.familiar)

    # ---- internals ----------------------------------------------------------------------------------------------
    def _target(self, target: str, r: ImageRef, log: Log, *, build: bool) -> ImageInfo | None:
        if target.startswith(BUILTIN_PREFIX):
            info = self._builtin(by_name(target.removeprefix(BUILTIN_PREFIX)), log, build=build)
            return replace(info, ref=r.familiar) if info else None
        d = self.root / "sha256" / target
        meta = read_meta(d)
        if meta is None:
            if not build:
                return None
            raise ImageNotFoundError(f"{r.familiar} names image {target[:12]}, which is gone. " + self.hint(r))
        return self._info(r.familiar, d, meta)

    @staticmethod
    def _info(ref: str, d: Path, meta: ImageMeta) -> ImageInfo:
        return ImageInfo(ref=ref, rootfs=d / ROOTFS, env=dict(meta.env), workdir=meta.workdir, user=meta.user,
                         cmd=meta.cmd, image_id=meta.id, source=meta.source, size_bytes=meta.size_bytes)  # fmt: skip

    def _builtin(self, image: Builtin, log: Log, *, build: bool) -> ImageInfo | None:
        iid = BUILTIN_PREFIX + image.name
        if image.from_base_template:
            base = self._base_template(log, build=build)
            if base is None:
                return None
            if all((base.rootfs / f).exists() for f in image.files):
                own = image.name.startswith("e2bdev/")  # Corral's dev image: keep its user and home
                size = base.build.size_bytes if base.build and base.build.size_bytes else 0
                return ImageInfo(ref=image.name, rootfs=base.rootfs, env=dict(base.envs),
                                 workdir=base.workdir if own else None, user=base.user if own else None, cmd=None,
                                 image_id=iid, source="the base template", size_bytes=size)  # fmt: skip
        d = self.root / "builtin" / image.key
        meta = read_meta(d)
        if meta is None:
            if not build:
                return None
            meta = self._build(image, d, log)
        return replace(self._info(image.name, d, meta), image_id=iid)

    def _base_template(self, log: Log, *, build: bool) -> TemplateInfo | None:
        from corral.templates.base import BASE_ID, build_base_template

        try:
            return TemplateStore(self.settings).get(BASE_ID)
        except NotFoundError:
            if not build:
                return None
        log("building the base template (Debian bookworm) first")
        return build_base_template(self.settings, log=log)

    def _build(self, image: Builtin, d: Path, log: Log) -> ImageMeta:
        """Build a built-in base under its lock; a failed build leaves nothing behind, a finished one is renamed in."""
        parent = self._builtin(by_name(image.parent), log, build=True) if image.parent else None
        with self._locked(f".build-{image.key}.lock", log=log, what=image.name):
            meta = read_meta(d)
            if meta is not None:  # another process built it while we waited
                return meta
            d.parent.mkdir(parents=True, exist_ok=True)
            for stale in d.parent.glob(f".{image.key}.build-*"):  # we hold the lock: any staging dir is a dead build
                rmtree_checked(stale)
            staging = d.parent / f".{image.key}.build-{uuid.uuid4().hex[:8]}"
            rootfs = staging / ROOTFS
            rootfs.mkdir(parents=True)
            t0 = time.monotonic()
            try:
                if parent is not None:
                    builder.derive(self.data_dir, image, parent.rootfs, rootfs, log)
                else:
                    builder.debootstrap(self.data_dir, image, rootfs, log)
                builder.check(image, rootfs, log)
                how = f"apt {' '.join(image.packages)} on {image.parent}" if parent else f"debootstrap {image.suite}"
                meta = ImageMeta(id=BUILTIN_PREFIX + image.name, env=dict(parent.env if parent else BASE_ENVS),
                                 source=how, size_bytes=builder.du_bytes(rootfs),
                                 duration_s=round(time.monotonic() - t0, 1))  # fmt: skip
                write_meta(staging, meta)
                os.rename(staging, d)
            except BaseException:
                if staging.exists():
                    rmtree_checked(staging)
                raise
            log(f"{image.name} ready: {meta.size_bytes / 1e6:.0f} MB in {meta.duration_s:.0f}s")
            return meta

    def _pull(self, r: ImageRef, log: Log) -> ImageInfo:
        self._ensure_root()
        archive = self.root / f".pull-{os.getpid()}-{uuid.uuid4().hex[:8]}.tar"
        try:
            registry.pull(self.settings, r, archive, log)
            return self.import_archive(archive, str(r), log)
        finally:
            archive.unlink(missing_ok=True)

    def _gc_locked(self, refs: dict[str, str]) -> None:
        """Delete imported images no tag names any more, unless a running sandbox's overlay uses them."""
        named = set(refs.values())
        for d in (self.root / "sha256").glob("*"):
            if d.name not in named and (d / IMAGE_JSON).exists() and not rootfs_in_use(d / ROOTFS):
                shutil.rmtree(d, ignore_errors=True)

    def _ensure_root(self) -> None:
        """images/ is root-only: an imported image may hold setuid-root files that no host user may reach and run."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _refs(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / "refs.json").read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ConflictError(f"{self.root / 'refs.json'} is corrupt ({e}); fix or delete it") from e
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        tmp = self.root / f".refs.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(refs, indent=2, sort_keys=True))
        os.replace(tmp, self.root / "refs.json")

    @contextmanager
    def _locked(self, name: str = ".lock", log: Log = _quiet, what: str = "") -> Iterator[None]:
        self._ensure_root()
        with open(self.root / name, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"another build of {what or name} is running; waiting for it")
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield
