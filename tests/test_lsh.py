"""The banded LSH core (jobs/lsh.py): hashes equal Spark's, the re-rank is exact among the candidates,
item-to-item neighbours are distinct and never the item itself, recall on clustered vectors is high."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic import clustered
from jobs.lsh import BandedIndex, band_keys, bucket_ids, exact_top_k, hash_keys, recall_at_k


def _space(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Clustered vectors, standardised and reduced to `dim` (as the model's space is)."""
    x = clustered(n, dim=64, latent_dim=dim, seed=seed).features
    x = (x - x.mean(0)) / x.std(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:dim].T).astype(np.float32)


def _projections(n: int, dim: int, seed: int = 1) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, dim))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def space():
    x = _space(3000)
    return x, np.arange(len(x), dtype=np.int64) * 3 + 100  # ids unlike positions


def test_bucket_ids_equal_spark_brp_hashes(spark):
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector

    x = _space(400, dim=8).astype(np.float64)
    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(x)], "id long, f array<double>")
    df = df.select("id", array_to_vector("f").alias("v"))
    model = BucketedRandomProjectionLSH(inputCol="v", outputCol="h", numHashTables=12, bucketLength=0.8,
                                        seed=7).fit(df)
    spark_hashes = np.array([[h[0] for h in r.h] for r in model.transform(df).orderBy("id").collect()])
    projections = model._call_java("randMatrix").toArray()
    ours = bucket_ids(x, projections, model.getBucketLength())
    assert ours.shape == (400, 12)
    assert (ours == spark_hashes).all()
    assert len(np.unique(ours[:, 0])) > 3  # the hashes really spread over several buckets


def test_band_keys_match_exactly_when_bucket_tuples_match():
    b = np.array([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4], [-1, 2, 3, 4]])
    keys = band_keys(b, 2)
    assert keys.shape == (4, 2)
    assert keys[0, 0] == keys[1, 0] == keys[2, 0] != keys[3, 0]
    assert keys[0, 1] == keys[2, 1] != keys[1, 1]


def test_fused_hash_keys_equal_band_keys_of_bucket_ids_bit_for_bit(space):
    x, _ = space
    for band_size, bands, w in ((8, 16, 1.5), (3, 5, 0.05)):
        p = _projections(band_size * bands, x.shape[1], seed=band_size)
        want = band_keys(bucket_ids(x, p, w), band_size)
        got = hash_keys(x, p, w, band_size, block=1000)
        assert got.shape == (len(x), bands) and (got == want).all()
        assert (bucket_ids(x, p, w) < 0).any()  # negative bucket ids are mixed alike


def test_query_is_exact_top_k_among_candidates(space):
    x, ids = space
    index = BandedIndex.build(x, ids, _projections(4 * 8, x.shape[1]), 1.5, 4)
    queries = x[:200] + 0.05
    got_ids, got_d, n_cand = index.query(queries, 5)
    mask = index.candidate_mask(queries)
    assert (n_cand == mask.sum(axis=1)).all()
    assert 0 < n_cand.mean() < len(x) / 2  # the bands really prune
    d = np.linalg.norm(x[None, :, :] - queries[:, None, :], axis=2)
    d[~mask] = np.inf
    want = np.argsort(d, axis=1, kind="stable")[:, :5]
    want_d = np.take_along_axis(d, want, axis=1)
    assert np.allclose(got_d, want_d, rtol=1e-4, atol=1e-4)
    found = np.isfinite(want_d)
    assert (got_ids[found] == ids[want][found]).all()
    assert (got_ids[~found] == -1).all()


def test_query_honours_exclusions_and_reports_missing_as_minus_one(space):
    x, ids = space
    index = BandedIndex.build(x, ids, _projections(4 * 8, x.shape[1]), 2.0, 4)
    got, _, n_cand = index.query(x[:50], 10)
    assert (got >= 0).all()
    exclude = [list(row[:3]) for row in got]
    again, _, n_again = index.query(x[:50], 10, exclude=exclude)
    assert (n_again == n_cand - 3).all()  # excluded items do not count as candidates
    for row, old, ex in zip(again, got, exclude):
        assert not set(row.tolist()) & set(ex)
        assert row[:7].tolist() == old[3:].tolist()
    # a narrow index leaves some queries with fewer than 10 candidates: they are padded with -1 / inf
    narrow = BandedIndex.build(x, ids, _projections(12, x.shape[1]), 0.2, 12)
    ids_n, d_n, c_n = narrow.query(x[:50] + 0.3, 10)
    short = c_n < 10
    assert short.any()
    assert ((ids_n == -1) == ~np.isfinite(d_n)).all()
    assert ((ids_n[short] == -1).sum(axis=1) == 10 - c_n[short]).all()


def test_neighbours_are_k_distinct_tracks_without_self_and_equal_queries(space):
    x, ids = space
    index = BandedIndex.build(x, ids, _projections(8 * 24, x.shape[1]), 3.0, 8)
    nb, nd, nc = index.neighbours(10)
    assert nb.shape == (len(x), 10)
    assert (nb != ids[:, None]).all()
    assert (nb >= 0).all()
    assert all(len(set(row)) == 10 for row in nb.tolist())
    assert (np.diff(nd, axis=1) >= 0).all()
    q_ids, q_d, q_c = index.query(x, 10, exclude=[[i] for i in ids])
    assert (q_c == nc).all()
    full = nc >= 10
    assert (q_ids[full] == nb[full]).all() and np.allclose(q_d[full], nd[full])
    # the few outliers with fewer than 10 candidates got their exact neighbours instead
    short = np.flatnonzero(~full)
    assert 0 < len(short) < len(x) / 20
    exact, _ = exact_top_k(x[short], x, ids, 10, exclude_self=True, query_pos=short)
    assert (nb[short] == exact).all()
    raw, _, _ = index.neighbours(10, fill_exact=False)
    assert (raw[short] == -1).any(axis=1).all()


def test_recall_on_clustered_vectors_is_high_with_few_candidates():
    x = _space(6000, dim=16, seed=3)
    ids = np.arange(len(x))
    exact, _ = exact_top_k(x, x, ids, 10, exclude_self=True)
    index = BandedIndex.build(x, ids, _projections(8 * 64, x.shape[1], seed=2), 3.0, 8)
    nb, _, nc = index.neighbours(10)
    recall = recall_at_k(nb, exact)
    assert recall >= 0.95, recall
    assert nc.mean() / len(x) < 0.25, nc.mean() / len(x)


def test_first_bands_equals_an_index_built_with_fewer_bands(space):
    x, ids = space
    p = _projections(6 * 16, x.shape[1])
    full = BandedIndex.build(x, ids, p, 1.5, 6)
    small = BandedIndex.build(x, ids, p[: 6 * 5], 1.5, 6)
    view = full.first_bands(5)
    a, b = view.query(x[:100], 10), small.query(x[:100], 10)
    assert all((u == v).all() for u, v in zip(a, b))
    assert (view.candidate_mask(x[:100]) == small.candidate_mask(x[:100])).all()
    with pytest.raises(ValueError):
        full.first_bands(17)


def test_exact_top_k_excludes_the_query_row_wherever_it_is(space):
    x, ids = space
    pos = np.array([5, 17, 2999, 0])
    got, d = exact_top_k(x[pos], x, ids, 4, exclude_self=True, query_pos=pos)
    brute = np.linalg.norm(x[pos][:, None] - x[None], axis=2)
    brute[np.arange(4), pos] = np.inf
    want = np.argsort(brute, axis=1)[:, :4]
    assert (got == ids[want]).all()
    assert np.allclose(d, np.take_along_axis(brute, want, axis=1), atol=1e-3)
    # fewer catalogue rows than k: padded
    small, small_d = exact_top_k(x[:3], x[:3], ids[:3], 5, exclude_self=True)
    assert (small[:, 2:] == -1).all() and np.isinf(small_d[:, 2:]).all()
    assert (small[:, :2] != ids[:3, None]).all()
