"""The local store (issue 11), over the real FerretDB on PostgreSQL that `make up` started: the `_id`
index on collections created after start-up, and the pool limits under concurrent writers and a reader."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from common import store
from stack import postgres

pytestmark = pytest.mark.integration


def _plan_nodes(plan: dict):
    yield plan
    for sub in plan.get("Plans", []):
        yield from _plan_nodes(sub)


@pytest.fixture
def fresh(mongo):
    """A collection that did not exist when the store started, with 5,000 documents of about 2 KB."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    coll = mongo[name]
    coll.insert_many([{"_id": f"user-{i}", "n": i, "pad": "x" * 2000} for i in range(5000)])
    yield coll
    coll.drop()


def test_a_find_by_id_uses_the_gin_index_on_a_new_collection(fresh, settings):
    # FerretDB's own plan for the query it runs (its `explain` goes through the same pool and SQL)
    plan = fresh.database.command("explain", {"find": fresh.name, "filter": {"_id": "user-4321"}})
    nodes = list(_plan_nodes(plan["queryPlanner"]["Plan"]))
    assert any(n.get("Index Name", "").startswith("musicrec_id_") for n in nodes), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes)

    # the same statement as FerretDB prepares it, by psql: its custom plan uses the index, a generic one
    # cannot (which is why the database runs with plan_cache_mode=force_custom_plan)
    top = plan["queryPlanner"]["Plan"]
    table = f'"{top["Schema"]}"."{top["Relation Name"]}"'
    # no pending list: GIN's default (fastupdate) queues new entries in a list every lookup scans
    options = postgres.psql(settings, f"SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                      f"WHERE i.indrelid = '{table}'::regclass AND c.relname LIKE 'musicrec_id_%'")
    assert options == "{fastupdate=off}"

    def explain(mode: str) -> str:
        return postgres.psql(settings, f"PREPARE q(text, jsonb) AS SELECT _jsonb FROM {table} WHERE _jsonb->$1 @> $2;\n"
                                       f"SET plan_cache_mode = {mode};\nEXPLAIN EXECUTE q('_id', '\"user-4321\"');")

    assert postgres.psql(settings, "SHOW plan_cache_mode") == "force_custom_plan"   # FerretDB's database default
    assert "Bitmap Index Scan on musicrec_id_" in explain("force_custom_plan")
    generic = explain("force_generic_plan")
    assert "Seq Scan" in generic and "musicrec_id_" not in generic
    assert fresh.find_one({"_id": "user-4321"})["n"] == 4321


def test_documents_past_postgresqls_compression_threshold_are_stored_with_lz4(fresh, settings):
    # FerretDB's connections take the database's default (stack/postgres.py); a replacement writes anew
    fresh.replace_one({"_id": "user-7"}, {"n": -7, "pad": "y" * 3000})
    plan = fresh.database.command("explain", {"find": fresh.name, "filter": {"_id": "user-7"}})
    top = plan["queryPlanner"]["Plan"]
    table = f'"{top["Schema"]}"."{top["Relation Name"]}"'
    assert postgres.psql(settings, "SHOW default_toast_compression") == "lz4"
    kinds = postgres.psql(settings, f"SELECT DISTINCT pg_column_compression(_jsonb) FROM {table} "
                                    f"WHERE _jsonb->'_id' IN ('\"user-7\"', '\"user-8\"')").split()
    assert kinds == ["lz4"], kinds
    assert fresh.find_one({"_id": "user-7"})["n"] == -7


def test_writers_and_a_reader_at_the_pool_limit_all_finish(mongo, settings):
    """2,000 upserts of existing documents from `store_writers` threads at once, each command as large as
    the limits allow (every statement holds a pool connection), plus a reader of single documents and
    whole scans: nothing waits forever."""
    limits = store.pool_limits(settings)
    assert limits.writers * (limits.statements + 1) + limits.readers <= limits.pool_max_conns
    assert limits.writers >= 4
    coll = mongo[f"pool_{uuid.uuid4().hex[:8]}"]
    n = 2000
    coll.insert_many([{"_id": f"user-{i}", "v": 0, "pad": "x" * 2000} for i in range(n)])
    errors: list[BaseException] = []
    done = threading.Event()
    reads = {"one": 0, "scan": 0}

    def write(part: int) -> None:
        try:
            with store.client(settings, socket_timeout_ms=60_000) as c:
                docs = [{"_id": f"user-{i}", "v": 1, "pad": "y" * 2000} for i in range(part, n, 4)]
                store.upsert_documents(c[mongo.name][coll.name], docs, settings)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def read() -> None:
        try:
            with store.client(settings, socket_timeout_ms=60_000) as c:
                rc = c[mongo.name][coll.name]
                i = 0
                while not done.is_set():
                    assert rc.find_one({"_id": f"user-{i % n}"}) is not None
                    reads["one"] += 1
                    if i % 50 == 0:
                        assert sum(1 for _ in rc.find({}, {"v": 1}).batch_size(100)) == n
                        reads["scan"] += 1
                    i += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in range(4)] + [threading.Thread(target=read)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads[:4]:
        t.join(120)
    done.set()
    threads[4].join(60)
    assert not any(t.is_alive() for t in threads), "a client is still waiting after 120 s"
    assert not errors, errors
    assert coll.count_documents({"v": 1}) == n
    assert reads["one"] > 0 and reads["scan"] > 0
    assert time.monotonic() - t0 < 120
    coll.drop()
