"""TemplateStore over a temp data dir: register, get by id/alias, cache invalidation, install, delete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import ConflictError, InvalidRequestError, NotFoundError
from corral.templates.store import TemplateInfo, TemplateStore, read_template_json


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def make_rootfs(settings: Settings, tid: str) -> Path:
    rootfs = settings.templates_dir / tid / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    return rootfs


def test_register_get_by_id_and_alias(settings: Settings) -> None:
    store = TemplateStore(settings)
    make_rootfs(settings, "base")
    info = store.register(TemplateInfo(id="base", aliases=["base", "debian"], envs={"LANG": "C.UTF-8"}))
    assert info.rootfs == settings.templates_dir / "base" / "rootfs"
    assert store.get("base") == store.get("debian") == info
    assert info.alias == "base" and info.user == "user" and info.workdir == "/home/user"
    assert store.exists("debian") and not store.exists("nope")
    assert [t.id for t in store.list()] == ["base"]
    assert info.summary()["aliases"] == "base,debian" and info.summary()["size"] == "?"
    # On disk: no rootfs key (derived from the location), and nothing else but the model's fields.
    data = json.loads((settings.templates_dir / "base" / "template.json").read_text())
    assert "rootfs" not in data and data["id"] == "base" and data["envs"] == {"LANG": "C.UTF-8"}
    assert sorted(os.listdir(settings.templates_dir / "base")) == ["rootfs", "template.json"]  # no temp files


def test_not_found_says_how_to_build(settings: Settings) -> None:
    store = TemplateStore(settings)
    with pytest.raises(NotFoundError, match=r"template 'base' not found.*corral template build base"):
        store.get("base")
    with pytest.raises(NotFoundError, match=r"'mine' not found.*known: none"):
        store.get("mine")


def test_cache_sees_other_processes(settings: Settings) -> None:
    """A second store (another process, e.g. the CLI) registers; the first one's cache notices without a restart."""
    server, cli = TemplateStore(settings), TemplateStore(settings)
    make_rootfs(settings, "base")
    server.register(TemplateInfo(id="base", aliases=["base"]))
    assert server.get("base").envs == {}
    cli.register(TemplateInfo(id="base", aliases=["base"], envs={"A": "1"}))
    assert server.get("base").envs == {"A": "1"}  # template.json replaced -> reloaded
    make_rootfs(settings, "py")
    cli.register(TemplateInfo(id="py", aliases=["python"]))
    assert server.get("python").id == "py"  # new dir -> rescanned
    cli.delete("py")
    assert not server.exists("python")


def test_cache_hits_do_not_reparse(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TemplateStore(settings)
    make_rootfs(settings, "base")
    store.register(TemplateInfo(id="base", aliases=["base"]))
    store.get("base")
    calls: list[Path] = []
    import corral.templates.store as mod

    real = mod.read_template_json

    def counting(d: Path) -> TemplateInfo:
        calls.append(d)
        return real(d)

    monkeypatch.setattr(mod, "read_template_json", counting)
    for _ in range(100):
        store.get("base")
    assert calls == []


def test_validation_and_conflicts(settings: Settings) -> None:
    store = TemplateStore(settings)
    with pytest.raises(InvalidRequestError, match="rootfs"):
        store.register(TemplateInfo(id="base"))  # no rootfs yet
    for bad in ["../x", "Base", "", "a/b", ".hidden"]:
        with pytest.raises(InvalidRequestError):
            store.register(TemplateInfo(id=bad))
    make_rootfs(settings, "base")
    make_rootfs(settings, "other")
    store.register(TemplateInfo(id="base", aliases=["base", "shared"]))
    with pytest.raises(ConflictError, match="already belongs to template 'base'"):
        store.register(TemplateInfo(id="other", aliases=["shared"]))
    with pytest.raises(ConflictError):
        store.register(TemplateInfo(id="other", aliases=["base"]))  # an alias may not shadow another id


def test_extra_fields_forbidden_and_bad_files_skipped(settings: Settings) -> None:
    store = TemplateStore(settings)
    make_rootfs(settings, "base")
    store.register(TemplateInfo(id="base", aliases=["base"]))
    tdir = make_rootfs(settings, "broken").parent
    (tdir / "template.json").write_text(json.dumps({"id": "broken", "surprise": 1}))
    make_rootfs(settings, "wrongdir").parent.joinpath("template.json").write_text(json.dumps({"id": "elsewhere"}))
    make_rootfs(settings, "halfbuilt")  # no template.json: not a template yet
    assert [t.id for t in store.list()] == ["base"]
    with pytest.raises(ValueError):
        read_template_json(tdir)


@pytest.fixture
def no_host_sandboxes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's mount table is not part of these tests (a sandbox of another test session may be mounted)."""
    import corral.templates.store as mod

    monkeypatch.setattr(mod, "rootfs_in_use", lambda p: False)


def test_install_is_atomic_swap_and_cleans_old(settings: Settings, no_host_sandboxes: None) -> None:
    store = TemplateStore(settings)
    settings.templates_dir.mkdir(parents=True)
    for version in ("v1", "v2"):
        staged = settings.templates_dir / f".base.build-{version}"
        (staged / "rootfs").mkdir(parents=True)
        (staged / "rootfs" / "version").write_text(version)
        info = store.install(staged, TemplateInfo(id="base", aliases=["base"]))
        assert not staged.exists()
        assert (info.rootfs / "version").read_text() == version
        assert store.get("base").rootfs == settings.templates_dir / "base" / "rootfs"
    assert sorted(os.listdir(settings.templates_dir)) == ["base"]  # old version and temp files gone


def test_delete(settings: Settings, no_host_sandboxes: None) -> None:
    store = TemplateStore(settings)
    make_rootfs(settings, "base")
    store.register(TemplateInfo(id="base", aliases=["base"]))
    with pytest.raises(NotFoundError):
        store.delete("nope")
    store.delete("base")
    assert not store.exists("base")
    assert os.listdir(settings.templates_dir) == []


def test_old_version_kept_while_a_sandbox_runs(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a swap, a running overlay still names `<id>/rootfs`: old versions stay until no sandbox of it runs."""
    import corral.templates.store as mod

    store = TemplateStore(settings)
    settings.templates_dir.mkdir(parents=True)
    in_use = {str(settings.templates_dir / "base" / "rootfs")}
    monkeypatch.setattr(mod, "rootfs_in_use", lambda p: str(p) in in_use)
    for version in ("v1", "v2"):
        staged = settings.templates_dir / f".base.build-{version}"
        (staged / "rootfs").mkdir(parents=True)
        (staged / "rootfs" / "version").write_text(version)
        store.install(staged, TemplateInfo(id="base", aliases=["base"]))
    (old,) = settings.templates_dir.glob(".base.old-*")
    assert (old / "rootfs" / "version").read_text() == "v1"
    assert store.get("base").rootfs.joinpath("version").read_text() == "v2"
    assert [t.id for t in store.list()] == ["base"]  # old versions are not templates
    assert store.gc_old_versions("base") == [old]
    in_use.clear()  # the last sandbox went away
    assert store.gc_old_versions("base") == []
    assert not old.exists()


def test_rootfs_in_use_reads_overlay_lowerdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.templates.store as mod

    line = (
        "612 30 0:77 / /var/lib/corral/sandboxes/s1/rootfs rw,relatime shared:300 - overlay overlay "
        "rw,lowerdir=/t/base/rootfs:/t/extra,upperdir=/s1/layer/upper,workdir=/s1/layer/work\n"
    )
    fake = tmp_path / "mountinfo"
    fake.write_text("22 1 8:1 / / rw - ext4 /dev/vda rw\n" + line)
    real_path = mod.Path

    def fake_path(p: str | Path = "") -> Path:
        return fake if str(p) == "/proc/self/mountinfo" else real_path(p)

    monkeypatch.setattr(mod, "Path", fake_path)
    assert mod.rootfs_in_use(real_path("/t/base/rootfs"))
    assert mod.rootfs_in_use(real_path("/t/extra"))
    assert not mod.rootfs_in_use(real_path("/t/base"))
    assert not mod.rootfs_in_use(real_path("/s1/layer/upper"))
    # Through a symlinked templates dir (another data dir pointing at the machine's templates):
    real = tmp_path / "machine" / "templates" / "base" / "rootfs"
    real.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "templates").symlink_to(tmp_path / "machine" / "templates")
    fake.write_text(line.replace("/t/base/rootfs", str(tmp_path / "data" / "templates" / "base" / "rootfs")))
    assert mod.rootfs_in_use(real)
    (tmp_path / "data" / "templates").unlink()  # the symlink is gone, the mount is not: still in use
    assert mod.rootfs_in_use(real)
    assert not mod.rootfs_in_use(tmp_path / "machine" / "templates" / "other" / "rootfs")
