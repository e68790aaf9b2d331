"""Spark batch job: FMA-style audio folder + FMA metadata -> MongoDB `tracks` (+ `extraction_errors`).

    ./spark-submit.sh feature_extraction/job.py [--audio-dir DIR] [--metadata-dir DIR] [--limit N] [--force]
    python -m feature_extraction.job ...          (same, with a local SparkSession from conf/)

Steps: list the audio files on the driver; read (_id, feature_version) of the stored tracks and skip
the files whose features are current, and the files that crashed an extracting process before (known
bad, until --force); spread the rest over partitions of a few files each; join the metadata to the file
list (a broadcast hash join: no shuffle, the partitions stay); then one `mapInPandas` on the executors
decodes, extracts and writes: one reused Python worker handles many files, warms librosa up once, forks
an extracting child per task (a crash or a hang costs one file, recorded as `crashed` or `timeout`),
and upserts each track by _id or its error by path with pymongo bulk writes. Nothing is deleted before
its new version is written, so a run that fails or is killed leaves every track it had not rewritten
in its previous version, and the next run redoes exactly those. The only action collects one small
status row per file, so the extraction runs once. A progress bar on the driver follows an accumulator
of files done.

The audio folder must be readable at the same path on every executor (local disk for `local[*]`, a
shared mount on a cluster).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from conf import Settings, get_settings
from feature_extraction import audio, layout, metadata
from feature_extraction.features import ExtractorConfig, feature_version
from feature_extraction.isolation import CRASHED

STATUS_SCHEMA = ("track_id long, path string, status string, reason string, has_metadata boolean, "
                 "audio_seconds double, decode_s double, extract_s double, warm_s double, worker string, "
                 "warmups long, boundary_s double")
META_SCHEMA = ("track_id long, title string, artist string, album string, album_type string, "
               "genre_top string, genre_ids array<long>, genres array<string>, tags array<string>, "
               "listens long, date_created string, duration double, license string, recording string, "
               "has_metadata boolean")


BAD_METADATA = "bad_metadata"


class JobError(RuntimeError):
    """Bad input or a missing service: one line for the user."""


def current_versions(settings: Settings) -> dict[int, str]:
    """track id -> stored feature_version (one pymongo query with a projection)."""
    from common.store import database

    coll = database(settings)[settings.coll_tracks]
    return {doc["_id"]: doc.get("feature_version") for doc in coll.find({}, {"feature_version": 1})}


def check_store(settings: Settings) -> None:
    from common.store import client

    try:
        client(settings, timeout_ms=3000).admin.command("ping")
    except Exception as exc:
        raise JobError(f"MongoDB not reachable at {settings.mongo_uri} ({type(exc).__name__}); "
                       f"start it with `make up`") from None


def plan_partitions(n_files: int, parallelism: int, settings: Settings) -> int:
    if n_files <= 0:
        return 1
    if settings.extract_partitions > 0:
        return min(settings.extract_partitions, n_files)
    per_task = max(1, settings.extract_files_per_task)
    return max(1, min(n_files, max(2 * parallelism, math.ceil(n_files / per_task))))


def known_bad(settings: Settings) -> set[str]:
    """Paths of the files that crashed an extracting process in an earlier run (reason `crashed`)."""
    from common.store import database

    coll = database(settings)[settings.coll_errors]
    return {doc["_id"] for doc in coll.find({"reason": {"$regex": f"^{CRASHED}:"}}, {"_id": 1})}


def select(files: list[layout.AudioFile], versions: dict[int, str], version: str, force: bool = False,
           bad: set[str] = frozenset()):
    """Split the listing into (to extract, skipped as current, unusable names, skipped as known bad).
    Pure."""
    todo, current, unusable, skipped_bad = [], [], [], []
    for f in files:
        if f.track_id is None or f.duplicate_of is not None:
            unusable.append(f)
        elif not force and versions.get(f.track_id) == version:
            current.append(f)
        elif not force and f.path in bad:
            skipped_bad.append(f)
        else:
            todo.append(f)
    return todo, current, unusable, skipped_bad


def _unusable_reason(f: layout.AudioFile) -> str:
    if f.track_id is None:
        return (f"{audio.BAD_NAME}: the file name is not an FMA track id (expected NNNNNN.ext, "
                f"at most {layout.MAX_TRACK_ID})")
    return f"{audio.DUPLICATE}: track {f.track_id} is already read from {f.duplicate_of}"


def _write_unusable(settings: Settings, files: list[layout.AudioFile], version: str) -> None:
    if not files:
        return
    from datetime import datetime, timezone

    from common.store import database, upsert_documents
    from feature_extraction.worker import error_document

    at = datetime.now(timezone.utc)
    docs = [error_document(f.path, f.track_id, _unusable_reason(f), version, at) for f in files]
    upsert_documents(database(settings)[settings.coll_errors], docs, settings)


def metadata_failures(meta) -> list[dict]:
    """The metadata rows the loader skipped, as failures keyed `<file>: line N` / `<file>: track_id X`."""
    name = Path(meta.attrs.get("source") or "metadata").name
    return [{"path": f"{name}: {row.split(':', 1)[0]}", "reason": f"{BAD_METADATA}: {row}"}
            for row in meta.attrs.get("bad_rows", [])]


def _write_metadata_failures(settings: Settings, failures: list[dict], version: str) -> None:
    if not failures:
        return
    from datetime import datetime, timezone

    from common.store import database, upsert_documents
    from feature_extraction.worker import error_document

    at = datetime.now(timezone.utc)
    docs = [error_document(f["path"], None, f["reason"], version, at) for f in failures]
    upsert_documents(database(settings)[settings.coll_errors], docs, settings)


def metadata_frame(spark, meta, track_ids: list[int]):
    """The metadata rows of `track_ids` as a Spark DataFrame (META_SCHEMA)."""
    import pandas as pd

    wanted = meta.index.intersection(pd.Index(track_ids, dtype="int64"))
    sub = meta.loc[wanted]
    rows = []
    for tid, row in zip(sub.index, sub.itertuples(index=False)):
        rec = row._asdict()
        rows.append((int(tid), rec["title"], rec["artist"], rec["album"], rec["album_type"],
                     rec["genre_top"], [int(g) for g in rec["genre_ids"]], list(rec["genres"]),
                     list(rec["tags"]), None if rec["listens"] is None else int(rec["listens"]),
                     rec["date_created"], None if rec["duration"] is None else float(rec["duration"]),
                     rec["license"], rec["recording"], True))
    return spark.createDataFrame(rows, META_SCHEMA).coalesce(1)


class Progress:
    """A tqdm bar on the driver fed by accumulators (files done, failed), polled by a thread."""

    def __init__(self, total: int, done_acc, failed_acc, enabled: bool = True, interval: float = 0.5):
        self.total, self.done_acc, self.failed_acc = total, done_acc, failed_acc
        self.enabled, self.interval = enabled and total > 0, interval
        self._stop = threading.Event()
        self._thread = None
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from common.progress import bar as progress_bar

            self.bar = progress_bar(total=self.total, unit="file", desc="extract", dynamic_ncols=True,
                                    smoothing=0.1)
            self._thread = threading.Thread(target=self._poll, name="extract-progress", daemon=True)
            self._thread.start()
        return self

    def _update(self):
        done = min(self.done_acc.value, self.total)
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)
        self.bar.set_postfix(failed=self.failed_acc.value, refresh=False)
        self.bar.refresh()

    def _poll(self):
        while not self._stop.wait(self.interval):
            self._update()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.bar is not None:
            self._update()
            self.bar.close()
        return False


def preflight(settings: Settings, audio_dir=None, metadata_dir=None) -> None:
    """Raise JobError for a missing folder or an unreachable store."""
    audio_root = Path(audio_dir or settings.audio_dir)
    meta_dir = Path(metadata_dir or settings.metadata_dir)
    if not audio_root.is_dir():
        raise JobError(f"audio folder not found: {audio_root} (build the demo corpus with "
                       f"`python -m feature_extraction.corpus`, or pass --audio-dir)")
    if not meta_dir.is_dir():
        raise JobError(f"metadata folder not found: {meta_dir} (pass --metadata-dir)")
    check_store(settings)


def run(spark, settings: Settings, audio_dir=None, metadata_dir=None, limit: int | None = None,
        force: bool = False, progress: bool = True, extract=None) -> dict:
    """Extract features of every file under `audio_dir` whose stored version is not current, and
    upsert the tracks with their metadata. Returns the summary (counts, timings, errors). `extract`
    replaces worker.extract_file (the per-file function; a test hook)."""
    started = time.perf_counter()
    audio_root = Path(audio_dir or settings.audio_dir).resolve()
    meta_dir = Path(metadata_dir or settings.metadata_dir)
    cfg = ExtractorConfig.from_settings(settings)
    version = feature_version(cfg)

    try:
        files = layout.list_audio_files(audio_root)
    except FileNotFoundError as exc:
        raise JobError(str(exc)) from None
    if not files:
        raise JobError(f"no audio files under {audio_root} (expected FMA layout NNN/NNNNNN.mp3)")
    try:
        meta = metadata.load_metadata(meta_dir)
    except metadata.MetadataError as exc:
        raise JobError(str(exc)) from None
    if limit is not None:
        files = files[: max(0, int(limit))]
    check_store(settings)

    versions = current_versions(settings)
    todo, current, unusable, skipped_bad = select(files, versions, version, force, known_bad(settings))
    _write_unusable(settings, unusable, version)
    meta_failures = metadata_failures(meta)
    _write_metadata_failures(settings, meta_failures, version)

    statuses = []
    n_parts, spark_s = 0, 0.0
    if todo:
        from pyspark.sql import functions as F

        sc = spark.sparkContext
        from feature_extraction.worker import extract_file, make_task

        extract = extract or extract_file

        n_parts = plan_partitions(len(todo), sc.defaultParallelism, settings)
        done_acc, failed_acc = sc.accumulator(0), sc.accumulator(0)
        paths = spark.createDataFrame(
            sc.parallelize([(f.track_id, f.path) for f in todo], n_parts), "track_id long, path string")
        # a broadcast hash join keeps the file list's partitions: no shuffle, and each task's rows arrive
        # in one Python worker that extracts and writes them
        meta_df = metadata_frame(spark, meta, [f.track_id for f in todo])
        joined = paths.join(F.broadcast(meta_df), on="track_id", how="left")
        written = joined.mapInPandas(
            make_task(str(audio_root), cfg, settings, version, done_acc, failed_acc, extract), STATUS_SCHEMA)
        sc.setJobDescription(f"extract features of {len(todo)} files ({n_parts} tasks)")
        spark_started = time.perf_counter()
        with Progress(len(todo), done_acc, failed_acc, enabled=progress):
            statuses = [r.asDict() for r in written.collect()]
        spark_s = time.perf_counter() - spark_started
        sc.setJobDescription(None)

    summary = summarise(statuses, files, current, unusable, version, time.perf_counter() - started, n_parts,
                        str(audio_root), meta.attrs.get("source"))
    summary["spark_s"] = spark_s
    summary["failures"] += meta_failures
    summary["failed"] += len(meta_failures)
    if meta_failures:
        summary["failure_reasons"][BAD_METADATA] = len(meta_failures)
    summary["skipped_known_bad"] = len(skipped_bad)
    summary["known_bad"] = [f.path for f in skipped_bad]
    return summary


def summarise(statuses: list[dict], files, current, unusable, version: str, seconds: float, n_parts: int,
              audio_root: str, metadata_source: str | None) -> dict:
    """The job summary from the per-file status rows. Pure."""
    extracted = [s for s in statuses if s["status"] == "extracted"]
    failed = [s for s in statuses if s["status"] == "failed"]
    failures = [{"path": s["path"], "reason": s["reason"]} for s in failed]
    failures += [{"path": f.path, "reason": _unusable_reason(f)} for f in unusable]
    reasons = Counter(f["reason"].split(":", 1)[0] for f in failures)
    decode = [s["decode_s"] for s in extracted if s["decode_s"] is not None]
    extract = [s["extract_s"] for s in extracted if s["extract_s"] is not None]
    workers = {s["worker"]: s["warmups"] for s in statuses}
    warm = [s["warm_s"] for s in statuses if s["warm_s"]]
    boundary = sorted(s["boundary_s"] for s in statuses if s.get("boundary_s") is not None)
    return {
        "audio_root": audio_root,
        "metadata": metadata_source,
        "feature_version": version,
        "files": len(files),
        "extracted": len(extracted),
        "skipped_current": len(current),
        "failed": len(failures),
        "failure_reasons": dict(reasons),
        "failures": failures,
        "without_metadata": sum(1 for s in extracted if not s["has_metadata"]),
        "tasks": n_parts,
        "python_workers": len(workers),
        "warmups": sum(workers.values()),
        "warmups_this_run": len(warm),
        "warmup_s_mean": sum(warm) / len(warm) if warm else None,
        "decode_s_mean": sum(decode) / len(decode) if decode else None,
        "extract_s_mean": sum(extract) / len(extract) if extract else None,
        "boundary_ms_median": 1000 * boundary[len(boundary) // 2] if boundary else None,
        "seconds": seconds,
        "tracks_per_s": len(extracted) / seconds if seconds > 0 else None,
    }


def summary_line(s: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["failure_reasons"].items()))
    bad = s.get("skipped_known_bad", 0)
    line = (f"extracted {s['extracted']}, skipped {s['skipped_current']} as current"
            f"{f' and {bad} as known bad (crashed before; --force retries them)' if bad else ''}, "
            f"failed {s['failed']}"
            f"{f' ({reasons})' if reasons else ''}; {s['without_metadata']} without metadata; "
            f"{s['seconds']:.1f} s")
    if s["extracted"]:
        boundary = s.get("boundary_ms_median")
        line += (f", {s['tracks_per_s']:.2f} tracks/s (decode {s['decode_s_mean'] * 1000:.0f} ms + features "
                 f"{s['extract_s_mean'] * 1000:.0f} ms per file"
                 + ("" if boundary is None else f", crash boundary {boundary:.2f} ms")
                 + f", {s['python_workers']} Python workers)")
    return line + f"; feature version {s['feature_version']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="feature_extraction/job.py",
        usage="./spark-submit.sh feature_extraction/job.py [--audio-dir DIR] [--metadata-dir DIR] "
              "[--limit N] [--force] [--no-progress]",
        description="Extract audio features of an FMA-style folder into MongoDB `tracks`.")
    parser.add_argument("--audio-dir", help="FMA-style audio folder (default: settings audio_dir)")
    parser.add_argument("--metadata-dir", help="folder with tracks.csv or raw_tracks.csv and genres.csv "
                                               "(default: settings metadata_dir)")
    parser.add_argument("--limit", type=int, help="only the first N files (by path)")
    parser.add_argument("--force", action="store_true", help="re-extract tracks whose features are current "
                                                             "and files that crashed an extracting process")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--show-failures", type=int, default=10, help="failures listed in the output")
    args = parser.parse_args(argv)

    settings = get_settings()
    from common.spark import build_session

    # plain `python -m`: run the executors' Python workers with this interpreter (spark-submit.sh sets it)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    try:  # the cheap checks before a SparkSession is started
        preflight(settings, args.audio_dir, args.metadata_dir)
    except JobError as exc:
        print(f"extract-features: error: {exc}", file=sys.stderr)
        return 2
    spark = build_session(settings, "extract-features")
    try:
        summary = run(spark, settings, args.audio_dir, args.metadata_dir, args.limit, args.force,
                      progress=not args.no_progress)
    except JobError as exc:
        print(f"extract-features: error: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    for failure in summary["failures"][: args.show_failures]:
        print(f"  failed {failure['path']}: {failure['reason']}")
    if len(summary["failures"]) > args.show_failures:
        print(f"  ... {len(summary['failures']) - args.show_failures} more in {settings.coll_errors}")
    print(summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
