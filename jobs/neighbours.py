"""Item-to-item neighbours: the top K similar tracks of every track, for "more like this" and for the
reasons the recommender gives.

Computed from the model's banded LSH index (jobs/lsh.py `BandedIndex.neighbours`): each track's
candidates are the tracks sharing one of its band buckets, re-ranked by exact distance; the rare track
with fewer than K candidates gets its exact top K by brute force. No `approxNearestNeighbors` call per
track. Written to `settings.coll_neighbours` as {_id: track_id, neighbours: [{track_id, distance}],
model_version}, replacing each track's document (idempotent), then documents of older model versions
(tracks no longer in the catalogue) are deleted.

    python -m jobs.neighbours [--version V]     recompute for a saved model (default: the current one)
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

import numpy as np

from conf import Settings, get_settings
from jobs.model_store import ModelBundle, load_bundle


def compute(bundle: ModelBundle, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, distances, n_candidates) with one row per catalogue track, in `bundle.ids` order."""
    return bundle.index().neighbours(k)


def documents(ids: np.ndarray, nb_ids: np.ndarray, nb_d: np.ndarray, version: str) -> Iterator[dict]:
    for tid, row, dist in zip(ids.tolist(), nb_ids.tolist(), nb_d.tolist()):
        yield {"_id": int(tid), "model_version": version,
               "neighbours": [{"track_id": int(t), "distance": float(d)} for t, d in zip(row, dist) if t >= 0]}


def write(settings: Settings, docs: Iterator[dict], version: str, total: int | None = None,
          batch: int = 1000, progress: bool = True) -> dict:
    """Upsert every track's document, a batch at a time (idempotent; a reader never misses a track),
    then drop those of other versions."""
    from common.progress import bar as progress_bar

    from common.store import database, upsert_documents

    coll = database(settings)[settings.coll_neighbours]
    written = 0

    def flush(chunk: list[dict]) -> int:
        return upsert_documents(coll, chunk, settings)

    chunk: list[dict] = []
    with progress_bar(total=total, desc="neighbours -> MongoDB", unit="track", disable=not progress, leave=False) as bar:
        for doc in docs:
            chunk.append(doc)
            if len(chunk) >= batch:
                written += flush(chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            written += flush(chunk)
            bar.update(len(chunk))
    stale = coll.delete_many({"model_version": {"$ne": version}}).deleted_count
    return {"written": written, "deleted_stale": stale}


def run(settings: Settings, version: str | None = None, bundle: ModelBundle | None = None,
        progress: bool = True, store: bool = True) -> dict:
    """Compute the neighbour table of `version` (default: current) and, with `store`, write it.
    Returns its statistics."""
    bundle = bundle or load_bundle(settings, version)
    t0 = time.perf_counter()
    nb_ids, nb_d, n_cand = compute(bundle, settings.top_k)
    seconds = time.perf_counter() - t0
    counts = {}
    if store:
        counts = write(settings, documents(bundle.ids, nb_ids, nb_d, bundle.version), bundle.version,
                       total=len(bundle.ids), progress=progress)
    found = np.unique(nb_ids[nb_ids >= 0])
    return {"model_version": bundle.version, "tracks": int(len(bundle.ids)), "k": int(settings.top_k),
            "seconds": seconds, "candidates_mean": float(n_cand.mean()) if len(n_cand) else 0.0,
            "filled_exact": int((n_cand < min(settings.top_k, len(bundle.ids) - 1)).sum()),
            "coverage": float(len(found)) / max(len(bundle.ids), 1), **counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.neighbours",
                                     description="recompute the item-to-item neighbour table of a saved model")
    parser.add_argument("--version", help="model version (default: the current one)")
    args = parser.parse_args(argv)
    settings = get_settings()
    from pymongo.errors import PyMongoError

    try:
        stats = run(settings, args.version)
    except (LookupError, FileNotFoundError, PyMongoError) as exc:
        print(f"neighbours: error: {str(exc).splitlines()[0]} (is the store up? `make up`)"
              if isinstance(exc, PyMongoError) else f"neighbours: error: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
