"""The store's per-document costs, through the project's own store module (common/store.py): find_one by
`_id`, a replace-upsert, 900 upserts in bulks of `store_statements_per_command` from one thread and from
`store_writers` threads, and a full find, at 10k and 100k documents of about 2 KB.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_store.py [--sizes 10000,100000] [--runs 200]
        [--uri mongodb://host:27017/] [--db musicrec_bench_store] [--keep]

Without `--uri` it measures the configured store (the local FerretDB on PostgreSQL); with `--uri` any
MongoDB, so a user can compare their cluster. Baselines, measured in the same run on the same
collection: the same lookup or upsert by a field with no index (`n`, a scan on any store). On the local
store it also measures the lookups with the GIN `_id` index dropped (FerretDB on PostgreSQL as it comes:
the pushed-down `@>` filter cannot use FerretDB's own btree index), then puts the index back. The
collections are dropped at the end unless `--keep`.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conf import get_settings  # noqa: E402
from common import store  # noqa: E402

PAD = 2000
TARGET_MS = 2.0


def doc(i: int, version: int = 0) -> dict:
    return {"_id": f"user-{i:07d}", "n": i, "version": version, "pad": ("%07d" % i) * (PAD // 7)}


def fill(coll, n: int, settings) -> float:
    from tqdm import tqdm

    coll.drop()
    t = time.perf_counter()
    with tqdm(total=n, unit="doc", desc=f"insert {n:,}", leave=False) as bar:
        for s in range(0, n, 2000):
            coll.insert_many([doc(i) for i in range(s, min(n, s + 2000))], ordered=False)
            bar.update(min(n, s + 2000) - s)
    return time.perf_counter() - t


def per_op(fn, keys: list[int]) -> list[float]:
    out = []
    for k in keys:
        t = time.perf_counter()
        fn(k)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bulk_upserts(settings, db_name: str, coll_name: str, ids: list[int], threads: int, version: int) -> float:
    """Seconds for upserting `ids` (existing documents) in commands of the configured size from `threads`
    clients at once."""
    parts = [ids[t::threads] for t in range(threads)]
    errors: list[BaseException] = []

    def work(part: list[int]) -> None:
        try:
            with store.client(settings) as c:
                store.upsert_documents(c[db_name][coll_name], [doc(i, version) for i in part], settings)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(p,)) for p in parts]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t


def local_index(settings, coll):
    """(drop(), restore()) of the GIN `_id` index of `coll` on the local store, or None elsewhere."""
    from stack import postgres

    info = coll.database.client.admin.command("buildInfo")
    if "ferretdbVersion" not in info or not settings.mongo_uri.startswith(("mongodb://127.0.0.1", "mongodb://localhost")):
        return None
    plan = coll.database.command("explain", {"find": coll.name, "filter": {"_id": "x"}})["queryPlanner"]["Plan"]
    table = f'"{plan["Schema"]}"."{plan["Relation Name"]}"'

    def drop():
        postgres.psql(settings, f"DO $$ DECLARE r record; BEGIN FOR r IN SELECT indexrelid::regclass AS i FROM pg_index "
                                f"WHERE indrelid = '{table}'::regclass AND indexrelid::regclass::text LIKE "
                                f"'%musicrec_id_%' LOOP EXECUTE 'DROP INDEX ' || r.i; END LOOP; END $$;")

    def restore():
        postgres.psql(settings, f"SELECT musicrec_id_index('{table}'::regclass)")

    return drop, restore


def measure(settings, db, n: int, runs: int, rng: random.Random) -> list[list[str]]:
    coll = db[f"bench_store_{n}"]
    insert_s = fill(coll, n, settings)
    keys = [rng.randrange(n) for _ in range(runs)]
    few = keys[: max(3, runs // 20)]
    rows = []

    def row(what, times_ms, base_what="", base_ms=None, per=""):
        med = statistics.median(times_ms)
        ratio = f"{statistics.median(base_ms) / med:,.1f}x" if base_ms else ""
        target = ""
        if per == "target":
            target = "yes" if med <= TARGET_MS else "NO"
        rows.append([f"{n:,}", what, f"{med:,.2f}", f"{max(times_ms):,.2f}", base_what,
                     f"{statistics.median(base_ms):,.1f}" if base_ms else "", ratio, target])

    find_ms = per_op(lambda k: coll.find_one({"_id": doc(k)["_id"]}), keys)
    scan_ms = per_op(lambda k: coll.find_one({"n": k}), few)
    row("find_one by _id (ms)", find_ms, "find_one by field n", scan_ms, per="target")
    version = 1
    up_ms = per_op(lambda k: coll.replace_one({"_id": doc(k)["_id"]}, doc(k, version), upsert=True), keys)
    upn_ms = per_op(lambda k: coll.replace_one({"n": k}, doc(k, version), upsert=True), few)
    row("replace_one upsert by _id (ms)", up_ms, "replace_one upsert by field n", upn_ms)
    ids = rng.sample(range(n), 900)
    one = bulk_upserts(settings, db.name, coll.name, ids, 1, 2)
    version = 3
    many = bulk_upserts(settings, db.name, coll.name, ids, max(1, settings.store_writers), version)
    statements = store.pool_limits(settings).statements
    row(f"900 upserts, bulks of {statements}, 1 thread (ms per doc)", [one * 1000 / 900], per="target")
    row(f"900 upserts, bulks of {statements}, {settings.store_writers} threads (ms per doc)", [many * 1000 / 900],
        "1 thread", [one * 1000 / 900], per="target")
    assert coll.count_documents({"version": version}) == 900, "bulk upserts lost documents"
    t = time.perf_counter()
    got = sum(1 for _ in coll.find({}, batch_size=1000))
    full = time.perf_counter() - t
    assert got == n
    rows.append([f"{n:,}", "full find (s)", f"{full:,.2f}", "", "", "", "", ""])
    rows.append([f"{n:,}", "insert_many, 2,000 per command (s)", f"{insert_s:,.2f}", "", "", "", "", ""])
    index = local_index(settings, coll)
    if index is not None:
        drop, restore = index
        drop()
        try:
            plain_ms = per_op(lambda k: coll.find_one({"_id": doc(k)["_id"]}), few)
            plain_up = per_op(lambda k: coll.replace_one({"_id": doc(k)["_id"]}, doc(k, 9), upsert=True), few)
        finally:
            restore()
        row("find_one by _id (ms)", find_ms, "the same, GIN index dropped", plain_ms)
        row("replace_one upsert by _id (ms)", up_ms, "the same, GIN index dropped", plain_up)
    return rows, coll


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_store.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="documents per collection, comma-separated")
    parser.add_argument("--runs", type=int, default=200, help="single operations timed per size")
    parser.add_argument("--uri", help="measure this MongoDB instead of the configured store")
    parser.add_argument("--db", default="musicrec_bench_store")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark collections")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.uri:
        settings = settings.model_copy(update={"mongo_uri": args.uri, "mongo_password": None})
    client = store.client(settings)
    try:
        info = client.admin.command("buildInfo")
    except Exception as exc:  # noqa: BLE001 - one line for any reason the store does not answer
        print(f"bench_store: no MongoDB at {settings.mongo_uri} ({str(exc).splitlines()[0][:120]}); "
              "run `make up` or pass --uri", file=sys.stderr)
        return 1
    engine = f"FerretDB {info['ferretdbVersion']}" if "ferretdbVersion" in info else f"MongoDB {info.get('version')}"
    backend = ""
    if "ferretdbVersion" in info and args.uri is None:
        from stack import postgres

        backend = f" on {postgres.version(settings)}"
    limits = store.pool_limits(settings)
    db = client[args.db]
    rng = random.Random(42)
    rows, colls = [], []
    for n in (int(x) for x in args.sizes.split(",")):
        r, coll = measure(settings, db, n, args.runs, rng)
        rows += r
        colls.append(coll)
    if not args.keep:
        for coll in colls:
            coll.drop()
    print(f"\nStore benchmark: {engine}{backend} at {settings.mongo_uri}; documents of ~{PAD / 1000:.0f} KB; "
          f"{args.runs} single operations per size (median, max); pool: {limits.statements} statements per "
          f"command, {limits.writers} writers, pool_max_conns {limits.pool_max_conns}; target <= {TARGET_MS:.0f} ms")
    print(table(["docs", "operation", "median", "max", "baseline", "baseline median", "speed-up", "<= target"],
                rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
