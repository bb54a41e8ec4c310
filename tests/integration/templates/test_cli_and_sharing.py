"""`corral template build FILE` (Dockerfile, Python file), list/rm/gc, and layers shared on disk between templates."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2b import Sandbox, Template

from corral.templates.layers import dir_size
from tests.integration.corral_server import CorralServer


def corral(server: CorralServer, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False,
                          env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "E2B_API_URL": server.api_url,
                               "E2B_API_KEY": key, "COLUMNS": "200"})


def test_build_a_dockerfile_and_a_python_file(sdk_env: CorralServer, tpl_key: str, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hi from the context\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm\n# a comment\nENV GREETING=hello\nWORKDIR /srv\nCOPY hello.txt /srv/\n"
        "RUN cat /srv/hello.txt > /srv/copy.txt && \\\n    echo $GREETING >> /srv/copy.txt\nEXPOSE 80\n")
    out = corral(sdk_env, tpl_key, "template", "build", str(tmp_path / "Dockerfile"), "--name", "it-docker")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "built it-docker" in out.stdout and "COPY hello.txt" in out.stdout
    py = tmp_path / "tpl.py"
    py.write_text("from e2b import Template\ntemplate = Template().from_template('it-docker')"
                  ".run_cmd('echo py > /srv/py.txt', user='root')\n")
    out = corral(sdk_env, tpl_key, "template", "build", str(py), "--name", "it-py")
    assert out.returncode == 0, out.stdout + out.stderr
    sbx = Sandbox.create("it-py")
    try:
        r = sbx.commands.run("cat copy.txt py.txt; echo $GREETING")
        assert r.stdout.split("\n")[:4] == ["hi from the context", "hello", "py", "hello"]
    finally:
        sbx.kill()
    listed = json.loads(corral(sdk_env, tpl_key, "template", "list", "--json", "--data-dir",
                               str(sdk_env.data_dir)).stdout)
    assert {"it-docker", "it-py"} <= {a for t in listed for a in t["aliases"]}


def test_unsupported_dockerfile_instruction_is_named(sdk_env: CorralServer, tpl_key: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm\nHEALTHCHECK CMD true\n")
    out = corral(sdk_env, tpl_key, "template", "build", str(tmp_path / "Dockerfile"), "--name", "it-hc")
    assert out.returncode == 1 and "unsupported Dockerfile instruction HEALTHCHECK" in out.stderr.replace("\n", " ")


def test_templates_share_their_base_layers_and_gc_frees_unused(sdk_env: CorralServer, tpl_key: str) -> None:
    common = Template().from_debian_image("bookworm").run_cmd(
        "head -c 8000000 /dev/urandom > /opt/common.bin", user="root")
    times = []
    for i in range(10):
        start = time.monotonic()
        Template.build(common.run_cmd(f"echo {i} > /opt/id", user="root"), f"it-share-{i}")
        times.append(time.monotonic() - start)
        common = Template().from_debian_image("bookworm").run_cmd(
            "head -c 8000000 /dev/urandom > /opt/common.bin", user="root")
    layers = sdk_env.data_dir / "layers"
    on_disk = dir_size(layers)
    print(f"10 templates sharing an 8 MB layer: layers dir {on_disk / 1e6:.1f} MB; build times "
          f"first {times[0]:.2f}s, others {min(times[1:]):.2f}-{max(times[1:]):.2f}s")
    assert on_disk < 2 * 8_000_000 + 10 * 1_000_000         # the 8 MB layer is stored once
    for i in range(10):
        assert corral(sdk_env, tpl_key, "template", "rm", f"it-share-{i}", "--data-dir",
                      str(sdk_env.data_dir)).returncode == 0
    out = corral(sdk_env, tpl_key, "template", "gc", "--json", "--data-dir", str(sdk_env.data_dir))
    gc = json.loads(out.stdout)
    assert len(gc["removed"]) == 11 and gc["freed_bytes"] >= 8_000_000, gc
    assert not Template.exists("it-share-0")
    with pytest.raises(Exception):  # noqa: B017 - the SDK's NotFound flavour varies by version
        Sandbox.create("it-share-0")


def test_build_in_background_status_logs_and_skip_cache(sdk_env: CorralServer) -> None:
    t = Template().from_debian_image("bookworm").run_cmd("seq 1 150", user="root").set_envs({"K": "v"})
    info = Template.build_in_background(t, "it-bg")
    offset, messages = 0, []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = Template.get_build_status(info, logs_offset=offset)
        offset += len(status.log_entries)
        messages += [e.message for e in status.log_entries]
        if status.status.value in ("ready", "error") and not status.log_entries:
            break
        time.sleep(0.2)
    assert status.status.value == "ready", messages
    assert [m for m in messages if m.isdigit()] == [str(i) for i in range(1, 151)]   # every line once, in order
    logs: list[str] = []
    Template.build(t, "it-bg", skip_cache=True, on_build_logs=lambda e: logs.append(str(e.message)))
    assert not any(m.startswith("CACHED") for m in logs) and any(m.startswith("[1/2] RUN") for m in logs)
