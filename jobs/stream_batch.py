"""The driver side of each micro-batch (foreachBatch): retrieval once for all active users, then writes.

`BatchWriter.process` takes the micro-batch as a pandas DataFrame of `recommend_stream.OUT_SCHEMA` rows
and needs no Spark, so tests drive it directly; `BatchWriter.__call__` is the foreachBatch function.
"""
from __future__ import annotations

import time

import numpy as np

from jobs import ranking, taste
from jobs import stream_sink as sk

TRACK_FIELDS = {"title": 1, "artist": 1, "genre_top": 1, "listens": 1, "duration": 1, "recording": 1}


def load_catalogue(settings, bundle) -> ranking.Catalogue:
    """The model's tracks with their metadata from the `tracks` collection (no features read)."""
    from common.store import database

    meta = {int(d["_id"]): d for d in database(settings, 10_000)[settings.coll_tracks].find({}, TRACK_FIELDS)}
    return ranking.Catalogue.build(bundle.ids, bundle.vectors, meta)


def _ms() -> int:
    return int(time.time() * 1000)


class BatchWriter:
    """foreachBatch: rank for every active user of the batch at once, write idempotently."""

    def __init__(self, settings, bundle, catalogue: ranking.Catalogue, sink: sk.Sink | None = None):
        self.settings = settings
        self.model_version = bundle.version
        self.catalogue = catalogue
        self.index = bundle.index()           # the catalogue hashed once, at start-up
        self.sink = sink or sk.Sink(settings)
        self.genre_of = {int(t): g for t, g in zip(catalogue.ids, catalogue.genre) if g}
        self.batches = 0
        self.users_written = 0
        self.last: dict = {}

    def __call__(self, df, batch_id: int) -> None:
        start = _ms()
        pdf = df.toPandas()      # runs the stateful part of the micro-batch
        self.process(pdf, batch_id, start_ms=start, read_ms=_ms() - start)

    def recommend(self, users) -> tuple[list[list[ranking.Item]], np.ndarray]:
        tastes, has = taste.taste_matrix(list(users["track_ids"]), list(users["pos"]), list(users["neg"]),
                                         self.catalogue.row_of, self.catalogue.vectors, taste.Rules.push)
        queries = []
        for i, u in enumerate(users.itertuples(index=False)):
            ids, pos, neg = u.track_ids, u.pos, u.neg
            queries.append(ranking.Query(
                taste=tastes[i] if has[i] else None,
                heard=tuple(int(t) for t in u.heard),
                positives=tuple((int(t), float(p)) for t, p in zip(ids, pos) if p > 0),
                affinity=taste.genre_affinity(ids, pos, neg, self.genre_of)))
        return ranking.recommend(self.index, self.catalogue, queries, int(self.settings.top_k),
                                 int(self.settings.max_per_artist))

    def process(self, pdf, batch_id: int, start_ms: int | None = None, read_ms: int = 0) -> dict:
        start_ms = start_ms or _ms()
        users = pdf[pdf["kind"] == "user"].sort_values("user_id", kind="stable")
        events = pdf[pdf["kind"] == "event"]
        dead = pdf[pdf["kind"] == "dead"]
        t_rank = _ms()
        items, n_cand = self.recommend(users) if len(users) else ([], np.zeros(0))
        rank_ms = _ms() - t_rank

        updated_at = sk.now_utc()
        docs = [sk.recommendation_doc(
                    u.user_id, [it.to_doc() for it in its], model_version=self.model_version,
                    event_time_max_ms=int(u.event_time_max), n_events=int(u.n_events),
                    offsets={"topic": u.topic, "partition": int(u.partition), "offset": int(u.offset)},
                    batch_id=batch_id, updated_at=updated_at, candidates=int(c))
                for u, its, c in zip(users.itertuples(index=False), items, n_cand)]
        t_write = _ms()
        self.sink.write_recommendations(docs)
        written_ms = _ms()
        write_ms = written_ms - t_write

        at = sk.now_utc()
        self.sink.write_dead_letters([
            sk.dead_letter_doc(d.raw, d.reason, topic=d.topic, partition=int(d.partition), offset=int(d.offset),
                               key=d.key, kafka_ms=None if d.kafka_ms is None or d.kafka_ms != d.kafka_ms
                               else int(d.kafka_ms), batch_id=batch_id, at=at)
            for d in dead.itertuples(index=False)])
        cat = self.catalogue
        feed = []
        for e in events.to_dict("records"):
            r = cat.row_of.get(int(e["track_id"]))
            feed.append(sk.activity_doc(e, title=cat.title[r] if r is not None else None,
                                        artist=cat.artist[r] if r is not None else None, at=at))
        self.sink.write_activity(feed)

        latencies = (written_ms - events["event_time"].to_numpy(dtype=np.int64)) if len(events) else []
        offsets = []
        if len(pdf):
            pos = pdf[["topic", "partition", "offset"]].dropna()
            for (topic, part), g in pos.groupby(["topic", "partition"], sort=True):
                offsets.append({"topic": topic, "partition": int(part), "first": int(g["offset"].min()),
                                "last": int(g["offset"].max())})
        doc = {"_id": int(batch_id), "rows": int(len(events) + len(dead)), "events": int(len(events)),
               "dead": int(len(dead)), "users": int(len(users)), "read_ms": int(read_ms), "rank_ms": int(rank_ms),
               "write_ms": int(write_ms), "duration_ms": int(_ms() - start_ms),
               "candidates_mean": round(float(np.mean(n_cand)), 1) if len(n_cand) else 0.0,
               "model_version": self.model_version, "offsets": offsets, "written_at": sk.now_utc(),
               **sk.latency_summary(latencies)}
        self.sink.write_batch(doc)
        self.batches += 1
        self.users_written += len(docs)
        self.last = doc
        return doc
