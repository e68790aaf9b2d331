"""The local stack (issues 3 and 11), over the real services.

The connector and Kafka tests use the stack that `make up` started. The up/down tests start a second,
private stack on other ports with its own data folder, so they never disturb the shared one.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import subprocess
import time
import uuid

import pytest
from pyspark.sql import types as T

from common import store
from conf import Settings
from stack import services

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the MongoDB Spark connector -----------------------------------------------------------------

def test_dataframe_round_trips_through_the_mongodb_connector(spark, settings, mongo):
    from pyspark.testing import assertDataFrameEqual

    schema = T.StructType([
        T.StructField("_id", T.LongType(), False),
        T.StructField("title", T.StringType()),
        T.StructField("genres", T.ArrayType(T.StringType())),
        T.StructField("features", T.ArrayType(T.DoubleType())),
        T.StructField("listens", T.LongType()),
    ])
    rows = [(i, f"track {i} é✓", ["Rock", "Folk"][: i % 3], [i / 7.0, -1.5, 1e-12], i * 10) for i in range(500)]
    df = spark.createDataFrame(rows, schema)
    store.upsert_dataframe(df, settings, "connector_roundtrip")
    for partitions in (1, 4):  # SinglePartitionPartitioner, PaginateIntoPartitionsPartitioner
        back = store.read_collection(spark, settings, "connector_roundtrip", schema, partitions=partitions)
        assert back.rdd.getNumPartitions() == partitions
        assertDataFrameEqual(back, df)


def test_connector_upsert_is_idempotent(spark, settings, mongo):
    schema = "_id long, title string"
    store.upsert_dataframe(spark.createDataFrame([(1, "a"), (2, "b")], schema), settings, "upserts")
    store.upsert_dataframe(spark.createDataFrame([(1, "a"), (2, "b2"), (3, "c")], schema), settings, "upserts")
    docs = sorted(mongo["upserts"].find(), key=lambda d: d["_id"])
    assert docs == [{"_id": 1, "title": "a"}, {"_id": 2, "title": "b2"}, {"_id": 3, "title": "c"}]


# --- Kafka -> Structured Streaming ---------------------------------------------------------------

def test_structured_streaming_reads_what_confluent_kafka_produced(spark, settings, tmp_path):
    from confluent_kafka import Producer

    services.ensure_topics(settings)
    topic = settings.topic_activity
    sent = {f"user-{i % 7}": None for i in range(50)}
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    payloads = [json.dumps({"event_id": str(uuid.uuid4()), "user_id": f"user-{i % 7}", "n": i}) for i in range(50)]
    for i, value in enumerate(payloads):
        producer.produce(topic, key=f"user-{i % 7}", value=value)
    assert producer.flush(10) == 0

    stream = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", settings.kafka_bootstrap)
              .option("subscribe", topic).option("startingOffsets", "earliest").load()
              .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "partition", "offset"))
    query = (stream.writeStream.format("memory").queryName("kafka_roundtrip")
             .option("checkpointLocation", str(tmp_path / "ckpt")).trigger(availableNow=True).start())
    query.awaitTermination(120)
    got = spark.sql("SELECT key, value FROM kafka_roundtrip").collect()
    assert sorted(r.value for r in got) == sorted(payloads)
    assert {r.key for r in got} == set(sent)
    # one user's events stay in one partition, in order (the key is the user id)
    by_user = spark.sql("SELECT key, count(DISTINCT partition) AS p FROM kafka_roundtrip GROUP BY key").collect()
    assert all(r.p == 1 for r in by_user)


# --- up / down / status on a private stack ----------------------------------------------------------

@pytest.fixture
def private_stack(settings):
    # under the project's data folder, not pytest's tmp (0700 under root, so PostgreSQL's user cannot reach it)
    data = settings.data_dir / "tmp" / f"stack-{uuid.uuid4().hex[:8]}"
    s = Settings(data_dir=data, mongo_uri=f"mongodb://127.0.0.1:{_free_port()}/",
                 kafka_bootstrap=f"127.0.0.1:{_free_port()}", kafka_controller_port=_free_port(),
                 postgres_port=_free_port(), mongo_db="stacktest", service_timeout_s=90)
    s.ferretdb_listen = s.mongo_uri.split("//")[1].rstrip("/")
    yield s
    services.down(s)
    shutil.rmtree(data, ignore_errors=True)


def test_up_twice_is_harmless_and_down_up_keeps_the_data(private_stack):
    from confluent_kafka import Consumer, Producer

    s = private_stack
    first = services.up(s)
    assert [line.split(":")[1].strip().split()[0] for line in first] == ["up", "up", "up"]
    pids = [svc.pid() for svc in services.services(s)]

    second = services.up(s)
    assert all("already running" in line for line in second)
    assert [svc.pid() for svc in services.services(s)] == pids

    with store.client(s) as c:
        c[s.mongo_db]["kept"].insert_one({"_id": 1, "v": "still here"})
    p = Producer({"bootstrap.servers": s.kafka_bootstrap})
    p.produce(s.topic_activity, key="u", value="kept-message")
    assert p.flush(10) == 0

    assert all(line.endswith("stopped") for line in services.down(s))
    assert all("not answering" in line for line in services.status(s))
    services.up(s)

    with store.client(s) as c:
        assert c[s.mongo_db]["kept"].find_one({"_id": 1})["v"] == "still here"
    consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "kept", "auto.offset.reset": "earliest"})
    consumer.subscribe([s.topic_activity])
    values, deadline = [], time.monotonic() + 30
    while "kept-message" not in values and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            values.append(msg.value().decode())
    consumer.close()
    assert "kept-message" in values
    status = "\n".join(services.status(s))
    assert "Apache Kafka 4." in status and "PostgreSQL 1" in status and "not answering" not in status
    assert "FerretDB v1.24.2" in status, status  # the embedded version, not "unknown"


def test_a_taken_port_is_one_clear_line(private_stack, tmp_path):
    s = private_stack
    host, port = services._split_hostport(s.kafka_bootstrap, 9092)
    with socket.socket() as blocker:
        blocker.bind((host, port))
        blocker.listen()
        s2 = s.model_copy(update={"mongo_uri": "mongodb://127.0.0.1:1/"})
        kafka = services.Kafka("kafka", host, port, s2)
        with pytest.raises(services.StackError, match=r"port .* is taken by another process"):
            kafka.start()
    out = subprocess.run([".venv/bin/python", "-m", "stack.services", "status"], capture_output=True, text=True,
                         cwd=s.root, env={"MUSICREC_KAFKA_BOOTSTRAP": "127.0.0.1:1", "MUSICREC_MONGO_URI":
                                          "mongodb://127.0.0.1:1/", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(s.root)})
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["postgresql", "ferretdb", "kafka"]
    assert "not answering" in lines[1] and "not answering" in lines[2]


def test_spark_submit_dry_run_resolves_jars_master_and_py_files(settings):
    out = subprocess.run(["./spark-submit.sh", "--dry-run", "--master", "spark://example:7077", "jobs/x.py", "--flag"],
                         capture_output=True, text=True, cwd=settings.root, check=True).stdout
    assert "--master spark://example:7077" in out
    assert "mongo-spark-connector_2.13" in out and "spark-sql-kafka-0-10_2.13-4.1.1" in out
    assert "--py-files" in out and out.rstrip().endswith("jobs/x.py --flag")


def test_sigkill_of_ferretdb_and_postgresql_loses_no_acknowledged_write(private_stack):
    """A writer upserts and inserts while both store processes are SIGKILLed; after `up`, every write
    the client saw acknowledged is there (a key holds its last acknowledged value or a later attempt)."""
    s = private_stack
    store_services = [svc for svc in services.services(s) if svc.name in ("postgresql", "ferretdb")]
    for svc in store_services:
        svc.start()
    acked: dict[str, int] = {}
    attempted: dict[str, int] = {}
    inserted: list[int] = []
    stop = threading.Event()

    def write() -> None:
        with store.client(s, timeout_ms=2000, socket_timeout_ms=5000) as c:
            coll = c[s.mongo_db]["acked"]
            i = 0
            while not stop.is_set():
                key = f"k{i % 50}"
                attempted[key] = i
                try:
                    coll.replace_one({"_id": key}, {"_id": key, "v": i}, upsert=True)
                    acked[key] = i
                    coll.insert_one({"_id": i, "v": i})
                    inserted.append(i)
                except Exception:  # noqa: BLE001 - the store is down: keep trying until told to stop
                    time.sleep(0.05)
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(3)
    assert len(inserted) > 20, "the writer did not get going"
    for svc in reversed(store_services):        # FerretDB first, then PostgreSQL with its backends
        os.killpg(svc.pid(), signal.SIGKILL)
    time.sleep(1)
    stop.set()
    writer.join(60)
    assert not writer.is_alive()
    services.up(s)
    with store.client(s) as c:
        db = c[s.mongo_db]
        got = {d["_id"]: d["v"] for d in db["acked"].find()}
        have = {d["_id"] for d in db["acked"].find({"_id": {"$in": inserted}}, {"_id": 1})}
    assert all(acked[k] <= got.get(k, -1) <= attempted[k] for k in acked), (acked, got)
    assert have == set(inserted)
