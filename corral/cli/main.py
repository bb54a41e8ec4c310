"""The `corral` Typer app: server, keys, sandboxes, templates and the doctor."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from corral.cli.images import image_app
from corral.cli.teams import audit_command, teams_app
from corral.cli.volumes import volume_app
from corral.config import Settings

if TYPE_CHECKING:
    from corral.cli.envd_client import SandboxEndpoint

app = typer.Typer(help="Corral: self-hosted sandboxes for AI agents, served over the E2B protocol.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
template_app = typer.Typer(help="Build and list templates.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(template_app, name="template")
app.add_typer(image_app, name="image")
app.add_typer(volume_app, name="volume")
app.add_typer(teams_app, name="teams")
app.command("audit")(audit_command)

console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where Corral keeps its state [default: /var/lib/corral].")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ApiUrl = Annotated[str, typer.Option("--api-url", envvar="E2B_API_URL", help="The REST API.")]
SandboxUrl = Annotated[str, typer.Option("--sandbox-url", envvar="E2B_SANDBOX_URL", help="The sandbox gateway.")]
ApiKey = Annotated[str, typer.Option("--api-key", envvar="E2B_API_KEY", help="An API key (corral keys create).")]


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="REST API port [default: 3000].")] = None,
    gateway_port: Annotated[int | None, typer.Option(help="Sandbox gateway port [default: 3002].")] = None,
    data_dir: DataDir = None,
    runtime: Annotated[str | None, typer.Option(help="Default isolation: gvisor or runc.")] = None,
    domain: Annotated[str | None, typer.Option(help="Domain for {port}-{id}.{domain} Host routing.")] = None,
    pool_size: Annotated[int | None, typer.Option(help="Warm sandboxes kept per template and runtime (0: off) [default: 2].")] = None,
) -> None:
    """Run the REST API and the sandbox gateway until interrupted."""
    from corral.server.run import serve as run_server

    settings = settings_for(data_dir, host=host, port=port, gateway_port=gateway_port, default_runtime=runtime,
                            domain=domain, pool_size=pool_size)
    try:
        import uvloop  # the gateway's per-request overhead is ~15 % lower on uvloop

        uvloop.run(run_server(settings))
    except ImportError:
        asyncio.run(run_server(settings))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
    team: Annotated[str, typer.Option("--team", help="The team the key belongs to (created if new).")] = "default",
    admin: Annotated[bool, typer.Option("--admin", help="An admin key (teams, keys, quotas API) instead.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print only the key."""
    from corral.server.keys import create_key

    if admin:
        from corral.db import open_database
        from corral.tenancy import add_admin_key

        db = open_database(settings_for(data_dir).db_url)
        try:
            print(add_admin_key(db, name))
        finally:
            db.close()
        return
    print(create_key(settings_for(data_dir), name=name, team=team))


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """List API keys (never the keys themselves)."""
    from corral.server.keys import list_keys

    rows = [dict(r) if not isinstance(r, dict) else r for r in list_keys(settings_for(data_dir))]
    print_rows(rows, as_json, title="API keys")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or name.")], data_dir: DataDir = None) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    from corral.server.keys import revoke_key

    revoke_key(settings_for(data_dir), key)
    console.print(f"revoked {key}")


def print_rows(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for c in columns:
        table.add_column(str(c))
    for r in rows:
        table.add_row(*(str(r.get(c, "")) for c in columns))
    console.print(table)


def api_client(api_url: str, api_key: str) -> httpx.Client:
    if not api_key:
        err_console.print("[red]No API key:[/] pass --api-key or set E2B_API_KEY (corral keys create --name me).")
        raise typer.Exit(2)
    return httpx.Client(base_url=api_url, headers={"X-API-KEY": api_key}, timeout=30)


def check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        try:
            message = r.json().get("message", r.text)
        except ValueError:
            message = r.text
        err_console.print(f"[red]error {r.status_code}:[/] {message}")
        raise typer.Exit(1)
    return r.json() if r.content else None


@app.command("ls")
def list_sandboxes(api_url: ApiUrl = "http://127.0.0.1:3000", api_key: ApiKey = "", as_json: JsonOut = False) -> None:
    """List the sandboxes of your team."""
    with api_client(api_url, api_key) as http:
        rows: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if token:
                params["nextToken"] = token
            r = http.get("/v2/sandboxes", params=params)
            rows.extend(check(r))
            token = r.headers.get("X-Next-Token")
            if not token:
                break
    keep = ("sandboxID", "templateID", "state", "startedAt", "endAt", "cpuCount", "memoryMB", "metadata")
    print_rows([{k: row.get(k) for k in keep} for row in rows] if not as_json else rows, as_json, title="Sandboxes")


@app.command()
def kill(sandbox_id: str, api_url: ApiUrl = "http://127.0.0.1:3000", api_key: ApiKey = "") -> None:
    """Kill a sandbox and free everything it held."""
    with api_client(api_url, api_key) as http:
        check(http.delete(f"/sandboxes/{sandbox_id}"))
    console.print(f"killed {sandbox_id}")


def endpoint_for(sandbox_id: str, api_url: str, sandbox_url: str, api_key: str, user: str) -> SandboxEndpoint:
    from corral.cli.envd_client import SandboxEndpoint

    with api_client(api_url, api_key) as http:
        info = check(http.get(f"/sandboxes/{sandbox_id}"))
    return SandboxEndpoint(sandbox_url=sandbox_url, sandbox_id=sandbox_id,
                           access_token=info.get("envdAccessToken"), user=user)


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_command(
    ctx: typer.Context,
    sandbox_id: str,
    user: Annotated[str, typer.Option(help="Run as this user.")] = "user",
    cwd: Annotated[str | None, typer.Option(help="Working directory.")] = None,
    api_url: ApiUrl = "http://127.0.0.1:3000",
    sandbox_url: SandboxUrl = "http://127.0.0.1:3002",
    api_key: ApiKey = "",
) -> None:
    """Run a command in a sandbox (`corral exec ID -- CMD ...`), stream its output, exit with its code."""
    import base64
    import shlex
    import sys

    from corral.cli.envd_client import EnvdClient

    if not ctx.args:
        err_console.print("usage: corral exec ID -- CMD [ARGS...]")
        raise typer.Exit(2)
    cmd = ctx.args[0] if len(ctx.args) == 1 else shlex.join(ctx.args)
    client = EnvdClient(endpoint_for(sandbox_id, api_url, sandbox_url, api_key, user))
    code = 1
    try:
        for event in client.start(cmd, cwd=cwd):
            if "data" in event:
                for stream, out in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
                    if stream in event["data"]:
                        out.write(base64.b64decode(event["data"][stream]))
                        out.flush()
            elif "end" in event:
                end = event["end"]
                code = int(end.get("exitCode", 0 if end.get("exited") else 1))
    finally:
        client.close()
    raise typer.Exit(code)


@app.command()
def shell(
    sandbox_id: str,
    user: Annotated[str, typer.Option(help="Log in as this user.")] = "user",
    api_url: ApiUrl = "http://127.0.0.1:3000",
    sandbox_url: SandboxUrl = "http://127.0.0.1:3002",
    api_key: ApiKey = "",
) -> None:
    """Open an interactive shell (a PTY) in a sandbox."""
    from corral.cli.pty_shell import run_shell

    raise typer.Exit(run_shell(endpoint_for(sandbox_id, api_url, sandbox_url, api_key, user)))


@app.command()
def doctor(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """Check runsc, runc, cgroups, overlayfs, debootstrap, disk and the agent; say how to fix what is missing."""
    from corral.doctor import run_checks

    results = run_checks(settings_for(data_dir))
    if as_json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            mark = "[green]ok[/]  " if r.ok else "[red]FAIL[/]"
            console.print(f"{mark} {r.name}: {r.detail}" + ("" if r.ok else f"\n      fix: {r.fix}"))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@template_app.command("build")
def template_build(
    name: Annotated[str, typer.Argument(help="`base`, `code-interpreter-v1`, or a FILE: a Python file defining "
                                             "`template = Template()...`, or a Dockerfile.")] = "base",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a cached build exists.")] = False,
    data_dir: DataDir = None,
    as_name: Annotated[str | None, typer.Option("--name", help="FILE builds: the template's name [default: the "
                                                              "file's stem].")] = None,
    api_url: ApiUrl = "http://127.0.0.1:3000",
    api_key: ApiKey = "",
) -> None:
    """Build a template: `base` (Debian bookworm by debootstrap), `code-interpreter-v1` (base + Jupyter kernels),
    or a FILE through the running server's template API (steps cached as layers; --force rebuilds every step)."""
    from corral.templates.base import build_base_template
    from corral.templates.code_interpreter import TEMPLATE_ID, build_code_interpreter_template

    if Path(name).is_file():
        _build_file(Path(name), as_name, api_url, api_key, force)
        return
    builders = {"base": build_base_template, TEMPLATE_ID: build_code_interpreter_template}
    if name not in builders:
        err_console.print(f"[red]unknown template {name!r}[/]: buildable: {', '.join(builders)}")
        raise typer.Exit(2)
    with console.status(f"building template {name}…") as status:
        def log(line: str) -> None:
            status.update(f"building template {name}: {line[:100]}")
            console.log(line)
        info = builders[name](settings_for(data_dir), force=force, log=log)
    console.print(f"[green]built[/] {info.id} at {info.rootfs}")


@template_app.command("list")
def template_list(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """List the templates this server can start sandboxes from (system ones and those teams built)."""
    from corral.templates.catalog import TemplateCatalog

    catalog = TemplateCatalog(settings_for(data_dir))
    rows = []
    for t in [*catalog.system.list(), *catalog.user.list()]:
        owner = catalog.owner(t)
        row = t.model_dump(mode="json") if as_json else t.summary()
        row["team"] = owner.team if owner else "system"
        rows.append(row)
    print_rows(rows, as_json, title="Templates")


@template_app.command("rm")
def template_rm(template: Annotated[str, typer.Argument(help="A built template's id or name.")],
                data_dir: DataDir = None) -> None:
    """Delete a template built from a file or the SDK (its layers stay until `corral template gc`)."""
    from corral.cli.template_cmds import remove_template
    from corral.errors import CorralError

    try:
        console.print(f"removed {remove_template(settings_for(data_dir), template)}")
    except CorralError as e:
        err_console.print(f"[red]{e.message}[/]")
        raise typer.Exit(1) from None


@template_app.command("gc")
def template_gc(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """Remove build layers that no template uses (layers of running sandboxes are kept)."""
    from corral.cli.template_cmds import gc_layers
    from corral.errors import CorralError

    try:
        removed, freed = gc_layers(settings_for(data_dir))
    except CorralError as e:
        err_console.print(f"[red]{e.message}[/]")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"removed": removed, "freed_bytes": freed}))
    else:
        console.print(f"removed {len(removed)} unused layers, {freed / 1e6:.1f} MB freed")


def _build_file(path: Path, name: str | None, api_url: str, api_key: str, force: bool) -> None:
    from corral.cli.template_cmds import build_file
    from corral.errors import CorralError

    api_client(api_url, api_key).close()   # exits with a hint when no key is set
    name = name or path.stem.lower().replace(".", "-").replace("_", "-")
    if name == "dockerfile":
        name = path.parent.resolve().name.lower()
    colors = {"error": "red", "warn": "yellow"}
    try:
        with console.status(f"building {name} from {path}…") as status:
            def on_log(level: str, message: str) -> None:
                if message.startswith(("[", "CACHED [")):
                    status.update(f"{name}: {message[:100]}")
                console.print(f"[{colors.get(level, 'default')}]{message}[/]", markup=True, highlight=False)
            info = build_file(path, name, api_url=api_url, api_key=api_key, skip_cache=force, on_log=on_log)
    except CorralError as e:
        err_console.print(f"[red]{e.message}[/]")
        raise typer.Exit(1) from None
    except Exception as e:  # noqa: BLE001 - the SDK's BuildException and friends: show the message, no traceback
        err_console.print(f"[red]build failed:[/] {e}")
        raise typer.Exit(1) from None
    console.print(f"[green]built[/] {info.name} (template {info.template_id}, build {info.build_id})")


def main() -> None:
    os.environ.setdefault("COLUMNS", "120")
    app()


if __name__ == "__main__":
    main()
