"""The local store's limits and set-up checks that need no running service."""
from __future__ import annotations

import subprocess

import pytest

from common import store
from conf import Settings
from stack import postgres, services


@pytest.mark.parametrize("statements, writers, readers", [(10, 4, 16), (1, 1, 1), (50, 2, 8)])
def test_pool_limits_leave_room_for_every_writer_and_the_readers(statements, writers, readers):
    s = Settings(store_statements_per_command=statements, store_writers=writers, store_readers=readers)
    limits = store.pool_limits(s)
    # each of `writers` commands holds `statements` connections plus one for its write
    assert limits.pool_max_conns - limits.writers * (limits.statements + 1) == readers
    assert limits.max_connections > limits.pool_max_conns
    url = postgres.ferretdb_url(s, limits.pool_max_conns)
    assert url.endswith(f"pool_max_conns={limits.pool_max_conns}") and "127.0.0.1" in url
    assert f"max_connections={limits.max_connections}" in " ".join(postgres.server_command(s, limits.max_connections))


def test_missing_postgresql_is_one_line_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))                     # no pg_config
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])  # no /usr/lib/postgresql/*/bin
    with pytest.raises(postgres.PostgresError, match=r"install Debian's `postgresql`") as err:
        postgres.bin_dir()
    assert "\n" not in str(err.value)
    s = Settings(data_dir=tmp_path / "data", postgres_port=1)
    pg = services.PostgreSQL("postgresql", "127.0.0.1", 1, s)
    with pytest.raises(services.StackError, match="postgresql"):
        pg.prepare()
    assert not pg.healthy() and pg.version() == "-"


def test_the_server_binaries_are_found_here():
    bindir = postgres.bin_dir()
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("postgres (PostgreSQL)")
