"""Templates built on corral.images bases through the stock SDK: python:3.11, and an imported OCI archive."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from e2b import Sandbox, Template

from tests.integration.corral_server import BASE_TEMPLATES, CorralServer
from tests.unit.images.archives import config, oci_archive

BASE_ROOTFS = BASE_TEMPLATES / "base" / "rootfs"


def test_python_image_base(sdk_env: CorralServer) -> None:
    t = Template().from_python_image("3.11").run_cmd("python --version > py.txt && pip --version >> py.txt")
    Template.build(t, "it-python-base", memory_mb=768)
    sbx = Sandbox.create("it-python-base")
    try:
        assert sbx.get_info().memory_mb == 768          # the template's size is its sandboxes' size, as on E2B
        out = sbx.commands.run("cat /home/user/py.txt").stdout
        assert out.startswith("Python 3.11."), out
        assert "python 3.11" in out
    finally:
        sbx.kill()


def _link_chain(rel: str) -> list[str]:
    """`rel` and every path its symlinks lead to, resolved inside the base rootfs (not on the host)."""
    chain = [rel]
    while (BASE_ROOTFS / chain[-1]).is_symlink():
        target = os.readlink(BASE_ROOTFS / chain[-1])
        nxt = target.lstrip("/") if target.startswith("/") else os.path.normpath(Path(chain[-1]).parent / target)
        chain.append(nxt.replace("lib/", "usr/lib/", 1) if nxt.startswith(("lib/", "lib64/")) else nxt)
    return chain


def _bash_layer() -> bytes:
    """bash, cat and the libraries they load, copied from the base template (usrmerged, as Debian)."""
    libs = subprocess.run(["chroot", str(BASE_ROOTFS), "ldd", "/usr/bin/bash", "/usr/bin/cat"], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    files = {"usr/bin/bash", "usr/bin/cat", "usr/lib64/ld-linux-x86-64.so.2"}
    files |= {line.split("=>")[1].split()[0].lstrip("/").replace("lib/", "usr/lib/", 1)
              for line in libs.splitlines() if "=>" in line}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for link in ("bin", "lib", "lib64"):
            tar.add(BASE_ROOTFS / link, arcname=link)
        for rel in sorted(files):
            for member in _link_chain(rel):  # the links themselves (libfoo.so.6 -> libfoo.so.6.4), then the file
                for parent in reversed(Path(member).parents[:-1]):
                    if str(parent) not in tar.getnames():
                        tar.add(BASE_ROOTFS / parent, arcname=str(parent), recursive=False)
                if member not in tar.getnames():
                    tar.add(BASE_ROOTFS / member, arcname=member)
        for name, data in (("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"), ("etc/group", b"root:x:0:\n"),
                           ("etc/greeting", b"from the archive\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for d in ("root", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o700
            tar.addfile(info)
    return buf.getvalue()


def test_imported_oci_archive_base(sdk_env: CorralServer, tmp_path: Path) -> None:
    archive = oci_archive(tmp_path / "app.tar", [_bash_layer()],
                          config(env=["PATH=/usr/bin:/bin", "FROM_IMAGE=yes"]), name="corral-it/app:1")
    sdk_env.cli("image", "import", str(archive))
    t = (Template().from_image("corral-it/app:1").set_envs({"STEP": "2"})
         .run_cmd("cat /etc/greeting > /built.txt && echo $FROM_IMAGE-$STEP >> /built.txt"))
    Template.build(t, "it-imported-base")
    sbx = Sandbox.create("it-imported-base")
    try:
        out = sbx.commands.run("cat /built.txt; echo $FROM_IMAGE", user="root").stdout
        assert out == "from the archive\nyes-2\nyes\n", out
    finally:
        sbx.kill()
