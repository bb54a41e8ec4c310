"""Build the static corral-agent binary: `python -m corral.agent.build [--out PATH]`.

Rebuilds only when a Go source (or go.mod) is newer than the binary, so callers
(runtime, tests) can call build_agent() unconditionally and cheaply.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = AGENT_DIR / "_bin" / "corral-agent"


def _sources() -> list[Path]:
    return [p for p in AGENT_DIR.iterdir() if p.suffix == ".go" and not p.name.endswith("_test.go")] + [
        AGENT_DIR / "go.mod"
    ]


def _up_to_date(out: Path) -> bool:
    if not out.exists():
        return False
    built = out.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in _sources())


def build_agent(out: Path | None = None) -> Path:
    """Build (if stale) and return the path of the static agent binary."""
    out = Path(out) if out is not None else DEFAULT_OUT
    if _up_to_date(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod", CGO_ENABLED="0", GO111MODULE="on")
    env.setdefault("GOCACHE", "/tmp/corral-go-cache")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp), "."],
        cwd=AGENT_DIR,
        env=env,
        check=True,
    )
    # rename is atomic: a sandbox starting concurrently never sees a half-written binary
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=None, help=f"output path (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    print(build_agent(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
