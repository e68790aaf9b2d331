"""How good is a fitted model: its LSH neighbours against exact ones on a sample of queries.

Metrics (all at k = settings.top_k, usually 10):
- recall@k: the fraction of the exact top-k (in the model's space) that the LSH top-k finds;
  recall@k_end_to_end: the same against the exact top-k in the scaled space before the reduction, so
  what PCA loses is counted too.
- genre precision@k: the fraction of a query's neighbours that share its `genre_top` (FMA), for the
  queries that have one; album precision@k: the same for the album (for the demo corpus: the
  soundtrack a clip comes from); both also for the exact neighbours, which are the ceiling.
- recording R-precision: for clips whose recording has R > 0 other clips in the catalogue, the fraction
  of the first min(R, k) neighbours that come from the same recording (demo corpus: clips cut from one
  piece of music should find each other first).
- catalogue coverage: the fraction of the catalogue that appears in some track's neighbour list.
- query cost: mean distinct candidates (and as a fraction of the catalogue), milliseconds per query for
  the LSH and for exact brute force in the same space, measured in the same run.
Pure numpy; the labels come as arrays aligned with the catalogue.
"""
from __future__ import annotations

import time

import numpy as np

from jobs.lsh import BandedIndex, exact_top_k, recall_at_k


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Catalogue rows of `wanted` track ids (-1 stays -1)."""
    order = np.argsort(ids)
    at = np.searchsorted(ids, wanted, sorter=order)
    at = order[np.clip(at, 0, len(ids) - 1)]
    return np.where((wanted >= 0) & (ids[at] == wanted), at, -1)


def label_precision(neighbour_ids: np.ndarray, query_pos: np.ndarray, ids: np.ndarray,
                    labels: np.ndarray) -> float | None:
    """Mean fraction of neighbours with the query's label, over queries that have a label (None, "" and
    NaN are no label); a missing neighbour (-1) counts as a miss. None when no query has a label."""
    lab = np.array([None if (v is None or v == "" or (isinstance(v, float) and np.isnan(v))) else v
                    for v in labels], dtype=object)
    has = np.array([v is not None for v in lab[query_pos]])
    if not has.any():
        return None
    pos = _positions(ids, neighbour_ids[has])
    nb_lab = np.where(pos >= 0, lab[np.maximum(pos, 0)], None)
    hits = nb_lab == lab[query_pos[has]][:, None]
    return float(hits.mean())


def recording_r_precision(neighbour_ids: np.ndarray, query_pos: np.ndarray, ids: np.ndarray,
                          recordings: np.ndarray) -> tuple[float | None, int]:
    """(mean R-precision, number of queries it is measured on); see the module docstring."""
    k = neighbour_ids.shape[1]
    rec = np.array([None if (v is None or v == "") else v for v in recordings], dtype=object)
    values, counts = np.unique(np.array([str(v) for v in rec if v is not None]), return_counts=True)
    size = dict(zip(values.tolist(), counts.tolist()))
    scores = []
    for row, p in zip(neighbour_ids, query_pos):
        r = rec[p]
        others = size.get(str(r), 1) - 1 if r is not None else 0
        if others < 1:
            continue
        m = min(others, k)
        pos = _positions(ids, row[:m])
        scores.append(float(np.mean([q >= 0 and rec[q] == r for q in pos])))
    return (float(np.mean(scores)) if scores else None), len(scores)


def coverage(neighbour_ids: np.ndarray, catalogue_size: int) -> float:
    """Fraction of the catalogue appearing in at least one neighbour list."""
    found = np.unique(neighbour_ids[neighbour_ids >= 0])
    return float(len(found)) / max(catalogue_size, 1)


def sample_queries(n: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct catalogue rows (all of them when the catalogue is smaller), sorted."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def evaluate(index: BandedIndex, query_pos: np.ndarray, k: int, labels: dict[str, np.ndarray],
             recordings: np.ndarray | None = None, unreduced: np.ndarray | None = None) -> dict:
    """Metrics of `index` on the catalogue rows `query_pos` (each query excludes itself).

    `labels` maps a name ("genre", "album") to labels aligned with the catalogue; `unreduced`, when
    the model reduces, is the catalogue in the scaled space before the reduction (end-to-end recall).
    """
    ids, x = index.ids, index.vectors
    queries = x[query_pos]
    t0 = time.perf_counter()
    exact_ids, _ = exact_top_k(queries, x, ids, k, exclude_self=True, query_pos=query_pos)
    exact_ms = (time.perf_counter() - t0) * 1000 / max(len(query_pos), 1)
    index.query(queries[:1], k)  # warm-up: the kernel is compiled (or loaded from cache) once
    t0 = time.perf_counter()
    lsh_ids, _, n_cand = index.query(queries, k, exclude=[[int(ids[p])] for p in query_pos])
    lsh_ms = (time.perf_counter() - t0) * 1000 / max(len(query_pos), 1)

    m = {"k": int(k), "queries": int(len(query_pos)), "catalogue_size": int(len(ids)),
         "recall_at_k": recall_at_k(lsh_ids, exact_ids),
         "candidates_mean": float(n_cand.mean()) if len(n_cand) else 0.0,
         "candidate_fraction": float(n_cand.mean()) / max(len(ids), 1) if len(n_cand) else 0.0,
         "lsh_ms_per_query": lsh_ms, "exact_ms_per_query": exact_ms,
         "speedup_vs_exact": exact_ms / lsh_ms if lsh_ms > 0 else None}
    if unreduced is not None:
        full_ids, _ = exact_top_k(unreduced[query_pos], unreduced, ids, k, exclude_self=True, query_pos=query_pos)
        m["recall_at_k_end_to_end"] = recall_at_k(lsh_ids, full_ids)
    else:
        m["recall_at_k_end_to_end"] = m["recall_at_k"]
    for name, lab in labels.items():
        m[f"{name}_precision_at_k"] = label_precision(lsh_ids, query_pos, ids, lab)
        m[f"{name}_precision_at_k_exact"] = label_precision(exact_ids, query_pos, ids, lab)
    if recordings is not None:
        m["recording_r_precision"], m["recording_queries"] = recording_r_precision(lsh_ids, query_pos, ids,
                                                                                   recordings)
        m["recording_r_precision_exact"], _ = recording_r_precision(exact_ids, query_pos, ids, recordings)
    return m


def table(metrics: dict) -> list[tuple[str, str]]:
    """The metrics as (name, value) rows for printing."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    return [(name, fmt(value)) for name, value in metrics.items()]
