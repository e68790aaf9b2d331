"""The streaming recommender: Kafka activity -> per-user taste -> recommendations in MongoDB.

    ./spark-submit.sh jobs/recommend_stream.py [--until-idle S] [--timeout S] [--model-version V]

One stateless Structured Streaming query; each user's taste lives in the store, inside the user's
recommendation document:

    Kafka `activity` (key = user id, JSON value)
      -> the value's user_id (a JVM-side get_json_object; the raw value stays binary)
      -> foreachBatch: once per micro-batch, repartitioned by user (stream_partitions tasks), one
         mapInPandas task per partition (jobs.stream_batch.ServePartition): read the partition's users'
         documents (their state), parse and validate every record (jobs.events), fold each user's valid
         events into their taste (jobs.taste), taste vectors, LSH candidates and exact re-rank
         (jobs.ranking), then the idempotent writes (jobs.stream_sink): one document per changed user
         (recommendations and state together), dead letters, the activity feed; the driver writes the
         batch's metrics.

Exactly-once without Spark's state store: every document records the (query id, batch id) that last
changed it (`applied`; the query id persists in the checkpoint). Spark replays an unfinished micro-batch
with the same offsets; a user whose document already carries this batch is not applied again (its
document, state and list in one write, is already the batch's result), the others are applied to
their stored state as the first attempt would have. Ranking is deterministic, times come from the
events, and all writes are upserts or inserts keyed by id, so a crash at any point (SIGKILL included)
and a restart from the same checkpoint end with the same documents as an uninterrupted run.

Measured against the earlier `transformWithState` (RocksDB state store) query: a small micro-batch's
floor fell to about half (README, "Streaming recommender, rebuilt"), the Python stateful operator's
state server round trips and the state commit being gone.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import namedtuple

from common.catalogue import Catalogue
from conf import Settings
from jobs import events as ev
from jobs import taste

QUERY_NAME = "recommend_stream"

OUT_FIELDS = [
    ("kind", "string"), ("user_id", "string"),
    # kind = user: the state after this batch
    ("track_ids", "array<bigint>"), ("pos", "array<double>"), ("neg", "array<double>"), ("heard", "array<bigint>"),
    ("n_events", "bigint"), ("event_time_max", "bigint"), ("n_new", "int"),
    # kind = event: one applied event; kind = replayed: an event of a user whose document already has
    # this batch (a replay), for the activity feed only
    ("event_id", "string"), ("track_id", "bigint"), ("action", "string"), ("event_time", "bigint"),
    ("ms_played", "bigint"), ("session_id", "string"),
    # kind = dead: one rejected record
    # (raw and key cut to what the sink stores, on the executor; raw_size: the value's full size in bytes)
    ("raw", "binary"), ("key", "binary"), ("reason", "string"), ("raw_size", "bigint"),
    # every kind: the Kafka position (for `user`: of the user's last applied event)
    ("topic", "string"), ("partition", "int"), ("offset", "bigint"), ("kafka_ms", "bigint"),
]
OUT_SCHEMA = ", ".join(f"{n} {t}" for n, t in OUT_FIELDS)


class OutRow(namedtuple("OutRow", [n for n, _ in OUT_FIELDS], defaults=(None,) * len(OUT_FIELDS))):
    """One output row (a plain named tuple: building a pyspark `Row` cost about 20 µs, several per user)."""
    __slots__ = ()

    def asDict(self) -> dict:   # noqa: N802 (as pyspark's Row)
        return self._asdict()


def _out(**values) -> OutRow:
    return OutRow(**values)


# --- the per-user step: pure Python, testable without Spark ----------------------------------------

STATE_FORMAT = 2       # 1: event ids as text, uncompressed (read, never written)


def state_doc(s: taste.UserState) -> dict:
    """The user's state as stored in their recommendation document (`state`): one binary value, zlib
    (level 1) over an int64 header, then int64 and float64 arrays (track ids, weights, heard tracks, the
    recent event ids' 64-bit keys). The local store decodes the stored document on every upsert, so its
    size is write cost: a user at every cap (200 weighted tracks, 500 heard, 256 event ids) takes about
    a third of the bytes of format 1, which kept the event ids as text (6.6 KB against 17.4 KB for the
    whole document: benchmarks/bench_stream.py, write cost)."""
    import zlib

    import numpy as np

    head = np.array([s.n_events, s.last_event_ms, s.partition, s.offset, len(s.track_ids), len(s.heard),
                     len(s.event_ids)], np.int64)
    data = b"".join([head.tobytes(), np.asarray(s.track_ids, np.int64).tobytes(), np.asarray(s.pos, np.float64).tobytes(),
                     np.asarray(s.neg, np.float64).tobytes(), np.asarray(s.heard, np.int64).tobytes(),
                     np.asarray(s.event_ids, np.int64).tobytes()])
    return {"format": STATE_FORMAT, "data": zlib.compress(data, 1)}


def state_from_doc(d: dict | None) -> taste.UserState:
    """`state_doc` read back (an empty state for None); format 1 is read too (its event ids are keyed)."""
    import zlib

    import numpy as np

    if not d:
        return taste.UserState()
    fmt = d.get("format")
    if fmt not in (1, 2):
        raise ValueError(f"unknown user state format {fmt!r}")
    data = bytes(d["data"]) if fmt == 1 else zlib.decompress(bytes(d["data"]))
    head = np.frombuffer(data, np.int64, 6 if fmt == 1 else 7)
    n_events, last, part, off, n_tracks, n_heard = (int(x) for x in head[:6])
    at = 8 * len(head)

    def take(dtype, n):
        nonlocal at
        out = np.frombuffer(data, dtype, n, at)
        at += 8 * n
        return out

    ids, pos, neg, heard = take(np.int64, n_tracks), take(np.float64, n_tracks), take(np.float64, n_tracks), take(
        np.int64, n_heard)
    if fmt == 1:
        text = data[at:].decode("utf-8")
        keys = tuple(taste.event_key(e) for e in text.split("\n")) if text else ()
    else:
        keys = tuple(take(np.int64, int(head[6])).tolist())
    return taste.UserState(tuple(ids.tolist()), tuple(pos.tolist()), tuple(neg.tolist()), tuple(heard.tolist()), keys,
                           n_events, last, part, off)


def already_applied(applied: dict | None, query_id: str, batch_id: int) -> bool:
    """True if a document's `applied` marker says this query's batch `batch_id` (or a later one) changed it."""
    return bool(applied) and applied.get("query") == query_id and int(applied.get("batch", -1)) >= int(batch_id)


def _text(b) -> str | None:
    if b is None:
        return None
    return bytes(b).decode("utf-8", errors="replace")


def process_user(user_key: str, rows, state: taste.UserState, known: Catalogue, rules: taste.Rules,
                 limits: ev.Limits) -> tuple[taste.UserState | None, list[OutRow]]:
    """One user's records of a micro-batch -> (new state or None if unchanged, output rows).

    `rows` have key, value (bytes), topic, partition, offset, kafka_ms. Never raises on bad input.
    """
    out, valid = [], []
    for r in rows:
        res = ev.parse(r.value, key=_text(r.key), ref_ms=r.kafka_ms, known=known, limits=limits)
        if isinstance(res, ev.Event) and res.user_id != user_key:
            res = ev.Reject(ev.BAD_VALUE, "user_id is ambiguous (repeated with different values)")
        if isinstance(res, ev.Reject):
            out.append(_dead_row(user_key, r, res.reason))
        else:
            valid.append((res, int(r.partition), int(r.offset), r.topic, r.kafka_ms))
    if not valid:
        return None, out
    valid.sort(key=lambda v: taste.event_order(v[0], v[1], v[2]))
    new = state
    topic = valid[-1][3]
    for e, part, off, top, kms in valid:
        before = new
        new = taste.apply(new, e, rules, known.duration_of(e.track_id), part, off)
        if new is before:       # a duplicate event id: already applied
            continue
        out.append(_out(kind="event", user_id=user_key, event_id=e.event_id, track_id=e.track_id, action=e.action,
                        event_time=e.event_time_ms, ms_played=e.ms_played, session_id=e.session_id,
                        topic=top, partition=part, offset=off, kafka_ms=kms))
    if new is state:
        return None, out
    out.append(_out(kind="user", user_id=user_key, track_ids=list(new.track_ids), pos=list(new.pos),
                    neg=list(new.neg), heard=list(new.heard), n_events=new.n_events,
                    event_time_max=new.last_event_ms, n_new=new.n_events - state.n_events,
                    topic=topic, partition=new.partition, offset=new.offset))
    return new, out


def _dead_row(user_key: str, r, reason: str) -> OutRow:
    raw, size = ev.cut(r.value, ev.RAW_KEEP_BYTES)
    key, _ = ev.cut(r.key, ev.KEY_KEEP_BYTES)
    return _out(kind="dead", user_id=(user_key or None) and user_key[:ev.MAX_ID_CHARS], raw=raw, key=key,
                reason=reason, raw_size=size if r.value is not None else None, topic=r.topic, partition=r.partition,
                offset=r.offset, kafka_ms=r.kafka_ms)


def _encodable(rows: list[OutRow]) -> None:
    """Raise if a string of the output cannot be encoded (Arrow would fail after the state was updated)."""
    for row in rows:
        for v in row:
            if isinstance(v, str):
                v.encode("utf-8")


def process_user_isolated(user_key: str, rows, state: taste.UserState, known: Catalogue, rules: taste.Rules,
                          limits: ev.Limits) -> tuple[taste.UserState | None, list[OutRow]]:
    """`process_user`, but a failure handling this user's records (a bug, an output that cannot be encoded)
    turns all of them into dead letters with the reason and leaves the user's state as it was; the other
    users of the micro-batch go on."""
    try:
        new, out = process_user(user_key, rows, state, known, rules, limits)
        _encodable(out)
        return new, out
    except Exception as exc:
        detail = (str(exc).splitlines() or [""])[0][:200].encode("ascii", "backslashreplace").decode("ascii")
        reason = f"{ev.USER_FAILED}: handling user {ev._short(user_key)} failed with {type(exc).__name__}: {detail}"
        return None, [_dead_row(user_key, r, reason) for r in rows]


def apply_batch(by_user: dict, stored: dict, known: Catalogue, rules: taste.Rules, limits: ev.Limits, *,
                query_id: str, batch_id: int) -> tuple[list[OutRow], dict[str, dict], int]:
    """One task's users of a micro-batch -> (output rows, {user: new `state` and `applied` marker}, events of
    users skipped as already applied).

    `by_user`: user key -> that user's records; `stored`: user key -> their stored document (`state`,
    `applied`) or None. A user whose document already carries this batch (a replay after a crash) is not
    applied again: their records give only dead letters and `replayed` rows (the activity feed's inserts
    are idempotent), and the events that batch applied are counted from the marker."""
    out, changed, replayed = [], {}, 0
    for user_key in sorted(by_user):
        doc = stored.get(user_key) or {}
        if already_applied(doc.get("applied"), query_id, batch_id):
            _, rows = process_user_isolated(user_key, by_user[user_key], taste.UserState(), known, rules, limits)
            out.extend(r if r.kind != "event" else _out(**{**r.asDict(), "kind": "replayed"}) for r in rows
                       if r.kind != "user")
            replayed += int(doc["applied"].get("events", 0))
            continue
        new, rows = process_user_isolated(user_key, by_user[user_key], state_from_doc(doc.get("state")), known,
                                          rules, limits)
        if new is not None:
            n_new = next(int(r.n_new) for r in rows if r.kind == "user")
            changed[user_key] = {"state": state_doc(new),
                                 "applied": {"query": query_id, "batch": int(batch_id), "events": n_new}}
        out.extend(rows)
    return out, changed, replayed


# --- the query -------------------------------------------------------------------------------------

def kafka_source(spark, settings: Settings, starting_offsets: str | None = None):
    from common.kafka import spark_options

    return (spark.readStream.format("kafka")
            .options(**spark_options(settings))
            .option("subscribe", settings.topic_activity)
            .option("failOnDataLoss", "true" if settings.kafka_fail_on_data_loss else "false")
            .option("startingOffsets", starting_offsets or settings.starting_offsets)
            .option("maxOffsetsPerTrigger", int(settings.max_offsets_per_trigger))
            .load())


def build(spark, settings: Settings, source=None):
    """The query's input: one row per Kafka record with its user key (a streaming DataFrame)."""
    source = source if source is not None else kafka_source(spark, settings)
    return source.selectExpr(
        "coalesce(get_json_object(CAST(value AS STRING), '$.user_id'), '') AS user_key",
        "key", "value", "topic", "partition", "offset",
        "CAST(unix_millis(timestamp) AS BIGINT) AS kafka_ms")


def _python_for_udfs(spark) -> None:
    """The interpreter the query's Python runs in must have pyarrow and pandas.

    UDFs take `SparkContext.pythonExec`, fixed from PYSPARK_PYTHON when the context started ("python3"
    if unset), so a session started from plain Python would run them with the system interpreter;
    spark-submit.sh sets PYSPARK_PYTHON itself."""
    sc = spark.sparkContext
    wanted = sc.getConf().get("spark.pyspark.python", None) or os.environ.get("PYSPARK_PYTHON") or sys.executable
    if sc.pythonExec != wanted:
        sc.pythonExec = wanted


def checkpoint_path(settings: Settings) -> str:
    from common import storage

    return storage.spark_uri(storage.join(settings.checkpoint_dir, QUERY_NAME))


STREAM_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # no empty micro-batches while idle: each costs both cores' time and delays the next event
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}

LOCAL_FILES = "fs.AbstractFileSystem.file.impl"     # Hadoop's FileContext class for file:// paths


def run(spark, settings: Settings, *, model_version: str | None = None, source=None, bundle=None,
        catalogue=None, trigger_seconds: float | None = None, log=print):
    """Start the query and return the StreamingQuery (stop it, or `wait` for it).

    With a `bundle` or a `model_version` the query serves that model; otherwise it serves the current
    one and follows the `models` pointer: a new current model is served (and validates track ids) from
    the next micro-batch on."""
    from jobs.stream_batch import BatchCoordinator, ModelSource

    pinned = bundle is not None or model_version is not None
    if bundle is None:
        from jobs.model_store import load_bundle

        bundle = load_bundle(settings, model_version)
    models = ModelSource(settings, bundle, catalogue, pinned=pinned)
    _python_for_udfs(spark)
    for k, v in STREAM_CONF.items():
        spark.conf.set(k, v)
    # a checkpoint on a local disk: its offset log and commit log through Hadoop's raw local file system,
    # without a .crc side file per log file (the files are still written whole and renamed into place);
    # measured 40-60 ms less per micro-batch here (bench_stream --floor). Other file systems (hdfs://, s3a://) are unaffected.
    if settings.stream_checkpoint_checksums:
        spark.conf.unset(LOCAL_FILES)
    else:
        spark.conf.set(LOCAL_FILES, "org.apache.hadoop.fs.local.RawLocalFs")
    stream = build(spark, settings, source)
    writer = BatchCoordinator(settings, models, log=log)
    trigger = settings.trigger_seconds if trigger_seconds is None else trigger_seconds
    query = (stream.writeStream.queryName(QUERY_NAME).foreachBatch(writer)
             .option("checkpointLocation", checkpoint_path(settings))
             .trigger(processingTime=f"{int(round(trigger * 1000))} milliseconds")
             .start())
    writer.query_id = str(query.id)     # the same after a restart from the checkpoint
    query.writer = writer  # the driver-side state (metrics) for tests and demos
    return query


def kafka_end_offsets(settings: Settings) -> dict[str, dict[str, int]]:
    """{topic: {partition: high watermark}} of the activity topic, straight from Kafka."""
    from confluent_kafka import Consumer, TopicPartition

    from common.kafka import client_config

    c = Consumer(client_config(settings, **{"group.id": f"{QUERY_NAME}-probe", "enable.auto.commit": False}))
    try:
        meta = c.list_topics(settings.topic_activity, timeout=10).topics[settings.topic_activity]
        out = {}
        for p in meta.partitions:
            _, high = c.get_watermark_offsets(TopicPartition(settings.topic_activity, p), timeout=10)
            out[str(p)] = int(high)
        return {settings.topic_activity: out}
    finally:
        c.close()


def caught_up(query, settings: Settings) -> bool:
    """True when the last finished micro-batch ended at Kafka's current end of the topic."""
    import json

    latest = kafka_end_offsets(settings)[settings.topic_activity]
    p = query.lastProgress
    if not p:
        return not any(latest.values())
    p = json.loads(p.json) if hasattr(p, "json") else p     # offsets as JSON, not as Python reprs
    for s in p.get("sources", []):
        end = s.get("endOffset")
        if end and settings.topic_activity in end:
            done = {k: int(v) for k, v in end[settings.topic_activity].items()}
            return all(done.get(k, 0) >= v for k, v in latest.items())
    return not any(latest.values())


class StopSignal:
    """SIGTERM and Ctrl-C ask the query to stop; `wait` then stops it between two micro-batches."""

    def __init__(self):
        self.name: str | None = None

    def install(self) -> "StopSignal":
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        self.name = self.name or signal.Signals(signum).name

    def __bool__(self) -> bool:
        return self.name is not None


def stop_between_batches(query, timeout: float = 120.0, poll: float = 0.02) -> None:
    """Let the micro-batch in flight finish and commit, start no other, then stop (or after `timeout`
    seconds anyway).

    Structured Streaming has no graceful stop: `stop()` interrupts the batch in flight, and a query
    whose batches run back to back (a backlog, or batches longer than the trigger) shows no gap between
    them to stop in. Its loop runs a micro-batch only while the query is active, and Spark ends a
    Trigger.AvailableNow query by marking it terminated (`StreamExecution.state`, public in Spark 4.1):
    so does this, then waits for the query's thread to end. Where that state is out of reach (another
    Spark), it waits for a gap between triggers instead."""
    from py4j.protocol import Py4JError

    try:
        from pyspark import SparkContext

        runtime = SparkContext._jvm.org.apache.spark.sql.execution.streaming.runtime
        query._jsq.streamingQuery().state().set(getattr(runtime, "TERMINATED$").__getattr__("MODULE$"))
    except (Py4JError, AttributeError, TypeError):
        deadline = time.monotonic() + timeout
        while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(poll)
    else:
        try:
            query.awaitTermination(timeout)
        except Exception as exc:        # the last micro-batch failed: the query's own error
            raise RuntimeError(f"{QUERY_NAME} failed: {exc}") from None
    query.stop()


def wait(query, settings: Settings, *, timeout: float | None = None, until_idle: float | None = None,
         poll: float = 0.5, stop: StopSignal | None = None) -> str:
    """Block until the query fails (raises), `timeout` seconds pass, it has read everything in the topic
    and nothing new came for `until_idle` seconds, or `stop` is signalled (the query is then stopped
    between micro-batches). Returns "timeout", "idle", "stopped" or the signal's name."""
    start = time.monotonic()
    idle_since = None
    while True:
        if stop:
            stop_between_batches(query)
            return stop.name
        if query.exception() is not None:
            raise RuntimeError(f"{QUERY_NAME} failed: {query.exception()}")
        if not query.isActive:
            return "stopped"
        now = time.monotonic()
        if timeout is not None and now - start >= timeout:
            return "timeout"
        if until_idle is not None:
            try:
                done = caught_up(query, settings)
            except Exception:   # Kafka unreachable for the probe (a broker restart): not idle, keep waiting
                done = False
            if done:
                idle_since = idle_since or now
                if now - idle_since >= until_idle:
                    return "idle"
            else:
                idle_since = None
        for _ in range(max(1, int(poll / 0.05))):
            if stop:
                break
            time.sleep(min(poll, 0.05))


# Spark 4.1.1 bug SPARK-55271 (apache/spark#55236): the first micro-batch after a restart that retries an
# uncommitted batch runs and commits, then the Kafka source's progress metrics throw this NPE and the
# query stops. A second start from the same checkpoint goes on normally, so `serve` restarts the query
# when (and only when) it dies of exactly this.
SPARK_55271 = 'because the return value of "scala.Option.get()" is null'


def is_spark_55271(exc: BaseException) -> bool:
    text = str(exc)
    return SPARK_55271 in text and "IterableOps.map" in text


def data_loss_line(exc: BaseException, settings: Settings) -> str | None:
    """The one actionable line for a query stopped by Kafka data loss (failOnDataLoss), else None."""
    text = str(exc)
    if "KAFKA_DATA_LOSS" not in text and "Some data may have been lost" not in text:
        return None
    return (f"{QUERY_NAME}: error: Kafka no longer has records of topic {settings.topic_activity!r} that the checkpoint "
            f"expects (the topic was deleted and created again, or its records expired before they were read). "
            f"To go on from the topic's current end, skipping the lost records (and those a recreated topic got "
            f"before this start), run again with MUSICREC_KAFKA_FAIL_ON_DATA_LOSS=false; to start over, move the "
            f"checkpoint {checkpoint_path(settings)} away.")


def store_down_line(exc: BaseException) -> str | None:
    """The one line of a query stopped because the store stayed down past store_retry_limit_s, else None."""
    import re

    from common.retry import MARK

    m = re.search(re.escape(MARK) + r"[^\n]*", str(exc))
    return None if m is None else (f"{QUERY_NAME}: error: {m.group(0)}; the next start resumes from the "
                                   f"checkpoint (nothing is lost)")


def serve(spark, settings: Settings, *, bundle=None, model_version: str | None = None, timeout: float | None = None,
          until_idle: float | None = None, trigger_seconds: float | None = None, restarts: int = 3, log=print,
          stop: StopSignal | None = None) -> dict:
    """Run the query until `timeout` / idle / `stop`, restarting it after the SPARK-55271 failure; a summary."""
    start = time.monotonic()
    totals = {"batches": 0, "users_written": 0, "restarts": 0}
    for attempt in range(restarts + 1):
        query = run(spark, settings, bundle=bundle, model_version=model_version, trigger_seconds=trigger_seconds,
                    log=log)
        try:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            totals["how"] = wait(query, settings, timeout=left, until_idle=until_idle, stop=stop)
            return totals
        except RuntimeError as exc:
            if attempt < restarts and is_spark_55271(exc):
                totals["restarts"] += 1
                log(f"{QUERY_NAME}: restarting after Spark bug SPARK-55271 (progress metrics of a retried batch)")
                continue
            raise
        finally:
            query.stop()
            totals["batches"] += query.writer.batches
            totals["users_written"] += query.writer.users_written
    raise AssertionError("unreachable")


def _preflight(settings: Settings) -> None:
    """One clear line per missing service."""
    from confluent_kafka.admin import AdminClient

    from common.store import client

    try:
        client(settings, 3000).admin.command("ping")
    except Exception as exc:
        raise SystemExit(f"recommend_stream: error: MongoDB not reachable at {settings.mongo_uri} ({type(exc).__name__}); run `make up`")
    try:
        from common.kafka import client_config

        AdminClient(client_config(settings)).list_topics(timeout=5)
    except Exception as exc:
        raise SystemExit(f"recommend_stream: error: Kafka not reachable at {settings.kafka_bootstrap} ({exc}); run `make up`")
    from stack.services import ensure_topics

    ensure_topics(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recommend_stream", description="Kafka activity -> per-user recommendations in MongoDB.",
        usage="./spark-submit.sh jobs/recommend_stream.py [--until-idle S] [--timeout S] [--model-version V]")
    parser.add_argument("--model-version", help="model to serve (default: the current one)")
    parser.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser.add_argument("--until-idle", type=float, help="stop once caught up and idle this many seconds")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval (default: settings)")
    args = parser.parse_args(argv)
    for name in ("timeout", "until_idle", "trigger_seconds"):
        v = getattr(args, name)
        if v is not None and v < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")

    from common.spark import build_session
    from conf import get_settings

    settings = get_settings()
    stop = StopSignal().install()       # from here on, SIGTERM and Ctrl-C stop between micro-batches
    _preflight(settings)
    try:
        from jobs.model_store import load_bundle

        bundle = load_bundle(settings, args.model_version)
    except (LookupError, FileNotFoundError) as exc:
        print(f"recommend_stream: error: {exc}", file=sys.stderr)
        return 1
    spark = build_session(settings, QUERY_NAME, STREAM_CONF)
    follows = "pinned" if args.model_version else "follows the current model"
    print(f"recommend_stream: model {bundle.version} ({follows}), {len(bundle.ids)} tracks, topic "
          f"{settings.topic_activity} -> {settings.mongo_db}.{settings.coll_recommendations}, checkpoint "
          f"{checkpoint_path(settings)}", flush=True)
    try:
        summary = serve(spark, settings, model_version=args.model_version, timeout=args.timeout,
                        until_idle=args.until_idle, trigger_seconds=args.trigger_seconds,
                        log=lambda m: print(m, flush=True), stop=stop)
        how = summary["how"]
        how = f"stopped by {how} between micro-batches" if how.startswith("SIG") else how
        print(f"recommend_stream: {how} after {summary['batches']} micro-batches, "
              f"{summary['users_written']} recommendation documents written", flush=True)
    except RuntimeError as exc:
        line = (data_loss_line(exc, settings) or store_down_line(exc)
                or f"recommend_stream: error: {str(exc).splitlines()[0][:500]}")
        print(line, file=sys.stderr, flush=True)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
