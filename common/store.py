"""The MongoDB edge: pymongo clients, idempotent upserts, Spark reads/writes through the MongoDB Spark
connector, and every limit of the local store (FerretDB v1.24 on PostgreSQL) in one place.

Everything here speaks plain MongoDB, so a real MongoDB 6+ works unchanged. What keeps it working on
the local store as well (see README, "The local store"):
- reads pass an explicit schema (schema inference samples with `$sample`, which FerretDB lacks) and use
  a partitioner that needs neither `$sample` nor `$bucketAuto`;
- writes are upserts keyed by `_id` (`ReplaceOne(upsert=True)`, the connector's `operationType=replace`),
  so a re-run or a replayed batch writes the same documents instead of duplicates, and a document is
  never missing while it is rewritten;
- write commands carry at most `store_statements_per_command` statements (`pool_limits` says why).
"""
from __future__ import annotations

from dataclasses import dataclass

from conf import Settings

SINGLE = "com.mongodb.spark.sql.connector.read.partitioner.SinglePartitionPartitioner"
PAGINATE = "com.mongodb.spark.sql.connector.read.partitioner.PaginateIntoPartitionsPartitioner"
ADMIN_CONNECTIONS = 10     # PostgreSQL connections beyond FerretDB's pool: psql, superuser reserve (3)
CREDENTIAL_POOLS = 3       # FerretDB keeps one pgx pool per client credential (no auth, a user + password, ...)


@dataclass(frozen=True)
class PoolLimits:
    """The local store's connection budget, derived from three settings.

    FerretDB v1.24 (PostgreSQL backend) runs each statement of an `update` command as a query whose
    result keeps a pool connection until the whole command ends, and it needs one more connection for the
    write itself; when the pool is used up it waits forever (no timeout). So with `writers` commands of
    `statements` statements at once, the pool needs writers x (statements + 1) connections, plus some for
    reads (an open cursor holds one too), and PostgreSQL must accept the whole pool plus admin sessions;
    FerretDB opens a pool of that size for each credential its clients use (a run with a MongoDB user
    beside one without used up PostgreSQL's connections), so PostgreSQL accepts CREDENTIAL_POOLS of them.
    """
    statements: int            # statements per write command (clients chunk their bulks to this)
    writers: int               # write commands in flight at once
    readers: int               # connections kept for reads and open cursors
    pool_max_conns: int        # FerretDB's pgx pool (`pool_max_conns` in --postgresql-url)
    max_connections: int       # PostgreSQL `max_connections`


def pool_limits(settings: Settings) -> PoolLimits:
    statements = max(1, int(settings.store_statements_per_command))
    writers, readers = max(1, int(settings.store_writers)), max(1, int(settings.store_readers))
    pool = writers * (statements + 1) + readers
    return PoolLimits(statements, writers, readers, pool, pool * CREDENTIAL_POOLS + ADMIN_CONNECTIONS)


def client(settings: Settings, timeout_ms: int | None = None, socket_timeout_ms: int | None = None):
    """A pymongo client with the configured timeouts; `timeout_ms` overrides connect and server selection,
    `socket_timeout_ms` the wait for an answer (short for health checks and the dashboard)."""
    from pymongo import MongoClient

    return MongoClient(settings.mongo_uri_with_secret,
                       serverSelectionTimeoutMS=timeout_ms or settings.mongo_server_selection_timeout_ms,
                       connectTimeoutMS=timeout_ms or settings.mongo_connect_timeout_ms,
                       socketTimeoutMS=socket_timeout_ms or settings.mongo_socket_timeout_ms)


def database(settings: Settings, timeout_ms: int | None = None, socket_timeout_ms: int | None = None):
    return client(settings, timeout_ms, socket_timeout_ms)[settings.mongo_db]


def storable(value):
    """`value` with every NUL character in its strings replaced by U+FFFD: PostgreSQL's jsonb, under the
    local store, rejects `\\u0000` (the whole insert fails), and free text from bad input can hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def upsert_documents(coll, docs, settings: Settings, on_written=None) -> int:
    """Replace-or-insert each document by `_id`, in unordered commands of `store_statements_per_command`
    upserts. Idempotent, atomic per document: a reader sees the old or the new version, never none.
    `on_written(ids)`: called after each command with the `_id`s it wrote (acknowledged, readable)."""
    from pymongo import ReplaceOne

    docs = [storable(d) for d in docs]
    step = pool_limits(settings).statements
    for s in range(0, len(docs), step):
        chunk = docs[s:s + step]
        coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False)
        if on_written is not None:
            on_written([d["_id"] for d in chunk])
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
    """Replace-or-insert every row as one document keyed by `key`: idempotent. Each task writes commands
    of `store_statements_per_command` rows (the connector's default, 512, would exhaust FerretDB's pool)."""
    (df.write.format("mongodb").mode("append").options(**_options(settings, collection))
       .option("operationType", "replace").option("idFieldList", key).option("upsertDocument", "true")
       .option("maxBatchSize", str(pool_limits(settings).statements))
       .save())
