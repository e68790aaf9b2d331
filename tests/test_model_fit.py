"""The model job end to end on a synthetic catalogue in the real store: fit, save, evaluate, tune,
neighbours, record. One fit (module fixture) serves every test here."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from benchmarks.synthetic import FEATURE_DIM, clustered, track_documents
from jobs.lsh import bucket_ids, exact_top_k
from jobs.model_store import current_version, load_bundle
from jobs.tuning import Grid

pytestmark = pytest.mark.integration

N = 1500
SMALL_GRID = Grid(pca_k=(16, 32), bucket_factor=(2.0, 3.0, 4.0), band_size=(6, 8), bands=(16, 32, 64))


@pytest.fixture(scope="module")
def fit(spark, settings, mongo):
    from jobs.fit_model import run

    s = settings.model_copy(update={"coll_tracks": "fit_tracks", "coll_models": "fit_models",
                                    "coll_neighbours": "fit_neighbours"})
    cat = clustered(N, seed=11)
    docs = track_documents(cat, "fv-test")
    docs[0]["genre_top"] = None  # a track without a genre: no genre precision for it, still in the model
    # tracks the fit must leave out: another feature version, a different length, no features
    odd = clustered(12, seed=12)
    extra = track_documents(odd, "fv-old", first_id=10_000)[:5]
    short = track_documents(odd, "fv-test", first_id=20_000)[5:8]
    for d in short:
        d["features"] = d["features"][:100]
    none = track_documents(odd, "fv-test", first_id=30_000)[8:10]
    for d in none:
        d["features"] = None
    mongo[s.coll_tracks].insert_many(docs + extra + short + none)
    # a stale neighbour document of a track no longer in the catalogue
    mongo[s.coll_neighbours].insert_one({"_id": 99_999, "neighbours": [], "model_version": "old"})
    record = run(spark, s, grid=SMALL_GRID, progress=False, eval_queries=500, tune_queries=300)
    return s, cat, record


def test_record_and_current_pointer(fit, mongo):
    s, cat, record = fit
    assert record["catalogue_size"] == N
    assert record["feature_version"] == "fv-test"
    stored = mongo[s.coll_models].find_one({"_id": record["version"]})
    assert stored["params"] == record["params"] and stored["metrics"]["recall_at_k"] == record["metrics"]["recall_at_k"]
    assert current_version(s) == record["version"]
    p = record["params"]
    assert p["num_hash_tables"] == p["band_size"] * p["bands"] and p["feature_dim"] == FEATURE_DIM
    assert record["bundle_check"]["hash_agreement"] == 1.0 and record["bundle_check"]["rows"] == 50


def test_recall_against_exact_neighbours_is_above_the_target(fit):
    s, _, record = fit
    m = record["metrics"]
    assert m["recall_at_k"] >= s.recall_target, m
    assert m["recall_at_k_end_to_end"] >= s.recall_target - 0.02, m  # PCA 16/32 of a 32-d latent space
    assert m["candidate_fraction"] < 0.35, m
    assert m["genre_precision_at_k"] > 0.9 and m["album_precision_at_k"] > 0.8, m
    assert m["recording_r_precision"] > 0.6 and m["recording_queries"] == 500, m
    assert record["tuning"]["met"] and record["tuning"]["reason"].startswith("cheapest of the")


def test_tuned_parameters_are_the_chosen_trial(fit):
    _, _, record = fit
    chosen, p = record["tuning"]["chosen"], record["params"]
    assert (p["pca_k"], p["band_size"], p["bands"]) == (chosen["pca_k"], chosen["band_size"], chosen["bands"])
    assert p["bucket_length"] == pytest.approx(chosen["bucket_length"])
    assert len(record["tuning"]["trials"]) == 2 * 3 * 2 * 3


def test_saved_pipeline_loads_in_a_fresh_session_and_hashes_a_new_vector_alike(fit):
    s, _, record = fit
    bundle = load_bundle(s)  # the current version, no Spark
    assert bundle.version == record["version"]
    new = clustered(3, seed=99).features  # tracks the model has never seen
    script = textwrap.dedent(f"""
        import json, sys
        from pyspark.ml import PipelineModel
        from pyspark.ml.functions import vector_to_array
        from conf import Settings
        from common.spark import build_session
        spark = build_session(Settings(spark_master="local[1]"), "fresh-session")
        model = PipelineModel.load({record['pipeline_path']!r})
        rows = json.loads(sys.stdin.read())
        df = spark.createDataFrame([(i, r) for i, r in enumerate(rows)], "_id long, features array<double>")
        out = model.transform(df).orderBy("_id").select(vector_to_array("{'reduced' if bundle.pca is not None else 'scaled'}").alias("v"), "hashes").collect()
        print("RESULT" + json.dumps([[r.v, [h[0] for h in r.hashes]] for r in out]))
        spark.stop()
    """)
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(new.tolist()), capture_output=True,
                          text=True, timeout=300, cwd=str(s.root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[6:])
    spark_v = np.array([r[0] for r in result])
    spark_h = np.array([r[1] for r in result])
    ours = bundle.transform(new, dtype=np.float64)
    assert np.allclose(ours, spark_v, rtol=1e-9, atol=1e-9)
    assert (bucket_ids(ours, bundle.projections, bundle.bucket_length) == spark_h).all()
    assert spark_h.shape == (3, record["params"]["num_hash_tables"])


def test_bundle_vectors_are_the_catalogue_in_model_space(fit):
    s, cat, record = fit
    bundle = load_bundle(s, record["version"])
    assert (bundle.ids == np.arange(1, N + 1)).all()
    assert np.allclose(bundle.vectors, bundle.transform(cat.features), atol=1e-4)
    got, _, _ = bundle.index().query(bundle.vectors[:5], 3)
    assert (got[:, 0] == bundle.ids[:5]).all()  # a catalogue track's nearest item is itself


def test_neighbour_table_has_k_distinct_tracks_per_track_and_no_self_matches(fit, mongo):
    s, _, record = fit
    docs = list(mongo[s.coll_neighbours].find({}))
    assert len(docs) == N  # the stale document of a track not in the catalogue is gone
    assert {d["_id"] for d in docs} == set(range(1, N + 1))
    k = s.top_k
    for d in docs:
        assert d["model_version"] == record["version"]
        ids = [n["track_id"] for n in d["neighbours"]]
        assert len(ids) == k and len(set(ids)) == k and d["_id"] not in ids
        dist = [n["distance"] for n in d["neighbours"]]
        assert dist == sorted(dist)
    assert record["metrics"]["coverage"] > 0.5


def test_neighbours_agree_with_exact_neighbours(fit, mongo):
    s, _, record = fit
    bundle = load_bundle(s)
    exact, _ = exact_top_k(bundle.vectors, bundle.vectors, bundle.ids, s.top_k, exclude_self=True)
    stored = {d["_id"]: [n["track_id"] for n in d["neighbours"]] for d in mongo[s.coll_neighbours].find({})}
    hits = np.mean([len(set(stored[int(t)]) & set(row)) / s.top_k for t, row in zip(bundle.ids, exact.tolist())])
    assert hits >= s.recall_target, hits


def test_refit_without_tuning_uses_given_parameters_and_moves_the_pointer(fit, spark, mongo):
    from jobs.fit_model import run

    s, _, first = fit
    second = run(spark, s, tune=False, pca_k=0, bucket_length=8.0, band_size=4, bands=8, progress=False,
                 eval_queries=200, write_neighbours=False)
    try:
        assert second["version"] > first["version"]
        assert second["params"]["pca_k"] == 0 and second["params"]["model_dim"] == FEATURE_DIM
        assert second["params"]["num_hash_tables"] == 32
        assert second["tuning"] == {"tuned": False, "reason": "parameters given (tuning off)"}
        assert current_version(s) == second["version"]
        assert mongo[s.coll_models].count_documents({"_id": {"$ne": "current"}}) == 2
    finally:  # leave the pointer where the other tests expect it
        from jobs.model_store import set_current

        set_current(s, first["version"])
