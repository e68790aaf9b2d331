"""The MongoDB edge: pymongo clients and Spark reads/writes through the MongoDB Spark connector.

Everything here speaks plain MongoDB, so a real MongoDB 6+ works unchanged. Two choices keep it working
on FerretDB v1.24 as well (see README, "FerretDB"):
- reads pass an explicit schema (schema inference samples with `$sample`, which FerretDB lacks) and use
  a partitioner that needs neither `$sample` nor `$bucketAuto`;
- writes are upserts keyed by `_id` (`operationType=replace`), so a re-run or a replayed batch writes
  the same documents instead of duplicates.
"""
from __future__ import annotations

from conf import Settings

SINGLE = "com.mongodb.spark.sql.connector.read.partitioner.SinglePartitionPartitioner"
PAGINATE = "com.mongodb.spark.sql.connector.read.partitioner.PaginateIntoPartitionsPartitioner"


def client(settings: Settings, timeout_ms: int = 3000):
    from pymongo import MongoClient

    return MongoClient(settings.mongo_uri_with_secret, serverSelectionTimeoutMS=timeout_ms,
                       connectTimeoutMS=timeout_ms)


def database(settings: Settings, timeout_ms: int = 3000):
    return client(settings, timeout_ms)[settings.mongo_db]


def is_ferretdb(db) -> bool:
    """The server is FerretDB (its buildInfo carries `ferretdbVersion`)."""
    return "ferretdbVersion" in db.client.admin.command("buildInfo")


def replace_mode(settings: Settings, db) -> str:
    """`upsert` or `delete_insert` for `settings.store_replace_mode` (auto: delete_insert on FerretDB, whose
    `_id` lookups scan the collection, so one ReplaceOne per document costs a scan each)."""
    if settings.store_replace_mode != "auto":
        return settings.store_replace_mode
    return "delete_insert" if is_ferretdb(db) else "upsert"


def replace_documents(coll, docs: list[dict], mode: str, chunk: int = 50) -> int:
    """Replace (or insert) each document by `_id`: idempotent either way.

    upsert: ReplaceOne(upsert) per document, `chunk` per command (atomic per document).
    delete_insert: one delete of all their `_id`s, then one unordered insert: two scans on FerretDB
    whatever the number of documents; a reader may miss a document between the two commands, and a crash
    between them leaves it missing until the write is repeated (a replayed micro-batch does)."""
    from pymongo import ReplaceOne

    if not docs:
        return 0
    if mode == "delete_insert":
        coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        coll.insert_many(docs, ordered=False)
    elif mode == "upsert":
        for s in range(0, len(docs), chunk):
            coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs[s:s + chunk]], ordered=False)
    else:
        raise ValueError(f"unknown replace mode {mode!r}")
    return len(docs)


def upsert_documents(coll, docs, settings: Settings, chunk: int = 10) -> int:
    """Replace-or-insert each document by `_id`, `chunk` upserts per unordered command. Idempotent and
    atomic per document: a reader sees the old or the new version, never none."""
    from pymongo import ReplaceOne

    docs = list(docs)
    for s in range(0, len(docs), chunk):
        coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs[s:s + chunk]], ordered=False)
    return len(docs)


def _options(settings: Settings, collection: str) -> dict[str, str]:
    return {"connection.uri": settings.mongo_uri_with_secret, "database": settings.mongo_db,
            "collection": collection}


def read_collection(spark, settings: Settings, collection: str, schema, partitions: int = 1,
                    pipeline: str | None = None):
    """A DataFrame over `collection` with the given schema (never inferred)."""
    reader = spark.read.format("mongodb").schema(schema).options(**_options(settings, collection))
    if partitions > 1:
        reader = reader.option("partitioner", PAGINATE).option(
            "partitioner.options.max.number.of.partitions", str(partitions))
    else:
        reader = reader.option("partitioner", SINGLE)
    if pipeline:
        reader = reader.option("aggregation.pipeline", pipeline)
    return reader.load()


def upsert_dataframe(df, settings: Settings, collection: str, key: str = "_id") -> None:
    """Replace-or-insert every row as one document keyed by `key`: idempotent."""
    (df.write.format("mongodb").mode("append").options(**_options(settings, collection))
       .option("operationType", "replace").option("idFieldList", key).option("upsertDocument", "true")
       .save())
