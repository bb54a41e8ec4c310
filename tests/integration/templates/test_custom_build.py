"""Custom templates through the stock e2b SDK: every step kind, the layer cache, failures, bad input, cleanup."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from e2b import Sandbox, Template
from e2b.exceptions import BuildException

from tests.integration.corral_server import CorralServer, leftovers
from tests.integration.templates.conftest import require_registries

NAME = "it-every-step"


def make_context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "app" / "main.py").write_text("print('hello from app')\n")
    (ctx / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (ctx / "app" / "run.sh").chmod(0o755)
    (ctx / "app" / "sub" / "data.txt").write_text("data\n")
    (ctx / "app" / "debug.log").write_text("ignored by file_ignore_patterns\n")
    (ctx / "app" / "secret.txt").write_text("ignored by .dockerignore\n")
    (ctx / "app" / "link").symlink_to("main.py")
    (ctx / "single.txt").write_text("single\n")
    (ctx / ".dockerignore").write_text("app/secret.txt\n")
    return ctx


def every_step(ctx: Path, marker: str = "v1", git_url: str | None = None) -> Template:
    t = (Template(file_context_path=str(ctx), file_ignore_patterns=["**/*.log"])
            .from_debian_image("bookworm")
            .apt_install(["hello"])
            .pip_install(["pyjokes"])
            .npm_install(["is-number"])
            .copy("app/", "/app/")
            .copy("single.txt", "/opt/single.txt", mode=0o600, user="root")
            .make_dir("/data/x", user="root")
            .make_symlink("/app/main.py", "/usr/local/bin/mainlink", user="root")
            .rename("/opt/single.txt", "/opt/renamed.txt", user="root")
            .remove("/etc/motd", force=True, user="root")
            .set_envs({"MODE": "x"})
            .set_workdir("/app")
            .run_cmd(f"echo $MODE-{marker} > /app/built.txt", user="root")
            .set_user("user"))
    if git_url:
        t = t.git_clone(git_url, "/tmp/clone")
    return t.set_start_cmd("python3 -m http.server 8000", "curl -sf localhost:8000 >/dev/null")


def build(t: Template, name: str, logs: list[str]) -> float:
    start = time.monotonic()
    Template.build(t, name, on_build_logs=lambda e: logs.append(str(e.message)))
    return time.monotonic() - start


def server_build_seconds(logs: list[str]) -> float:
    done = [m for m in logs if m.startswith("build done in")]
    assert done, logs
    return float(re.match(r"build done in ([\d.]+)s", done[-1]).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tpl_server: CorralServer, tpl_key: str) -> dict[str, object]:
    require_registries()
    ctx = make_context(tmp_path_factory.mktemp("ctx"))
    mp = pytest.MonkeyPatch()
    mp.setenv("E2B_API_URL", tpl_server.api_url)
    mp.setenv("E2B_API_KEY", tpl_key)
    logs: list[str] = []
    try:
        cold = build(every_step(ctx), NAME, logs)
    finally:
        mp.undo()
    return {"ctx": ctx, "cold_s": cold, "logs": logs}


def test_every_step_kind_lands_in_the_sandbox(sdk_env: CorralServer, built: dict[str, object]) -> None:
    print(f"cold build: {built['cold_s']:.1f}s")
    sbx = Sandbox.create(NAME)
    try:
        def sh(cmd: str, user: str = "user") -> str:
            return sbx.commands.run(cmd, user=user).stdout.strip()  # type: ignore[arg-type]

        assert sh("hello") == "Hello, world!"                                   # apt_install
        assert sh("python3 -c 'import pyjokes; print(pyjokes.__name__)'") == "pyjokes"   # pip_install
        assert sh("test -f /home/user/node_modules/is-number/package.json && echo ok") == "ok"  # npm_install
        assert sh("cat /app/main.py") == "print('hello from app')"           # copy folder
        assert sh("cat /app/sub/data.txt") == "data"
        assert sh("stat -c %a /app/run.sh") == "755"                            # modes kept
        assert sh("readlink /app/link") == "main.py"                            # symlinks kept
        assert sh("ls /app/debug.log /app/secret.txt 2>&1 | grep -c 'No such file'") == "2"  # ignore patterns
        assert sh("stat -c %U /app/main.py") == "user"                          # copied as the build user
        assert sh("stat -c '%a %U' /opt/renamed.txt", user="root") == "600 root"   # copy mode+user, rename
        assert sh("test -e /opt/single.txt || echo gone") == "gone"
        assert sh("test -d /data/x && echo dir") == "dir"                       # make_dir
        assert sh("readlink /usr/local/bin/mainlink") == "/app/main.py"         # make_symlink
        assert sh("test -e /etc/motd || echo removed") == "removed"             # remove (a whiteout in a layer)
        assert sh("cat /app/built.txt") == "x-v1"                               # set_envs at build time
        assert sh("echo $MODE") == "x"                                          # ... and in the sandbox
        assert sh("pwd") == "/app"                                              # set_workdir
        assert sh("whoami") == "user"                                           # set_user
        assert sh("curl -s localhost:8000/ | grep -c main.py") == "1"         # start_cmd ran, ready_cmd passed
    finally:
        sbx.kill()


def test_unchanged_rebuild_reuses_every_layer(sdk_env: CorralServer, built: dict[str, object]) -> None:
    logs: list[str] = []
    wall = build(every_step(built["ctx"]), NAME, logs)  # type: ignore[arg-type]
    steps = [m for m in logs if re.match(r"(CACHED )?\[\d+/\d+\] (RUN|COPY|WORKDIR)", m)]
    assert steps and all(m.startswith("CACHED") for m in steps), steps
    assert any("Skipping upload" in m for m in logs)
    server_s = server_build_seconds(logs)
    print(f"cached rebuild: server {server_s:.3f}s, SDK wall {wall:.2f}s, {len(steps)} layers reused")
    assert server_s < 1.0


def test_changing_step_n_reuses_the_steps_before_it(sdk_env: CorralServer, built: dict[str, object]) -> None:
    logs: list[str] = []
    build(every_step(built["ctx"], marker="v2"), NAME, logs)  # type: ignore[arg-type]
    steps = [m for m in logs if re.match(r"(CACHED )?\[\d+/\d+\] (RUN|COPY|WORKDIR)", m)]
    assert all(m.startswith("CACHED") for m in steps[:-1]) and not steps[-1].startswith("CACHED"), steps
    print(f"last step changed: server {server_build_seconds(logs):.2f}s, {len(steps) - 1} layers reused")
    sbx = Sandbox.create(NAME)
    try:
        assert sbx.commands.run("cat /app/built.txt").stdout.strip() == "x-v2"
    finally:
        sbx.kill()


def test_tags_freeze_a_version(sdk_env: CorralServer, built: dict[str, object]) -> None:
    assert Template.assign_tags(NAME, "stable").tags == ["stable"]            # stable = the current build (v2)
    build(every_step(built["ctx"], marker="v3"), f"{NAME}:v3", [])            # type: ignore[arg-type]
    assert {"default", "stable", "v3"} <= {t.tag for t in Template.get_tags(NAME)}
    for ref, want in ((f"{NAME}:stable", "x-v2"), (f"{NAME}:v3", "x-v3"), (NAME, "x-v3")):
        sbx = Sandbox.create(ref)
        try:
            assert sbx.commands.run("cat /app/built.txt").stdout.strip() == want, ref
        finally:
            sbx.kill()
    Template.remove_tags(NAME, "stable")
    assert "stable" not in {t.tag for t in Template.get_tags(NAME)}
    with pytest.raises(Exception, match="stable"):
        Sandbox.create(f"{NAME}:stable")


def test_failing_step_keeps_the_previous_version(sdk_env: CorralServer, built: dict[str, object]) -> None:
    t = every_step(built["ctx"], marker="v2", git_url="http://127.0.0.1:9/nothing.git")  # type: ignore[arg-type]
    with pytest.raises(BuildException) as err:
        Template.build(t, NAME)
    assert "exit code 128" in str(err.value) and "git clone" in str(err.value)
    sbx = Sandbox.create(NAME)
    try:
        assert sbx.commands.run("cat /app/built.txt").stdout.strip() == "x-v3"
    finally:
        sbx.kill()


def test_step_past_its_time_limit_is_stopped(sdk_env: CorralServer) -> None:
    t = Template().from_debian_image("bookworm").run_cmd("sleep 3600")
    start = time.monotonic()
    with pytest.raises(BuildException, match="did not finish within"):
        Template.build(t, "it-too-slow")
    assert time.monotonic() - start < 120
    assert not Template.exists("it-too-slow")


def test_unknown_base_image_fails_fast(sdk_env: CorralServer) -> None:
    start = time.monotonic()
    with pytest.raises(BuildException, match="corral image import"):
        Template.build(Template().from_ubuntu_image("22.04").run_cmd("true"), "it-ubuntu")
    assert time.monotonic() - start < 10


def test_bad_requests_answer_clear_errors(sdk_env: CorralServer, tpl_key: str) -> None:
    api = httpx.Client(base_url=sdk_env.api_url, headers={"X-API-KEY": tpl_key}, timeout=30)
    r = api.post("/v3/templates", json={"name": "it-bad-input"})
    assert r.status_code == 202
    tid, bid = r.json()["templateID"], r.json()["buildID"]
    r = api.post(f"/v2/templates/{tid}/builds/{bid}", json={"fromImage": "debian:bookworm",
                                                            "steps": [{"type": "VOLUME", "args": ["/x"]}]})
    assert r.status_code == 400 and "VOLUME" in r.json()["message"]
    assert api.post("/v3/templates", json={"name": "x", "bogus": 1}).status_code == 400
    assert api.post("/v3/templates", json={"name": "base"}).status_code == 409
    assert httpx.get(f"{sdk_env.api_url}/templates", headers={"X-API-KEY": "e2b_" + "0" * 40}).status_code == 401
    assert api.get(f"/templates/{tid}/builds/nope/status").status_code == 404
    assert api.put("/_corral/template-files/forged.token.1.abc", content=b"x").status_code == 401


def test_list_get_exists_visibility_delete(sdk_env: CorralServer, built: dict[str, object]) -> None:
    api = httpx.Client(base_url=sdk_env.api_url, headers={"X-API-KEY": sdk_env.cli("keys", "create", "--name",
                       "other", "--team", "other-team")}, timeout=30)
    assert Template.exists(NAME)
    assert api.get(f"/templates/aliases/{NAME}").status_code == 403      # exists, but another team's
    assert api.post("/v2/sandboxes", json={"templateID": NAME}).status_code == 404   # private: not theirs to start
    assert NAME not in str(api.get("/templates").json())
    mine = httpx.Client(base_url=sdk_env.api_url, headers={"X-API-KEY": __import__("os").environ["E2B_API_KEY"]})
    listed = {t["names"][0]: t for t in mine.get("/templates").json()}
    tid = listed[NAME]["templateID"]
    assert mine.get(f"/templates/{tid}").json()["builds"]
    assert api.get(f"/templates/{tid}").status_code == 404
    assert mine.patch(f"/templates/{tid}", json={"public": True}).status_code == 200
    assert NAME in str(api.get("/templates").json())                      # public: visible to all
    assert api.delete(f"/templates/{tid}").status_code == 404              # ... but only its team deletes it
    Template.build(Template().from_template(NAME).run_cmd("echo child > /child.txt", user="root"),
                   "it-child")
    assert mine.delete(f"/templates/{tid}").status_code == 204
    assert not Template.exists(NAME)
    sbx = Sandbox.create("it-child")       # a child keeps working: its stack names the layers, not the parent
    try:
        assert sbx.commands.run("cat /child.txt && cat /app/built.txt").stdout.split() == ["child", "x-v3"]
    finally:
        sbx.kill()


def test_nothing_left_behind(sdk_env: CorralServer) -> None:
    deadline = time.monotonic() + 15     # kill destroys in the background
    while leftovers(sdk_env.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(sdk_env.data_dir) == []
    user_templates = sdk_env.data_dir / "user-templates"
    assert not [p for p in user_templates.iterdir() if p.name.startswith(".build-")]
    assert not list((sdk_env.data_dir / "layers").glob(".stage-*"))
