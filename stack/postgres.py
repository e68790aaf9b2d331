"""The local PostgreSQL cluster under FerretDB: binaries, the OS user it runs as, provisioning SQL.

The cluster lives in `<data_dir>/postgres/cluster`, listens on 127.0.0.1:`postgres_port` only (no Unix
socket) and trusts loopback connections of its superuser `musicrec`. PostgreSQL refuses to run as root,
so when the caller is root it runs as `postgres_os_user` (Debian's package creates `postgres`).

`provision` is idempotent and runs at every `up`: it creates FerretDB's database, sets custom plans for
its connections, and installs an event trigger that gives every table FerretDB creates (one per
collection) a GIN index on `_id`, plus that index on tables that lack it. Why both: FerretDB pushes a
find by `_id` down as `_jsonb->'_id' @> $2`, which its own btree `_id` index cannot serve; a GIN
`jsonb_path_ops` index can, but only when the planner sees the value, which a cached generic plan hides.
The index has `fastupdate = off`: with GIN's default pending list, every insert and every update (a new
row version) queues its entry in a list that each lookup scans until a vacuum merges it; after 100k
fresh documents a find by `_id` took 14.5 ms instead of under 1 ms.

FerretDB's documents compress with lz4 where PostgreSQL has it (Debian's does): a recommendation document
is about 4 KB of JSON with FerretDB's type schema, over the 2 KB past which PostgreSQL compresses every
new row version, and pglz was the largest single function of PostgreSQL's CPU under the stream's upserts
(perf); with lz4 the store took about 7% less CPU per upsert (0.755 -> 0.685 ms of PostgreSQL's,
scratch measurement, three alternations). Rows written before keep pglz until they are next replaced.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from conf import Settings

SUPERUSER = "musicrec"
DATABASE = "ferretdb"

ID_INDEX_SQL = """
CREATE OR REPLACE FUNCTION musicrec_id_index(tbl regclass) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE idx regclass;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = '_jsonb' AND NOT attisdropped) THEN
    RETURN;
  END IF;
  SELECT i.indexrelid INTO idx FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE i.indrelid = tbl AND c.relname = 'musicrec_id_' || tbl::oid;
  IF idx IS NULL THEN
    EXECUTE format('CREATE INDEX %I ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
                   'musicrec_id_' || tbl::oid, tbl);
  ELSIF NOT coalesce((SELECT 'fastupdate=off' = ANY (reloptions) FROM pg_class WHERE oid = idx), false) THEN
    EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', idx);
    PERFORM gin_clean_pending_list(idx);
  END IF;
END $f$;

CREATE OR REPLACE FUNCTION musicrec_id_index_trigger() RETURNS event_trigger LANGUAGE plpgsql AS $f$
DECLARE r record;
BEGIN
  FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands()
           WHERE command_tag = 'CREATE TABLE' AND object_type = 'table' LOOP
    PERFORM musicrec_id_index(r.objid::regclass);
  END LOOP;
END $f$;

DO $d$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'musicrec_id_index') THEN
    CREATE EVENT TRIGGER musicrec_id_index ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
      EXECUTE FUNCTION musicrec_id_index_trigger();
  END IF;
END $d$;

DO $d$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE c.relkind = 'r' AND a.attname = '_jsonb' AND NOT a.attisdropped LOOP
    PERFORM musicrec_id_index(r.oid::regclass);
  END LOOP;
END $d$;

ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;

DO $d$ BEGIN
  ALTER DATABASE ferretdb SET default_toast_compression = lz4;
EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
  RAISE NOTICE 'this PostgreSQL has no lz4: documents stay compressed with pglz';
END $d$;
"""


class PostgresError(RuntimeError):
    """One line a user can act on."""


def bin_dir() -> Path:
    """PostgreSQL's server binaries: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for c in candidates:
        if (c / "postgres").exists() and (c / "initdb").exists():
            return c
    raise PostgresError("PostgreSQL server binaries are missing; install Debian's `postgresql` "
                        "(apt-get install postgresql) or run `make setup`")


def run_as(settings: Settings) -> pwd.struct_passwd | None:
    """The OS user PostgreSQL runs as when the caller is root; None: run as the caller."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(settings.postgres_os_user)
    except KeyError:
        raise PostgresError(f"postgresql: refuses to run as root and there is no user "
                            f"{settings.postgres_os_user!r}; install Debian's `postgresql` (it creates it) or "
                            f"set MUSICREC_POSTGRES_OS_USER") from None


def user_kwargs(user: pwd.struct_passwd | None) -> dict:
    """Popen arguments that drop root to `user`."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": user.pw_dir, "LC_ALL": "C"}}


def cluster_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "postgres" / "cluster"


def _reachable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Every parent of `path` lets `user` through (owner, or world-executable)."""
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            return False
    return True


def init_cluster(settings: Settings) -> bool:
    """Create the cluster once (`down` then `up` keeps it). Returns whether it was created."""
    cluster = cluster_dir(settings)
    if (cluster / "PG_VERSION").exists():
        return False
    user = run_as(settings)
    cluster.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        if not _reachable_by(user, cluster.parent):
            raise PostgresError(f"postgresql: user {user.pw_name} cannot reach {cluster.parent} (a parent folder "
                                f"is not world-executable); set MUSICREC_DATA_DIR to a folder it can reach")
        os.chown(cluster.parent, user.pw_uid, user.pw_gid)
    out = subprocess.run([str(bin_dir() / "initdb"), "-D", str(cluster), "-U", SUPERUSER, "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-instructions"],
                         capture_output=True, text=True, cwd=cluster.parent, **user_kwargs(user))
    if out.returncode != 0:
        raise PostgresError(f"postgresql: initdb failed: {(out.stderr or out.stdout).strip().splitlines()[-1]}")
    return True


def server_command(settings: Settings, max_connections: int) -> list[str]:
    return [str(bin_dir() / "postgres"), "-D", str(cluster_dir(settings)),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={settings.postgres_port}",
            "-c", "unix_socket_directories=", "-c", f"max_connections={max_connections}"]


def psql(settings: Settings, sql: str, database: str = DATABASE, timeout: float = 30) -> str:
    """Run `sql` with psql over loopback; its output (unaligned, tuples only). Raises PostgresError."""
    try:
        out = subprocess.run([str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(settings.postgres_port),
                              "-U", SUPERUSER, "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                             input=sql, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PostgresError(f"postgresql: psql timed out after {timeout:.0f} s") from None
    if out.returncode != 0:
        raise PostgresError(f"postgresql: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'psql failed'}")
    return out.stdout.strip()


def ready(settings: Settings) -> bool:
    out = subprocess.run([str(bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(settings.postgres_port),
                          "-U", SUPERUSER, "-d", "postgres", "-t", "2"], capture_output=True)
    return out.returncode == 0


def provision(settings: Settings) -> None:
    """FerretDB's database, custom plans for it, the `_id` index trigger and backfill (idempotent)."""
    if psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="postgres") != "1":
        psql(settings, f"CREATE DATABASE {DATABASE}", database="postgres")
    psql(settings, ID_INDEX_SQL)


def version(settings: Settings) -> str:
    return "PostgreSQL " + psql(settings, "SHOW server_version", database="postgres", timeout=5).split()[0]


def ferretdb_url(settings: Settings, pool_max_conns: int) -> str:
    return f"postgres://{SUPERUSER}@127.0.0.1:{settings.postgres_port}/{DATABASE}?pool_max_conns={pool_max_conns}"
