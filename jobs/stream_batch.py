"""One micro-batch of the streaming recommender, split between the executors and the driver.

- On the executors, `ServePartition` (a `mapInPandas` over the batch's records repartitioned by user,
  one task per partition): the partition's users' stored documents (their state; one `find_one` by
  `_id` each, a few at once: the local store pushes down `_id` equality but not `$in`); then chunk by
  chunk, the users whose first record reached Kafka first before the others: their records parsed and
  applied (recommend_stream.apply_batch), taste vectors, LSH candidates and ranking, and the writes with
  pymongo while the next chunk is made: one document per changed user (an upsert by user id carrying the
  list and the state); after the last chunk, the partition's dead letters and activity-feed events
  (inserts by id). It returns one small metrics row.
- On the driver, `BatchCoordinator` (the foreachBatch function): picks the model to serve (a model that
  became current while the query runs is served from the next micro-batch on), starts the tasks,
  merges their metrics rows into the batch's `stream_batches` document; a driver thread trims the feed and
  the old batch metrics beside the micro-batches (`Housekeeping`).

The served model (the catalogue, its vectors and the banded index already hashed) travels to the
executors once per model version, as one file (`SparkContext.addFile`) named by its content; each
Python worker reads it once and keeps it. `serve_frame` is the per-partition work without Spark, so
tests drive it directly.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from common.catalogue import Catalogue
from jobs import ranking, taste
from jobs import stream_sink as sk
from jobs.model_store import load_catalogue

METRIC_FIELDS = [("users", "bigint"), ("events", "bigint"), ("dead", "bigint"), ("candidates", "bigint"),
                 ("read_ms", "bigint"), ("cached", "bigint"), ("rank_ms", "bigint"), ("write_ms", "bigint"),
                 ("task_ms", "bigint"),
                 ("latencies", "array<bigint>"), ("offsets", "string")]
METRIC_SCHEMA = ", ".join(f"{n} {t}" for n, t in METRIC_FIELDS)


def _ms() -> int:
    return int(time.time() * 1000)


# --- the served model ----------------------------------------------------------------------------------

class Served:
    """What a worker ranks with: the catalogue and its banded index (rows aligned)."""

    def __init__(self, catalogue: Catalogue, index):
        self.catalogue, self.index = catalogue, index
        self.version = catalogue.version

    @property
    def name(self) -> str:
        return "served-" + self.catalogue.name

    @classmethod
    def of(cls, bundle, catalogue: Catalogue) -> "Served":
        return cls(catalogue, bundle.index())

    def save(self, folder) -> str:
        return self.catalogue.save(folder, extra=self.index.arrays(), name=self.name)

    @classmethod
    def read(cls, path) -> "Served":
        from jobs.lsh import BandedIndex

        cat, extra = Catalogue.read(path)
        return cls(cat, BandedIndex.from_arrays(cat.vectors, cat.ids, extra))


_SERVED: dict[str, Served] = {}
_SHIPPED: set[str] = set()


def ship_file(spark, what) -> str:
    """Send `what` (a Catalogue or Served: `.name`, `.save(folder)`) to the executors once per
    application (SparkContext.addFile); the name they load it by (SparkFiles.get)."""
    import tempfile

    name = what.name
    key = f"{spark.sparkContext.applicationId}/{name}"
    if key not in _SHIPPED:
        spark.sparkContext.addFile(what.save(tempfile.gettempdir() + "/musicrec-shipped"))
        _SHIPPED.add(key)
    return name


def ship(spark, served: Served) -> str:
    """Send the served model to the executors once per model version; the name they load it by."""
    return ship_file(spark, served)


def load_served(name: str) -> Served:
    """The shipped model, read once per Python worker (older versions are dropped)."""
    if name not in _SERVED:
        from pyspark import SparkFiles

        served = Served.read(SparkFiles.get(name))
        for old in [k for k in _SERVED if k != name]:
            del _SERVED[old]
        _SERVED[name] = served
    return _SERVED[name]


# --- the per-partition work ----------------------------------------------------------------------------

def recommend(served: Served, users, top_k: int, max_per_artist: int):
    """(items per user, LSH candidates per user) for a frame of `user` rows."""
    cat = served.catalogue
    ids_l, pos_l, neg_l = list(users["track_ids"]), list(users["pos"]), list(users["neg"])
    tastes, has = taste.taste_matrix(ids_l, pos_l, neg_l, cat.rows, cat.vectors, taste.Rules.push)
    queries = []
    for i, (ids, pos, neg, heard) in enumerate(zip(ids_l, pos_l, neg_l, users["heard"])):
        rows = cat.rows(np.asarray(ids, dtype=np.int64)) if len(ids) else np.zeros(0, dtype=np.int64)
        genres = {int(t): str(cat.genre[r]) for t, r in zip(ids, rows) if r >= 0 and cat.genre[r]}
        queries.append(ranking.Query(
            taste=tastes[i] if has[i] else None, heard=tuple(int(t) for t in heard),
            positives=tuple((int(t), float(p)) for t, p in zip(ids, pos) if p > 0),
            affinity=taste.genre_affinity(ids, pos, neg, genres)))
    return ranking.recommend(served.index, cat, queries, int(top_k), int(max_per_artist))


def item_doc(item: ranking.Item, cat: Catalogue, with_text: bool = False) -> dict:
    """The item as stored: ids, score, reason code (readers resolve titles from the catalogue).
    `with_text` copies titles and the reason's text in as well, as documents did before (the write-cost
    benchmark compares both)."""
    d = item.to_doc()
    if with_text:
        r = cat.row(item.track_id)
        d.update(title=str(cat.title[r]) or f"track {item.track_id}", artist=str(cat.artist[r]),
                 genre_top=str(cat.genre[r]) or None, kind=d["reason"], reason=ranking.reason_text(d, cat))
        d.setdefault("reason_track_id", None)
    return d


def parts(docs: list, writers: int, least: int = 20) -> list[list]:
    """`docs` dealt into at most `writers` parts of at least `least` documents (one part if fewer)."""
    n = max(1, min(int(writers), len(docs) // least))
    return [docs[i::n] for i in range(n)]


def _by_oldest_event(pdf):
    """The `user` rows of a frame, the user whose oldest event of the batch is oldest first (ties: user id)."""
    events = pdf[pdf["kind"] == "event"]
    oldest = events.groupby("user_id")["event_time"].min()
    users = pdf[pdf["kind"] == "user"]
    return users.iloc[np.lexsort((users["user_id"].to_numpy(dtype=object),
                                  users["user_id"].map(oldest).fillna(np.inf).to_numpy(dtype=np.float64)))]


def chunk_ranges(n: int, chunk_users: int) -> list[tuple[int, int]]:
    """[lo, hi) of a task's chunks of `n` users, `chunk_users` each (0: all at once); one, empty, for none
    (the records of no user still go through it)."""
    step = int(chunk_users) if int(chunk_users) > 0 else max(1, n)
    return [(lo, min(n, lo + step)) for lo in range(0, max(1, n), step)]


def frame_chunks(pdf, chunk_users: int = 0):
    """A partition's whole frame (`recommend_stream.OUT_SCHEMA` rows) as `serve_chunks` takes it: the users
    whose oldest event is oldest first, `chunk_users` at a time (0: all at once), each chunk with its users'
    events; the rows of no user (dead letters, replayed events) ride with the first chunk."""
    import pandas as pd

    users = _by_oldest_event(pdf)
    others = pdf[~pdf["kind"].isin(["user", "event"])]
    events = pdf[pdf["kind"] == "event"]
    for lo, hi in chunk_ranges(len(users), chunk_users):
        chunk = users.iloc[lo:hi]
        rows = [others] if lo == 0 else []
        yield pd.concat(rows + [chunk, events[events["user_id"].isin(chunk["user_id"])]], ignore_index=True)


def serve_frame(pdf, served: Served, sink, *, batch_id: int, top_k: int, max_per_artist: int,
                feed_size: int, writers: int = 1, states: dict | None = None, replayed_events: int = 0,
                chunk_users: int = 0) -> dict:
    """Rank and write one partition's rows (a pandas frame of `recommend_stream.OUT_SCHEMA`); its metrics
    (`serve_chunks` over `frame_chunks`). `states` (user -> `state` and `applied`, from
    recommend_stream.apply_batch) are stored in the documents; `replayed_events`: events applied by an
    earlier attempt of this batch (counted, not measured)."""
    chunks = ((c, states, 0) for c in frame_chunks(pdf, chunk_users))
    return serve_chunks(chunks, served, sink, batch_id=batch_id, top_k=top_k, max_per_artist=max_per_artist,
                        feed_size=feed_size, writers=writers, replayed_events=replayed_events)


def serve_chunks(chunks, served: Served, sink, *, batch_id: int, top_k: int, max_per_artist: int,
                 feed_size: int, writers: int = 1, replayed_events: int = 0) -> dict:
    """Rank and write one partition's users chunk by chunk; its metrics.

    `chunks` yields (frame of `recommend_stream.OUT_SCHEMA` rows, {user: `state` and `applied`} or None,
    replayed events), the users who have waited longest first; it may be lazy (`serve_records` parses and
    applies a chunk's records only once the previous chunk's documents are on their way). Each chunk's
    documents go to the store in `writers` concurrent parts (threads; pymongo is thread-safe) while the
    next chunk is made and ranked; the partition's dead letters and activity feed go after the last
    chunk's documents. An event's latency ends when the store acknowledges the command holding its user's
    document (from then on a reader sees the new list). A write that fails stops the work at the next
    chunk and cancels the writes not yet started, so a store outage fails the task in one timeout, not
    one per chunk. `rank_ms` is the time spent making and ranking the chunks (parsing and applying the
    records included) and `write_ms` what the writes took past the last chunk."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = _ms()
    cat = served.catalogue
    written: dict[str, int] = {}        # user -> when the command holding their document was acknowledged (ms)

    def write(part):
        sink.write_recommendations(part, on_written=lambda ids: written.update(dict.fromkeys(ids, _ms())))

    rank_ms, n_cand, n_users, replayed = 0, [], 0, int(replayed_events)
    at = sk.now_utc()
    dead, feed, offsets, ev_users, ev_times = [], [], {}, [], []
    pending: list = []
    pool = ThreadPoolExecutor(max(1, int(writers)))
    try:
        t = t0
        for frame, states, n_replayed in chunks:
            replayed += int(n_replayed)
            users = _by_oldest_event(frame)
            # a chunk may hold no user to rank (all its records rejected, or duplicates of applied events)
            items, cand = recommend(served, users, top_k, max_per_artist) if len(users) else ([], [])
            updated_at = sk.now_utc()
            docs = [sk.recommendation_doc(
                        u.user_id, [item_doc(it, cat) for it in its], model_version=served.version,
                        event_time_max_ms=int(u.event_time_max), n_events=int(u.n_events),
                        offsets={"topic": u.topic, "partition": int(u.partition), "offset": int(u.offset)},
                        batch_id=batch_id, updated_at=updated_at, candidates=int(c))
                    for u, its, c in zip(users.itertuples(index=False), items, cand)]
            for d in docs if states is not None else ():
                d.update(states[d["_id"]])
            n_cand.append(np.asarray(cand))
            n_users += len(users)
            pending += [pool.submit(write, p) for p in parts(docs, writers)]
            for f in pending:
                if f.done():
                    f.result()      # a write failed: stop here, not after making and ranking the rest
            rest = frame[frame["kind"] != "user"]
            dead += _dead_letters(rest[rest["kind"] == "dead"], batch_id, at)
            feed_events = rest[rest["kind"].isin(["event", "replayed"])]
            if feed_size > 0 and len(feed_events):
                feed += feed_events.sort_values(["event_time", "event_id"]).tail(feed_size).to_dict("records")
            for (topic, part), g in frame[["topic", "partition", "offset"]].dropna().groupby(["topic", "partition"]):
                lo, hi = offsets.get((topic, int(part)), (np.inf, -np.inf))
                offsets[(topic, int(part))] = (min(lo, int(g["offset"].min())), max(hi, int(g["offset"].max())))
            events = rest[rest["kind"] == "event"]
            ev_users.append(events["user_id"].to_numpy(dtype=object))
            ev_times.append(events["event_time"].to_numpy(dtype=np.int64))
            rank_ms += _ms() - t
            t = _ms()
        feed = sorted(feed, key=lambda e: (e["event_time"], e["event_id"]))[-feed_size:] if feed_size > 0 else []
        pending += [pool.submit(sink.write_dead_letters, dead),
                    pool.submit(sink.write_activity, [_activity(e, cat, at) for e in feed])]
        rank_ms += _ms() - t        # the chunks' iterator ending and the feed's documents
        t_ranked = _ms()
        for f in pending:
            f.result()      # the first failed write raises
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)   # the running writes end; the queued ones never start
        raise
    pool.shutdown(wait=True)
    end = _ms()
    users_of = np.concatenate(ev_users) if ev_users else np.zeros(0, dtype=object)
    done = np.array([written.get(u, np.nan) for u in users_of], dtype=np.float64)
    times = np.concatenate(ev_times) if ev_times else np.zeros(0, dtype=np.int64)
    cands = np.concatenate(n_cand) if n_cand else np.zeros(0)
    return {"users": n_users, "events": len(times) + replayed, "dead": len(dead),
            "candidates": int(np.sum(cands)), "read_ms": 0, "cached": 0, "rank_ms": rank_ms,
            "write_ms": end - t_ranked, "task_ms": end - t0,
            "latencies": (np.nan_to_num(done, nan=end) - times).astype(np.int64).tolist(),
            "offsets": json.dumps([{"topic": k[0], "partition": k[1], "first": int(lo), "last": int(hi)}
                                   for k, (lo, hi) in sorted(offsets.items())])}


def _dead_letters(rows, batch_id: int, at) -> list[dict]:
    """The dead-letter documents of `dead` rows."""
    return [sk.dead_letter_doc(d.raw, d.reason, topic=d.topic, partition=int(d.partition), offset=int(d.offset),
                               key=d.key, kafka_ms=None if d.kafka_ms is None or d.kafka_ms != d.kafka_ms
                               else int(d.kafka_ms), batch_id=batch_id, at=at,
                               raw_size=None if d.raw_size is None or d.raw_size != d.raw_size else int(d.raw_size))
            for d in rows.itertuples(index=False)]


def _activity(e: dict, cat: Catalogue, at) -> dict:
    """The activity-feed document of an `event` or `replayed` row."""
    r = cat.row(e["track_id"])
    return sk.activity_doc(e, title=str(cat.title[r]) if r >= 0 else None, artist=str(cat.artist[r]) if r >= 0 else None,
                           at=at)


_SINKS: dict = {}


def _sink(settings) -> sk.Sink:
    """One sink (one pymongo client) per worker and store."""
    key = (settings.mongo_uri, settings.mongo_db, settings.coll_recommendations, settings.coll_activity,
           settings.coll_dead_letters)
    if key not in _SINKS:
        _SINKS[key] = sk.Sink(settings)
    return _SINKS[key]


def store_retrying(settings, write, doing: str = "write"):
    """`write()` retried with bounded exponential backoff while the store fails (common.retry); one line
    per retry on stderr naming the store and the error."""
    from pymongo.errors import PyMongoError

    from common.retry import retrying

    s = settings
    return retrying(write, what=f"store {s.mongo_where}", limit_s=s.store_retry_limit_s,
                    initial_s=s.store_retry_initial_s, max_s=s.store_retry_max_s,
                    log=lambda m: print(m, file=sys.stderr, flush=True), retry_on=(PyMongoError,),
                    secrets=tuple(s.secret_values()), doing=doing)


def read_documents(coll, users: list[str], readers: int) -> dict[str, dict | None]:
    """{user: their stored `state` and `applied`, or None}: one find by `_id` per user, `readers` at once."""
    def one(u):
        return coll.find_one({"_id": u}, {"state": 1, "applied": 1})

    if readers <= 1 or len(users) < 2:
        return dict(zip(users, map(one, users)))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(readers, len(users))) as pool:
        return dict(zip(users, pool.map(one, users)))


class StateCache:
    """The stored `state` and `applied` of the users one partition's tasks handle, kept by a worker.

    Only the task of a user's partition writes the user's document, so what this worker read and wrote
    for the partition up to micro-batch N-1 is still what the store holds when it gets the same
    partition in batch N; any gap (another worker ran the partition, a batch was replayed, another query)
    empties it. When a query first uses it, it reads the whole collection once if that holds at most
    `max_users` documents (`load_all`), and then knows every user, those without a document included;
    after a later gap of the same query (workers taking turns would reload every other batch) or past
    `max_users` it keeps only
    the users it read or wrote, and the others are read from the store. A failed attempt that
    wrote some users leaves them at what this batch computes again from N-1 (applying is
    deterministic), so a stale entry cannot arise."""

    def __init__(self, max_users: int):
        self.max_users, self.stamp, self.docs, self.complete = int(max_users), None, {}, False
        self.loaded = set()     # the whole collection is read once per query: after a later gap, user by user

    def lookup(self, key, batch_id: int, users, load_all=None) -> dict:
        """{user: stored document or None} for the users known here (all of them once complete).
        `load_all(limit)`: every stored document by user, or None if there are more than `limit`."""
        if self.stamp != (key, int(batch_id) - 1):
            self.docs, self.complete, self.stamp = {}, False, None
            every = None
            if load_all is not None and self.max_users > 0 and key not in self.loaded:
                self.loaded.add(key)
                every = load_all(self.max_users)
            if every is not None:
                self.docs, self.complete = dict(every), True
        if self.complete:
            return {u: self.docs.get(u) for u in users}
        return {u: self.docs[u] for u in users if u in self.docs}

    def commit(self, key, batch_id: int, docs: dict) -> None:
        """After the partition's writes of `batch_id` succeeded: `docs` are now the stored documents."""
        if self.stamp is not None and self.stamp != (key, int(batch_id) - 1):
            self.docs, self.complete = {}, False
        self.docs.update(docs)
        if len(self.docs) > self.max_users:
            self.docs, self.complete = {}, False
        self.stamp = (key, int(batch_id))


def load_documents(coll, limit: int) -> dict | None:
    """Every document's `state` and `applied` by user, or None if the collection holds more than `limit`."""
    docs = {}
    for d in coll.find({}, {"state": 1, "applied": 1}).limit(int(limit) + 1):
        docs[d["_id"]] = d
        if len(docs) > limit:
            return None
    return docs


_CACHES: dict[int, StateCache] = {}


def state_cache(partition: int, max_users: int) -> StateCache:
    """This worker's cache for one partition of the micro-batches."""
    if partition not in _CACHES:
        _CACHES[partition] = StateCache(max_users)
    return _CACHES[partition]


def serve_records(pdf, served: Served, sink, settings, *, query_id: str, batch_id: int, writers: int = 1,
                  readers: int = 1, cache: StateCache | None = None) -> dict:
    """One task's records of a micro-batch (a pandas frame of `recommend_stream.build`'s columns): read
    its users' documents (those not in `cache`), apply the records, rank, write; its metrics."""
    import pandas as pd

    from jobs import events as ev
    from jobs import recommend_stream as rs

    t0 = _ms()
    by_user: dict[str, list] = {}
    arrived: dict[str, float] = {}      # user -> when their first record of the batch reached Kafka
    for r in pdf.itertuples(index=False):
        by_user.setdefault(r.user_key, []).append(r)
        k = r.kafka_ms if r.kafka_ms == r.kafka_ms and r.kafka_ms is not None else np.inf
        arrived[r.user_key] = min(arrived.get(r.user_key, np.inf), k)
    users = sorted((u for u in by_user if u), key=lambda u: (arrived[u], u))
    key = (query_id, int(settings.stream_partitions))
    coll = sink.db[settings.coll_recommendations]
    known = cache.lookup(key, batch_id, users, lambda limit: load_documents(coll, limit)) if cache is not None else {}
    stored = {**read_documents(coll, [u for u in users if u not in known], readers), **known}
    t_read = _ms()
    rules, limits = taste.Rules.from_settings(settings), ev.Limits.from_settings(settings)
    states: dict = {}

    def chunks():
        """The users who waited longest first, in `chunk_ranges` (the records of no user with the first):
        their records parsed and applied only when the chunk is due."""
        for lo, hi in chunk_ranges(len(users), settings.stream_rank_chunk_users):
            mine = users[lo:hi] + ([""] if lo == 0 and "" in by_user else [])
            out, changed, replayed = rs.apply_batch({u: by_user[u] for u in mine}, stored, served.catalogue, rules,
                                                    limits, query_id=query_id, batch_id=batch_id)
            states.update(changed)
            yield pd.DataFrame(out, columns=[n for n, _ in rs.OUT_FIELDS]), changed, replayed

    m = serve_chunks(chunks(), served, sink, batch_id=batch_id, top_k=int(settings.top_k),
                     max_per_artist=int(settings.max_per_artist), feed_size=int(settings.activity_feed_size),
                     writers=writers)
    if cache is not None:
        cache.commit(key, batch_id, {**stored, **states})
    m["read_ms"] = t_read - t0
    m["cached"] = len(known)
    m["task_ms"] = _ms() - t0
    return m


class ServePartition:
    """The mapInPandas function of a micro-batch: everything a task does for its partition."""

    def __init__(self, settings, served_name: str, query_id: str, batch_id: int, numba_threads: int = 1):
        self.settings, self.served_name, self.batch_id = settings, served_name, int(batch_id)
        self.query_id, self.numba_threads = query_id, numba_threads

    def __call__(self, frames):
        import numba
        import pandas as pd

        from pyspark import TaskContext

        from common.worker_imports import lazy_zip_caches

        numba.set_num_threads(min(self.numba_threads, numba.config.NUMBA_NUM_THREADS))  # one task, one core
        s = self.settings
        lazy_zip_caches(s.stream_lazy_zip_caches)   # from this worker's next task on (common.worker_imports)
        cache = state_cache(TaskContext.get().partitionId(), s.stream_state_cache_users)
        frames = list(frames)
        pdf = pd.concat(frames, ignore_index=True) if frames else None
        if pdf is None or not len(pdf):
            cache.commit((self.query_id, int(s.stream_partitions)), self.batch_id, {})   # nothing changed
            return
        # the store's pool is sized for `store_writers` concurrent writes and `store_readers` reads: shared
        # by the micro-batch's tasks
        tasks = max(1, int(s.stream_partitions))
        writers = max(1, int(s.store_writers) // tasks)
        readers = max(1, int(s.store_readers) // (2 * tasks))
        served = load_served(self.served_name)
        # every write of the partition is idempotent and the users already written carry this batch, so its
        # whole work (reads included) is retried while the store is down; past the limit the task, and so the
        # query, fails, and a restart replays the uncommitted batch
        m = store_retrying(s, lambda: serve_records(pdf, served, _sink(s), s, query_id=self.query_id,
                                                    batch_id=self.batch_id, writers=writers, readers=readers,
                                                    cache=cache))
        yield pd.DataFrame([m], columns=[n for n, _ in METRIC_FIELDS])


# --- the driver ------------------------------------------------------------------------------------------

def merge_metrics(rows: list[dict], batch_id: int, model_version: str, duration_ms: int) -> dict:
    """The batch's `stream_batches` document from its tasks' metrics rows."""
    users = sum(int(r["users"]) for r in rows)
    events = sum(int(r["events"]) for r in rows)
    dead = sum(int(r["dead"]) for r in rows)
    offsets = sorted((o for r in rows for o in json.loads(r["offsets"])), key=lambda o: (o["topic"], o["partition"]))
    merged: dict = {}
    for o in offsets:       # one partition's rows may sit in several tasks
        k = (o["topic"], o["partition"])
        m = merged.setdefault(k, dict(o))
        m["first"], m["last"] = min(m["first"], o["first"]), max(m["last"], o["last"])
    latencies = [x for r in rows for x in (r["latencies"] or [])]
    task = max((int(r["task_ms"]) for r in rows), default=0)
    return {"_id": int(batch_id), "rows": events + dead, "events": events, "dead": dead, "users": users,
            "tasks": len(rows), "spark_ms": max(0, int(duration_ms) - task),
            "read_ms": max((int(r.get("read_ms") or 0) for r in rows), default=0),
            "cached": sum(int(r.get("cached") or 0) for r in rows),
            "rank_ms": max((int(r["rank_ms"]) for r in rows), default=0),
            "write_ms": max((int(r["write_ms"]) for r in rows), default=0),
            "duration_ms": int(duration_ms),
            "candidates_mean": round(sum(int(r["candidates"]) for r in rows) / users, 1) if users else 0.0,
            "model_version": model_version, "offsets": list(merged.values()), "written_at": sk.now_utc(),
            **sk.latency_summary(latencies)}


class ModelSource:
    """Which model to serve: a pinned version, or whatever the `models` pointer names (read per batch:
    one find by `_id`)."""

    def __init__(self, settings, bundle=None, catalogue: Catalogue | None = None, pinned: bool = False):
        self.settings, self.pinned = settings, pinned
        self.served: Served | None = None
        self._db = None
        if bundle is not None:
            self.served = Served.of(bundle, catalogue if catalogue is not None else load_catalogue(settings, bundle))

    def current_version(self) -> str | None:
        from common.store import database
        from jobs.model_store import CURRENT

        if self._db is None:
            self._db = database(self.settings, 10_000)
        # read at the start of every micro-batch: retried like the writes while the store is down
        doc = store_retrying(self.settings, lambda: self._db[self.settings.coll_models].find_one({"_id": CURRENT}),
                             doing="read of the current model")
        return doc.get("version") if doc else None

    def current(self, log=print) -> Served:
        from jobs.model_store import load_bundle

        if self.served is not None and self.pinned:
            return self.served
        version = self.current_version()
        if self.served is None or (version is not None and version != self.served.version):
            bundle = load_bundle(self.settings, version)
            self.served = Served.of(bundle, load_catalogue(self.settings, bundle))
            log(f"recommend_stream: serving model {bundle.version} ({len(bundle.ids)} tracks) from this micro-batch on")
        return self.served


class Housekeeping:
    """The sink's trims (`Sink.housekeeping`), one run at a time on a driver thread beside the micro-batches:
    on the local store a trim scans its whole collection (0.1-0.2 s per 1,000 documents), which inside a
    micro-batch delayed every event of it. A failed run says so in one line; the next one tries again."""

    def __init__(self, sink, log=print):
        from concurrent.futures import ThreadPoolExecutor

        self.sink, self.log = sink, log
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="musicrec-housekeeping")
        self._running = None

    def start_if_idle(self) -> bool:
        """Start a run unless one is still going; whether one started."""
        if self._running is not None:
            if not self._running.done():
                return False
            exc = self._running.exception()
            if exc is not None:
                self.log(f"recommend_stream: trimming the feed and the batch metrics failed "
                         f"({type(exc).__name__}); retried after the next micro-batch")
        self._running = self._pool.submit(self.sink.housekeeping)
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the run in progress (if any) ended."""
        from concurrent.futures import wait

        if self._running is not None:
            wait([self._running], timeout)


class BatchCoordinator:
    """The foreachBatch function: the model, the tasks, the batch's document."""

    def __init__(self, settings, models: ModelSource, sink: sk.Sink | None = None, log=print):
        self.settings, self.models, self.log = settings, models, log
        self.sink = sink or sk.Sink(settings)
        self.batches = 0
        self.users_written = 0
        self.last: dict = {}
        self.query_id: str | None = None     # set once the query started (recommend_stream.run)
        self.housekeeping = Housekeeping(self.sink, log)

    def __call__(self, df, batch_id: int) -> None:
        start = _ms()
        served = self.models.current(self.log)
        name = ship(df.sparkSession, served)
        n = max(1, int(self.settings.stream_partitions))
        # a user in one task: hashed over n tasks (a shuffle), or all in one (no shuffle)
        tasks = df.repartition(n, "user_key") if n > 1 else df.coalesce(1)
        out = tasks.mapInPandas(ServePartition(self.settings, name, self.query_id, batch_id), METRIC_SCHEMA).collect()
        self.finish([r.asDict() for r in out], batch_id, served.version, _ms() - start)

    def finish(self, rows: list[dict], batch_id: int, model_version: str, duration_ms: int) -> dict:
        doc = merge_metrics(rows, batch_id, model_version, duration_ms)
        store_retrying(self.settings, lambda: self.sink.write_batch(doc))
        self.housekeeping.start_if_idle()
        self.batches += 1
        self.users_written += doc["users"]
        self.last = doc
        return doc
