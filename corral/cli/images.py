"""`corral image ...`: list, import, tag, remove and build base images (corral/images)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from corral.config import Settings
from corral.errors import CorralError, InvalidRequestError, NotFoundError
from corral.images.builtin import CATALOGUE
from corral.images.refs import normalize
from corral.images.store import ImageStore

image_app = typer.Typer(help="Base images for templates: built-in Debian/Python/Node, imported archives, tags.",
                        no_args_is_help=True)  # fmt: skip
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where Corral keeps its state [default: /var/lib/corral].")]
Ref = Annotated[str, typer.Argument(help="An image reference, e.g. python:3.11 or registry.example:5000/team/app:1.")]


def _store(data_dir: Path | None) -> ImageStore:
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    return ImageStore(settings.data_dir, settings)


@contextmanager
def _errors() -> Iterator[None]:
    """Corral's errors become one red line and an exit code (2: bad input, 1: not found or failed), no traceback."""
    try:
        yield
    except CorralError as e:
        err_console.print(f"[red]error:[/] {e.message}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(e, InvalidRequestError) else 1) from None


@contextmanager
def _progress(what: str) -> Iterator[object]:
    """A spinner naming the current step, with every log line kept above it."""
    with err_console.status(what) as status:  # stderr: stdout stays clean for --json
        def log(line: str) -> None:
            status.update(f"{what}: {line.strip()[:100]}")
            err_console.log(line, markup=False, highlight=False)
        yield log


@image_app.command("list")
def image_list(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    available: Annotated[bool, typer.Option("--available", help="Also name the built-in bases not built yet.")] = False,
) -> None:
    """List the images templates can start from: tagged/imported ones and the built-in bases that are ready."""
    from corral.cli.main import print_rows

    with _errors():
        rows = [i.summary() for i in _store(data_dir).list()]
    if available:
        ready = {r["ref"] for r in rows}
        rows += [{"ref": n, "id": "", "size": "", "source": "built-in, built on first use", "aliases": "", "rootfs": ""}
                 for n in CATALOGUE if n not in ready]  # fmt: skip
    print_rows(rows, as_json, title="Images")


@image_app.command("import")
def image_import(
    file: Annotated[Path, typer.Argument(help="An OCI image layout archive or a `docker save` archive (tar, tar.gz).")],
    name: Annotated[str | None, typer.Option("--name", help="The reference to store it as [default: the archive's names].")] = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the imported image as JSON.")] = False,
) -> None:
    """Import an image archive; its layers are unpacked (with whiteouts) into a read-only rootfs."""
    t0 = time.monotonic()
    with _errors(), _progress(f"importing {file.name}") as log:
        info = _store(data_dir).import_archive(file, name, log=log)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(info.summary()))
        return
    console.print(f"[green]imported[/] {info.ref} ({info.summary()['id']}, {info.size_bytes / 1e6:.1f} MB) "
                  f"in {time.monotonic() - t0:.1f}s")  # fmt: skip


@image_app.command("tag")
def image_tag(
    source: Annotated[str, typer.Argument(help="An image Corral has (or can build), e.g. an imported one.")],
    target: Annotated[str, typer.Argument(help="The new name, e.g. ubuntu:22.04.")],
    data_dir: DataDir = None,
) -> None:
    """Give an image another name, like `docker tag` (e.g. serve ubuntu:22.04 from an imported archive)."""
    with _errors():
        info = _store(data_dir).tag(source, target)
    console.print(f"tagged {source} as {info.ref}")


@image_app.command("rm")
def image_rm(ref: Ref, data_dir: DataDir = None) -> None:
    """Remove a tag; the image's files go once no tag names it and no sandbox uses it."""
    with _errors():
        _store(data_dir).remove(ref)
    console.print(f"removed {ref}")


@image_app.command("build-base")
def image_build_base(
    ref: Annotated[str, typer.Argument(help=f"A built-in base: {', '.join(CATALOGUE)}.")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if it is built already.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Build a built-in base now (otherwise it is built the first time a template asks for it)."""
    with _errors():
        store = _store(data_dir)
        with _progress(f"building {ref}") as log:
            info = store.build_builtin(ref, force=force, log=log)  # type: ignore[arg-type]
    console.print(f"[green]ready[/] {info.ref} at {info.rootfs} ({info.size_bytes / 1e6:.0f} MB)")


@image_app.command("inspect")
def image_inspect(ref: Ref, data_dir: DataDir = None) -> None:
    """Print an image's config (env, workdir, user, cmd) and rootfs as JSON; never builds or pulls."""
    with _errors():
        want = normalize(ref)
        match = [i for i in _store(data_dir).list() if want in {normalize(n) for n in (i.ref, *i.aliases)}]
        if not match:
            raise NotFoundError(f"no image {ref!r} here; `corral image list --available` shows what there is")
    info = match[0]
    print(json.dumps({"ref": info.ref, "rootfs": str(info.rootfs), "env": info.env, "workdir": info.workdir,
                      "user": info.user, "cmd": info.cmd, "id": info.image_id, "source": info.source}, indent=2))
