"""What runs on the executors: decode and extract many files per Python worker, then write documents.

Both functions are factories returning the `mapInPandas` callables of the job. State that is costly
to build lives at module level, so a reused Python worker (Spark's default,
`spark.python.worker.reuse=true`) pays it once: librosa's import, filter banks, CQT bases and numba
kernels (`ensure_warm`), and the MongoDB client (`_client`).
"""
from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from feature_extraction import audio, features
from feature_extraction.metadata import COLUMNS as META_COLUMNS

_STATE: dict = {"config": None, "warmups": 0}
_CLIENTS: dict = {}
LIST_FIELDS = ("genre_ids", "genres", "tags")
WRITE_BATCH = 200


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def warmup_count() -> int:
    """Warm-ups done by this process (read through a module function: a closure shipped by
    cloudpickle would see a copy of the module's globals)."""
    return _STATE["warmups"]


def ensure_warm(cfg: features.ExtractorConfig) -> None:
    """Warm this process up for `cfg` once: later calls are free."""
    if _STATE["config"] == cfg:
        return
    try:  # one BLAS/OpenMP thread per worker: Spark already runs one worker per core
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    features.warm_up(cfg)
    _STATE["config"] = cfg
    _STATE["warmups"] += 1


def extract_file(path: str, cfg: features.ExtractorConfig, min_seconds: float) -> dict:
    """Decode and extract one file: {features | error, audio_seconds, decode_s, extract_s}."""
    out = {"features": None, "error": None, "audio_seconds": None, "decode_s": None, "extract_s": None}
    t0 = time.perf_counter()
    try:
        y = audio.load(path, cfg.sample_rate, cfg.clip_seconds, min_seconds)
    except audio.AudioError as exc:
        out["error"] = exc.reason
        out["decode_s"] = time.perf_counter() - t0
        return out
    except Exception as exc:  # a decoder bug must not stop the job
        out["error"] = f"{audio.NOT_AUDIO}: decoder failed ({type(exc).__name__}: {exc})"
        out["decode_s"] = time.perf_counter() - t0
        return out
    t1 = time.perf_counter()
    out["decode_s"] = t1 - t0
    out["audio_seconds"] = len(y) / cfg.sample_rate
    try:
        vec = features.extract(y, cfg)
        if not np.isfinite(vec).all():
            bad = [features.feature_names()[i] for i in np.flatnonzero(~np.isfinite(vec))[:3]]
            raise ValueError(f"non-finite values in {', '.join(bad)}")
        out["features"] = vec
    except Exception as exc:
        out["error"] = f"{audio.EXTRACT_FAILED}: {type(exc).__name__}: {exc}"
    out["extract_s"] = time.perf_counter() - t1
    return out


def make_extractor(audio_root: str, cfg: features.ExtractorConfig, min_seconds: float,
                   files_done=None, files_failed=None):
    """mapInPandas function: (track_id, path) rows -> EXTRACT_SCHEMA rows."""

    def run(batches):
        ensure_warm(cfg)
        wid = worker_id()
        for pdf in batches:
            rows = []
            for track_id, rel in zip(pdf["track_id"], pdf["path"]):
                result = extract_file(os.path.join(audio_root, rel), cfg, min_seconds)
                result.update(track_id=int(track_id), path=rel, worker=wid, warmups=warmup_count())
                rows.append(result)
                if files_done is not None:
                    files_done.add(1)
                if files_failed is not None and result["error"]:
                    files_failed.add(1)
            yield pd.DataFrame(rows, columns=["track_id", "path", "features", "error", "audio_seconds",
                                              "decode_s", "extract_s", "worker", "warmups"])

    return run


def _client(uri: str):
    if uri not in _CLIENTS:
        from pymongo import MongoClient

        _CLIENTS[uri] = MongoClient(uri, serverSelectionTimeoutMS=10000)
    return _CLIENTS[uri]


def _plain(value, list_field: bool):
    """A pandas/Arrow cell as a BSON-encodable value."""
    if list_field:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return []
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def track_document(row: dict, version: str, at: datetime) -> dict:
    """The `tracks` document (common/contracts.py) of one extracted row joined with its metadata."""
    doc = {"_id": int(row["track_id"])}
    for name in META_COLUMNS:
        doc[name] = _plain(row.get(name), name in LIST_FIELDS)
    if doc["listens"] is not None:
        doc["listens"] = int(doc["listens"])
    doc["path"] = row["path"]
    doc["features"] = [float(v) for v in row["features"]]
    doc["feature_version"] = version
    doc["extracted_at"] = at
    return doc


def error_document(path: str, track_id, reason: str, version: str, at: datetime) -> dict:
    return {"_id": path, "path": path, "track_id": None if track_id is None else int(track_id),
            "reason": reason, "feature_version": version, "at": at}


def insert_tracks(collection, docs: list[dict]) -> None:
    """insert_many; a track that is there already (a retried task, a concurrent run) is replaced by
    delete + insert of just those ids, so the result is the same as an upsert by _id."""
    from pymongo.errors import BulkWriteError

    if not docs:
        return
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        dup = {docs[e["index"]]["_id"] for e in errors}
        collection.delete_many({"_id": {"$in": sorted(dup)}})
        collection.insert_many([d for d in docs if d["_id"] in dup], ordered=False)


def make_writer(uri: str, db: str, coll_tracks: str, coll_errors: str, version: str):
    """mapInPandas function: extracted rows joined with metadata -> one status row per file, after
    writing the track document (or the file's error document) to the store.

    Tracks go in with insert_many: the job has already removed the stored documents it rewrites (see
    job.run), and insert_tracks turns any leftover duplicate into a replacement, so a rerun or a retried
    task writes the same documents. Why not ReplaceOne(upsert=True) per track: on FerretDB 1.24 a lookup
    by an integer _id is a full collection scan (string _ids use the index), so per-track upserts cost
    O(catalogue) each; errors are keyed by path (a string) and use ReplaceOne/DeleteOne."""
    from pymongo import DeleteOne, ReplaceOne

    def run(batches):
        database = _client(uri)[db]
        for pdf in batches:
            at = datetime.now(timezone.utc)
            status = []
            track_docs, error_ops = [], []
            for row in pdf.to_dict("records"):
                if row["error"] is None and row["features"] is not None:
                    track_docs.append(track_document(row, version, at))
                    error_ops.append(DeleteOne({"_id": row["path"]}))
                    status.append(("extracted", None))
                else:
                    error_ops.append(ReplaceOne({"_id": row["path"]}, error_document(
                        row["path"], row["track_id"], row["error"], version, at), upsert=True))
                    status.append(("failed", row["error"]))
            for i in range(0, len(track_docs), WRITE_BATCH):
                insert_tracks(database[coll_tracks], track_docs[i:i + WRITE_BATCH])
            for i in range(0, len(error_ops), WRITE_BATCH):
                database[coll_errors].bulk_write(error_ops[i:i + WRITE_BATCH], ordered=False)
            yield pd.DataFrame({
                "track_id": pdf["track_id"].astype("int64"),
                "path": pdf["path"],
                "status": [s for s, _ in status],
                "reason": [r for _, r in status],
                "has_metadata": pdf["has_metadata"].eq(True),
                "audio_seconds": pdf["audio_seconds"],
                "decode_s": pdf["decode_s"],
                "extract_s": pdf["extract_s"],
                "worker": pdf["worker"],
                "warmups": pdf["warmups"].astype("int64"),
            })

    return run
