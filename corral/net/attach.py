"""The runtime's two network hooks: give a sandbox being created its netns (spec + guest files), and take it away."""

from __future__ import annotations

import dataclasses
import os

from corral.config import Settings
from corral.net import netns
from corral.runtime.base import SandboxSpec
from corral.runtime.layout import SandboxLayout


async def attach(settings: Settings, lay: SandboxLayout, spec: SandboxSpec) -> tuple[SandboxSpec, str | None]:
    """(the spec with the proxy env, the netns path for the OCI spec); (spec, None) when networking is off."""
    if not settings.net_enabled:
        return spec, None
    info = await netns.setup(settings, lay.dir, spec.sandbox_id)
    # The rootfs is this sandbox's fresh overlay (no user code ran yet): a template's symlink is replaced, not followed.
    resolv = lay.rootfs / "etc" / "resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    if resolv.parent.is_dir():
        fd = os.open(resolv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(netns.resolv_conf(info))
    env = {**netns.proxy_env(info, settings), **spec.env}
    return dataclasses.replace(spec, env=env), info.netns_path


async def detach(settings: Settings, lay: SandboxLayout) -> None:
    """After the sandbox's processes are dead: nft chain and sets, netns, veth. Idempotent, also after a crash."""
    if netns.read_info(lay.dir) is None and not (netns.NETNS_DIR / netns.netns_name(lay.sandbox_id)).exists():
        return
    await netns.teardown(settings, lay.dir, lay.sandbox_id)
