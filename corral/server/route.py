"""What the gateway needs to know about one live sandbox, handed to it by the lifecycle manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Route:
    sandbox_id: str
    team_id: str
    socket_path: Path                        # the agent's HTTP socket on the host (envd, port 49983)
    secure: bool                             # require X-Access-Token (or a valid signed URL) on envd calls
    envd_access_token: str | None         # set when secure
    traffic_access_token: str | None      # required on other ports when set


# The gateway calls this on every request; it must be O(1) and never block (an in-memory dict lookup).
RouteResolver = Callable[[str], Route | None]
# Called by the gateway when a request to a sandbox starts and when it ends (idle tracking, hibernation).
ActivityHook = Callable[[str], None]
# Called for an id with no route: resumes a paused sandbox that may be woken by traffic and returns its route,
# None for an unknown id, or raises a CorralError saying why not (e.g. paused without auto-resume).
WakeHook = Callable[[str], Awaitable[Route | None]]

ENVD_PORT = 49983
INTERPRETER_PORT = 49999
