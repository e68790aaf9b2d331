"""Pick the LSH setting (reduction, bucket length, band size, bands) for a catalogue: the cheapest one in
a small grid whose recall@k against exact neighbours meets the target, and say why.

Pure numpy: the caller passes the catalogue in each candidate space (one per PCA dimension), a sample of
query rows and their exact top-k in the unreduced scaled space (the end-to-end ground truth, so a
reduction that loses neighbours is judged by what it loses). For each space, bucket length and band
size, one index is built with the most bands of the grid; fewer bands are its first bands (a view), so
the grid costs one build per (space, bucket length, band size).

Cost is a deterministic operation count, so the choice does not depend on how busy the machine is:
multiply-adds per query = dim * (band_size * bands + candidates), hashing the query with every
projection plus scoring every distinct candidate exactly. Measured milliseconds per query are recorded
beside it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from jobs.lsh import BandedIndex, exact_top_k, recall_at_k


@dataclass(frozen=True)
class Grid:
    pca_k: tuple[int, ...] = (32, 64, 0)                        # 0: no reduction
    bucket_factor: tuple[float, ...] = (1.5, 2.0, 2.5, 3.0, 4.0)  # x (median k-th NN distance) / sqrt(dim)
    band_size: tuple[int, ...] = (6, 8, 10, 12)
    bands: tuple[int, ...] = (16, 32, 64, 128)


COST_MODEL = "multiply-adds per query = dim * (band_size * bands + distinct candidates)"


def cost_per_query(dim: int, band_size: int, bands: int, candidates: float) -> float:
    return float(dim) * (band_size * bands + candidates)


def random_projections(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors drawn as Spark's BucketedRandomProjectionLSH draws them (normalised Gaussians)."""
    p = rng.normal(size=(n, dim))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def tune(spaces: dict[int, np.ndarray], ids: np.ndarray, query_pos: np.ndarray, truth: np.ndarray,
         target: float, k: int = 10, grid: Grid = Grid(), seed: int = 42, progress: bool = True) -> dict:
    """Try every grid setting on every space; returns the tuning record (trials, chosen, reason).

    `spaces` maps a PCA dimension (0: none) to the catalogue (n, dim) in that space, rows aligned with
    `ids`; `truth` (q, k) holds the exact top-k ids of the catalogue rows `query_pos`, themselves excluded.
    """
    from common.progress import bar as progress_bar

    if not spaces:
        raise ValueError("no space to tune in")
    rng = np.random.default_rng(seed)
    max_bands = max(grid.bands)
    exclude = [[int(ids[p])] for p in query_pos]
    trials = []
    bar = progress_bar(total=len(spaces) * len(grid.bucket_factor) * len(grid.band_size), desc="tuning LSH",
                       unit="index", disable=not progress, leave=False)
    for pca_k, space in spaces.items():
        x = np.ascontiguousarray(space, dtype=np.float32)
        dim = x.shape[1]
        # the typical distance to the k-th neighbour, over sqrt(dim), sets the scale of the bucket length
        _, d = exact_top_k(x[query_pos], x, ids, k, exclude_self=True, query_pos=query_pos)
        scale = float(np.median(d[:, -1][np.isfinite(d[:, -1])])) / np.sqrt(dim)
        for factor in grid.bucket_factor:
            for band_size in grid.band_size:
                bucket_length = factor * scale
                index = BandedIndex.build(x, ids, random_projections(band_size * max_bands, dim, rng),
                                          bucket_length, band_size)
                for bands in sorted(grid.bands):
                    t0 = time.perf_counter()
                    got, _, n_cand = index.first_bands(bands).query(x[query_pos], k, exclude=exclude)
                    ms = (time.perf_counter() - t0) * 1000 / max(len(query_pos), 1)
                    candidates = float(n_cand.mean())
                    trials.append({
                        "pca_k": int(pca_k), "dim": int(dim), "bucket_factor": float(factor),
                        "bucket_length": float(bucket_length), "band_size": int(band_size), "bands": int(bands),
                        "recall": recall_at_k(got, truth), "candidates": candidates,
                        "candidate_fraction": candidates / len(ids),
                        "cost": cost_per_query(dim, band_size, bands, candidates), "ms_per_query": ms,
                    })
                bar.update()
    bar.close()
    return choose(trials, target, k) | {"grid": asdict(grid), "queries": int(len(query_pos)),
                                        "cost_model": COST_MODEL, "seed": int(seed)}


def _describe(t: dict) -> str:
    reduction = f"PCA {t['pca_k']}" if t["pca_k"] else "no reduction"
    return (f"{reduction}, bucketLength {t['bucket_length']:.3g}, {t['bands']} bands of {t['band_size']} "
            f"(recall {t['recall']:.3f}, {100 * t['candidate_fraction']:.2f}% candidates, "
            f"{t['cost'] / 1000:.1f}k multiply-adds/query)")


def choose(trials: list[dict], target: float, k: int = 10) -> dict:
    """The cheapest trial meeting the target (ties: higher recall); else the best recall, said plainly."""
    if not trials:
        raise ValueError("no trials")
    feasible = [t for t in trials if t["recall"] >= target]
    if feasible:
        best = min(feasible, key=lambda t: (t["cost"], -t["recall"]))
        cheaper = [t for t in trials if t["cost"] < best["cost"]]
        why = (f"cheapest of the {len(feasible)} of {len(trials)} grid settings with recall@{k} >= {target}: "
               f"{_describe(best)}")
        if cheaper:
            top = max(cheaper, key=lambda t: t["recall"])
            why += f"; the {len(cheaper)} cheaper settings reach at most recall {top['recall']:.3f}"
        met = True
    else:
        best = max(trials, key=lambda t: (t["recall"], -t["cost"]))
        why = (f"no grid setting reached recall@{k} >= {target}; took the highest recall: {_describe(best)}")
        met = False
    return {"target": float(target), "k": int(k), "met": met, "chosen": dict(best), "reason": why,
            "trials": trials}
