"""Banded random-projection LSH in numpy: the retrieval core shared by the model job (item-to-item
neighbours, evaluation) and the streaming job (candidates for many users of a micro-batch at once).

Spark's `BucketedRandomProjectionLSH` gives each hash table ONE projection: h_j(x) = floor(x . v_j / w).
One such table prunes almost nothing in 64+ dimensions, so we band them, as in classic LSH: the fitted
model's k*L projections are split into L bands of k; a band key is the tuple of its k bucket ids
(AND inside a band) and two vectors are candidates if any band key matches (OR across bands). The
hashes are exactly the ones Spark computes (`model.transform` gives the same bucket ids), so the
index can be built from a fitted Spark model's `randUnitVectors` and `bucketLength`.

All functions are pure and vectorised over many queries; nothing here knows Spark, Kafka or MongoDB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIX_SEED = 0x9E3779B97F4A7C15


def bucket_ids(x: np.ndarray, projections: np.ndarray, bucket_length: float) -> np.ndarray:
    """Spark BRP hashes: floor(x . v / w) for every projection v; (n, n_projections) int64."""
    return np.floor(np.asarray(x, dtype=np.float64) @ projections.T / bucket_length).astype(np.int64)


def band_keys(buckets: np.ndarray, band_size: int) -> np.ndarray:
    """Collapse each band of `band_size` bucket ids into one int64 key; (n, n_bands).

    Keys are a multiplicative hash of the tuple (wrap-around int64 arithmetic); a collision between two
    different tuples only adds a candidate, which the exact re-rank then judges.
    """
    n, m = buckets.shape
    bands = m // band_size
    b = buckets[:, : bands * band_size].reshape(n, bands, band_size).astype(np.uint64)
    rng = np.random.default_rng(_MIX_SEED & 0xFFFFFFFF)
    mult = rng.integers(1, 2**63 - 1, size=band_size, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        keys = (b * mult).sum(axis=2, dtype=np.uint64)
        keys ^= keys >> np.uint64(29)
    return keys.view(np.int64)


@dataclass
class BandedIndex:
    """The catalogue hashed once: per band, item keys sorted for binary search."""

    projections: np.ndarray      # (k*L, d) unit vectors of the fitted BRP model
    bucket_length: float
    band_size: int
    vectors: np.ndarray          # (n, d) catalogue in the model's (scaled) space, float32
    ids: np.ndarray              # (n,) track ids
    sorted_keys: np.ndarray      # (L, n) band keys, each row sorted
    order: np.ndarray            # (L, n) item positions in that sorted order

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, projections: np.ndarray, bucket_length: float,
              band_size: int) -> "BandedIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = band_keys(bucket_ids(vectors, projections, bucket_length), band_size).T  # (L, n)
        order = np.argsort(keys, axis=1, kind="stable")
        sorted_keys = np.take_along_axis(keys, order, axis=1)
        return cls(np.asarray(projections, dtype=np.float64), float(bucket_length), int(band_size),
                   vectors, np.asarray(ids), sorted_keys, order)

    @property
    def bands(self) -> int:
        return self.sorted_keys.shape[0]

    def _band_ranges(self, queries: np.ndarray):
        """Per band, the [lo, hi) range of each query's key among the sorted catalogue keys."""
        qkeys = band_keys(bucket_ids(queries, self.projections, self.bucket_length), self.band_size)
        for band in range(self.bands):
            keys = self.sorted_keys[band]
            yield band, np.searchsorted(keys, qkeys[:, band], "left"), np.searchsorted(keys, qkeys[:, band], "right")

    def candidate_mask(self, queries: np.ndarray) -> np.ndarray:
        """(q, n) bool: item shares at least one band key with the query (duplicates fold for free)."""
        mask = np.zeros((len(queries), len(self.ids)), dtype=bool)
        for band, lo, hi in self._band_ranges(queries):
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            rows = np.repeat(np.arange(len(queries)), counts)
            # positions lo[r] .. hi[r]-1 of every query r, without a Python loop
            starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            mask[rows, self.order[band][starts + np.arange(total)]] = True
        return mask

    def query(self, queries: np.ndarray, k: int, exclude: list | None = None,
              cells: int = 20_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k catalogue items per query by exact Euclidean distance among its LSH candidates.

        Returns (ids, distances, n_candidates): ids (q, k) with -1 where fewer than k candidates were
        found, distances (q, k) with +inf there. `exclude[r]` holds track ids never returned for query r.
        Queries go in blocks of about `cells` / catalogue size, so memory stays bounded.
        """
        queries = np.asarray(queries, dtype=np.float32)
        n = len(self.ids)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        n_cand = np.zeros(len(queries), dtype=np.int64)
        pos_of = None
        block = max(1, cells // max(n, 1))
        for s in range(0, len(queries), block):
            q = queries[s:s + block]
            mask = self.candidate_mask(q)
            if exclude is not None:
                for r, ex in enumerate(exclude[s:s + block]):
                    if ex:
                        if pos_of is None:
                            pos_of = {int(t): i for i, t in enumerate(self.ids)}
                        drop = [pos_of[t] for t in ex if t in pos_of]
                        mask[r, drop] = False
            rows, items = np.nonzero(mask)
            n_cand[s:s + block] = mask.sum(axis=1)
            diff = self.vectors[items] - q[rows]
            dense = np.full(mask.shape, np.inf, dtype=np.float32)
            dense[rows, items] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            kk = min(k, n)
            part = np.argpartition(dense, kk - 1, axis=1)[:, :kk]
            pd = np.take_along_axis(dense, part, axis=1)
            o = np.argsort(pd, axis=1)
            part, pd = np.take_along_axis(part, o, axis=1), np.take_along_axis(pd, o, axis=1)
            found = np.isfinite(pd)
            out_ids[s:s + block, :kk] = np.where(found, self.ids[part], -1)
            out_d[s:s + block, :kk] = pd
        return out_ids, out_d, n_cand


def top_k_per_group(rows: np.ndarray, items: np.ndarray, dist: np.ndarray, n_rows: int, k: int,
                    ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For pairs (row, item, distance), the k nearest items of each row: (n_rows, k) ids and distances."""
    out_ids = np.full((n_rows, k), -1, dtype=np.int64)
    out_d = np.full((n_rows, k), np.inf, dtype=np.float32)
    if len(rows) == 0:
        return out_ids, out_d
    order = np.lexsort((dist, rows))
    rows, items, dist = rows[order], items[order], dist[order]
    first = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - first
    sel = rank < k
    out_ids[rows[sel], rank[sel]] = ids[items[sel]]
    out_d[rows[sel], rank[sel]] = dist[sel]
    return out_ids, out_d


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int,
                exclude_self: bool = False, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by Euclidean distance, in blocks of queries: the baseline and ground truth."""
    queries = np.asarray(queries, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    sq = np.einsum("ij,ij->i", vectors, vectors)
    out_ids = np.empty((len(queries), k), dtype=np.int64)
    out_d = np.empty((len(queries), k), dtype=np.float32)
    kk = k + 1 if exclude_self else k
    for s in range(0, len(queries), block):
        q = queries[s:s + block]
        d2 = sq[None, :] - 2.0 * (q @ vectors.T) + np.einsum("ij,ij->i", q, q)[:, None]
        part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
        pd = np.take_along_axis(d2, part, axis=1)
        o = np.argsort(pd, axis=1)
        part, pd = np.take_along_axis(part, o, axis=1), np.take_along_axis(pd, o, axis=1)
        if exclude_self:
            own = np.arange(s, s + len(q))[:, None]
            keep = part != own
            # drop self (or the last one if self was not among them)
            part = np.array([r[m][:k] for r, m in zip(part, keep)])
            pd = np.array([r[m][:k] for r, m in zip(pd, keep)])
        out_ids[s:s + len(q)] = ids[part]
        out_d[s:s + len(q)] = np.sqrt(np.maximum(pd, 0))
    return out_ids, out_d


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = [len(set(a[a >= 0]) & set(e)) / len(e) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits)) if hits else 0.0
