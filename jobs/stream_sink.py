"""The streaming job's MongoDB edge: documents as pure functions, idempotent batched writes.

- `recommendations` (`_id` = user_id): a replace-upsert per active user, carrying the user's taste
  state (`state`) and the (query id, batch id) that wrote it (`applied`). The document is a function of
  the user's state after the micro-batch, the model and the batch id only, so a replayed micro-batch
  writes the same document again; only `updated_at` (the write time) differs (`comparable()`).
- `dead_letters` (`_id` = topic-partition-offset-timestamp, see `dead_letter_id`) and `activity` (`_id` = event_id): inserts; a
  replay meets duplicate keys, which are ignored, so both stay exactly-once.
- `stream_batches` (`_id` = batch_id): the metrics of each micro-batch (replace-upsert).

Every write is a plain idempotent upsert or insert by `_id`; the store's limits (statements per
command) live in common/store.py.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np

from common import reclist
from jobs import events as ev

RAW_MAX_CHARS = ev.RAW_KEEP_BYTES   # raw values longer than this many bytes are stored cut
WRITE_TIME_FIELDS = ("updated_at",)
RUN_DEPENDENT_FIELDS = ("batch_id", "applied")   # differ between two runs (other queries, batch boundaries)


def utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --- documents ----------------------------------------------------------------------------------------

def recommendation_doc(user_id: str, items: list[dict], *, model_version: str, event_time_max_ms: int,
                       n_events: int, offsets: dict, batch_id: int, updated_at: datetime,
                       candidates: int) -> dict:
    """`items`: the list as `ranking.Item.to_doc` gives it, stored by field (common.reclist)."""
    return {"_id": user_id, "user_id": user_id, "items": reclist.pack(items), "model_version": model_version,
            "event_time_max": utc_ms(event_time_max_ms), "updated_at": updated_at, "batch_id": int(batch_id),
            "offsets": offsets, "n_events": int(n_events), "candidates": int(candidates)}


def dead_letter_id(topic: str, partition: int, offset: int, kafka_ms: int | None) -> str:
    """topic-partition-offset-timestamp: a topic deleted and created again (or expired and refilled) numbers
    its records from 0 again, so the record's own Kafka timestamp tells its generations apart, while a
    replay of the same record gives the same id."""
    return f"{topic}-{partition}-{offset}-{'' if kafka_ms is None else int(kafka_ms)}"


def dead_letter_doc(raw, reason: str, *, topic: str, partition: int, offset: int, key, kafka_ms: int | None,
                    batch_id: int, at: datetime, raw_size: int | None = None) -> dict:
    """`raw` may come cut already (recommend_stream cuts it on the executor); `raw_size` is then its full
    size in bytes. A value longer than RAW_MAX_CHARS bytes is stored cut, with `raw_bytes` = its size."""
    kept, size = ev.cut(None if raw is None else _bytes(raw), RAW_MAX_CHARS)
    size = raw_size if raw_size is not None else size
    doc = {"_id": dead_letter_id(topic, partition, offset, kafka_ms), "raw": raw_text(kept),
           "reason": reason,
           "code": reason.split(":", 1)[0], "at": at, "topic": topic, "partition": int(partition),
           "offset": int(offset), "key": raw_text(key) if key is not None else None,
           "kafka_time": utc_ms(kafka_ms) if kafka_ms is not None else None, "batch_id": int(batch_id)}
    if kept is not None and size > len(kept):
        doc["raw_bytes"] = int(size)
    return doc


def _bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", errors="surrogatepass")


def raw_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def activity_doc(event: dict, *, title: str | None, artist: str | None, at: datetime) -> dict:
    return {"_id": event["event_id"], "user_id": event["user_id"], "track_id": int(event["track_id"]),
            "title": title, "artist": artist, "action": event["action"],
            "event_time": utc_ms(int(event["event_time"])), "ms_played": int(event["ms_played"]),
            "session_id": event["session_id"], "partition": int(event["partition"]),
            "offset": int(event["offset"]), "at": at}


def latency_summary(latencies_ms, bucket_ms: int = 10) -> dict:
    """p50/p95/p99 and a sparse histogram (bucket lower bounds in ms, counts) to merge batches exactly."""
    lat = np.asarray(latencies_ms, dtype=np.float64)
    if len(lat) == 0:
        return {"latency_ms_p50": None, "latency_ms_p95": None, "latency_ms_p99": None,
                "latency_hist": {"bucket_ms": bucket_ms, "lo": [], "n": []}}
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    lo, n = np.unique((np.maximum(lat, 0) // bucket_ms).astype(np.int64) * bucket_ms, return_counts=True)
    return {"latency_ms_p50": round(float(p50), 1), "latency_ms_p95": round(float(p95), 1),
            "latency_ms_p99": round(float(p99), 1),
            "latency_hist": {"bucket_ms": bucket_ms, "lo": lo.tolist(), "n": n.tolist()}}


def merge_histograms(hists) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of many batches -> (bucket lower bounds, counts), summed."""
    acc: dict[int, int] = {}
    for h in hists:
        for lo, n in zip(h.get("lo", []), h.get("n", [])):
            acc[int(lo)] = acc.get(int(lo), 0) + int(n)
    keys = np.array(sorted(acc), dtype=np.int64)
    return keys, np.array([acc[k] for k in keys], dtype=np.int64)


def histogram_percentiles(lo: np.ndarray, n: np.ndarray, qs=(50, 95, 99), bucket_ms: int = 10) -> list[float]:
    """Percentiles from a merged histogram (upper bound of the bucket that holds each rank)."""
    if len(n) == 0:
        return [float("nan")] * len(qs)
    cum = np.cumsum(n)
    out = []
    for q in qs:
        rank = q / 100.0 * cum[-1]
        i = int(np.searchsorted(cum, rank, side="left"))
        out.append(float(lo[min(i, len(lo) - 1)] + bucket_ms))
    return out


def comparable(doc: dict, across_runs: bool = False) -> dict:
    """A document without its write time (and, across runs, without the run's batch numbering)."""
    drop = WRITE_TIME_FIELDS + (RUN_DEPENDENT_FIELDS if across_runs else ())
    return {k: v for k, v in doc.items() if k not in drop}


# --- writes -------------------------------------------------------------------------------------------

class Sink:
    """Batched, idempotent writes of one micro-batch's documents."""

    def __init__(self, settings, db=None):
        from common.store import database

        self.settings = settings
        self.db = db if db is not None else database(settings, timeout_ms=10_000)
        self._last_trim = 0.0
        self._last_batch_trim = 0.0
        self._newest_batch = -1

    def write_recommendations(self, docs: list[dict], on_written=None) -> int:
        """One document per user, replaced whole by an upsert (common.store.upsert_documents); `on_written(ids)`
        after each command, with the users it wrote."""
        from common.store import upsert_documents

        return upsert_documents(self.db[self.settings.coll_recommendations], docs, self.settings, on_written)

    def _insert_new(self, collection: str, docs: list[dict]) -> int:
        """Insert, ignoring documents whose _id exists already (a replayed batch)."""
        from pymongo.errors import BulkWriteError

        from common.store import storable

        if not docs:
            return 0
        try:
            return len(self.db[collection].insert_many([storable(d) for d in docs], ordered=False).inserted_ids)
        except BulkWriteError as exc:
            other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if other:
                raise
            return int(exc.details.get("nInserted", 0))

    def write_dead_letters(self, docs: list[dict]) -> int:
        return self._insert_new(self.settings.coll_dead_letters, docs)

    def write_activity(self, docs: list[dict]) -> int:
        """The newest `activity_feed_size` of these events (the driver trims older ones: maybe_trim_activity)."""
        keep = int(self.settings.activity_feed_size)
        if keep <= 0 or not docs:
            return 0
        docs = sorted(docs, key=lambda d: (d["event_time"], d["_id"]))[-keep:]
        return self._insert_new(self.settings.coll_activity, docs)

    def maybe_trim_activity(self, every_s: float = 10.0) -> int:
        keep = int(self.settings.activity_feed_size)
        if keep <= 0 or time.monotonic() - self._last_trim <= every_s:
            return 0
        return self.trim_activity(keep)

    def trim_activity(self, keep: int) -> int:
        """Delete all but the newest `keep` events (FerretDB does not enforce capped collections)."""
        self._last_trim = time.monotonic()
        coll = self.db[self.settings.coll_activity]
        cut = list(coll.find({}, {"event_time": 1}).sort([("event_time", -1), ("_id", -1)]).skip(keep).limit(1))
        if not cut:
            return 0
        return coll.delete_many({"event_time": {"$lte": cut[0]["event_time"]}}).deleted_count

    def write_batch(self, doc: dict) -> None:
        """Upsert the batch's metrics: a replayed batch replaces its earlier document."""
        self.db[self.settings.coll_batches].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        self._newest_batch = max(self._newest_batch, int(doc["_id"]))

    def maybe_trim_batches(self, every_s: float = 60.0) -> int:
        """Delete the metrics of all but the newest `stream_batches_kept` batches (at most every `every_s`)."""
        keep = int(self.settings.stream_batches_kept)
        if keep <= 0 or self._newest_batch < 0 or time.monotonic() - self._last_batch_trim <= every_s:
            return 0
        self._last_batch_trim = time.monotonic()
        coll = self.db[self.settings.coll_batches]
        return coll.delete_many({"_id": {"$lte": self._newest_batch - keep}}).deleted_count

    def housekeeping(self) -> int:
        """The trims that are due (feed, batch metrics); documents deleted. The local store scans a whole
        collection for each (it pushes down neither sorts nor ranges): 0.1-0.2 s per 1,000 documents here,
        so the stream runs this beside its micro-batches, never inside one (stream_batch.BatchCoordinator)."""
        return self.maybe_trim_activity() + self.maybe_trim_batches()
