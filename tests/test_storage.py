"""common/storage.py: paths and URIs for models and checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

from common import storage
from conf import Settings


def test_join_keeps_uris_as_uris_and_paths_as_paths():
    assert storage.join("hdfs://nn:8020/musicrec/models", "v1", "bundle.npz") == "hdfs://nn:8020/musicrec/models/v1/bundle.npz"
    assert storage.join("s3a://bucket/models/", "v1") == "s3a://bucket/models/v1"
    assert storage.join("/data/models", "v1") == "/data/models/v1"
    assert storage.join("file:///data/models", "v1") == "file:///data/models/v1"


def test_spark_gets_uris_unchanged_and_bare_paths_as_absolute_file_uris(tmp_path, monkeypatch):
    assert storage.spark_uri("hdfs://nn/ckpt/q") == "hdfs://nn/ckpt/q"
    assert storage.spark_uri("s3a://b/ckpt") == "s3a://b/ckpt"
    monkeypatch.chdir(tmp_path)
    assert storage.spark_uri("data/ckpt") == f"file://{tmp_path}/data/ckpt"
    assert storage.is_local("file:///x") and storage.is_local("/x") and not storage.is_local("hdfs://nn/x")
    assert storage.local_path("file:///x/y") == "/x/y"


def test_settings_keep_uris_whole():
    s = Settings(models_dir="hdfs://nn:8020/musicrec/models", checkpoint_dir="s3a://bucket/ckpt")
    assert s.models_dir == "hdfs://nn:8020/musicrec/models" and s.checkpoint_dir == "s3a://bucket/ckpt"


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_model_bundle_round_trips_through_a_path_or_a_file_uri(tmp_path, as_uri):
    from jobs.model_store import ModelBundle

    rng = np.random.default_rng(1)
    b = ModelBundle(version="v1", feature_version="f", mean=rng.normal(size=4), scale=np.ones(4), pca=None,
                    projections=rng.normal(size=(8, 4)), bucket_length=2.0, band_size=4,
                    ids=np.arange(5, dtype=np.int64), vectors=rng.normal(size=(5, 4)).astype(np.float32))
    base = f"file://{tmp_path}/models" if as_uri else str(tmp_path / "models")
    path = storage.join(base, "v1", "bundle.npz")
    assert not storage.exists(path)
    b.save(path)
    assert storage.exists(path) and (tmp_path / "models" / "v1" / "bundle.npz").is_file()
    assert not list((tmp_path / "models" / "v1").glob("*.tmp-*"))
    r = ModelBundle.read(path)
    assert r.version == "v1" and np.array_equal(r.vectors, b.vectors) and np.array_equal(r.projections, b.projections)
