"""Per-user taste updates: pure functions, no services."""
from __future__ import annotations

import numpy as np
import pytest

from jobs import taste as T
from jobs.events import Event
from jobs.taste import Rules, UserState

RULES = Rules()


def e(i, track, action, ms=0, t=None, user="u"):
    return Event(f"e{i}", user, track, action, 1_700_000_000_000 + (t if t is not None else i) * 1000, ms, "s")


def run(events, rules=RULES, durations=None, state=UserState()):
    return T.fold(state, [(ev, 0, i) for i, ev in enumerate(events)], rules, durations)


@pytest.fixture(scope="module")
def space():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32) * 3
    ids = np.arange(100, 150)
    row_of = {int(t): i for i, t in enumerate(ids)}
    return ids, vectors, row_of


def vec(space, state):
    ids, vectors, row_of = space
    return T.taste_vector(state, lambda ts: vectors[[row_of[t] for t in ts]])


def dist(a, b):
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def test_skips_count_more_the_earlier_they_happen():
    f = [T.skip_factor(ms, 30.0, 10.0) for ms in (0, 3000, 10_000, 15_000, 20_000, 29_000, 30_000, 60_000)]
    assert f[:3] == [1.0, 1.0, 1.0]
    assert all(a > b for a, b in zip(f[2:6], f[3:7]))
    assert f[6] == pytest.approx(T.SKIP_FLOOR) and f[7] == pytest.approx(T.SKIP_FLOOR)
    early = T.signed_weight("skip", 2000, 30.0, RULES)
    late = T.signed_weight("skip", 28000, 30.0, RULES)
    assert early < late < 0
    assert T.signed_weight("like", 0, None, RULES) > T.signed_weight("complete", 30000, 30, RULES) > \
        T.signed_weight("play", 0, 30, RULES) > 0 > T.signed_weight("dislike", 0, None, RULES)
    with pytest.raises(ValueError):
        T.signed_weight("pause", 0, None, RULES)


def test_like_and_complete_pull_towards_a_track(space):
    ids, vectors, row_of = space
    s = run([e(0, 100, "complete", 30000), e(1, 101, "complete", 30000)])
    before = vec(space, s)
    target = vectors[row_of[120]]
    s2 = run([e(2, 120, "like")], state=s)
    after = vec(space, s2)
    assert dist(after, target) < dist(before, target)
    s3 = run([e(3, 120, "complete", 30000)], state=s2)
    assert dist(vec(space, s3), target) < dist(after, target)


def test_skip_and_dislike_push_away_and_early_skips_push_harder(space):
    ids, vectors, row_of = space
    base = run([e(0, 100, "complete", 30000), e(1, 101, "like")])
    t0 = vec(space, base)
    x = vectors[row_of[130]]
    early = vec(space, run([e(2, 130, "skip", 2000)], state=base))
    late = vec(space, run([e(2, 130, "skip", 28000)], state=base))
    hated = vec(space, run([e(2, 130, "dislike")], state=base))
    assert dist(t0, x) < dist(late, x) < dist(early, x) < dist(hated, x)


def test_the_taste_is_a_weighted_mean_on_the_items_scale(space):
    ids, vectors, row_of = space
    # many positive events on spread-out tracks: the vector stays a convex combination of them
    evs = [e(i, 100 + (i % 50), "complete", 30000) for i in range(300)]
    s = run(evs)
    v = vec(space, s)
    used = vectors[[row_of[t] for t in s.track_ids]]
    assert np.all(v <= used.max(axis=0) + 1e-5) and np.all(v >= used.min(axis=0) - 1e-5)
    # one liked track only: the taste IS that track, whatever the decay did to the weight
    one = run([e(i, 107, "complete", 30000) for i in range(100)])
    np.testing.assert_allclose(vec(space, one), vectors[row_of[107]], rtol=1e-6)


def test_decay_halves_an_old_event_after_half_life_events():
    rules = Rules(half_life_events=4)
    s = run([e(0, 100, "complete", 30000)] + [e(i, 101, "play") for i in range(1, 5)], rules)
    w = s.weights()
    assert w[100][0] == pytest.approx(0.5 * rules.complete)


def test_latest_opinion_of_a_track_wins():
    s = run([e(0, 100, "play"), e(1, 100, "skip", 1000)])
    assert s.weights()[100][0] == 0 and s.weights()[100][1] > 0
    s = run([e(2, 100, "like")], state=s)
    assert s.weights()[100][1] == 0 and s.weights()[100][0] > 0


def test_heard_history_and_counters():
    s = run([e(0, 100, "play"), e(1, 101, "skip", 500), e(2, 100, "complete", 30000), e(3, 102, "dislike")])
    assert s.heard == (101, 100, 102)
    assert s.n_events == 4 and s.last_event_ms == 1_700_000_003_000
    assert (s.partition, s.offset) == (0, 3)
    capped = run([e(i, 100 + i % 50, "play") for i in range(60)], Rules(history_size=10))
    assert len(capped.heard) == 10 and capped.heard[-1] == 100 + 59 % 50


def test_duplicate_event_ids_change_nothing():
    s = run([e(0, 100, "like"), e(1, 101, "complete", 30000)])
    again = T.apply(s, e(1, 101, "complete", 30000), RULES)
    assert again is s


def test_state_stays_bounded():
    rules = Rules(max_tracks=20, dedupe_events=8, history_size=30)
    s = run([e(i, 100 + (i * 7) % 50, ["play", "complete", "skip", "like"][i % 4], 5000) for i in range(1000)], rules)
    assert len(s.track_ids) <= 20 and len(s.event_ids) == 8 and len(s.heard) <= 30
    assert len(s.track_ids) == len(s.pos) == len(s.neg)
    # weights that decayed to nothing are dropped
    tiny = run([e(0, 100, "play")] + [e(i, 101, "play") for i in range(1, 400)], Rules(half_life_events=5))
    assert 100 not in tiny.track_ids


def test_batch_boundaries_do_not_change_the_result():
    evs = [e(i, 100 + (i * 13) % 50, ["play", "complete", "skip", "like", "dislike"][i % 5], 7000) for i in range(200)]
    whole = run(evs)
    pieces = UserState()
    for chunk in (evs[:7], evs[7:50], evs[50:51], evs[51:]):
        pieces = T.fold(pieces, [(ev, 0, int(ev.event_id[1:])) for ev in chunk], RULES)
    assert pieces == whole


def test_within_a_batch_events_apply_in_event_time_order():
    a, b = e(0, 100, "like", t=10), e(1, 101, "dislike", t=5)
    s1 = T.fold(UserState(), [(a, 0, 1), (b, 0, 0)], RULES)
    s2 = T.fold(UserState(), [(b, 0, 0), (a, 0, 1)], RULES)
    assert s1 == s2 and s1.heard == (101, 100)


def test_no_positive_signal_means_no_taste_vector(space):
    assert vec(space, run([e(0, 100, "skip", 100), e(1, 101, "dislike")])) is None
    assert vec(space, UserState()) is None


def test_taste_matrix_equals_the_per_user_vectors(space):
    ids, vectors, row_of = space
    rng = np.random.default_rng(3)
    states = []
    for u in range(40):
        n = int(rng.integers(0, 12))
        actions = rng.choice(["play", "complete", "skip", "like", "dislike"], size=n)
        states.append(run([e(i, int(rng.choice(ids)), a, int(rng.integers(0, 30000))) for i, a in enumerate(actions)]))
    tastes, has = T.taste_matrix([s.track_ids for s in states], [s.pos for s in states], [s.neg for s in states],
                                 row_of, vectors)
    for s, t, h in zip(states, tastes, has):
        v = vec(space, s)
        assert h == (v is not None)
        if v is not None:
            np.testing.assert_allclose(t, v, rtol=1e-5, atol=1e-5)
    assert has.any() and not has.all()
    # tracks the model does not know are ignored
    t2, h2 = T.taste_matrix([(100, 99999)], [(1.0, 5.0)], [(0.0, 0.0)], row_of, vectors)
    np.testing.assert_allclose(t2[0], vectors[row_of[100]], rtol=1e-6)


def test_genre_affinity_nets_likes_against_skips():
    genre = {100: "Rock", 101: "Rock", 102: "Folk"}
    s = run([e(0, 100, "like"), e(1, 101, "complete", 30000), e(2, 102, "skip", 1000)])
    aff = T.genre_affinity(s.track_ids, s.pos, s.neg, genre)
    assert aff["Rock"] > 0 > aff["Folk"]
