"""The local store (issue 11), over the real FerretDB on PostgreSQL that `make up` started: the `_id`
index on collections created after start-up, the pool limits under concurrent writers and a reader, and
our FerretDB patch (stack/ferretdb/patches): a replacement by `_id` is one statement, with MongoDB's answers."""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson import Int64, ObjectId
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import OperationFailure, WriteError

from common import store
from stack import postgres

pytestmark = pytest.mark.integration


def _plan_nodes(plan: dict):
    yield plan
    for sub in plan.get("Plans", []):
        yield from _plan_nodes(sub)


def _table(plan: dict) -> str:
    """The PostgreSQL table behind a FerretDB `explain` answer, quoted."""
    top = plan["queryPlanner"]["Plan"]
    return f'"{top["Schema"]}"."{top["Relation Name"]}"'


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
    table = _table(plan)
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
    table = _table(plan)
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


def test_a_replacement_by_id_is_one_statement_in_postgresql(fresh, settings):
    """Stock FerretDB v1.24 reads the old document (an index scan and its decoding) before it UPDATEs it
    in a transaction of its own; patched, a replacement of an existing document is the UPDATE alone."""
    table = _table(fresh.database.command("explain", {"find": fresh.name, "filter": {"_id": "x"}}))

    def stats() -> tuple[int, int]:
        out = postgres.psql(settings, f"SELECT n_tup_upd, coalesce(idx_scan, 0) + coalesce(seq_scan, 0) "
                                      f"FROM pg_stat_user_tables WHERE relid = '{table}'::regclass")
        upd, scans = out.split("|")
        return int(upd), int(scans)

    upd0, scans0 = stats()
    n = 300
    store.upsert_documents(fresh, [{"_id": f"user-{i}", "n": -i, "pad": "z" * 2000} for i in range(n)], settings)
    time.sleep(11)      # a PostgreSQL backend reports its counters within 10 s of going idle
    upd, scans = stats()
    assert upd - upd0 == n
    assert scans - scans0 <= n + 10, f"{scans - scans0} scans for {n} replacements (stock FerretDB: 2 each)"
    # a command of existing documents' replacements is one transaction (one commit, one WAL flush): the
    # replaced rows carry one writing transaction id (xmin) per command, not one per document
    commands = -(-n // settings.store_statements_per_command)
    xids = postgres.psql(settings, f"SELECT count(DISTINCT xmin::text) || '|' || count(*) FROM {table} "
                                   f"WHERE _jsonb->>'pad' LIKE 'z%'")
    assert xids == f"{commands}|{n}", f"(transactions | rows) {xids} for {commands} commands of {n} replacements"
    assert [d["n"] for d in fresh.find({"_id": {"$in": ["user-0", "user-299", "user-300"]}}).sort("_id", 1)] == [0, -299, 300]


def test_replacements_by_id_get_mongodbs_answers(mongo):
    coll = mongo[f"replace_{uuid.uuid4().hex[:8]}"]
    res = coll.bulk_write([ReplaceOne({"_id": "a"}, {"_id": "a", "x": 1}, upsert=True),
                           ReplaceOne({"_id": "b"}, {"x": 2}, upsert=True)], ordered=False)
    assert (res.upserted_count, res.matched_count, res.upserted_ids) == (2, 0, {0: "a", 1: "b"})
    # a command of existing documents only (one transaction), "a" twice: the later statement wins
    res = coll.bulk_write([ReplaceOne({"_id": "a"}, {"x": 10}, upsert=True), ReplaceOne({"_id": "b"}, {"x": 20}, upsert=True),
                           ReplaceOne({"_id": "a"}, {"x": 11}, upsert=True)], ordered=False)
    assert (res.upserted_count, res.matched_count, res.modified_count) == (0, 3, 3)
    assert [d["x"] for d in coll.find().sort("_id", 1)] == [11, 20]
    # one new `_id` among existing ones: statement by statement, each with its own answer
    res = coll.bulk_write([ReplaceOne({"_id": "b"}, {"x": 2}, upsert=True), ReplaceOne({"_id": "c"}, {"x": 30}, upsert=True),
                           ReplaceOne({"_id": "a"}, {"x": 12}, upsert=True)], ordered=False)
    assert (res.upserted_count, res.matched_count, res.upserted_ids) == (1, 2, {1: "c"})    # the statement's index
    assert [(d["_id"], d["x"]) for d in coll.find().sort("_id", 1)] == [("a", 12), ("b", 2), ("c", 30)]
    res = coll.bulk_write([UpdateOne({"_id": "a"}, {"$set": {"z": 1}}, upsert=True),      # FerretDB's own path too
                           UpdateOne({"_id": "d"}, {"$set": {"z": 2}}, upsert=True)], ordered=False)
    assert (res.upserted_count, res.upserted_ids) == (1, {1: "d"})
    coll.delete_many({"_id": {"$in": ["c", "d"]}})
    coll.update_one({"_id": "a"}, {"$unset": {"z": ""}})
    # a NUL in one document of the command: the others are not replaced in one transaction, the command fails
    with pytest.raises(OperationFailure):
        coll.bulk_write([ReplaceOne({"_id": "a"}, {"x": 13}, upsert=True), ReplaceOne({"_id": "b"}, {"x": "nul\x00"}, upsert=True)],
                        ordered=False)
    assert coll.find_one({"_id": "b"})["x"] == 2
    res = coll.replace_one({"_id": "a"}, {"y": [1, 2], "x": 3}, upsert=True)
    assert (res.matched_count, res.modified_count, res.upserted_id) == (1, 1, None)
    assert list(coll.find_one({"_id": "a"}).items()) == [("_id", "a"), ("y", [1, 2]), ("x", 3)]   # the new order
    assert coll.find_one({"_id": "b"}) == {"_id": "b", "x": 2}                    # `_id` from the filter

    with pytest.raises(WriteError) as err:                                        # `_id` is immutable
        coll.replace_one({"_id": "a"}, {"_id": "other", "x": 4}, upsert=True)
    assert err.value.code == 66
    with pytest.raises(OperationFailure):                                         # jsonb refuses NUL: nothing changes
        coll.replace_one({"_id": "a"}, {"x": "nul\x00"}, upsert=True)
    assert coll.find_one({"_id": "a"})["x"] == 3 and coll.count_documents({}) == 2

    oid = ObjectId()
    assert coll.replace_one({"_id": oid}, {"v": 1}, upsert=True).upserted_id == oid
    assert coll.replace_one({"_id": 7}, {"v": 1}, upsert=True).upserted_id == 7
    assert coll.replace_one({"_id": Int64(7)}, {"v": 2}, upsert=True).matched_count == 1   # 7 is 7, as in MongoDB
    assert coll.find_one({"_id": 7})["v"] == 2 and coll.count_documents({}) == 4
    assert coll.replace_one({"_id": "missing"}, {"v": 1}).matched_count == 0     # no upsert: nothing stored
    assert coll.replace_one({"_id": 2.5}, {"v": 1}, upsert=True).upserted_id == 2.5   # FerretDB's own path

    # many clients upserting one new `_id` at once: one of them inserts it, the others replace it
    def upsert(i: int):
        return coll.replace_one({"_id": "race"}, {"i": i}, upsert=True).upserted_id
    with ThreadPoolExecutor(16) as pool:
        inserted = [u for u in pool.map(upsert, range(64)) if u is not None]
    assert inserted == ["race"] and coll.count_documents({"_id": "race"}) == 1
    coll.drop()
