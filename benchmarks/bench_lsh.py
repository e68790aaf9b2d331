"""All-pairs top-10 neighbours (the item-to-item table) at 10k, 50k and 100k tracks, in one run:
our banded LSH against exact brute force in numpy, Spark's own `approxSimilarityJoin` at the same
recall, and FAISS (HNSW, and its exact BLAS scan) / hnswlib as what a user might pick instead.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_lsh.py [--sizes 10000,50000,100000] [--spark-queries 1000]

Data: SYNTHETIC clustered vectors of the real feature dimension (519 = 518 FMA statistics + tempo,
benchmarks/synthetic.py), rows shuffled, standardised and reduced by PCA to 32 dimensions (the
components are fitted on a 20,000-row sample). Every method works in that same 32-d space, and recall@10
is measured against the exact all-pairs top-10 in it (self excluded). With --pca 0 every method works
in the full standardised 519-d space instead (on the real demo corpus the tuner keeps all 519
dimensions, because PCA to 32 or 64 loses too many true neighbours there).

- numpy brute force: jobs.lsh.exact_top_k over all tracks (BLAS distances + argpartition): the baseline.
- banded LSH: jobs.tuning picks bucket length, band size and bands (cheapest setting with recall >=
  target on 500 sample queries; "tune s"), then BandedIndex.build + neighbours(10) for every track.
- Spark approxSimilarityJoin: BucketedRandomProjectionLSH with the number of tables and bucket length
  that reach the target recall with the fewest candidates (chosen by simulating its OR-of-tables rule in
  numpy on the sample), joined with a distance threshold just above the largest exact 10th-neighbour
  distance of the sample, ranked per query in Spark. Run for --spark-queries sample queries only and
  EXTRAPOLATED linearly to all tracks (marked *); recall is measured on the sample.
- FAISS HNSW (M=32): efSearch is the smallest of 16..512 that reaches the target on the sample;
  time = build + search of every track. FAISS IndexFlatL2: exact, BLAS, for reference.
- hnswlib (if importable): the same protocol as FAISS HNSW.
All methods use the machine's 2 cores (numba, OpenBLAS, OpenMP threads). Timings are wall-clock.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import FEATURE_DIM, clustered  # noqa: E402
from jobs.lsh import BandedIndex, exact_top_k, recall_at_k  # noqa: E402
from jobs.tuning import Grid, random_projections, tune  # noqa: E402

K = 10


def prepare(n: int, dim: int, pca: int, seed: int) -> np.ndarray:
    """Synthetic catalogue -> standardised -> PCA(pca) (0: none), float32, rows shuffled."""
    x = clustered(n, dim=dim, seed=seed).features
    x = x[np.random.default_rng(seed).permutation(n)]
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    if not pca:
        return np.ascontiguousarray(z, dtype=np.float32)
    sample = z[np.random.default_rng(seed + 1).choice(n, size=min(n, 20_000), replace=False)]
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    return np.ascontiguousarray(z @ vt[:pca].T, dtype=np.float32)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def self_excluded(ids_with_self: np.ndarray, query_ids: np.ndarray) -> np.ndarray:
    """(q, k+1) results that include the query itself -> (q, k) without it."""
    keep = np.argsort(ids_with_self == query_ids[:, None], axis=1, kind="stable")[:, :K]
    return np.take_along_axis(ids_with_self, keep, axis=1)


def run_banded(x, ids, truth, sample, target, seed):
    tuning, tune_s = timed(tune, {x.shape[1]: x}, ids, sample, truth[sample], target, k=K,
                           grid=Grid(pca_k=(x.shape[1],)), seed=seed, progress=False)
    c = tuning["chosen"]
    proj = random_projections(c["band_size"] * c["bands"], x.shape[1], np.random.default_rng(seed + 7))
    index, build_s = timed(BandedIndex.build, x, ids, proj, c["bucket_length"], c["band_size"])
    (nb, _, n_cand), query_s = timed(index.neighbours, K)
    return {"method": "banded LSH (ours)", "build_s": build_s, "query_s": query_s, "tune_s": tune_s,
            "recall": recall_at_k(nb, truth), "candidates": float(n_cand.mean()) / len(x),
            "params": f"w={c['bucket_length']:.2f} k={c['band_size']} L={c['bands']}"}


def choose_spark_params(x, ids, truth, sample, target, seed):
    """(tables, bucket_length) reaching the target with the fewest candidates, simulating Spark's rule
    (a pair is a candidate if ANY single-projection table agrees) as band_size = 1."""
    _, d = exact_top_k(x[sample], x, ids, K, exclude_self=True, query_pos=sample)
    scale = float(np.median(d[:, -1])) / np.sqrt(x.shape[1])
    rng = np.random.default_rng(seed)
    best = None
    for factor in (2.0, 4.0, 8.0, 16.0, 32.0):
        proj = random_projections(8, x.shape[1], rng)
        index = BandedIndex.build(x, ids, proj, factor * scale, 1)
        for tables in (1, 2, 3, 4, 6, 8):
            got, _, n_cand = index.first_bands(tables).query(x[sample], K, exclude=[[int(ids[p])] for p in sample])
            r = recall_at_k(got, truth[sample])
            if r >= target + 0.01 and (best is None or n_cand.mean() < best[2]):
                best = (tables, factor * scale, float(n_cand.mean()), r)
    return best, float(d[:, -1].max())


def run_spark(spark, x, ids, truth, sample, target, seed):
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    best, max_kth = choose_spark_params(x, ids, truth, sample, target, seed)
    if best is None:
        return {"method": "Spark approxSimilarityJoin", "note": "no setting reached the target"}
    tables, bucket_length, cand, _ = best
    import pandas as pd

    def frame(rows):
        pdf = pd.DataFrame({"id": ids[rows], "f": list(x[rows].astype(np.float64))})
        return spark.createDataFrame(pdf).select("id", array_to_vector("f").alias("v"))

    catalogue = frame(np.arange(len(x))).repartition(spark.sparkContext.defaultParallelism).cache()
    queries = frame(sample).cache()
    catalogue.count(), queries.count()
    lsh = BucketedRandomProjectionLSH(inputCol="v", outputCol="h", numHashTables=tables, bucketLength=bucket_length,
                                      seed=seed)

    def join():
        model = lsh.fit(catalogue)
        pairs = (model.approxSimilarityJoin(queries, catalogue, max_kth * 1.0001, distCol="d")
                 .select(F.col("datasetA.id").alias("q"), F.col("datasetB.id").alias("c"), "d")
                 .where("q != c"))
        top = pairs.withColumn("r", F.row_number().over(Window.partitionBy("q").orderBy("d"))).where(f"r <= {K}")
        return top.collect()

    rows, seconds = timed(join)
    got = {}
    for r in rows:
        got.setdefault(r["q"], []).append((r["r"], r["c"]))
    approx = np.full((len(sample), K), -1, dtype=np.int64)
    for i, q in enumerate(ids[sample]):
        for rank, c in got.get(int(q), []):
            approx[i, rank - 1] = c
    catalogue.unpersist(), queries.unpersist()
    scale = len(x) / len(sample)
    return {"method": "Spark approxSimilarityJoin", "build_s": 0.0, "query_s": seconds * scale,
            "recall": recall_at_k(approx, truth[sample]), "candidates": cand / len(x), "extrapolated": True,
            "params": f"tables={tables} w={bucket_length:.2f} ({len(sample)} queries x{scale:.0f})"}


def run_faiss_hnsw(x, ids, truth, sample, target):
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], 32)
    index.hnsw.efConstruction = 80
    _, build_s = timed(index.add, x)
    ef = None
    for e in (16, 32, 64, 128, 256, 512):
        index.hnsw.efSearch = e
        _, got = index.search(x[sample], K + 1)
        if recall_at_k(self_excluded(ids[got], ids[sample]), truth[sample]) >= target:
            ef = e
            break
    index.hnsw.efSearch = ef or 512
    (_, got), query_s = timed(index.search, x, K + 1)
    nb = self_excluded(ids[got], ids)
    return {"method": "FAISS HNSW", "build_s": build_s, "query_s": query_s, "recall": recall_at_k(nb, truth),
            "params": f"M=32 efC=80 efSearch={index.hnsw.efSearch}"}


def run_faiss_flat(x, ids, truth):
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    _, build_s = timed(index.add, x)
    (_, got), query_s = timed(index.search, x, K + 1)
    return {"method": "FAISS IndexFlatL2 (exact)", "build_s": build_s, "query_s": query_s,
            "recall": recall_at_k(self_excluded(ids[got], ids), truth), "params": "BLAS scan"}


def run_hnswlib(x, ids, truth, sample, target):
    try:
        import hnswlib
    except ImportError:
        return None
    index = hnswlib.Index(space="l2", dim=x.shape[1])

    def build():
        index.init_index(max_elements=len(x), ef_construction=80, M=16, random_seed=1)
        index.add_items(x, ids, num_threads=2)

    _, build_s = timed(build)
    for e in (16, 32, 64, 128, 256, 512):
        index.set_ef(e)
        got, _ = index.knn_query(x[sample], k=K + 1, num_threads=2)
        if recall_at_k(self_excluded(got.astype(np.int64), ids[sample]), truth[sample]) >= target:
            break
    (got, _), query_s = timed(index.knn_query, x, k=K + 1, num_threads=2)
    return {"method": "hnswlib HNSW", "build_s": build_s, "query_s": query_s,
            "recall": recall_at_k(self_excluded(got.astype(np.int64), ids), truth),
            "params": f"M=16 efC=80 ef={e}"}


def growth(rows: list[dict], sizes: list[int]) -> dict[str, float]:
    """Per method, the exponent b of time ~ n^b (least squares on log-log over the sizes)."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["n"], r["total_s"]) for r in rows if r["method"] == method and r.get("total_s")]
        if len(pts) >= 2:
            lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[method] = float(np.polyfit(lx, ly, 1)[0])
    return out


def print_table(rows: list[dict], exps: dict[str, float]) -> None:
    head = (f"{'n':>7}  {'method':<28} {'recall@10':>9} {'cand %':>7} {'tune s':>7} {'build s':>8} "
            f"{'all-pairs s':>11} {'total s':>9} {'x brute':>8} {'x Spark':>8}  params")
    print(head)
    print("-" * len(head))
    for r in rows:
        def f(v, fmt):
            return format(v, fmt) if isinstance(v, (int, float)) and v is not None else "-"
        star = "*" if r.get("extrapolated") else " "
        print(f"{r['n']:>7}  {r['method']:<28} {f(r.get('recall'), '.3f'):>9} "
              f"{f(100 * r['candidates'] if r.get('candidates') is not None else None, '.2f'):>7} "
              f"{f(r.get('tune_s'), '.1f'):>7} {f(r.get('build_s'), '.2f'):>8} {f(r.get('query_s'), '.2f'):>11} "
              f"{f(r.get('total_s'), '.2f'):>8}{star} {f(r.get('vs_brute'), '.1f'):>8} {f(r.get('vs_spark'), '.1f'):>8}"
              f"  {r.get('params', r.get('note', ''))}")
    print("\n* extrapolated from the sample of Spark queries. 'total s' = build + all-pairs query (tuning is")
    print("  listed apart; 'x brute'/'x Spark' = numpy brute force / Spark join total over this method's total).")
    print("growth exponent b (total time ~ n^b over the sizes): "
          + ", ".join(f"{m}: {b:.2f}" for m, b in exps.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--dim", type=int, default=FEATURE_DIM, help="raw feature dimension (519 = the real one)")
    ap.add_argument("--pca", type=int, default=32, help="reduced dimension every method works in (0: none)")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 target")
    ap.add_argument("--sample", type=int, default=500, help="sample queries for tuning and parameter choice")
    ap.add_argument("--spark-queries", type=int, default=1000, help="queries joined by Spark (0: skip Spark)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    spark = None
    if args.spark_queries:
        from common.spark import build_session
        from conf import Settings

        spark = build_session(Settings(spark_master="local[2]"), "bench-lsh",
                              {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "4"})
    rows = []
    print(f"all-pairs top-{K}, synthetic clustered {args.dim}-d vectors -> "
          f"{f'PCA {args.pca}' if args.pca else 'no reduction'}; target recall {args.target}", flush=True)
    for n in sizes:
        x = prepare(n, args.dim, args.pca, args.seed)
        ids = np.arange(n, dtype=np.int64) + 1
        rng = np.random.default_rng(args.seed)
        sample = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
        (truth, _), brute_s = timed(exact_top_k, x, x, ids, K, exclude_self=True)
        found = [{"method": "numpy brute force (exact)", "build_s": 0.0, "query_s": brute_s, "recall": 1.0,
                  "params": "exact_top_k"}]
        found.append(run_banded(x, ids, truth, sample, args.target, args.seed))
        if spark is not None:
            spark_sample = np.sort(rng.choice(n, size=min(args.spark_queries, n), replace=False))
            found.append(run_spark(spark, x, ids, truth, spark_sample, args.target, args.seed))
        found.append(run_faiss_hnsw(x, ids, truth, sample, args.target))
        found.append(run_faiss_flat(x, ids, truth))
        h = run_hnswlib(x, ids, truth, sample, args.target)
        if h:
            found.append(h)
        spark_total = next((r["query_s"] for r in found if r["method"].startswith("Spark") and "query_s" in r), None)
        for r in found:
            r["n"] = n
            if "query_s" in r:
                r["total_s"] = r["build_s"] + r["query_s"]
                r["vs_brute"] = brute_s / r["total_s"]
                r["vs_spark"] = spark_total / r["total_s"] if spark_total else None
            print(f"  n={n:>7} {r['method']:<28} recall {r.get('recall', float('nan')):.3f} "
                  f"total {r.get('total_s', float('nan')):.2f}s", flush=True)
        rows += found
    print()
    print_table(rows, growth(rows, sizes))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if spark is not None:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
