"""Unit tests for custom builds: spec validation, layer keys and gc, lower stacks, COPY scripts, Dockerfile scan."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.cli.template_cmds import check_dockerfile, dockerfile_instructions
from corral.errors import InvalidRequestError
from corral.runtime.layout import lower_dirs
from corral.templates.build_spec import BuildSpec, validate_spec
from corral.templates.copy_step import copy_script, unpack
from corral.templates.layers import LayerStore, layer_key, referenced_layers, write_lowers


def spec(**kw: object) -> BuildSpec:
    return BuildSpec.model_validate({"fromImage": "debian:bookworm", **kw})


def test_validate_names_the_bad_field() -> None:
    validate_spec(spec(steps=[{"type": "RUN", "args": ["true", "root"]}, {"type": "ENV", "args": ["A", "1"]}]))
    with pytest.raises(InvalidRequestError, match=r"steps\[1\].type: unsupported step 'VOLUME'"):
        validate_spec(spec(steps=[{"type": "VOLUME", "args": ["/x"]}]))
    with pytest.raises(InvalidRequestError, match=r"steps\[1\].filesHash"):
        validate_spec(spec(steps=[{"type": "COPY", "args": ["a", "/b"]}]))
    with pytest.raises(InvalidRequestError, match="not octal"):
        validate_spec(spec(steps=[{"type": "COPY", "args": ["a", "/b", "", "9z"], "filesHash": "h"}]))
    with pytest.raises(InvalidRequestError, match="exactly one"):
        validate_spec(BuildSpec.model_validate({"steps": []}))
    with pytest.raises(InvalidRequestError, match="fromImageRegistry"):
        validate_spec(spec(fromImageRegistry={"type": "registry"}))


def test_layer_key_depends_on_parent_and_step_not_on_force() -> None:
    a = spec(steps=[{"type": "RUN", "args": ["x"]}]).steps[0]
    b = spec(steps=[{"type": "RUN", "args": ["x"], "force": True}]).steps[0]
    assert layer_key("p", a.cache_def()) == layer_key("p", b.cache_def())
    assert layer_key("p", a.cache_def()) != layer_key("q", a.cache_def())


def test_gc_keeps_referenced_and_removes_the_rest(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    keys = []
    for name in ("one", "two", "three"):
        staged = store.staging()
        (staged / "root" / name).write_text(name)
        keys.append(store.commit(name * 2, staged, {}).key)
    write_lowers(tmp_path / "tpl" / "t1", [store.root / keys[0] / "root", Path("/base")])
    (tmp_path / "tpl" / "t1" / "owner.json").write_text('{"layers": ["twotwo"]}')
    refs = referenced_layers(tmp_path / "tpl", store.root)
    assert refs == {"oneone", "twotwo"}
    assert store.gc(refs) == ["threethree"]
    assert store.layer_keys() == ["oneone", "twotwo"]


def test_lower_dirs_reads_the_stack(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "rootfs"
    plain.mkdir(parents=True)
    assert lower_dirs(plain) == str(plain)
    (tmp_path / "l1").mkdir()
    write_lowers(tmp_path / "stacked", [tmp_path / "l1", plain])
    assert lower_dirs(tmp_path / "stacked" / "rootfs") == f"{tmp_path / 'l1'}:{plain}"


def test_unpack_refuses_paths_outside(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(InvalidRequestError):
        unpack(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_copy_script_follows_docker_semantics(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "x.py").write_text("")
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.txt").write_text("")
    folder = copy_script(tmp_path, "app/", "/srv/", "user", "", "/")
    assert "cp -a /.corral-build/app/. /srv/" in folder and "chown -hR user /srv/x.py" in folder
    one = copy_script(tmp_path, "a.txt", "/opt/renamed", "root", "0600", "/")
    assert "cp -a /.corral-build/a.txt /opt/renamed" in one and "chmod 0600" in one
    many = copy_script(tmp_path, "*.txt", "rel", "root", "", "/work")
    assert "/work/rel/a.txt" in many and "/work/rel/b.txt" in many
    with pytest.raises(InvalidRequestError, match="no uploaded file"):
        copy_script(tmp_path, "missing", "/x", "root", "", "/")


def test_dockerfile_scan_skips_continuations_and_heredocs(tmp_path: Path) -> None:
    text = "FROM x\n# c\nRUN a \\\n  HEALTHCHECK-not-an-instruction\nRUN <<EOF\nSHELL inside\nEOF\nONBUILD RUN y\n"
    assert [n for _, n in dockerfile_instructions(text)] == ["FROM", "RUN", "RUN", "ONBUILD"]
    (tmp_path / "Dockerfile").write_text(text)
    with pytest.raises(InvalidRequestError, match="Dockerfile:8: unsupported Dockerfile instruction ONBUILD"):
        check_dockerfile(tmp_path / "Dockerfile")


def test_copy_script_never_looks_through_symlinks_out_of_the_context(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "private-name").write_text("")
    (ctx / "esc").symlink_to(tmp_path / "host")
    with pytest.raises(InvalidRequestError, match="no uploaded file"):
        copy_script(ctx, "esc/*", "/x/", "root", "", "/")
    script = copy_script(ctx, "esc", "/x/", "root", "", "/")   # the link itself is copied, not listed
    assert "private-name" not in script and "cp -a /.corral-build/esc /x/esc" in script


def test_gc_waits_for_no_build(tmp_path: Path) -> None:
    from corral.errors import ConflictError

    store = LayerStore(tmp_path / "layers")
    build = store.lock(exclusive=False)
    assert build is not None and store.lock(exclusive=False) is not None   # builds share it
    with pytest.raises(ConflictError, match="build is running"):
        store.gc(set())
    build.close()
    assert store.gc(set()) == []


def test_unpack_refuses_device_files(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("null")
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info)
    (tmp_path / "d.tar").write_bytes(buf.getvalue())
    with pytest.raises(InvalidRequestError, match="device files"):
        unpack(tmp_path / "d.tar", tmp_path / "out")
