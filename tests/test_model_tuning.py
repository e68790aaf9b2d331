"""Tuning (jobs/tuning.py): the cheapest setting meeting the target, a cheaper one for a lower target,
and a plain statement when no setting meets it."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic import clustered
from jobs.lsh import exact_top_k
from jobs.tuning import Grid, choose, cost_per_query, tune

GRID = Grid(bucket_factor=(1.5, 2.0, 3.0, 4.0), band_size=(4, 6, 8), bands=(8, 16, 32, 64))


@pytest.fixture(scope="module")
def problem():
    x = clustered(3000, dim=64, latent_dim=16, seed=5).features
    x = (x - x.mean(0)) / x.std(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    x16 = (x @ vt[:16].T).astype(np.float32)
    ids = np.arange(len(x)) + 1
    query_pos = np.random.default_rng(0).choice(len(x), 300, replace=False)
    truth, _ = exact_top_k(x16[query_pos], x16, ids, 10, exclude_self=True, query_pos=query_pos)
    return {16: x16}, ids, query_pos, truth


def test_tuning_picks_a_cheaper_setting_when_the_target_drops(problem):
    spaces, ids, qp, truth = problem
    high = tune(spaces, ids, qp, truth, 0.95, grid=GRID, progress=False)
    low = tune(spaces, ids, qp, truth, 0.7, grid=GRID, progress=False)
    assert high["met"] and low["met"]
    assert high["chosen"]["recall"] >= 0.95 and low["chosen"]["recall"] >= 0.7
    assert low["chosen"]["cost"] < high["chosen"]["cost"]
    assert len(high["trials"]) == 4 * 3 * 4
    # the choice is the cheapest feasible trial, and the reason says what the cheaper ones reached
    feasible = [t for t in high["trials"] if t["recall"] >= 0.95]
    assert high["chosen"]["cost"] == min(t["cost"] for t in feasible)
    cheaper = [t for t in high["trials"] if t["cost"] < high["chosen"]["cost"]]
    assert cheaper and all(t["recall"] < 0.95 for t in cheaper)
    assert f"at most recall {max(t['recall'] for t in cheaper):.3f}" in high["reason"]


def test_trials_cost_follows_the_operation_count(problem):
    spaces, ids, qp, truth = problem
    result = tune(spaces, ids, qp, truth, 0.9, grid=Grid(pca_k=(16,), bucket_factor=(2.0,), band_size=(6,),
                                                           bands=(8, 32)), progress=False)
    few, many = result["trials"]
    for t in (few, many):
        assert t["cost"] == cost_per_query(16, 6, t["bands"], t["candidates"])
        assert 0 < t["candidate_fraction"] < 1
    assert many["recall"] >= few["recall"] and many["candidates"] >= few["candidates"]


def test_unmet_target_takes_the_highest_recall_and_says_so():
    trials = [{"pca_k": 0, "bucket_length": 1.0, "band_size": 4, "bands": 8, "recall": r, "cost": c,
               "candidate_fraction": 0.1} for r, c in ((0.5, 10.0), (0.8, 30.0), (0.8, 20.0))]
    out = choose(trials, 0.95)
    assert not out["met"]
    assert out["chosen"]["recall"] == 0.8 and out["chosen"]["cost"] == 20.0
    assert out["reason"].startswith("no grid setting reached recall@10 >= 0.95")
    with pytest.raises(ValueError):
        choose([], 0.9)
