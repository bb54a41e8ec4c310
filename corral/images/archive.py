"""Read OCI image layout archives and `docker save` archives: the chosen image's config, names and layers."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from corral.errors import CorralError, ImageArchiveError
from corral.images.layers import member_path
from corral.images.refs import normalize

_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
_MAX_JSON = 8 << 20  # manifests and configs are a few KB; a huge one is an attack, not an image
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass(frozen=True)
class ImageConfig:
    """The runtime parts of an image config that a sandbox uses."""

    env: dict[str, str]
    workdir: str | None
    user: str | None
    cmd: list[str] | None  # Entrypoint + Cmd, as docker runs them


@dataclass(frozen=True)
class ArchiveImage:
    """One image found in an archive: where its layers are, in order (bottom first)."""

    image_id: str  # sha256 hex of the config blob, like docker's image id
    config: ImageConfig
    names: list[str]  # normalised references recorded in the archive
    layers: list[tuple[str, str | None]]  # (member name, expected sha256 hex or None)
    format: str  # "oci" or "docker-save"


def _str_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageArchiveError(f"image config: {what} must be a list of strings")
    return list(value)


def parse_config(doc: Any) -> ImageConfig:
    """Env, WorkingDir, User and Entrypoint+Cmd from an OCI/docker image config document."""
    if not isinstance(doc, dict):
        raise ImageArchiveError("image config is not a JSON object")
    cfg = doc.get("config")
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ImageArchiveError("image config: `config` must be an object")
    env: dict[str, str] = {}
    for item in _str_list(cfg.get("Env"), "Env") or []:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise ImageArchiveError(f"image config: Env entry {item!r} is not KEY=VALUE")
        env[key] = value
    for field in ("WorkingDir", "User"):
        if not isinstance(cfg.get(field) or "", str):
            raise ImageArchiveError(f"image config: {field} must be a string")
    entrypoint = _str_list(cfg.get("Entrypoint"), "Entrypoint")
    cmd = _str_list(cfg.get("Cmd"), "Cmd")
    full = None if entrypoint is None and cmd is None else [*(entrypoint or []), *(cmd or [])]
    return ImageConfig(env=env, workdir=cfg.get("WorkingDir") or None, user=cfg.get("User") or None, cmd=full)


class Archive:
    """Random access to an outer archive's members by name; nothing from it is ever extracted to disk."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            if m.isreg():
                self.members[m.name.removeprefix("./").lstrip("/")] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        rel = member_path(name)
        if rel not in self.members:
            raise ImageArchiveError(f"archive has no member {name!r}")
        f = self.tar.extractfile(self.members[rel])
        assert f is not None
        return f

    def read(self, name: str, sha256: str | None = None) -> bytes:
        rel = member_path(name)
        if rel in self.members and self.members[rel].size > _MAX_JSON:
            raise ImageArchiveError(f"archive member {name!r} is too large for a manifest or config")
        data = self.open(name).read()
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise ImageArchiveError(f"archive member {name!r} does not match its digest sha256:{sha256}")
        return data

    def json(self, name: str, sha256: str | None = None) -> Any:
        try:
            return json.loads(self.read(name, sha256))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ImageArchiveError(f"archive member {name!r} is not valid JSON: {e}") from e


def _blob(desc: Any) -> tuple[str, str]:
    """(member name, sha256 hex) of an OCI descriptor, refusing any digest that is not plain sha256 hex."""
    digest = desc.get("digest") if isinstance(desc, dict) else None
    match = _DIGEST.match(digest or "") if isinstance(digest, str) else None
    if not match:
        raise ImageArchiveError(f"descriptor with unsupported digest {digest!r} (need sha256:<64 hex>)")
    return f"blobs/sha256/{match.group(1)}", match.group(1)


def _names(values: list[str]) -> list[str]:
    out = []
    for v in values:
        if "/" in v or ":" in v:  # a bare tag annotation ("3.11") is not a whole reference
            try:
                out.append(normalize(v))
            except CorralError:
                continue
    return out


def _pick(descs: Any, want: str | None) -> dict[str, Any]:
    if not isinstance(descs, list) or not descs or not all(isinstance(d, dict) for d in descs):
        raise ImageArchiveError("index.json lists no manifests")
    amd64 = [d for d in descs if (d.get("platform") or {}).get("architecture") in (None, "amd64")]
    candidates = amd64 or descs
    if want:
        for d in candidates:
            if want in _names(list((d.get("annotations") or {}).values())):
                return d
    return candidates[0]


def _read_oci(arc: Archive, want: str | None) -> ArchiveImage:
    index = arc.json("index.json")
    desc = _pick(index.get("manifests") if isinstance(index, dict) else None, want)
    names = _names([v for k, v in (desc.get("annotations") or {}).items() if k in _NAME_ANNOTATIONS])
    for _ in range(4):  # a multi-platform image nests an index; follow it to one manifest
        if desc.get("mediaType") not in _INDEX_TYPES:
            break
        desc = _pick(arc.json(*_blob(desc)).get("manifests"), want)
    manifest = arc.json(*_blob(desc))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ImageArchiveError("image manifest has no `layers` list")
    cfg_name, cfg_hex = _blob(manifest.get("config"))
    config = parse_config(arc.json(cfg_name, cfg_hex))
    layers: list[tuple[str, str | None]] = [_blob(d) for d in manifest["layers"]]
    return ArchiveImage(cfg_hex, config, names, layers, "oci")


def _read_docker(arc: Archive, want: str | None) -> ArchiveImage:
    entries = arc.json("manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ImageArchiveError("manifest.json must be a non-empty list of images")
    entry = entries[0]
    for e in entries:
        if want and want in _names(e.get("RepoTags") or []):
            entry = e
    cfg_name = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(cfg_name, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ImageArchiveError("manifest.json entry needs a `Config` path and a `Layers` list")
    raw = arc.read(cfg_name)
    config = parse_config(_loads(raw, cfg_name))
    return ArchiveImage(hashlib.sha256(raw).hexdigest(), config, _names(entry.get("RepoTags") or []),
                        [(member_path(x), None) for x in layers], "docker-save")


def _loads(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImageArchiveError(f"archive member {name!r} is not valid JSON: {e}") from e


@contextmanager
def open_archive(path: Path, want: str | None = None) -> Iterator[tuple[ArchiveImage, Archive]]:
    """Open an OCI layout or docker-save archive (plain or compressed) and describe the image `want` (or the first)."""
    try:
        tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the `with tar` below
    except FileNotFoundError as e:
        raise ImageArchiveError(f"{path}: no such file") from e
    except (tarfile.TarError, OSError) as e:
        raise ImageArchiveError(f"{path} is not a tar archive (want an OCI layout or `docker save` archive): {e}") from e
    with tar:
        try:
            arc = Archive(tar)
        except tarfile.TarError as e:
            raise ImageArchiveError(f"{path}: corrupt tar archive: {e}") from e
        if arc.has("index.json") and arc.has("oci-layout"):
            image = _read_oci(arc, want)
        elif arc.has("manifest.json"):
            image = _read_docker(arc, want)
        else:
            raise ImageArchiveError(
                f"{path} is neither an OCI image layout (oci-layout + index.json) nor a `docker save` archive "
                "(manifest.json)"
            )
        yield image, arc


def open_layer(arc: Archive, name: str, sha256: str | None) -> IO[bytes]:
    """A layer blob, checked against its digest first when the archive gives one."""
    if sha256:
        h = hashlib.sha256()
        f = arc.open(name)
        while chunk := f.read(1 << 20):
            h.update(chunk)
        if h.hexdigest() != sha256:
            raise ImageArchiveError(f"layer {name!r} does not match its digest sha256:{sha256}")
    return arc.open(name)
