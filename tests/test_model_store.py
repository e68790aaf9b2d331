"""The numpy bundle of a model (jobs/model_store.py): save/read round trip, Spark's scaler semantics,
a clear error for a missing version."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.lsh import BandedIndex
from jobs.model_store import ModelBundle, load_bundle


def _bundle(pca: bool = True) -> ModelBundle:
    rng = np.random.default_rng(0)
    d_in, d_out = 6, 3 if pca else 6
    proj = rng.normal(size=(8, d_out))
    return ModelBundle(version="20260101T000000.000Z", feature_version="fv1", mean=rng.normal(size=d_in),
                       scale=np.array([1.0, 2.0, 0.0, 0.5, 4.0, 1.0]),
                       pca=rng.normal(size=(d_in, d_out)) if pca else None,
                       projections=proj / np.linalg.norm(proj, axis=1, keepdims=True), bucket_length=1.5,
                       band_size=4, ids=np.arange(10, 60), vectors=rng.normal(size=(50, d_out)).astype(np.float32))


def test_save_and_read_round_trip(tmp_path):
    for pca in (True, False):
        b = _bundle(pca)
        path = b.save(tmp_path / str(pca) / "bundle.npz")
        r = ModelBundle.read(path)
        assert (r.version, r.feature_version, r.bucket_length, r.band_size, r.bands) == (
            b.version, b.feature_version, 1.5, 4, 2)
        assert (r.pca is None) == (not pca)
        for name in ("mean", "scale", "projections", "ids", "vectors"):
            assert np.array_equal(getattr(r, name), getattr(b, name)), name
        x = np.random.default_rng(1).normal(size=(4, 6))
        assert np.array_equal(r.transform(x), b.transform(x))


def test_transform_is_standardise_then_pca_with_zero_scale_as_zero():
    b = _bundle()
    x = np.random.default_rng(2).normal(size=(5, 6)) + 3
    z = b.standardise(x)
    assert (z[:, 2] == 0).all()  # std 0: Spark's StandardScaler gives 0, not inf
    assert np.allclose(z[:, 1], (x[:, 1] - b.mean[1]) / 2.0)
    assert np.allclose(b.transform(x, dtype=np.float64), z @ b.pca)
    assert b.transform(x).dtype == np.float32 and b.transform(x).shape == (5, 3)
    with pytest.raises(ValueError, match="expects 6 features"):
        b.transform(np.zeros((1, 5)))


def test_index_is_built_once_and_matches_a_fresh_build():
    b = _bundle()
    idx = b.index()
    assert b.index() is idx
    fresh = BandedIndex.build(b.vectors, b.ids, b.projections, b.bucket_length, b.band_size)
    assert np.array_equal(idx.sorted_keys, fresh.sorted_keys)


def test_missing_version_is_a_clear_error(settings):
    with pytest.raises(FileNotFoundError, match="no bundle at"):
        load_bundle(settings, "19990101T000000.000Z")
