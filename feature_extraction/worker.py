"""What runs on the executors: decode and extract many files per Python worker, and write documents.

`make_task` returns the job's one `mapInPandas` function: its rows are the task's files already joined
with their metadata; it extracts each file and writes the track (or error) documents. One Python
worker per task does both; it warms up, then forks one extracting child (isolation.py) that inherits
the warm state and extracts the task's files one by one, so a file that crashes or hangs the child costs
that file only. State that is costly to build lives at module level, so a reused Python worker
(Spark's default, `spark.python.worker.reuse=true`) pays it once: librosa's import, filter banks, CQT
bases and numba kernels (`ensure_warm`), and the MongoDB client (`_client`).
"""
from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from feature_extraction import audio, features
from feature_extraction.metadata import COLUMNS as META_COLUMNS

_STATE: dict = {"config": None, "warmups": 0}
_CLIENTS: dict = {}
LIST_FIELDS = ("genre_ids", "genres", "tags")
WRITE_BATCH = 200  # documents per flush to the store


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def warmup_count() -> int:
    """Warm-ups done by this process (read through a module function: a closure shipped by
    cloudpickle would see a copy of the module's globals)."""
    return _STATE["warmups"]


def one_thread() -> None:
    """One BLAS/OpenMP thread per process: Spark already runs one Python worker per core. Called in each
    worker and again in each forked extracting child (OpenBLAS resets its thread count at a fork)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def ensure_warm(cfg: features.ExtractorConfig) -> float:
    """Warm this process up for `cfg` once; returns the seconds it took (0.0 when already warm)."""
    if _STATE["config"] == cfg:
        return 0.0
    started = time.perf_counter()
    one_thread()
    features.warm_up(cfg)
    one_thread()  # again: the warm-up loads libraries with thread pools of their own (scipy's OpenBLAS)
    _STATE["config"] = cfg
    _STATE["warmups"] += 1
    return time.perf_counter() - started


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


def error_document(path: str, track_id, reason: str, version: str, at: datetime, sig: str | None = None) -> dict:
    """The `extraction_errors` document of a file, keyed by its path; `signal` is set for `crashed`."""
    return {"_id": path, "path": path, "track_id": None if track_id is None else int(track_id),
            "reason": reason, "signal": sig, "feature_version": version, "at": at}


STATUS_COLUMNS = ["track_id", "path", "status", "reason", "has_metadata", "audio_seconds", "decode_s",
                  "extract_s", "warm_s", "worker", "warmups", "boundary_s"]


def failure_reason(outcome) -> tuple[str, str | None]:
    """(reason, signal) of an isolated call that did not return: `crashed: ...` or `timeout: ...`."""
    return f"{outcome.status}: {outcome.detail}", outcome.signal


def make_task(audio_root: str, cfg: features.ExtractorConfig, settings, version: str, files_done=None,
              files_failed=None, extract: Callable = extract_file):
    """mapInPandas function: rows (track_id, path, metadata columns, has_metadata) -> one status row per
    file (STATUS_COLUMNS), after writing the track document, or the file's error document.

    Each file is extracted behind a crash and time boundary (isolation.Isolated, unless
    settings.extract_isolation is off): a file that kills the extracting process or runs past
    settings.extract_timeout_s is recorded as `crashed` (with its signal) or `timeout`, and the task goes
    on with the next file. Tracks are upserted by _id (common.store.upsert_documents): a re-extracted
    track keeps its previous version until the new one is written, and a rerun or a retried task writes
    the same documents. Errors are keyed by path. `extract` is the per-file function (a test swaps in
    one that crashes or hangs)."""
    from common.store import upsert_documents
    from feature_extraction.isolation import OK, Isolated

    min_seconds, timeout_s = settings.min_seconds, settings.extract_timeout_s
    uri, db = settings.mongo_uri_with_secret, settings.mongo_db

    def flush(database, track_docs, error_docs):
        """Tracks, then the errors of this batch, then the errors of files now extracted: every write
        through common.store (statements per command bounded by the local store's pool)."""
        upsert_documents(database[settings.coll_tracks], track_docs, settings)
        upsert_documents(database[settings.coll_errors], error_docs, settings)
        healed = [d["path"] for d in track_docs]
        if healed:
            database[settings.coll_errors].delete_many({"_id": {"$in": healed}})

    def one_file(isolated, path: str) -> dict:
        if isolated is None:
            return extract(path, cfg, min_seconds)
        outcome = isolated.call(path, cfg, min_seconds)
        if outcome.status == OK:
            out = outcome.value
            # the boundary's own cost: the call's wall time minus the work the child timed itself
            out["boundary_s"] = outcome.seconds - (out["decode_s"] or 0.0) - (out["extract_s"] or 0.0)
            return out
        reason, sig = failure_reason(outcome)
        return {"features": None, "error": reason, "signal": sig, "audio_seconds": None,
                "decode_s": outcome.seconds, "extract_s": None}

    def run(batches):
        warm_s = ensure_warm(cfg)
        wid = worker_id()
        database = _client(uri)[db]
        # forked after the warm-up, so the extracting process starts warm
        isolated = Isolated(extract, timeout_s, one_thread) if settings.extract_isolation else None
        try:
            for pdf in batches:
                status, track_docs, error_docs = [], [], []
                for row in pdf.to_dict("records"):
                    result = one_file(isolated, os.path.join(audio_root, row["path"]))
                    at = datetime.now(timezone.utc)
                    if result["error"] is None:
                        row["features"] = result["features"]
                        track_docs.append(track_document(row, version, at))
                    else:
                        error_docs.append(error_document(row["path"], row["track_id"], result["error"], version,
                                                         at, result.get("signal")))
                    status.append({
                        "track_id": int(row["track_id"]), "path": row["path"],
                        "status": "failed" if result["error"] else "extracted", "reason": result["error"],
                        "has_metadata": isinstance(row.get("has_metadata"), (bool, np.bool_))
                        and bool(row["has_metadata"]), "audio_seconds": result["audio_seconds"],
                        "decode_s": result["decode_s"], "extract_s": result["extract_s"], "warm_s": warm_s,
                        "worker": wid, "warmups": warmup_count(), "boundary_s": result.get("boundary_s")})
                    warm_s = 0.0  # reported once, with the first file after the warm-up
                    if files_done is not None:
                        files_done.add(1)
                    if files_failed is not None and result["error"]:
                        files_failed.add(1)
                    if len(track_docs) + len(error_docs) >= WRITE_BATCH:
                        flush(database, track_docs, error_docs)
                        track_docs, error_docs = [], []
                flush(database, track_docs, error_docs)
                yield pd.DataFrame(status, columns=STATUS_COLUMNS)
        finally:
            if isolated is not None:
                isolated.close()

    return run
