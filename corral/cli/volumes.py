"""`corral volume create|list|rm`: a team's volumes, through the REST API with the team's API key."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

volume_app = typer.Typer(help="Create, list and remove volumes (persistent storage sandboxes mount).",
                         no_args_is_help=True)

ApiUrl = Annotated[str, typer.Option("--api-url", envvar="E2B_API_URL", help="The REST API.")]
ApiKey = Annotated[str, typer.Option("--api-key", envvar="E2B_API_KEY", help="An API key (corral keys create).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _call(api_url: str, api_key: str, method: str, path: str, **kwargs: Any) -> Any:
    # Imported here: corral.cli.main imports this module to register it.
    from corral.cli.main import api_client, check

    with api_client(api_url, api_key) as http:
        return check(http.request(method, path, **kwargs))


@volume_app.command("create")
def volume_create(name: Annotated[str, typer.Argument(help="Letters, digits, '_' and '-'; unique in the team.")],
                  api_url: ApiUrl = "http://127.0.0.1:3000", api_key: ApiKey = "", as_json: JsonOut = False) -> None:
    """Create a volume and print its id (--json: id, name and the content API token)."""
    out = _call(api_url, api_key, "POST", "/volumes", json={"name": name})
    print(json.dumps(out, indent=2) if as_json else out["volumeID"])


@volume_app.command("list")
def volume_list(api_url: ApiUrl = "http://127.0.0.1:3000", api_key: ApiKey = "", as_json: JsonOut = False) -> None:
    """List the volumes of your team."""
    from corral.cli.main import print_rows

    print_rows(_call(api_url, api_key, "GET", "/volumes"), as_json, title="Volumes")


@volume_app.command("rm")
def volume_rm(volume: Annotated[str, typer.Argument(help="The volume's id or name.")],
              api_url: ApiUrl = "http://127.0.0.1:3000", api_key: ApiKey = "") -> None:
    """Destroy a volume and its data (refused while a running sandbox mounts it)."""
    from corral.cli.main import err_console

    volume_id = volume
    if not volume.startswith("vol_"):
        ids = [v["volumeID"] for v in _call(api_url, api_key, "GET", "/volumes") if v["name"] == volume]
        if not ids:
            err_console.print(f"[red]error 404:[/] no volume named {volume!r}")
            raise typer.Exit(1)
        volume_id = ids[0]
    _call(api_url, api_key, "DELETE", f"/volumes/{volume_id}")
    print(f"removed {volume_id}")
