"""The `base` template: Debian bookworm by debootstrap from the machine's own mirror, set up as a dev sandbox."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from corral.config import Settings
from corral.errors import RuntimeFailure
from corral.templates.building import build_template
from corral.templates.chroot import chroot_run, in_private_mount_ns, mounts_under, run_logged
from corral.templates.mirror import find_mirror, find_optional_mirror
from corral.templates.npm import fetch_npm_tarball, install_npm
from corral.templates.store import BuildInfo, TemplateInfo, TemplateStore

BASE_ID = "base"
SUITE = "bookworm"
USER, UID, HOME = "user", 1000, "/home/user"
# Matches the runtime's default hostname (SandboxSpec.hostname); libnss-myhostname resolves any other one, so sudo
# never waits on DNS (a sandbox without network would hang there for seconds).
HOSTNAME = "corral"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")

# What an agent's dev sandbox commonly reaches for; each is small (no compilers: build-essential alone is ~200 MB).
PACKAGES = [
    "bash", "coreutils", "procps", "psmisc", "less", "sudo", "libnss-myhostname", "ca-certificates", "tzdata",
    "python3", "python3-pip", "python3-venv", "python-is-python3",
    "nodejs",  # npm: from the npm registry (npm.py), or Debian's `npm` when that is not reachable
    "git", "openssh-client", "curl", "wget", "iproute2", "iputils-ping", "netcat-openbsd",
    "unzip", "zip", "xz-utils", "bzip2", "file", "jq", "tree", "vim-tiny", "nano",
]  # fmt: skip

# Every process in a sandbox trusts the system bundle, which holds the host's extra CAs (the registry proxy's):
# Python requests/certifi and Node.js carry their own CA lists otherwise.
ENVS = {
    "LANG": "C.UTF-8",
    "SSL_CERT_FILE": CA_BUNDLE,
    "REQUESTS_CA_BUNDLE": CA_BUNDLE,
    "NODE_EXTRA_CA_CERTS": CA_BUNDLE,
    "PIP_CERT": CA_BUNDLE,
}

# Docs, man pages and translations are ~15 % of the image and no agent reads them.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


def build_base_template(settings: Settings, *, force: bool = False, log: Callable[[str], None] = print) -> TemplateInfo:
    """Build (or reuse) the `base` template under settings.templates_dir/base; slow (~1-2 min) the first time."""
    return build_template(settings, TemplateStore(settings), BASE_ID,
                          lambda staging: _build_into(settings, staging, log), force=force, log=log)


def _build_into(settings: Settings, staging: Path, log: Callable[[str], None]) -> TemplateInfo:
    t0 = time.monotonic()
    mirror = find_mirror(SUITE)
    security = find_optional_mirror(f"{SUITE}-security")
    cache = settings.data_dir / "cache"
    deb_cache = cache / "apt-archives"  # apt-get's .debs, bind-mounted over the rootfs's archives dir
    boot_cache = cache / "debootstrap"  # debootstrap's own .deb cache
    for d in (deb_cache / "partial", boot_cache):
        d.mkdir(parents=True, exist_ok=True)
    rootfs = staging / "rootfs"
    staging.mkdir(parents=True)

    log(f"[1/5] debootstrap --variant=minbase {SUITE} from {mirror}")
    run_logged(
        in_private_mount_ns(
            ["debootstrap", "--variant=minbase", f"--cache-dir={boot_cache}", "--include=ca-certificates",
             SUITE, str(rootfs), mirror]
        ),
        log,
        what="debootstrap",
    )  # fmt: skip
    log(f"      done in {time.monotonic() - t0:.0f}s")

    log("[2/5] apt sources, CA certificates, dpkg excludes")
    cas = _configure_before_install(rootfs, mirror, security)

    t1 = time.monotonic()
    npm_tgz = fetch_npm_tarball(cache / "npm", log)
    packages = list(PACKAGES) if npm_tgz else [*PACKAGES, "npm"]
    log(f"[3/5] apt-get install {len(packages)} packages")
    chroot_run(
        rootfs,
        "apt-get -q update\n"
        f"apt-get -q install -y --no-install-recommends {' '.join(packages)}\n"
        "update-ca-certificates --fresh\n",
        log,
        apt_cache=deb_cache,
        what="apt-get install",
    )
    if npm_tgz:
        packages.append(f"npm@{install_npm(rootfs, npm_tgz)} (npm registry)")
        chroot_run(rootfs, "npm --version", log, what="npm --version")
    log(f"      done in {time.monotonic() - t1:.0f}s")

    log(f"[4/5] user {USER!r} (uid {UID}, passwordless sudo), hostname, pip/npm config")
    chroot_run(
        rootfs,
        f"useradd --create-home --home-dir {HOME} --uid {UID} --user-group --shell /bin/bash {USER}\n"
        f"usermod -aG sudo {USER}\n"
        f"echo '{USER} ALL=(ALL:ALL) NOPASSWD:ALL' > /etc/sudoers.d/{USER}\n"
        f"chmod 0440 /etc/sudoers.d/{USER}\n"
        "visudo -c\n",
        log,
        what="user setup",
    )
    _configure_after_install(rootfs)

    log("[5/5] cleaning apt caches, lists, logs and docs")
    _clean(rootfs)
    leftovers = mounts_under(staging)
    if leftovers:  # chroot_run already checks; this guards debootstrap's own mounts too
        raise RuntimeFailure(f"mounts leaked under {staging}: {leftovers}")
    size = _du_bytes(rootfs)
    took = time.monotonic() - t0
    log(f"      rootfs {size / 1e6:.0f} MB, built in {took:.0f}s")
    return TemplateInfo(
        id=BASE_ID,
        aliases=[BASE_ID],
        rootfs=rootfs,
        envs=dict(ENVS),
        workdir=HOME,
        user=USER,
        build=BuildInfo(
            builder="debootstrap --variant=minbase",
            suite=SUITE,
            mirror=mirror,
            packages=packages,
            ca_certificates=cas,
            duration_s=round(took, 1),
            size_bytes=size,
        ),
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _stanza(uri: str, suites: str) -> str:
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\nSigned-By: {keyring}\n"


def _configure_before_install(rootfs: Path, mirror: str, security: str | None, suite: str = SUITE) -> list[str]:
    """Sources, DNS for the build, no service starts, doc excludes, and the host's extra CAs; returns CA names."""
    etc = rootfs / "etc"
    # The sandbox's apt uses the same mirror the machine does (deb822, like the host's own config).
    stanzas = [_stanza(mirror, f"{suite} {suite}-updates")]
    if security:
        stanzas.append(_stanza(security, f"{suite}-security"))
    (etc / "apt" / "sources.list").unlink(missing_ok=True)  # debootstrap's one-liner; the .sources replaces it
    _write(etc / "apt" / "sources.list.d" / "debian.sources", "\n".join(stanzas))
    _write(etc / "dpkg" / "dpkg.cfg.d" / "01-corral-nodoc", DPKG_EXCLUDES)
    _write(rootfs / "usr" / "sbin" / "policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)  # no daemons start in a chroot
    shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")
    cas: list[str] = []
    dest = rootfs / "usr/local/share/ca-certificates"  # where update-ca-certificates looks, wherever the host's are
    if HOST_EXTRA_CAS.is_dir():
        for crt in sorted(HOST_EXTRA_CAS.rglob("*.crt")):
            rel = crt.relative_to(HOST_EXTRA_CAS)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(crt, dest / rel)
            cas.append(str(rel))
    return cas


def _configure_after_install(rootfs: Path) -> None:
    etc = rootfs / "etc"
    _write(etc / "hostname", f"{HOSTNAME}\n")
    _write(etc / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    # The host's resolver; the runtime may bind its own over it when a sandbox gets a different network.
    shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")
    # pip: trust the system bundle (the proxy's CA is in it), and allow `pip install` outside a venv (PEP 668's
    # guard makes sense on a host, not in a throw-away sandbox where agents expect plain pip to work).
    _write(etc / "pip.conf", f"[global]\ncert = {CA_BUNDLE}\nbreak-system-packages = true\n")
    _write(etc / "npmrc", f"cafile={CA_BUNDLE}\n")
    env_lines = "".join(f"export {k}={v}\n" for k, v in ENVS.items())
    _write(etc / "profile.d" / "corral.sh", "# Written by Corral's base template build.\n" + env_lines)
    _slim_login_files(rootfs)
    (rootfs / "usr" / "sbin" / "policy-rc.d").unlink(missing_ok=True)


# Every SDK command is `bash -l -c CMD`, so the login files run once per command; under gVisor each fork+exec in
# them costs ~10 ms (measured: bash -l -c true 42 ms -> 30 ms without /etc/profile's `id -u`; bash -c true 14 ms).
LOGIN_EDITS = {
    "etc/profile": ('"$(id -u)"', '"${EUID:-$(id -u)}"'),  # bash knows its uid; sh still asks id
    "root/.profile": ("mesg n 2> /dev/null || true", "if [ -t 0 ]; then mesg n 2> /dev/null || true; fi"),  # tty only
}


def _slim_login_files(rootfs: Path) -> None:
    """Take the process spawns out of Debian's login files (same results, no fork+exec on bash's path)."""
    for rel, (old, new) in LOGIN_EDITS.items():
        path = rootfs / rel
        if path.is_file():
            path.write_text(path.read_text().replace(old, new))


def _clean(rootfs: Path) -> None:
    """What an image does not need: package lists (~40 MB), caches, logs, docs installed before the excludes."""
    globs = [
        "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/debconf/*-old",
        "var/log/*.log", "var/log/apt/*", "tmp/*", "var/tmp/*", "root/.cache", "root/.npm", "var/lib/dpkg/*-old",
        "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*",
    ]  # fmt: skip
    for pattern in globs:
        for p in rootfs.glob(pattern):
            if p.name in ("partial", "lock"):
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for d in (rootfs / "usr/share/doc").glob("*"):  # keep only the licences
        for f in d.iterdir() if d.is_dir() and not d.is_symlink() else []:
            if f.name != "copyright":
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    for d in (rootfs / "usr/share/locale").glob("*"):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)


def _du_bytes(path: Path) -> int:
    """Disk usage (allocated blocks, hard links once), like `du -s`."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


