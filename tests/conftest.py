"""Shared fixtures: settings pointing at a test database and test topics, one local SparkSession,
and a store client. Tests marked `integration` use the real services started by `make up`; they fail
(never skip) when a service is down, with the one-line reason."""
from __future__ import annotations

import os
import uuid

import pytest

from conf import Settings

# pyspark.testing.assertDataFrameEqual imports pyspark.pandas, which warns unless this is set (it tells
# pandas-on-Spark how pyarrow should treat timestamps; no test here depends on it either way).
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    run = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("musicrec")
    return Settings(
        spark_master=os.environ.get("MUSICREC_SPARK_MASTER", "local[2]"),
        mongo_db=f"musicrec_test_{run}",
        topic_activity=f"activity-test-{run}",
        topic_dead_letters=f"dead-letters-test-{run}",
        models_dir=tmp / "models",
        checkpoint_dir=tmp / "checkpoints",
        spark_shuffle_partitions=2,
    )


@pytest.fixture(scope="session")
def spark(settings):
    from common.spark import build_session

    session = build_session(settings, "tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mongo(settings):
    from pymongo import MongoClient

    client = MongoClient(settings.mongo_uri_with_secret, serverSelectionTimeoutMS=3000)
    try:
        client.admin.command("ping")
    except Exception as exc:  # fail loudly: an integration test without its service is not a pass
        pytest.fail(f"MongoDB-compatible store not reachable at {settings.mongo_uri}: {exc}. Run `make up`.")
    yield client[settings.mongo_db]
    client.drop_database(settings.mongo_db)
    client.close()


@pytest.fixture(scope="session")
def small_model(spark, settings, mongo):
    """(settings, model bundle, {track: genre}): a model fitted on 400 synthetic tracks in the test database,
    shared by the fault suite and the security tests that run the streaming job."""
    from benchmarks.synthetic import clustered, track_documents
    from jobs.fit_model import run as fit
    from jobs.model_store import load_bundle

    s = settings.model_copy(update={"coll_tracks": "small_tracks", "coll_models": "small_models",
                                    "coll_neighbours": "small_neighbours"})
    docs = track_documents(clustered(400, seed=5, n_genres=4, clips_per_recording=2, recordings_per_album=4),
                           "fv-small")
    mongo[s.coll_tracks].insert_many(docs)
    fit(spark, s, tune=False, write_neighbours=False, progress=False, pca_k=16, bucket_length=6.0, band_size=4,
        bands=16)
    return s, load_bundle(s), {d["_id"]: d["genre_top"] for d in docs}


@pytest.fixture(scope="session")
def pipeline(spark, settings, mongo, tmp_path_factory):
    """The real pipeline (corpus -> extraction -> two model fits -> simulator -> Kafka -> streaming job)
    run once into `<test db>_pipeline`; see tests/pipeline.py. Dropped at the end of the session."""
    from tests import pipeline as pl

    p = pl.build(spark, settings, tmp_path_factory.mktemp("pipeline"))
    yield p
    mongo.client.drop_database(p.settings.mongo_db)
