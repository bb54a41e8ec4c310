"""Volumes through the stock SDK on both tiers: two sandboxes share a volume, data outlives them and a server
restart, symlinks planted inside never leak host files through the content API, other teams see nothing, and
destroy leaves nothing behind."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox, Volume
from e2b.exceptions import NotFoundException, SandboxException, VolumeException

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.sdk.helpers import create, wait_until

MNT = "/mnt/shared"


def assert_clean(data_dir: Path, ids: list[str] | None = None) -> None:
    """Killed sandboxes are torn down in the background: wait for it, then nothing may be left."""
    assert wait_until(lambda: not leftovers(data_dir, ids), timeout=30), leftovers(data_dir, ids)


def sh(sbx: Sandbox, cmd: str, user: str = "user") -> str:
    return sbx.commands.run(cmd, user=user).stdout  # type: ignore[arg-type]


def test_volume_shared_across_sandboxes_and_restart(vol_env: CorralServer, tier: str) -> None:
    server = vol_env
    name = f"data-{tier}-{secrets.token_hex(3)}"
    vol = Volume.create(name)
    assert vol.token and vol.volume_id.startswith("vol_")
    assert name in {v.name for v in Volume.list()}
    assert Volume.get_info(vol.volume_id).name == name
    vol.write_file("/from-api.txt", "written by the content API\n")

    a = create(tier, volume_mounts={MNT: vol})
    b = None
    ids = [a.sandbox_id]
    try:
        assert sh(a, f"cat {MNT}/from-api.txt") == "written by the content API\n"
        # The default user (uid 1000) writes into the volume, files and directories.
        sh(a, f"echo one > {MNT}/a.txt && mkdir -p {MNT}/sub/deep && echo deep > {MNT}/sub/deep/f && id -u > {MNT}/uid")
        assert sh(a, f"stat -c %u:%g {MNT}/a.txt") == "1000:1000\n"
        assert [m["path"] for m in a.get_info().volume_mounts] == [MNT]   # type: ignore[attr-defined]

        b = create(tier, volume_mounts={"/data": vol.name})
        ids.append(b.sandbox_id)
        assert sh(b, "cat /data/a.txt /data/sub/deep/f") == "one\ndeep\n"
        sh(b, "echo two >> /data/a.txt && echo from-b > /data/b.txt")
        assert sh(a, f"cat {MNT}/a.txt {MNT}/b.txt") == "one\ntwo\nfrom-b\n"

        # Visible through the content API at once.
        assert vol.read_file("/a.txt") == "one\ntwo\n"
        listed = {e.path: e.type.value for e in vol.list("/", depth=3)}
        assert listed["/sub/deep/f"] == "file" and listed["/sub"] == "directory"

        # In use: destroy is refused and nothing is lost.
        with pytest.raises(VolumeException, match="mounted by running sandboxes"):
            Volume.destroy(vol.volume_id)
        a.kill()
        assert vol.read_file("/b.txt") == "from-b\n"
        assert sh(b, "cat /data/a.txt") == "one\ntwo\n"
        b.kill()
    finally:
        for s in (a, b):
            if s is not None:
                s.kill()

    server.stop()
    server.start(("--pool-size", "0"))
    assert vol.read_file("/a.txt") == "one\ntwo\n"
    c = create(tier, volume_mounts={MNT: vol})
    ids.append(c.sandbox_id)
    try:
        # Ownership survives: the next sandbox's user may change what an earlier one wrote.
        sh(c, f"echo three >> {MNT}/a.txt && rm {MNT}/b.txt && touch {MNT}/sub/deep/new")
        assert sh(c, f"cat {MNT}/a.txt") == "one\ntwo\nthree\n"
    finally:
        c.kill()
    assert not vol.exists("/b.txt") and vol.exists("/sub/deep/new")

    assert Volume.destroy(vol.volume_id) is True
    assert Volume.destroy(vol.volume_id) is False
    with pytest.raises(NotFoundException):
        Volume.get_info(vol.volume_id)
    assert name not in {v.name for v in Volume.list()}
    assert not (server.data_dir / "volumes" / vol.volume_id).exists()
    assert [p.name for p in (server.data_dir / "volumes").iterdir()] == []
    assert_clean(server.data_dir, ids)


ESCAPES = {
    "abs": "ln -s /etc/passwd {m}/abs",
    "rootlink": "ln -s / {m}/rootlink",
    "rel": "ln -s ../../../../../../../../etc/shadow {m}/rel",
    "procself": "ln -s /proc/self/root {m}/procself",
    "dirup": "mkdir -p {m}/d && ln -s ../.. {m}/d/up",
}


def test_symlinks_made_inside_never_reach_host_files(vol_env: CorralServer, tier: str) -> None:
    vol = Volume.create(f"esc-{tier}-{secrets.token_hex(3)}")
    sbx = create(tier, volume_mounts={MNT: vol})
    try:
        sh(sbx, " && ".join(c.format(m=MNT) for c in ESCAPES.values()), user="root")
    finally:
        sbx.kill()
    planted = {e.path: e.type.value for e in vol.list("/", depth=2)}
    assert all(planted[p] == "symlink" for p in ("/abs", "/rootlink", "/rel", "/procself", "/d/up")), planted
    host_secret = Path("/etc/shadow").read_text()
    for path in ("abs", "rel", "rootlink/etc/shadow", "rootlink/etc/passwd", "procself/etc/shadow",
                 "d/up/etc/shadow", "d/up/up/etc/passwd", "../../../etc/shadow", "/../etc/passwd"):
        with pytest.raises(VolumeException):
            vol.read_file(path)
    for path in ("rootlink", "procself", "d/up"):
        with pytest.raises(VolumeException):
            vol.list(path)
        with pytest.raises(VolumeException):
            vol.write_file(f"{path}/planted", "x")
    info = vol.get_info("abs")
    assert info.type.value == "symlink" and info.target == "/etc/passwd"
    # Writing over a planted link replaces the link, not the host file it names.
    vol.write_file("abs", "replaced")
    assert vol.read_file("abs") == "replaced" and Path("/etc/shadow").read_text() == host_secret
    vol.remove("rootlink")
    assert Path("/etc/passwd").read_text().startswith("root:")
    assert Volume.destroy(vol.volume_id)
    assert_clean(vol_env.data_dir, [sbx.sandbox_id])


def test_other_team_sees_nothing_and_bad_mounts_fail_cleanly(vol_env: CorralServer) -> None:
    server = vol_env
    vol = Volume.create(f"mine-{secrets.token_hex(3)}")
    vol.write_file("/private.txt", "team one")
    other_key = server.cli("keys", "create", "--name", f"other-{secrets.token_hex(3)}", "--team", "other-team")
    with pytest.raises(NotFoundException):
        Volume.get_info(vol.volume_id, api_key=other_key)
    assert Volume.destroy(vol.volume_id, api_key=other_key) is False
    assert vol.name not in {v.name for v in Volume.list(api_key=other_key)}
    theirs = Volume.create(vol.name, api_key=other_key)   # names are per team
    try:
        # Their token does not open my volume: 404 like a missing one.
        r = httpx.get(f"{server.api_url}/volumecontent/{vol.volume_id}/file", params={"path": "/private.txt"},
                      headers={"Authorization": f"Bearer {theirs.token}"})
        assert r.status_code == 404
        r = httpx.get(f"{server.api_url}/volumecontent/{vol.volume_id}/file", params={"path": "/private.txt"},
                      headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        # Mounting by name resolves within the caller's team only.
        sbx = Sandbox.create(volume_mounts={"/v": vol.name}, api_key=other_key)
        try:
            assert sbx.commands.run("ls /v").stdout == ""
        finally:
            sbx.kill()
    finally:
        assert Volume.destroy(theirs.volume_id, api_key=other_key)

    with pytest.raises(VolumeException, match="already exists"):
        Volume.create(vol.name)
    for bad in ("", "has space", "a/b", "x" * 101):
        r = httpx.post(f"{server.api_url}/volumes", json={"name": bad}, headers={"X-API-KEY": os.environ["E2B_API_KEY"]})
        assert r.status_code == 400 and r.json()["message"].startswith("name:")
    before = _sandbox_dirs(server)
    for mounts, field in (({"/v": "no-such-volume"}, "volumeMounts[0].name"), ({"/proc/x": vol}, "volumeMounts[0].path"),
                          ({"relative": vol}, "volumeMounts[0].path"),
                          ({"/ok": vol, "/etc/hostname": vol}, "volumeMounts[1].path")):
        with pytest.raises(SandboxException, match=field.replace("[", r"\[").replace("]", r"\]")):
            Sandbox.create(volume_mounts=mounts)
    assert Sandbox.list().next_items() == []
    after = _sandbox_dirs(server)
    assert after <= before   # nothing new (teardowns of earlier tests may still finish meanwhile)
    assert Volume.destroy(vol.volume_id)
    assert_clean(server.data_dir)

def _sandbox_dirs(server: CorralServer) -> set[str]:
    d = server.data_dir / "sandboxes"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def _corral(server: CorralServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args, "--api-url", server.api_url,
                           "--api-key", os.environ["E2B_API_KEY"]], capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_create_list_rm(vol_env: CorralServer) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    made = _corral(vol_env, "volume", "create", name)
    assert made.returncode == 0, made.stderr
    volume_id = made.stdout.strip()
    listed = json.loads(_corral(vol_env, "volume", "list", "--json").stdout)
    assert {"volumeID": volume_id, "name": name} in listed
    again = _corral(vol_env, "volume", "create", name)
    assert again.returncode == 1 and "already exists" in again.stderr
    sbx = Sandbox.create(volume_mounts={"/v": name})
    try:
        busy = _corral(vol_env, "volume", "rm", name)
        assert busy.returncode == 1 and "409" in busy.stderr and sbx.sandbox_id in busy.stderr
    finally:
        sbx.kill()
    assert _corral(vol_env, "volume", "rm", name).stdout.strip() == f"removed {volume_id}"
    gone = _corral(vol_env, "volume", "rm", volume_id)
    assert gone.returncode == 1 and "404" in gone.stderr
    assert name not in _corral(vol_env, "volume", "list").stdout
    assert_clean(vol_env.data_dir, [sbx.sandbox_id])
