"""Peer baselines on the same machine and workload (a fresh sandbox that runs `true`): runsc do, podman+runsc."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.stats import Figure

PODMAN_IMAGE = "localhost/corral-base:latest"


def _timed_run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return (time.perf_counter() - t0) * 1000


def bench_runsc_do(n: int) -> Figure:
    """Plain `runsc do true` in a fresh gVisor sandbox each time (create + exec + destroy), ptrace, no network."""
    root = Path(tempfile.mkdtemp(prefix="bench-runsc-"))
    try:
        samples = [_timed_run(["runsc", "--root", str(root), "--platform", "ptrace", "--network", "none", "do", "true"])
                   for _ in range(n)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return Figure.of("peer: `runsc do true` (create+exec+destroy)", samples)


def ensure_podman_image(rootfs: Path) -> str | None:
    """Import the base template's rootfs as a local podman image (no registry is reachable); None if no podman."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman)"
    if subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], check=False).returncode == 0:
        return None
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "-", PODMAN_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    return None


def bench_podman_runsc(n: int, rootfs: Path) -> Figure | str:
    """`podman run --rm` of `true` with runsc as the OCI runtime (ptrace; runsc's own network off, as podman's)."""
    why = ensure_podman_image(rootfs)
    if why:
        return why
    runsc = shutil.which("runsc") or "runsc"
    argv = ["podman", "--runtime", runsc, "--runtime-flag", "platform=ptrace", "--runtime-flag", "network=none",
            "run", "--rm", "--network", "none", PODMAN_IMAGE, "true"]
    samples = [_timed_run(argv) for _ in range(n)]
    return Figure.of("peer: `podman run --rm` (runsc, ptrace) true", samples)


LLM_SANDBOX_PYTHON = Path("/opt/llm-sandbox-venv/bin/python")  # python3 -m venv ...; pip install 'llm-sandbox[podman]'
_LLM_SANDBOX_SCRIPT = r"""
import json, sys, time
from podman import PodmanClient
from llm_sandbox import SandboxSession
client = PodmanClient(base_url=sys.argv[1])
# The host forbids podman's default (raised) nofile/nproc limits; runc refuses to start without these.
ul = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]
out = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    s = SandboxSession(backend="podman", client=client, image=sys.argv[2], lang="python", keep_template=True,
                       verbose=False, skip_environment_setup=True, runtime_configs={"network_mode": "none", "ulimits": ul})
    s.open()
    r = s.run("print(1)")
    out.append((time.perf_counter() - t0) * 1000)
    assert r.exit_code == 0 and r.stdout.strip() == "1", r
    s.close()
print(json.dumps(out))
"""


def bench_llm_sandbox(n: int, rootfs: Path) -> Figure | str:
    """llm-sandbox 0.3.46 on podman's default runtime (runc): session open + run('print(1)'); close not counted
    (it waits podman's 10 s stop timeout: bash as PID 1 ignores SIGTERM). Not on runsc: its file copy goes through
    podman's archive API, which writes the host-side rootfs that gVisor never sees, so every run fails ENOENT."""
    if not LLM_SANDBOX_PYTHON.exists():
        return f"{LLM_SANDBOX_PYTHON} missing (python3 -m venv /opt/llm-sandbox-venv; pip install 'llm-sandbox[podman]')"
    why = ensure_podman_image(rootfs)
    if why:
        return why
    image = PODMAN_IMAGE.replace("corral-base", "corral-base-cmd")  # llm-sandbox needs an image CMD to keep it up
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
        build = Path(tempfile.mkdtemp(prefix="bench-llmsb-"))
        (build / "Containerfile").write_text(f'FROM {PODMAN_IMAGE}\nCMD ["/bin/bash"]\n')
        subprocess.run(["podman", "build", "--pull=never", "-t", image, str(build)], check=True, capture_output=True)
        shutil.rmtree(build, ignore_errors=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-podman-"))
    sock = f"unix://{run_dir}/podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", sock], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (run_dir / "podman.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run([str(LLM_SANDBOX_PYTHON), "-c", _LLM_SANDBOX_SCRIPT, sock, image, str(n)],
                             capture_output=True, text=True, check=False, timeout=60 + 15 * n)
        if out.returncode != 0:
            return f"llm-sandbox failed: {out.stderr.strip()[-300:]}"
        samples = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        service.terminate()  # our own child, by its handle
        service.wait(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)
    return Figure.of("peer: llm-sandbox (podman, runc) session open + run('print(1)')", samples)
