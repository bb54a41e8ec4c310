"""`corral teams ...` and `corral audit`: tenants, their quotas and the audit log, straight on the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from corral.db import Database, open_database

teams_app = typer.Typer(help="Create, list and remove teams; set their quotas.", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where Corral keeps its state [default: /var/lib/corral].")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _db(data_dir: Path | None) -> Iterator[Database]:
    from corral.cli.main import settings_for

    db = open_database(settings_for(data_dir).db_url)
    try:
        yield db
    finally:
        db.close()


def _fail(message: str) -> typer.Exit:
    from corral.cli.main import err_console

    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(1)


@teams_app.command("create")
def teams_create(name: Annotated[str, typer.Argument(help="The team's name.")], data_dir: DataDir = None) -> None:
    """Create a team and print its id."""
    from corral.errors import CorralError
    from corral.tenancy import create_team

    with _db(data_dir) as db:
        try:
            print(create_team(db, name).id)
        except CorralError as e:
            raise _fail(e.message) from None


@teams_app.command("list")
def teams_list(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """List teams with their effective quotas (None = unlimited)."""
    from corral.cli.main import print_rows, settings_for
    from corral.tenancy import get_quota, list_teams

    settings = settings_for(data_dir)
    with _db(data_dir) as db:
        rows = []
        for t in list_teams(db):
            q = get_quota(db, settings, t.id)
            rows.append({"id": t.id, "name": t.name, "max_sandboxes": q.max_sandboxes,
                         "creates_per_s": q.creates_per_s, "memory_mb": q.memory_mb, "disk_mb": q.disk_mb})
    print_rows(rows, as_json, title="Teams")


@teams_app.command("rm")
def teams_rm(team: Annotated[str, typer.Argument(help="The team's id or name.")], data_dir: DataDir = None) -> None:
    """Remove a team, its keys and quota (refused while it has running sandboxes)."""
    from corral.errors import CorralError
    from corral.tenancy import find_team, remove_team

    with _db(data_dir) as db:
        try:
            remove_team(db, find_team(db, team).id)
        except CorralError as e:
            raise _fail(e.message) from None
    print(f"removed {team}")


@teams_app.command("quota")
def teams_quota(
    team: Annotated[str, typer.Argument(help="The team's id or name.")],
    max_sandboxes: Annotated[int | None, typer.Option(help="Sandboxes running at once.")] = None,
    creates_per_s: Annotated[float | None, typer.Option(help="Creates per second (token bucket).")] = None,
    memory_mb: Annotated[int | None, typer.Option(help="Total memory of running sandboxes, MiB.")] = None,
    disk_mb: Annotated[int | None, typer.Option(help="Total disk of running sandboxes, MiB.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Back to the server's defaults first.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Set a team's quota (only the options given change); a running server applies it to the next create."""
    from corral.errors import CorralError
    from corral.tenancy import Quota, find_team, set_quota

    values: dict[str, float | None] = {"max_sandboxes": max_sandboxes, "creates_per_s": creates_per_s, "memory_mb": memory_mb,
              "disk_mb": disk_mb}
    changes: dict[str, float | None] = {k: v for k, v in values.items() if v is not None}
    if reset:
        changes = {**dict.fromkeys(Quota.__dataclass_fields__), **changes}
    with _db(data_dir) as db:
        try:
            set_quota(db, find_team(db, team).id, **changes)
        except CorralError as e:
            raise _fail(e.message) from None
    print(f"quota of {team} updated")


def audit_command(
    since: Annotated[str | None, typer.Option(help="Only entries this recent: an ISO time or e.g. 30m, 2h, 7d.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the newest).")] = 1000,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Show the audit log: every mutating API call (when, team, key, method, route, target, status)."""
    from corral import audit
    from corral.cli.main import print_rows

    with _db(data_dir) as db:
        rows = audit.entries(db, since=_parse_since(since) if since else None, limit=limit)
    print_rows(rows, as_json, title="Audit log")


def _parse_since(value: str) -> datetime:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--since: {value!r} is neither an ISO time nor a duration like 30m") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
