"""The built `base` template: tools run, the user account, sudo, CAs, apt config; checked in a throw-away overlay."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.templates.base import CA_BUNDLE, HOST_EXTRA_CAS
from corral.templates.chroot import chroot_run, mounts_under
from corral.templates.mirror import find_mirror
from corral.templates.store import TemplateInfo, TemplateStore

TEMPLATES = Path(os.environ.get("CORRAL_BASE_TEMPLATES", "/var/lib/corral/templates"))
ROOTFS = TEMPLATES / "base" / "rootfs"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mount)"),
    pytest.mark.skipif(
        not (TEMPLATES / "base" / "template.json").is_file(),
        reason=f"base template not built at {TEMPLATES}/base (run: corral template build base)",
    ),
]

# Runs in a private mount namespace: an overlay (so nothing is written into the template) plus /proc and /dev.
# Every mount dies with the namespace; the tests below still check nothing leaked.
_OVERLAY_CHROOT = r"""
set -e
L=$1; W=$2; U=$3; H=$4; shift 4
mkdir -p "$W/upper" "$W/work" "$W/merged"
mount -t overlay overlay -o "lowerdir=$L,upperdir=$W/upper,workdir=$W/work" "$W/merged"
mount -t proc proc "$W/merged/proc"
mount --rbind /dev "$W/merged/dev"
hostname "${H:-$(cat "$L/etc/hostname")}"  # as the runtime does (own UTS namespace); sudo must resolve it
exec chroot --userspec="$U" "$W/merged" /usr/bin/env -i HOME="$([ "$U" = 0:0 ] && echo /root || echo /home/user)" \
  TERM=dumb /bin/bash -lc "$1"
"""


@pytest.fixture(scope="module")
def info() -> TemplateInfo:
    return TemplateStore(Settings(data_dir=TEMPLATES.parent)).get("base")


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="corral-tpl-test-"))
    try:
        yield work
    finally:
        assert mounts_under(work) == [], "a test mount leaked"
        shutil.rmtree(work)


def run_in(work: Path, script: str, user: str = "0:0", hostname: str = "") -> subprocess.CompletedProcess[str]:
    cmd = ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", _OVERLAY_CHROOT, "x"]
    return subprocess.run(
        [*cmd, str(ROOTFS), str(work), user, hostname, script], capture_output=True, text=True, timeout=120, check=False
    )


def test_store_finds_base(info: TemplateInfo) -> None:
    assert info.id == "base" and "base" in info.aliases
    assert info.rootfs == ROOTFS and info.user == "user" and info.workdir == "/home/user"
    assert info.envs["NODE_EXTRA_CA_CERTS"] == CA_BUNDLE
    assert info.build is not None and info.build.size_bytes and info.build.size_bytes > 50_000_000


@pytest.mark.parametrize(
    ("cmd", "expect"),
    [
        ("bash --version", r"GNU bash"),
        ("python3 --version", r"Python 3\.11"),
        ("python --version", r"Python 3\.11"),
        ("node --version", r"v\d+\."),
        ("npm --version", r"\d+\.\d+"),
        ("git --version", r"git version"),
        ("curl --version", r"curl \d"),
        ("python3 -m venv /tmp/v && /tmp/v/bin/pip --version", r"pip \d"),
        ("pip3 --version", r"pip \d"),
        ("ps -o pid= -p $$ && less --version && sudo --version", r"(?i)sudo version"),
    ],
)
def test_tools_run(sandbox_dir: Path, cmd: str, expect: str) -> None:
    r = run_in(sandbox_dir, cmd, user="1000:1000")
    assert r.returncode == 0, r.stderr
    assert re.search(expect, r.stdout + r.stderr), r.stdout + r.stderr


def test_user_account_and_sudo(sandbox_dir: Path) -> None:
    r = run_in(sandbox_dir, "id -u user; getent passwd user; getent passwd root | cut -d: -f6")
    assert r.returncode == 0, r.stderr
    uid, pw, root_home = r.stdout.split()
    assert uid == "1000"
    assert pw.split(":")[5:] == ["/home/user", "/bin/bash"]
    assert root_home == "/root"
    r = run_in(sandbox_dir, "whoami; cd && pwd; sudo -n id -u", user="1000:1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["user", "/home/user", "0"]
    assert "unable to resolve host" not in r.stderr  # /etc/hosts names the image's hostname


def test_any_hostname_resolves_without_dns(sandbox_dir: Path) -> None:
    """The runtime may name a sandbox anything; sudo must not warn or wait on DNS (libnss-myhostname)."""
    r = run_in(sandbox_dir, "getent hosts sbx0123456789abcdefgh && sudo -n true", "1000:1000", "sbx0123456789abcdefgh")
    assert r.returncode == 0, r.stderr
    assert "unable to resolve host" not in r.stderr


def test_ca_bundle_has_host_extra_cas() -> None:
    host_cas = sorted(HOST_EXTRA_CAS.rglob("*.crt")) if HOST_EXTRA_CAS.is_dir() else []
    if not host_cas:
        pytest.skip(f"the host has no extra CAs in {HOST_EXTRA_CAS}")

    def bodies(pem: str) -> set[str]:
        return {"".join(b.split()) for b in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END", pem, re.DOTALL)}

    bundle = bodies((ROOTFS / CA_BUNDLE.lstrip("/")).read_text())
    assert len(bundle) > 50  # the Mozilla set is there too
    for crt in host_cas:
        assert bodies(crt.read_text()) <= bundle, f"{crt} missing from the rootfs CA bundle"


def test_trust_config_for_pip_node_python(sandbox_dir: Path) -> None:
    script = (
        "pip3 config list; cat /etc/npmrc; echo NODE=$NODE_EXTRA_CA_CERTS; "
        "python3 -c 'import ssl; print(\"CAFILE=\" + ssl.get_default_verify_paths().openssl_cafile)'"
    )
    r = run_in(sandbox_dir, script, user="1000:1000")
    assert r.returncode == 0, r.stderr
    assert f"global.cert='{CA_BUNDLE}'" in r.stdout
    assert f"cafile={CA_BUNDLE}" in r.stdout and f"NODE={CA_BUNDLE}" in r.stdout
    assert "CAFILE=/usr/lib/ssl/cert.pem" in r.stdout and (ROOTFS / "usr/lib/ssl/cert.pem").exists()


def test_system_files_sane() -> None:
    assert (ROOTFS / "etc/hostname").read_text().strip()
    hosts = (ROOTFS / "etc/hosts").read_text()
    assert re.search(r"^127\.0\.0\.1\s+localhost", hosts, re.MULTILINE)
    assert "nameserver" in (ROOTFS / "etc/resolv.conf").read_text()
    sources = (ROOTFS / "etc/apt/sources.list.d/debian.sources").read_text()
    assert f"URIs: {find_mirror('bookworm')}\n" in sources  # the machine's own mirror
    lists = [p.name for p in (ROOTFS / "var/lib/apt/lists").iterdir() if p.name not in ("lock", "partial")]
    assert lists == [], "apt lists were not cleaned"
    assert not list((ROOTFS / "var/cache/apt/archives").glob("*.deb")), "apt cache was not cleaned"
    assert not (ROOTFS / "usr/sbin/policy-rc.d").exists()
    assert (ROOTFS / "etc/sudoers.d/user").stat().st_mode & 0o777 == 0o440


def test_chroot_run_leaves_no_mounts_even_on_failure() -> None:
    """The build helper: /proc and /dev exist for the step, and are gone afterwards, also when the step fails."""
    logs: list[str] = []
    chroot_run(ROOTFS, "test -r /proc/self/status && test -c /dev/null && echo inside-ok", logs.append)
    assert any("inside-ok" in line for line in logs)
    assert mounts_under(ROOTFS) == []
    with pytest.raises(RuntimeFailure, match=r"exit 3"):
        chroot_run(ROOTFS, "echo failing; exit 3", logs.append)
    assert mounts_under(ROOTFS) == []


def test_chroot_run_stops_the_step_when_interrupted() -> None:
    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        chroot_run(ROOTFS, "echo started; exec sleep 30", interrupt)
    assert time.monotonic() - t0 < 10  # killed, not waited for
    assert mounts_under(ROOTFS) == []
