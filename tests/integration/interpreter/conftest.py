"""Fixtures for the interpreter tests that run the server on the host: a cached venv with the kernels, the server."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.corral_server import free_port, stop_process

REPO = Path(__file__).resolve().parents[3]
# What the code-interpreter-v1 template installs, minus what these tests do not import (scipy, requests).
REQUIREMENTS = ["ipykernel", "jupyter_client", "bash_kernel", "starlette", "uvicorn", "pydantic", "numpy", "pandas",
                "matplotlib"]  # fmt: skip
TSLAB = "tslab@1"
CACHE = Path(os.environ.get("CORRAL_TEST_CACHE", Path.home() / ".cache" / "corral-tests"))


@dataclass
class HostInterpreter:
    url: str
    languages: set[str]
    log: Path
    env_file: Path  # where the server reads the sandbox's env vars (the agent writes them in a sandbox)


def _venv() -> Path:
    """A venv with the kernels, built once per requirements set (first time ~1 min from PyPI), then reused."""
    key = hashlib.sha256(" ".join([*REQUIREMENTS, TSLAB, sys.version]).encode()).hexdigest()[:12]
    venv = CACHE / f"interpreter-venv-{key}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        [str(py), "-m", "bash_kernel.install", "--sys-prefix"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"cannot build the interpreter test venv ({' '.join(cmd[:4])}): {r.stderr.strip()[-400:]}")
    _install_tslab(venv, py)
    (venv / ".complete").touch()
    return venv


def _install_tslab(venv: Path, py: Path) -> None:
    """JavaScript/TypeScript kernels from npm, when the host has npm (the JS tests skip otherwise)."""
    npm = shutil.which("npm")
    if npm is None:
        return
    js = venv / "js"
    # shallow: tslab falls back to @types under its own node_modules (a hoisted install leaves console untyped).
    cmd = [npm, "install", "--prefix", str(js), "--install-strategy=shallow", "--no-audit", "--no-fund", TSLAB]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    tslab = js / "node_modules" / ".bin" / "tslab"
    if r.returncode != 0 or not tslab.exists():
        return
    subprocess.run([str(tslab), "install", "--sys-prefix", f"--python={py}", f"--binary={tslab}"],
                   capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def host_interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostInterpreter]:
    venv = _venv()
    port = free_port()
    cwd = tmp_path_factory.mktemp("interp-cwd")
    log = cwd.parent / "interpreter.log"
    env_file = cwd.parent / "envs.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
           "CORRAL_ENV_FILE": str(env_file)}
    kernels = subprocess.run([str(venv / "bin" / "python"), "-m", "corral.interpreter", "--list-kernels"],
                             capture_output=True, text=True, env=env, check=True).stdout  # fmt: skip
    languages = set(kernels.rsplit("languages:", 1)[1].split("(")[0].replace(",", " ").split())
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "corral.interpreter", "--host", "127.0.0.1", "--port", str(port),
             "--cwd", str(cwd)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"interpreter server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield HostInterpreter(url=url, languages=languages, log=log, env_file=env_file)
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture
def sdk_env(host_interpreter: HostInterpreter, monkeypatch: pytest.MonkeyPatch) -> HostInterpreter:
    """Debug mode: Sandbox.create() makes no API call; E2B_SANDBOX_URL points every sandbox port at our server."""
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", host_interpreter.url)
    monkeypatch.setenv("E2B_API_KEY", "e2b_unused")
    return host_interpreter
