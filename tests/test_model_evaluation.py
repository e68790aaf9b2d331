"""Evaluation metrics (jobs/evaluation.py) on hand-made cases."""
from __future__ import annotations

import numpy as np

from jobs.evaluation import coverage, label_precision, recording_r_precision, sample_queries

IDS = np.array([10, 20, 30, 40, 50])


def test_label_precision_skips_unlabelled_queries_and_counts_missing_neighbours_as_misses():
    genre = np.array(["Rock", "Rock", "Jazz", None, "Rock"], dtype=object)
    nb = np.array([[20, 30], [10, 50], [40, -1], [10, 20]])
    qpos = np.array([0, 1, 2, 3])
    # query 0: 1/2, query 1: 2/2, query 2 (Jazz): 0/2 with a missing one, query 3 has no genre
    assert label_precision(nb, qpos, IDS, genre) == (0.5 + 1.0 + 0.0) / 3
    assert label_precision(nb[3:], qpos[3:], IDS, genre) is None


def test_recording_r_precision_looks_at_as_many_neighbours_as_there_are_other_clips():
    rec = np.array(["a", "a", "a", "b", None], dtype=object)
    nb = np.array([[20, 40, 30], [30, 10, 50], [40, 50, 10], [10, 20, 30], [10, 20, 30]])
    score, n = recording_r_precision(nb, np.arange(5), IDS, rec)
    # clips of "a" have 2 others: q0 first two {20, 40} -> 1/2; q1 {30, 10} -> 1; q2 {40, 50} -> 0;
    # "b" has no other clip and None has no recording: not measured
    assert n == 3 and score == (0.5 + 1.0 + 0.0) / 3


def test_coverage_and_samples():
    assert coverage(np.array([[10, 20], [20, -1]]), 5) == 2 / 5
    assert (sample_queries(5, 10, 0) == np.arange(5)).all()
    s = sample_queries(1000, 50, 1)
    assert len(np.unique(s)) == 50 and (np.diff(s) > 0).all()
