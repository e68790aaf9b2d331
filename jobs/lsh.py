"""Banded random-projection LSH in numpy and numba: the retrieval core shared by the model job (item-to-item
neighbours, evaluation) and the streaming job (candidates for many users of a micro-batch at once).

Spark's `BucketedRandomProjectionLSH` gives each hash table ONE projection: h_j(x) = floor(x . v_j / w).
One such table prunes almost nothing in 64+ dimensions, so we band them, as in classic LSH: the fitted
model's k*L projections are split into L bands of k; a band key is the tuple of its k bucket ids
(AND inside a band) and two vectors are candidates if any band key matches (OR across bands). The
hashes are exactly the ones Spark computes (`model.transform` gives the same bucket ids), so the
index can be built from a fitted Spark model's `randUnitVectors` and `bucketLength`.

Retrieval for a block of queries: the query's band keys are looked up by binary search in each band's
sorted catalogue keys; one compiled kernel (numba, parallel over queries) walks the matching buckets,
scores each distinct candidate once by exact distance and keeps the top k. So the cost follows the
number of candidates, not the catalogue size, and no (queries x catalogue) array is ever made.
Item-to-item neighbours of the whole catalogue skip the lookup (an item's buckets are the runs of equal
sorted keys around it).

All functions are pure and work on many queries at once; nothing here knows Spark, Kafka or MongoDB.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np
from numba import njit, prange

_MIX_SEED = 0x9E3779B97F4A7C15


def bucket_ids(x: np.ndarray, projections: np.ndarray, bucket_length: float) -> np.ndarray:
    """Spark BRP hashes: floor(x . v / w) for every projection v; (n, n_projections) int64."""
    return np.floor(np.asarray(x, dtype=np.float64) @ projections.T / bucket_length).astype(np.int64)


@lru_cache(maxsize=None)
def _multipliers(band_size: int) -> np.ndarray:
    rng = np.random.default_rng(_MIX_SEED & 0xFFFFFFFF)
    mult = rng.integers(1, 2**63 - 1, size=band_size, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    mult.setflags(write=False)
    return mult


def band_keys(buckets: np.ndarray, band_size: int) -> np.ndarray:
    """Collapse each band of `band_size` bucket ids into one int64 key; (n, n_bands).

    Keys are a multiplicative hash of the tuple (wrap-around int64 arithmetic); a collision between two
    different tuples only adds a candidate, which the exact re-rank then judges.
    """
    n, m = buckets.shape
    bands = m // band_size
    b = buckets[:, : bands * band_size].reshape(n, bands, band_size).astype(np.uint64)
    with np.errstate(over="ignore"):
        keys = (b * _multipliers(band_size)).sum(axis=2, dtype=np.uint64)
        keys ^= keys >> np.uint64(29)
    return keys.view(np.int64)


def hash_keys(x: np.ndarray, projections: np.ndarray, bucket_length: float, band_size: int,
              block: int = 4096) -> np.ndarray:
    """band_keys(bucket_ids(x, ...)), equal to it bit for bit, in blocks of rows: the projections by
    BLAS, the floor and the band mixing fused in one compiled pass, so the (n, k*L) bucket ids never
    exist as an array."""
    bands = projections.shape[0] // band_size
    x = np.asarray(x, dtype=np.float64)
    p_t = np.ascontiguousarray(np.asarray(projections, dtype=np.float64)[: bands * band_size].T)
    out = np.empty((len(x), bands), dtype=np.int64)
    for s in range(0, len(x), block):
        _mix_bands(x[s:s + block] @ p_t, float(bucket_length), band_size, _multipliers(band_size),
                   out[s:s + block].view(np.uint64))
    return out


@njit(cache=True, parallel=True)
def _mix_bands(proj, bucket_length, band_size, mult, out):
    """out[r, b] = band_keys' mix of floor(proj[r, b*k:(b+1)*k] / bucket_length) (uint64 wrap-around)."""
    n, bands = out.shape
    for r in prange(n):
        for b in range(bands):
            h = np.uint64(0)
            for j in range(band_size):
                bucket = np.int64(np.floor(proj[r, b * band_size + j] / bucket_length))
                h += np.uint64(bucket) * mult[j]
            out[r, b] = h ^ (h >> np.uint64(29))


@dataclass
class BandedIndex:
    """The catalogue hashed once: per band, item keys sorted for binary search."""

    projections: np.ndarray      # (k*L, d) unit vectors of the fitted BRP model
    bucket_length: float
    band_size: int
    vectors: np.ndarray          # (n, d) catalogue in the model's (scaled) space, float32
    ids: np.ndarray              # (n,) track ids
    sorted_keys: np.ndarray      # (L, n) band keys, each row sorted
    order: np.ndarray            # (L, n) int32 item positions in that sorted order
    _pos_of: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, projections: np.ndarray, bucket_length: float,
              band_size: int) -> "BandedIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) >= 2**31:
            raise ValueError("catalogue too large for int32 positions")
        projections = np.asarray(projections, dtype=np.float64)
        if projections.shape[0] % band_size or projections.shape[1] != vectors.shape[1]:
            raise ValueError(f"projections {projections.shape} do not fit bands of {band_size} "
                             f"over {vectors.shape[1]}-d vectors")
        keys = np.ascontiguousarray(hash_keys(vectors, projections, bucket_length, band_size).T)  # (L, n)
        order = np.argsort(keys, axis=1).astype(np.int32)
        sorted_keys = np.take_along_axis(keys, order, axis=1)
        return cls(projections, float(bucket_length), int(band_size), vectors, np.asarray(ids), sorted_keys,
                   order)

    @property
    def bands(self) -> int:
        return self.sorted_keys.shape[0]

    def first_bands(self, bands: int) -> "BandedIndex":
        """The same index restricted to its first `bands` bands (a view: nothing is re-hashed)."""
        if not 1 <= bands <= self.bands:
            raise ValueError(f"bands must be in 1..{self.bands}")
        return BandedIndex(self.projections[: bands * self.band_size], self.bucket_length, self.band_size,
                           self.vectors, self.ids, self.sorted_keys[:bands], self.order[:bands])

    def _band_ranges(self, queries: np.ndarray):
        """Per band, the [lo, hi) range of each query's key among the sorted catalogue keys."""
        qkeys = hash_keys(queries, self.projections, self.bucket_length, self.band_size)
        for band in range(self.bands):
            keys = self.sorted_keys[band]
            yield band, np.searchsorted(keys, qkeys[:, band], "left"), np.searchsorted(keys, qkeys[:, band], "right")

    def _ranges(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(q, L) int32 arrays lo, hi of `_band_ranges`."""
        lo = np.empty((len(queries), self.bands), dtype=np.int32)
        hi = np.empty_like(lo)
        for band, l, h in self._band_ranges(queries):
            lo[:, band], hi[:, band] = l, h
        return lo, hi

    def _own_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, L) lo, hi of every catalogue item's own bucket, from the runs of equal sorted keys: the
        item-to-item case needs no hashing and no binary search."""
        n = len(self.ids)
        lo = np.empty((n, self.bands), dtype=np.int32)
        hi = np.empty_like(lo)
        for band in range(self.bands):
            keys = self.sorted_keys[band]
            new_run = np.empty(n, dtype=bool)
            new_run[0] = True
            np.not_equal(keys[1:], keys[:-1], out=new_run[1:])
            starts = np.flatnonzero(new_run).astype(np.int32)
            ends = np.append(starts[1:], np.int32(n))
            run = np.cumsum(new_run) - 1
            lo[self.order[band], band] = starts[run]
            hi[self.order[band], band] = ends[run]
        return lo, hi

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

    def arrays(self) -> dict:
        """What `from_arrays` needs besides the vectors and ids: ship these, nothing is re-hashed."""
        return {"projections": self.projections, "bucket_length": np.array(self.bucket_length),
                "band_size": np.array(self.band_size), "sorted_keys": self.sorted_keys, "order": self.order}

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, ids: np.ndarray, arrays: dict) -> "BandedIndex":
        return cls(np.asarray(arrays["projections"], dtype=np.float64), float(arrays["bucket_length"]),
                   int(arrays["band_size"]), np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids),
                   np.ascontiguousarray(arrays["sorted_keys"]), np.ascontiguousarray(arrays["order"]))

    def query(self, queries: np.ndarray, k: int, exclude: list | None = None,
              cells: int = 20_000_000, positions: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k catalogue items per query by exact Euclidean distance among its LSH candidates.

        Returns (ids, distances, n_candidates): ids (q, k) with -1 where fewer than k candidates were
        found, distances (q, k) with +inf there. `exclude[r]` holds track ids never returned for query r
        (they do not count as candidates). Queries go in blocks of `cells` / bands, so the per-block
        bucket ranges stay bounded. With `positions`, catalogue rows are returned instead of ids.
        Each query is searched on its own (no state shared between queries), so a query's result never
        depends on the other queries of the call.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries must be (q, {self.vectors.shape[1]}), got {queries.shape}")
        excl_ptr, excl_pos = self._exclusions(exclude, len(queries))
        return self._search(queries, k, excl_ptr, excl_pos, block=max(1, cells // self.bands), positions=positions)

    def neighbours(self, k: int, fill_exact: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item-to-item: the top-k of every catalogue item among its LSH candidates, itself excluded.

        The same (ids, distances, n_candidates) as `query`, row i for catalogue item i. With
        `fill_exact`, the rare items with fewer than k candidates (outliers that share no bucket with
        enough others) get their exact top-k by brute force instead, so every row holds k distinct items
        whenever the catalogue has more than k.
        """
        n = len(self.ids)
        lo, hi = self._own_ranges()
        ids, dist, n_cand = self._rerank(self.vectors, lo, hi, k, np.arange(n + 1, dtype=np.int64),
                                         np.arange(n, dtype=np.int64))
        short = np.flatnonzero((ids < 0).any(axis=1)) if fill_exact else np.zeros(0, dtype=np.int64)
        if len(short):
            ids[short], dist[short] = exact_top_k(self.vectors[short], self.vectors, self.ids, k,
                                                  exclude_self=True, query_pos=short)
        return ids, dist, n_cand

    def _exclusions(self, exclude: list | None, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-query excluded catalogue positions as CSR arrays (ptr, positions)."""
        if exclude is None:
            return np.zeros(n_queries + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if len(exclude) != n_queries:
            raise ValueError(f"exclude has {len(exclude)} entries for {n_queries} queries")
        if self._pos_of is None:
            self._pos_of = {int(t): i for i, t in enumerate(self.ids)}
        pos = [[self._pos_of[int(t)] for t in (ex or ()) if int(t) in self._pos_of] for ex in exclude]
        ptr = np.zeros(n_queries + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(p) for p in pos])
        flat = np.fromiter((i for p in pos for i in p), dtype=np.int64, count=int(ptr[-1]))
        return ptr, flat

    def _search(self, queries: np.ndarray, k: int, excl_ptr: np.ndarray, excl_pos: np.ndarray,
                block: int, positions: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = []
        for s in range(0, len(queries), block):
            q = queries[s:s + block]
            lo, hi = self._ranges(q)
            ptr = excl_ptr[s:s + len(q) + 1]
            parts.append(self._rerank(q, lo, hi, k, ptr - ptr[0], excl_pos[ptr[0]:ptr[-1]], positions))
        if not parts:
            return (np.full((0, k), -1, dtype=np.int64), np.zeros((0, k), dtype=np.float32),
                    np.zeros(0, dtype=np.int64))
        return tuple(np.concatenate(p) for p in zip(*parts))

    def _rerank(self, queries, lo, hi, k, excl_ptr, excl_pos, positions: bool = False):
        nq = len(queries)
        out_pos = np.full((nq, k), -1, dtype=np.int64)
        out_d = np.full((nq, k), np.inf, dtype=np.float32)
        n_cand = np.zeros(nq, dtype=np.int64)
        _rerank(queries, self.vectors, lo, hi, self.order, excl_ptr, excl_pos, out_pos, out_d, n_cand,
                numba.get_num_threads())
        if positions:
            return out_pos, np.sqrt(out_d), n_cand
        ids = np.where(out_pos >= 0, self.ids[np.maximum(out_pos, 0)], -1)
        return ids, np.sqrt(out_d), n_cand


@njit(cache=True, parallel=True, fastmath=True)
def _rerank(queries, vectors, lo, hi, order, excl_ptr, excl_pos, out_pos, out_d, n_cand, n_threads):
    """For each query: the union of its band buckets, each candidate scored once by exact squared
    distance (float32, vectorised), the k best kept in a small sorted array. Candidates are read
    straight from the sorted band orders (no mask, no dense matrix), so the cost follows the number of
    candidates, not the catalogue size. Queries are dealt round-robin to threads, each with its own
    `seen` stamp array."""
    nq, dim = queries.shape
    n = vectors.shape[0]
    k = out_pos.shape[1]
    n_threads = max(1, min(n_threads, nq))
    for t in prange(n_threads):
        seen = np.full(n, -1, dtype=np.int32)
        for r in range(t, nq, n_threads):
            for e in range(excl_ptr[r], excl_ptr[r + 1]):
                seen[excl_pos[e]] = r
            count = 0
            worst = np.float32(np.inf)
            q = queries[r]
            for b in range(lo.shape[1]):
                for s in range(lo[r, b], hi[r, b]):
                    j = order[b, s]
                    if seen[j] == r:
                        continue
                    seen[j] = r
                    count += 1
                    v = vectors[j]
                    d2 = np.float32(0.0)
                    for c in range(dim):
                        diff = q[c] - v[c]
                        d2 += diff * diff
                    if d2 < worst:
                        # insert into the sorted top-k (k is small: a linear shift is cheapest)
                        m = k - 1
                        while m > 0 and out_d[r, m - 1] > d2:
                            out_d[r, m] = out_d[r, m - 1]
                            out_pos[r, m] = out_pos[r, m - 1]
                            m -= 1
                        out_d[r, m] = d2
                        out_pos[r, m] = j
                        worst = out_d[r, k - 1]
            n_cand[r] = count


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int,
                exclude_self: bool = False, block: int = 1024,
                query_pos: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by Euclidean distance, in blocks of queries: the baseline and ground truth.

    With `exclude_self`, query r never returns catalogue row `query_pos[r]` (default: row r, for
    queries that are the catalogue itself). Rows with fewer than k items hold -1 and +inf.
    """
    queries = np.asarray(queries, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    own = None
    if exclude_self:
        own = np.arange(len(queries)) if query_pos is None else np.asarray(query_pos)
        if len(own) != len(queries):
            raise ValueError("query_pos must give one catalogue row per query")
    sq = np.einsum("ij,ij->i", vectors, vectors)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    kk = min(k + 1 if exclude_self else k, n)
    if kk == 0:
        return out_ids, out_d
    for s in range(0, len(queries), block):
        q = queries[s:s + block]
        d2 = sq[None, :] - 2.0 * (q @ vectors.T) + np.einsum("ij,ij->i", q, q)[:, None]
        part = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(q), 1))
        pd = np.take_along_axis(d2, part, axis=1)
        o = np.argsort(pd, axis=1)
        part, pd = np.take_along_axis(part, o, axis=1), np.take_along_axis(pd, o, axis=1)
        if own is not None:  # drop the query's own row, or the farthest one if it was not among them
            keep = np.argsort(part == own[s:s + len(q), None], axis=1, kind="stable")[:, : kk - 1]
            part, pd = np.take_along_axis(part, keep, axis=1), np.take_along_axis(pd, keep, axis=1)
        m = min(k, part.shape[1])
        out_ids[s:s + len(q), :m] = ids[part[:, :m]]
        out_d[s:s + len(q), :m] = np.sqrt(np.maximum(pd[:, :m], 0))
    return out_ids, out_d


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = [len(set(a[a >= 0]) & set(e)) / len(e) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits)) if hits else 0.0
