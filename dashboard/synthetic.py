"""Store contents in the shapes of common/contracts.py, at sizes the demo pipeline does not reach, for
the dashboard benchmark (100k tracks, 10k users) and the logic tests (the page tests read what the real
pipeline writes, tests/pipeline.py): the project's clustered synthetic catalogue (519
features, benchmarks/synthetic.py), model versions with the pointer document, neighbours, per-user
recommendations, an activity feed and micro-batch progress. `fill(db, settings, ...)` writes them
(inserts into empty collections)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import numpy as np

from benchmarks.synthetic import FEATURE_DIM, GENRES, SyntheticTracks, clustered, track_documents  # noqa: F401
from common import reclist
from conf import Settings

ACTIONS = ("play", "complete", "skip", "like", "dislike")


def user_id(i: int) -> str:
    return f"user-{i:05d}"


def track_chunks(n: int, seed: int = 0, first_id: int = 2, chunk: int = 2000) -> Iterator[list[dict]]:
    """`tracks` documents of one clustered catalogue (benchmarks/synthetic.py), `chunk` at a time, so a
    big catalogue is written without holding every document in memory."""
    tracks = clustered(n, seed=seed)
    for start in range(0, n, chunk):
        part = SyntheticTracks(*(getattr(tracks, f.name)[start:start + chunk] for f in fields(SyntheticTracks)))
        yield track_documents(part, "synthetic", first_id=first_id + start)


def track_docs(n: int, seed: int = 0, first_id: int = 2) -> list[dict]:
    return [doc for docs in track_chunks(n, seed, first_id) for doc in docs]


def model_docs(n_versions: int = 2, catalogue_size: int = 0, k: int = 10) -> list[dict]:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    docs = []
    for v in range(1, n_versions + 1):
        version = f"v{v:03d}"
        docs.append({"_id": version, "version": version, "created_at": now - timedelta(hours=n_versions - v),
                     "path": f"models/{version}", "feature_version": "synthetic", "catalogue_size": catalogue_size,
                     "params": {"bucket_length": 4.0, "band_size": 8, "bands": 32, "pca_k": 64, "top_k": k},
                     # the model job's names (recall_at_k with k); the first version uses the older @10 names
                     "metrics": ({"recall_at_10": 0.90 + 0.02 * v, "genre_precision_at_10": 0.60 + 0.05 * v}
                                 if v == 1 else {"k": k, "recall_at_k": 0.90 + 0.02 * v,
                                                 "genre_precision_at_k": 0.60 + 0.05 * v})
                                | {"coverage": 0.50 + 0.1 * v, "candidate_fraction": 0.14},
                     "tuning": {"target": 0.95, "tried": v}})
    docs.append({"_id": "current", "version": docs[-1]["version"]})
    return docs


def neighbour_docs(tracks: list[dict], k: int = 10, seed: int = 1, version: str = "v002") -> list[dict]:
    """Each track's neighbours: k other tracks of its genre (when there are enough), distances rising."""
    rng = np.random.default_rng(seed)
    by_genre: dict[str, list[int]] = {}
    for t in tracks:
        by_genre.setdefault(t["genre_top"], []).append(t["_id"])
    pools = {g: np.asarray(ids) for g, ids in by_genre.items()}
    docs = []
    for t in tracks:
        pool = pools[t["genre_top"]]
        picks = rng.choice(pool, size=min(k + 1, len(pool)), replace=False)
        picks = [int(p) for p in picks if p != t["_id"]][:k]
        dist = np.sort(rng.uniform(0.5, 3.0, size=len(picks)))
        docs.append({"_id": t["_id"], "neighbours": [{"track_id": p, "distance": float(d)} for p, d in zip(picks, dist)],
                     "model_version": version})
    return docs


def rec_items(tracks: list[dict], rng, k: int = 10) -> list[dict]:
    picks = rng.choice(len(tracks), size=min(k, len(tracks)), replace=False)
    scores = np.sort(rng.uniform(0.2, 1.0, size=len(picks)))[::-1]
    items = []
    for i, s in zip(picks, scores):
        t = tracks[int(i)]
        because = tracks[int(rng.integers(len(tracks)))]
        items.append({"track_id": t["_id"], "score": round(float(s), 4), "reason": "similar",
                      "reason_track_id": because["_id"]})
    return items


def recommendation_doc(user: str, items: list[dict], batch_id: int, version: str = "v002",
                       at: datetime | None = None) -> dict:
    at = at or datetime.now(timezone.utc)
    return {"_id": user, "user_id": user, "items": reclist.pack(items), "model_version": version, "event_time_max": at,
            "updated_at": at, "batch_id": batch_id, "offsets": {"0": batch_id * 10}, "n_events": batch_id}


def recommendation_docs(tracks: list[dict], n_users: int, seed: int = 2, k: int = 10) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [recommendation_doc(user_id(u), rec_items(tracks, rng, k), batch_id=1) for u in range(n_users)]


def activity_docs(tracks: list[dict], n_users: int, n_events: int, seed: int = 3, minutes: float = 10) -> list[dict]:
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    docs = []
    for e in range(n_events):
        t = tracks[int(rng.integers(len(tracks)))]
        action = ACTIONS[int(rng.integers(len(ACTIONS)))]
        docs.append({"_id": f"evt-{e:08d}", "event_id": f"evt-{e:08d}", "user_id": user_id(int(rng.integers(n_users))),
                     "track_id": t["_id"], "action": action,
                     "event_time": now - timedelta(seconds=float(minutes * 60 * (n_events - e) / max(n_events, 1))),
                     "ms_played": int(rng.integers(1000, 30000)), "session_id": f"s-{int(rng.integers(1000))}"})
    return docs


def batch_docs(n_batches: int, minutes: float = 10, seed: int = 4) -> list[dict]:
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    docs = []
    for b in range(n_batches):
        p50 = float(rng.uniform(300, 900))
        docs.append({"_id": b, "rows": int(rng.integers(50, 500)), "duration_ms": float(rng.uniform(200, 1500)),
                     "latency_ms_p50": p50, "latency_ms_p95": p50 * 1.8, "latency_ms_p99": p50 * 2.2,
                     "written_at": now - timedelta(seconds=float(minutes * 60 * (n_batches - b) / n_batches))})
    return docs


def _insert(coll, docs: list[dict], chunk: int = 1000, bar=None) -> None:
    for start in range(0, len(docs), chunk):
        coll.insert_many(docs[start:start + chunk], ordered=False)
        if bar is not None:
            bar.update(len(docs[start:start + chunk]))


def fill(db, settings: Settings, n_tracks: int = 60, n_users: int = 5, n_events: int = 200, n_batches: int = 120,
         n_versions: int = 2, k: int = 10, seed: int = 0, progress: bool = False) -> dict:
    """Write a complete, consistent store; returns what was written by collection (tracks as documents,
    the rest as counts) so a test can assert against it."""
    tracks = track_docs(n_tracks, seed=seed)
    models = model_docs(n_versions, catalogue_size=n_tracks, k=k)
    version = models[-1]["version"]
    parts = {settings.coll_tracks: tracks, settings.coll_models: models,
             settings.coll_neighbours: neighbour_docs(tracks, k=k, seed=seed + 1, version=version),
             settings.coll_recommendations: recommendation_docs(tracks, n_users, seed=seed + 2, k=k),
             settings.coll_activity: activity_docs(tracks, n_users, n_events, seed=seed + 3),
             settings.coll_batches: batch_docs(n_batches, seed=seed + 4)}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(v) for v in parts.values()), unit="doc", desc=f"filling {settings.mongo_db}")
    for name, docs in parts.items():
        _insert(db[name], docs, bar=bar)
    if bar is not None:
        bar.close()
    return parts
