"""Build image layers, OCI layout archives and docker-save archives in memory, for the image tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    """One tar member: kind is file, dir, symlink, hardlink or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    xattrs: dict[str, str] | None = None


def layer(entries: list[Entry], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, 1_700_000_000
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[e.kind]
            info.linkname = e.link
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def config(env: list[str] | None = None, workdir: str = "", user: str = "", cmd: list[str] | None = None,
           entrypoint: list[str] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"Env": env or ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": workdir, "User": user}
    if cmd is not None:
        cfg["Cmd"] = cmd
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    return {"architecture": "amd64", "os": "linux", "config": cfg, "rootfs": {"type": "layers", "diff_ids": []}}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _desc(media: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def oci_archive(path: Path, layers: list[bytes], cfg: dict[str, Any], name: str | None = None,
                gzipped: bool = True, extra: dict[str, bytes] | None = None) -> Path:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/...) as one tar, like `skopeo copy oci-archive:`."""
    cfg_raw = json.dumps(cfg).encode()
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzipped else "")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _desc("application/vnd.oci.image.config.v1+json", cfg_raw),
                "layers": [_desc(media, blob) for blob in layers]}
    man_raw = json.dumps(manifest).encode()
    desc = _desc("application/vnd.oci.image.manifest.v1+json", man_raw)
    if name:
        desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":")[-1]}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())
        for blob in [cfg_raw, man_raw, *layers]:
            _add(tar, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
        for n, data in (extra or {}).items():
            _add(tar, n, data)
    return path


def docker_archive(path: Path, layers: list[bytes], cfg: dict[str, Any], repo_tags: list[str] | None = None,
                   layer_names: list[str] | None = None) -> Path:
    """A `docker save` archive: manifest.json, <config>.json and <id>/layer.tar entries."""
    cfg_raw = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_raw).hexdigest() + ".json"
    names = layer_names or [f"{hashlib.sha256(b).hexdigest()}/layer.tar" for b in layers]
    manifest = [{"Config": cfg_name, "RepoTags": repo_tags or [], "Layers": names}]
    with tarfile.open(path, "w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, cfg_name, cfg_raw)
        for n, blob in zip(names, layers, strict=True):
            _add(tar, n, blob)
    return path
