"""The `code-interpreter-v1` template: `base` plus Jupyter kernels, the data-science stack and Corral's :49999 server."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.templates.base import BASE_ID, CA_BUNDLE, build_base_template
from corral.templates.building import build_template
from corral.templates.chroot import chroot_run, mounts_under, run_logged
from corral.templates.store import BuildInfo, TemplateInfo, TemplateStore

TEMPLATE_ID = "code-interpreter-v1"
PORT = 49999
# Where the server's code lives in the image (outside site-packages, so a user's `pip uninstall` cannot break it).
SERVER_LIB = "/opt/corral/lib"
SERVER_LOG = "/tmp/corral-interpreter.log"
# Lower bounds only: the newest wheels for bookworm's Python 3.11 that PyPI serves at build time.
PIP_PACKAGES = [
    "ipykernel>=6.29", "jupyter_client>=8.6", "bash_kernel>=0.9", "starlette>=0.37", "uvicorn>=0.30",
    "pydantic>=2.6", "numpy", "pandas", "matplotlib", "scipy", "requests",
]  # fmt: skip
# tslab gives both a JavaScript (jslab) and a TypeScript kernel; its zeromq 6 ships prebuilt addons for Linux x64,
# so nothing is downloaded from outside the npm registry.
NPM_PACKAGES = ["tslab@1"]
# Debian's IRkernel (R itself comes with it); --no-install-recommends keeps out r-recommended and compilers.
APT_PACKAGES = ["r-cran-irkernel"]
START_CMD = (
    f"cd / && PYTHONPATH={SERVER_LIB} exec python3 -m corral.interpreter --host 0.0.0.0 --port {PORT}"
    f" >>{SERVER_LOG} 2>&1"
)
# Sandbox creation waits for this, so the SDK's first run_code never meets a closed port.
# /ready answers once the default Python kernel has started and run a cell: create returns then, and a template memory
# snapshot (taken right after) holds that warm kernel.
READY_CMD = f"curl -sf -o /dev/null --max-time 5 http://127.0.0.1:{PORT}/ready"
# Written by the build: what server code and commands the image holds (a change makes the next build refresh them).
DIGEST_FILE = f"{SERVER_LIB}/.corral-source-digest"


def build_code_interpreter_template(
    settings: Settings, *, force: bool = False, log: Callable[[str], None] = print
) -> TemplateInfo:
    """Build (or reuse) `code-interpreter-v1` from the `base` template (building that first if needed)."""
    base = build_base_template(settings, log=log)
    store = TemplateStore(settings)
    info = build_template(settings, store, TEMPLATE_ID,
                          lambda staging: _build_into(settings, base, staging, log), force=force, log=log)
    if _installed_digest(info.rootfs) != server_digest():
        # Built by an older Corral: only the server and its commands changed, so no pip/npm/apt rerun (minutes).
        log(f"the interpreter server in {TEMPLATE_ID!r} is older than this Corral's: refreshing it")
        info = build_template(settings, store, TEMPLATE_ID, lambda staging: _refresh_into(info, staging, log),
                              force=True, log=log)
    return info


def server_digest() -> str:
    """A digest of the interpreter server's source and the template's start/ready commands."""
    src = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"{START_CMD}\n{READY_CMD}\n".encode())
    for f in [src / "__init__.py", *sorted((src / "interpreter").rglob("*"))]:
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _installed_digest(rootfs: Path) -> str | None:
    try:
        return (rootfs / DIGEST_FILE.lstrip("/")).read_text().strip()
    except OSError:
        return None


def _refresh_into(old: TemplateInfo, staging: Path, log: Callable[[str], None]) -> TemplateInfo:
    """A copy of the installed image with the current server and commands (a new build: pools and snapshots renew)."""
    rootfs = staging / "rootfs"
    staging.mkdir(parents=True)
    log(f"[1/2] copying the installed {TEMPLATE_ID!r} rootfs")
    run_logged(["cp", "-a", "--reflink=auto", str(old.rootfs), str(rootfs)], log, what="copy rootfs")
    log(f"[2/2] the interpreter server in {SERVER_LIB}, kernels check")
    _install_server_checked(rootfs, log)
    if mounts_under(staging):
        raise RuntimeFailure(f"mounts leaked under {staging}: {mounts_under(staging)}")
    return old.model_copy(update={"rootfs": rootfs, "start_cmd": START_CMD, "ready_cmd": READY_CMD,
                                  "created_at": datetime.now(UTC)})


def _build_into(settings: Settings, base: TemplateInfo, staging: Path, log: Callable[[str], None]) -> TemplateInfo:
    t0 = time.monotonic()
    rootfs = staging / "rootfs"
    staging.mkdir(parents=True)
    log(f"[1/6] copying the {BASE_ID!r} rootfs")
    run_logged(["cp", "-a", "--reflink=auto", str(base.rootfs), str(rootfs)], log, what="copy base rootfs")

    # pip's wheel cache survives rebuilds: moved into the rootfs for the build (a rename, same filesystem), then back.
    cache = settings.data_dir / "cache" / "pip"
    cache.mkdir(parents=True, exist_ok=True)
    in_root = rootfs / "root/.cache/pip"
    in_root.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(in_root, ignore_errors=True)
    cache.rename(in_root)
    try:
        log(f"[2/6] pip install {' '.join(PIP_PACKAGES)}")
        # The chroot does not see the host's pip config: trust the image's bundle (it holds the proxy's CA) explicitly.
        chroot_run(
            rootfs,
            f"export PIP_CERT={CA_BUNDLE} SSL_CERT_FILE={CA_BUNDLE} PIP_BREAK_SYSTEM_PACKAGES=1"
            " PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore\n"
            f"python3 -m pip install -q {' '.join(PIP_PACKAGES)}\n"
            "python3 -m ipykernel install --prefix /usr/local --name python3\n"
            "python3 -m bash_kernel.install --prefix /usr/local\n"
            "python3 -m pip freeze > /opt/corral-pip-freeze.txt\n",
            log,
            what="pip install",
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        in_root.rename(cache)
    log(f"      done in {time.monotonic() - t0:.0f}s")

    t1 = time.monotonic()
    log(f"[3/5] apt-get install {' '.join(APT_PACKAGES)} (the R kernel)")
    chroot_run(
        rootfs,
        "apt-get -q update\n"
        f"apt-get -q install -y --no-install-recommends {' '.join(APT_PACKAGES)}\n"
        "R -q -e \"IRkernel::installspec(user = FALSE, prefix = '/usr/local')\"\n"
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n",
        log,
        apt_cache=settings.data_dir / "cache" / "apt-archives",
        what="apt-get install r-cran-irkernel",
    )
    log(f"      done in {time.monotonic() - t1:.0f}s")

    log(f"[4/6] npm install -g {' '.join(NPM_PACKAGES)} (JavaScript/TypeScript kernels)")
    chroot_run(
        rootfs,
        f"export NODE_EXTRA_CA_CERTS={CA_BUNDLE} npm_config_cafile={CA_BUNDLE} npm_config_update_notifier=false"
        " npm_config_fund=false npm_config_audit=false\n"
        f"npm install -g {' '.join(NPM_PACKAGES)}\n"
        "tslab install --python=python3 --prefix=/usr/local\n"
        # Fails the build here (not in a sandbox) if the native zeromq addon does not load.
        "node -e \"require(require.resolve('zeromq', {paths: ['/usr/lib/node_modules/tslab']}))\"\n"
        "rm -rf /root/.npm\n",
        log,
        what="npm install tslab",
    )

    log(f"[5/6] the interpreter server in {SERVER_LIB}, kernels check")
    _install_server_checked(rootfs, log)

    log("[6/6] cleaning caches")
    for p in ("tmp", "var/tmp"):
        for child in (rootfs / p).glob("*"):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if mounts_under(staging):
        raise RuntimeFailure(f"mounts leaked under {staging}: {mounts_under(staging)}")
    size = _du_bytes(rootfs)
    took = time.monotonic() - t0
    log(f"      rootfs {size / 1e6:.0f} MB, built in {took:.0f}s")
    freeze = (rootfs / "opt/corral-pip-freeze.txt").read_text().split()
    return TemplateInfo(
        id=TEMPLATE_ID,
        aliases=[TEMPLATE_ID],
        rootfs=rootfs,
        envs=dict(base.envs),
        workdir=base.workdir,
        user=base.user,
        start_cmd=START_CMD,
        ready_cmd=READY_CMD,
        build=BuildInfo(
            builder=f"{BASE_ID} + pip + npm",
            suite=base.build.suite if base.build else None,
            mirror=base.build.mirror if base.build else None,
            packages=[*(base.build.packages if base.build else []), *APT_PACKAGES, *freeze, *NPM_PACKAGES],
            ca_certificates=base.build.ca_certificates if base.build else [],
            duration_s=round(took, 1),
            size_bytes=size,
        ),
    )


def _install_server_checked(rootfs: Path, log: Callable[[str], None]) -> None:
    _install_server(rootfs)
    chroot_run(
        rootfs,
        # Bytecode now: the server runs as the user, who cannot write __pycache__ under the root-owned /opt.
        f"python3 -m compileall -q {SERVER_LIB}\n"
        f"PYTHONPATH={SERVER_LIB} python3 -m corral.interpreter --list-kernels\n",
        log,
        what="kernel check",
    )
    # Last: a build that failed above never claims the current server.
    (rootfs / DIGEST_FILE.lstrip("/")).write_text(server_digest() + "\n")


def _install_server(rootfs: Path) -> None:
    """Copy corral/__init__.py and corral/interpreter/ (without caches) into the image's SERVER_LIB."""
    src = Path(__file__).resolve().parent.parent
    dest = rootfs / SERVER_LIB.lstrip("/") / "corral"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copyfile(src / "__init__.py", dest / "__init__.py")
    shutil.copytree(src / "interpreter", dest / "interpreter", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["chmod", "-R", "a+rX", str(rootfs / "opt/corral")], check=True)


def _du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])

