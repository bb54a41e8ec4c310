"""A built-in base other than the base template (python:3.13 on Debian trixie) is built, then boots real sandboxes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from corral.images.store import ImageStore
from corral.templates.chroot import mounts_under
from corral.templates.store import TemplateInfo, write_template_json
from tests.integration.conftest import require_host
from tests.integration.corral_server import BASE_TEMPLATES, CorralServer, leftovers
from tests.integration.images.test_images import chroot, cli
from tests.integration.sdk.helpers import create, wait_until


def test_trixie_python_image_builds_and_runs_sandboxes(monkeypatch: pytest.MonkeyPatch) -> None:
    require_host()
    data = Path(tempfile.mkdtemp(prefix="corral-img-sbx-"))
    templates = data / "templates"
    templates.mkdir()
    for name in ("base", "code-interpreter-v1"):  # the machine's built templates, read-only, as the harness shares them
        (templates / name).symlink_to(BASE_TEMPLATES / name)
    server = CorralServer(data_dir=data)
    try:
        t0 = time.monotonic()
        out = cli(data, "build-base", "python:3.13")
        print(f"\npython:3.13 (debootstrap trixie + apt python3) built in {time.monotonic() - t0:.0f}s: "
              f"{' '.join(out.stdout.split())[-60:]}")  # fmt: skip
        info = ImageStore(data).resolve("python:3.13-slim")
        assert chroot(info.rootfs, "python3", "--version").startswith("Python 3.13.")
        assert chroot(info.rootfs, "cat", "/etc/debian_version").startswith("13.")
        assert not list((data / "images" / "builtin").glob(".*build-*"))

        # Until the template builder lands, register the image as a plain template by hand: its rootfs is the lower.
        tdir = templates / "py313"
        tdir.mkdir()
        (tdir / "rootfs").symlink_to(info.rootfs)
        write_template_json(tdir, TemplateInfo(id="py313", aliases=["py313"], envs=info.env, workdir="/root", user="root"))
        server.prepare()
        server.start(("--pool-size", "0"))
        for name, value in (("E2B_API_URL", server.api_url), ("E2B_SANDBOX_URL", server.sandbox_url),
                            ("E2B_API_KEY", server.create_key("images"))):  # fmt: skip
            monkeypatch.setenv(name, value)
        for tier in ("gvisor", "runc"):
            sbx = create(tier, template="py313")
            try:
                r = sbx.commands.run("python3 --version; cat /etc/debian_version; python -c 'import venv' && echo ok")
                assert r.stdout.startswith("Python 3.13.") and "\n13." in r.stdout and r.stdout.endswith("ok\n"), r
            finally:
                sbx.kill()
            ids = [sbx.sandbox_id]
            assert wait_until(lambda ids=ids: not leftovers(data, ids), timeout=15), leftovers(data, ids)
    finally:
        server.stop()
        print(server.log_tail(20))
    shutil.rmtree(tdir)
    cli(data, "rm", "python:3.13")
    cli(data, "rm", "debian:trixie")
    assert list((data / "images" / "builtin").iterdir()) == []
    assert [m for m in mounts_under(data) if m != os.path.realpath(data)] == []
    subprocess.run(["umount", "-l", str(data)], check=False, capture_output=True)   # its shared bind (gvisor_netns)
    shutil.rmtree(data, ignore_errors=True)
