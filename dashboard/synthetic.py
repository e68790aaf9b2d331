"""Store contents in the shapes of common/contracts.py, for the dashboard's tests and benchmark until
(and besides) the real pipeline fills a database: a clustered catalogue with 519 features, model
versions with the pointer document, neighbours, per-user recommendations, an activity feed and
micro-batch progress. `fill(db, settings, ...)` writes them (inserts into empty collections)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from conf import Settings

FEATURE_DIM = 519
GENRES = ("Blues", "Classical", "Country", "Easy Listening", "Electronic", "Experimental", "Folk", "Hip-Hop",
          "Instrumental", "International", "Jazz", "Old-Time / Historic", "Pop", "Rock", "Soul-RnB", "Spoken")
ACTIONS = ("play", "complete", "skip", "like", "dislike")


def user_id(i: int) -> str:
    return f"user-{i:05d}"


def _world(dim: int, genres: int, seed: int):
    """The fixed part of the generator (genre centres, mixing, per-feature scales): the same for every
    chunk of one catalogue, so a catalogue can be generated in pieces."""
    rng = np.random.default_rng([seed, 7])
    return rng.normal(size=(genres, 16)) * 3.0, rng.normal(size=(16, dim)), 10.0 ** rng.uniform(-2, 2, size=dim)


def track_docs(n: int, seed: int = 0, first_id: int = 2, dim: int = FEATURE_DIM, genres: int = 8,
               features: bool = True) -> list[dict]:
    """Tracks whose features cluster by genre (so the map shows clusters); ids start at `first_id`.
    Chunks generated with the same seed and consecutive `first_id`s form one catalogue."""
    centres, mix, scale = _world(dim, genres, seed)
    rng = np.random.default_rng([seed, first_id])
    genre = rng.integers(0, genres, size=n)
    latent = centres[genre] + rng.normal(size=(n, 16))
    feats = (latent @ mix + rng.normal(size=(n, dim)) * 0.1) * scale if features else None
    now = datetime.now(timezone.utc).replace(microsecond=0)
    per_artist = 5
    docs = []
    for i in range(n):
        tid = first_id + i
        g = GENRES[int(genre[i]) % len(GENRES)]
        doc = {"_id": tid, "title": f"Track {tid}", "artist": f"Artist {tid // per_artist}",
               "album": f"Album {tid // (2 * per_artist)}", "album_type": "Album", "genre_top": g,
               "genre_ids": [], "genres": [g], "tags": [], "listens": int(rng.zipf(1.5) % 100000),
               "date_created": None, "duration": 30.0, "license": "CC BY 4.0", "recording": None,
               "path": f"{tid:06d}"[:3] + f"/{tid:06d}.mp3", "feature_version": "synthetic", "extracted_at": now}
        if feats is not None:
            doc["features"] = [round(float(v), 5) for v in feats[i]]
        docs.append(doc)
    return docs


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
        items.append({"track_id": t["_id"], "title": t["title"], "artist": t["artist"], "genre_top": t["genre_top"],
                      "score": round(float(s), 4), "reason": f"because you liked {because['title']}",
                      "reason_track_id": because["_id"]})
    return items


def recommendation_doc(user: str, items: list[dict], batch_id: int, version: str = "v002",
                       at: datetime | None = None) -> dict:
    at = at or datetime.now(timezone.utc)
    return {"_id": user, "user_id": user, "items": items, "model_version": version, "event_time_max": at,
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
