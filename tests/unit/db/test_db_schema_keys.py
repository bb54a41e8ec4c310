"""Migrations build the schema on an empty SQLite file (idempotently); keys are stored hashed and revocable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from corral.config import Settings
from corral.db import ApiKey, open_database
from corral.errors import ConflictError, NotFoundError
from corral.ids import hash_secret
from corral.server.keys import create_key, list_keys, revoke_key, team_for_key


def test_migrations_create_schema_on_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "corral.db"
    db = open_database(f"sqlite:///{path}")
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600  # it holds access tokens
    tables = set(inspect(db.engine).get_table_names())
    assert {"teams", "api_keys", "sandboxes", "alembic_version"} <= tables
    columns = {c["name"] for c in inspect(db.engine).get_columns("sandboxes")}
    assert {"id", "team_id", "state", "metadata", "end_at", "envd_access_token", "runtime"} <= columns
    db.close()
    # A second open (server restart) is a no-op, and the version is recorded.
    open_database(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        # The newest migration (whichever branches added theirs) is the recorded version.
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        from corral.db.engine import MIGRATIONS_DIR
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert conn.execute("select version_num from alembic_version").fetchall() == [(head,)]


def test_models_match_migrations(tmp_path: Path) -> None:
    # Autogenerate against the migrated schema must find nothing to do: the models and 0001 agree.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from corral.db import Base
    db = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.close()


def test_key_lifecycle(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = create_key(settings, "alice")
    assert key.startswith("e2b_") and int(key[4:], 16) >= 0
    other = create_key(settings, "mallory", team="other")
    db = open_database(settings.db_url)
    with db.session() as s:
        stored = s.scalars(select(ApiKey)).all()
    assert {k.key_hash for k in stored} == {hash_secret(key), hash_secret(other)}
    # The plaintext is nowhere in the database file.
    assert key.encode() not in (tmp_path / "data" / "corral.db").read_bytes()
    team_a, team_b = team_for_key(db, key), team_for_key(db, other)
    assert team_a and team_b and team_a != team_b
    assert team_for_key(db, "e2b_" + "0" * 40) is None

    rows = list_keys(settings)
    assert [(r["name"], r["team"], r["revoked_at"]) for r in rows] == [("alice", "default", None),
                                                                      ("mallory", "other", None)]
    assert all(key not in str(r) for r in rows)

    with pytest.raises(ConflictError):
        create_key(settings, "alice")
    revoked = revoke_key(settings, "alice")
    assert revoked["revoked_at"] and team_for_key(db, key) is None
    assert team_for_key(db, other) == team_b
    with pytest.raises(NotFoundError):
        revoke_key(settings, "alice")
    # The name is free again, and keys can be revoked by id too.
    again = create_key(settings, "alice")
    assert team_for_key(db, again) == team_a
    revoke_key(settings, next(r for r in list_keys(settings) if r["name"] == "mallory")["id"])
    assert team_for_key(db, other) is None
    db.close()
