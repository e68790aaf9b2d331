"""Fit, save, evaluate and publish a model version; write the item-to-item neighbours.

    ./spark-submit.sh jobs/fit_model.py [--no-tune] [--pca-k K] [--bucket-length W] [--band-size B]
                                        [--bands L] [--feature-version V] [--no-neighbours]

1. Read the catalogue (`tracks` with features of one feature version) from MongoDB.
2. Tune (unless --no-tune or settings.lsh_tune is false): pick the PCA dimension, bucket length, band
   size and bands as the cheapest grid setting whose recall@k meets settings.recall_target
   (jobs/tuning.py), in numpy on the collected catalogue.
3. Fit the Spark ML pipeline (jobs/model_pipeline.py) with those parameters; save it under a new
   version, <models_dir>/<version>/pipeline, with its numpy twin bundle.npz (jobs/model_store.py), and
   check on a few rows that the two agree.
4. Evaluate against exact neighbours on a sample of queries (jobs/evaluation.py).
5. Compute and write every track's top-K neighbours (jobs/neighbours.py).
6. Record the version, parameters, feature version, catalogue size, metrics and tuning in `models`,
   and point {_id: "current"} at it. Print a small table.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from common import storage
from conf import Settings, get_settings
from jobs import evaluation, neighbours
from jobs.lsh import bucket_ids, exact_top_k
from jobs.model_store import (ModelBundle, bundle_from_pipeline, bundle_path, pipeline_path, set_current,
                              version_dir)
from jobs.tuning import Grid, tune

TUNED = ("pca_k", "bucket_length", "band_size", "bands")


@dataclass
class TrainingSet:
    """The tracks a model is fitted on, their raw features collected as numpy (rows aligned)."""

    ids: np.ndarray          # (n,) int64 track ids
    features: np.ndarray     # (n, d) float64 raw features
    genre: np.ndarray        # (n,) object: genre_top or None
    album: np.ndarray        # (n,) object
    recording: np.ndarray    # (n,) object: source recording (demo corpus) or None
    feature_version: str


def load_tracks(spark, settings: Settings, feature_version: str | None = None):
    """(Spark DataFrame of the usable tracks, cached: unpersist it when done; their TrainingSet).
    Tracks of another feature version or another feature length than the usual one are left out."""
    from pyspark.sql import functions as F

    from common.contracts import TRACK_SCHEMA
    from common.store import read_collection

    # one read (a single partition: paginating costs FerretDB more than it saves), cached and spread over
    # the cores; every count and the collect below come from the cache
    raw = read_collection(spark, settings, settings.coll_tracks, TRACK_SCHEMA, partitions=1)
    raw = (raw.where(F.col("features").isNotNull() & (F.size("features") > 0))
              .select("_id", "features", "feature_version", "genre_top", "album", "recording")
              .repartition(max(1, spark.sparkContext.defaultParallelism)).cache())
    if feature_version is None:
        counts = raw.groupBy("feature_version").count().orderBy(F.desc("count")).limit(1).collect()
        if not counts:
            raw.unpersist()
            raise LookupError(f"no tracks with features in {settings.mongo_db}.{settings.coll_tracks}: "
                              "run the feature extraction first")
        feature_version = counts[0]["feature_version"]
    df = raw.where(F.col("feature_version") == feature_version)
    dims = df.groupBy(F.size("features").alias("d")).count().orderBy(F.desc("count")).limit(1).collect()
    if not dims:
        raw.unpersist()
        raise LookupError(f"no tracks of feature version {feature_version!r} in {settings.coll_tracks}")
    df = df.where(F.size("features") == dims[0]["d"]).cache()
    df.count()
    raw.unpersist()
    pdf = df.select("_id", "features", "genre_top", "album", "recording").orderBy("_id").toPandas()
    training = TrainingSet(ids=pdf["_id"].to_numpy(np.int64),
                           features=np.stack(pdf["features"].to_numpy()).astype(np.float64),
                           genre=pdf["genre_top"].to_numpy(object), album=pdf["album"].to_numpy(object),
                           recording=pdf["recording"].to_numpy(object), feature_version=str(feature_version))
    return df, training


def scaled_and_components(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The standardised catalogue (as Spark's StandardScaler: sample std, zeros stay zero) and the
    principal components of it, strongest first (d, d): for tuning only; the model fits its own."""
    std = features.std(axis=0, ddof=1) if len(features) > 1 else np.ones(features.shape[1])
    inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    z = (features - features.mean(axis=0)) * inv
    _, vecs = np.linalg.eigh(z.T @ z)
    return z, vecs[:, ::-1]


def tune_parameters(training: TrainingSet, settings: Settings, target: float, k: int, seed: int, queries: int,
                    grid: Grid, progress: bool = True) -> tuple[dict, dict]:
    """(chosen parameters, tuning record) for this catalogue."""
    z, comps = scaled_and_components(training.features)
    d = z.shape[1]
    spaces = {p: (z @ comps[:, :p]).astype(np.float32) for p in grid.pca_k if 0 < p < d}
    if 0 in grid.pca_k or not spaces:
        spaces[0] = z.astype(np.float32)
    query_pos = evaluation.sample_queries(len(training.ids), queries, seed)
    truth, _ = exact_top_k(z[query_pos], z, training.ids, k, exclude_self=True, query_pos=query_pos)
    record = tune(spaces, training.ids, query_pos, truth, target, k=k, grid=grid, seed=seed, progress=progress)
    c = record["chosen"]
    return {"pca_k": c["pca_k"], "bucket_length": c["bucket_length"], "band_size": c["band_size"],
            "bands": c["bands"]}, record


def new_version(settings: Settings) -> str:
    """A sortable UTC timestamp with milliseconds, unused under models_dir."""
    while True:
        now = datetime.now(timezone.utc)
        version = now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"
        if not storage.exists(version_dir(settings, version)):
            return version
        time.sleep(0.002)


def check_bundle(model, df, bundle: ModelBundle, rows: int = 50) -> dict:
    """Transform a few rows with Spark and with the bundle: the vectors and hashes must agree."""
    from pyspark.ml.functions import vector_to_array

    from jobs.model_pipeline import HASHES, model_column

    col = model_column(0 if bundle.pca is None else bundle.pca.shape[1])
    out = model.transform(df.limit(rows)).select("features", vector_to_array(col).alias("v"), HASHES).collect()
    feats = np.array([r["features"] for r in out])
    spark_v = np.array([r["v"] for r in out])
    spark_h = np.array([[h[0] for h in r[HASHES]] for r in out])
    ours = bundle.transform(feats, dtype=np.float64)
    diff = float(np.abs(ours - spark_v).max()) if len(out) else 0.0
    agree = float((bucket_ids(ours, bundle.projections, bundle.bucket_length) == spark_h).mean()) if len(out) else 1.0
    if diff > 1e-6 * max(1.0, float(np.abs(spark_v).max(initial=0.0))):
        raise RuntimeError(f"numpy bundle disagrees with the Spark pipeline: max |diff| = {diff:g}")
    return {"rows": len(out), "max_abs_diff": diff, "hash_agreement": agree}


def _plain(v):
    """numpy scalars and arrays -> plain Python, for MongoDB."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _fit(df, training: TrainingSet, settings: Settings, opt: dict, timings: dict) -> dict:
    """Tune, fit, save, check, evaluate and compute neighbours: the body of `run`, returning the
    record's parts (timings are added to `timings`)."""
    k = int(opt["top_k"])
    n, d_in = training.features.shape
    if n <= k:
        raise ValueError(f"{n} tracks with features of version {training.feature_version}: need more than top_k={k}")

    t0 = time.perf_counter()
    if opt["tune"]:
        params, tuning = tune_parameters(training, settings, opt["recall_target"], k, opt["seed"], opt["tune_queries"],
                                         opt["grid"], progress=opt["progress"])
    else:
        params = {name: opt[name] for name in TUNED}
        tuning = {"tuned": False, "reason": "parameters given (tuning off)"}
    if not 0 < params["pca_k"] < d_in:
        params["pca_k"] = 0
    params = {"pca_k": int(params["pca_k"]), "bucket_length": float(params["bucket_length"]),
              "band_size": int(params["band_size"]), "bands": int(params["bands"])}
    params |= {"num_hash_tables": params["band_size"] * params["bands"], "seed": int(opt["seed"]), "top_k": k,
               "recall_target": float(opt["recall_target"]), "feature_dim": int(d_in),
               "model_dim": params["pca_k"] or int(d_in)}
    timings["tune_s"] = time.perf_counter() - t0

    from jobs.model_pipeline import build_pipeline

    t0 = time.perf_counter()
    model = build_pipeline(params["pca_k"], params["bucket_length"], params["num_hash_tables"],
                           params["seed"]).fit(df)
    version = new_version(settings)
    model.write().save(storage.spark_uri(pipeline_path(settings, version)))
    bundle = bundle_from_pipeline(model, version, training.feature_version, params["band_size"], training.ids,
                                  features=training.features)
    bundle.save(bundle_path(settings, version))
    check = check_bundle(model, df, bundle)
    timings["fit_save_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    query_pos = evaluation.sample_queries(n, opt["eval_queries"], opt["seed"] + 1)
    metrics = evaluation.evaluate(
        bundle.index(), query_pos, k, labels={"genre": training.genre, "album": training.album},
        recordings=training.recording if any(r is not None for r in training.recording) else None,
        unreduced=bundle.standardise(training.features, dtype=np.float32) if bundle.pca is not None else None)
    timings["evaluate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stats = neighbours.run(settings, bundle=bundle, progress=opt["progress"],
                           store=opt["write_neighbours"] and opt["publish"])
    metrics |= {"coverage": stats["coverage"], "neighbours_filled_exact": stats["filled_exact"],
                "neighbours_seconds": stats["seconds"]}
    timings["neighbours_s"] = time.perf_counter() - t0
    return {"version": version, "params": params, "metrics": metrics, "tuning": tuning, "bundle_check": check}


def run(spark, settings: Settings, **overrides) -> dict:
    """Fit, save, evaluate, write neighbours and publish a model version; returns its `models` record.

    overrides: pca_k, bucket_length, band_size, bands (used as given when tuning is off), tune (bool),
    recall_target, top_k, seed, tune_queries, eval_queries, feature_version, grid (tuning.Grid),
    write_neighbours (bool), progress (bool), publish (bool: point "current" at the new version; the
    neighbour table is only replaced when publishing, since it serves the current version).
    """
    unknown = set(overrides) - {*TUNED, "tune", "recall_target", "top_k", "seed", "tune_queries",
                                "eval_queries", "feature_version", "grid", "write_neighbours", "progress",
                                "publish"}
    if unknown:
        raise TypeError(f"unknown fit options: {sorted(unknown)}")
    opt = {"tune": settings.lsh_tune, "recall_target": settings.recall_target, "top_k": settings.top_k,
           "seed": settings.seed, "tune_queries": settings.tune_queries, "eval_queries": settings.eval_queries,
           "feature_version": None, "grid": Grid(), "write_neighbours": True, "progress": True, "publish": True,
           "pca_k": settings.pca_k, "bucket_length": settings.lsh_bucket_length,
           "band_size": settings.lsh_band_size, "bands": settings.lsh_bands} | overrides
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    df, training = load_tracks(spark, settings, opt["feature_version"])
    timings["load_s"] = time.perf_counter() - t0
    try:
        parts = _fit(df, training, settings, opt, timings)
    finally:
        df.unpersist()

    version = parts["version"]
    record = _plain({
        "_id": version, "created_at": datetime.now(timezone.utc),
        "path": str(version_dir(settings, version)), "pipeline_path": str(pipeline_path(settings, version)),
        "bundle_path": str(bundle_path(settings, version)), "feature_version": training.feature_version,
        "catalogue_size": len(training.ids), **parts, "timings": timings,
    })
    from common.store import database

    database(settings)[settings.coll_models].replace_one({"_id": version}, record, upsert=True)
    if opt["publish"]:
        set_current(settings, version)
    return record


def report(record: dict) -> str:
    """The record as a small text table (what the job prints)."""
    p, m = record["params"], record["metrics"]
    lines = [f"model {record['version']}  features {record['feature_version']}  "
             f"catalogue {record['catalogue_size']} tracks",
             f"params: PCA {p['pca_k'] or 'none'} -> {p['model_dim']}-d, bucketLength {p['bucket_length']:.4g}, "
             f"{p['bands']} bands x {p['band_size']} = {p['num_hash_tables']} hash tables",
             f"tuning: {record['tuning'].get('reason')}", ""]
    rows = evaluation.table(m)
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name:<{width}}  {value:>12}" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./spark-submit.sh jobs/fit_model.py",
                                     description="fit, evaluate and publish a model version")
    parser.add_argument("--no-tune", action="store_true", help="use the settings' (or given) parameters")
    parser.add_argument("--pca-k", type=int, help="PCA dimension (0: none); implies --no-tune")
    parser.add_argument("--bucket-length", type=float, help="BRP bucketLength; implies --no-tune")
    parser.add_argument("--band-size", type=int, help="projections per band; implies --no-tune")
    parser.add_argument("--bands", type=int, help="bands; implies --no-tune")
    parser.add_argument("--feature-version", help="fit on tracks of this feature version (default: the most common)")
    parser.add_argument("--no-neighbours", action="store_true", help="skip the item-to-item table")
    args = parser.parse_args(argv)
    overrides = {name: getattr(args, name) for name in TUNED if getattr(args, name) is not None}
    if args.no_tune or overrides:
        overrides["tune"] = False
    overrides |= {"feature_version": args.feature_version, "write_neighbours": not args.no_neighbours}

    settings = get_settings()
    from common.store import database

    try:
        database(settings).command("ping")
    except Exception as exc:  # noqa: BLE001 - any failure to reach the store is the same message
        print(f"fit_model: error: MongoDB not reachable at {settings.mongo_uri} ({type(exc).__name__}); "
              "run `make up`", file=sys.stderr)
        return 1
    from common.spark import build_session

    spark = build_session(settings, "fit-model")
    try:
        record = run(spark, settings, **overrides)
    except (LookupError, ValueError) as exc:
        print(f"fit_model: error: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
