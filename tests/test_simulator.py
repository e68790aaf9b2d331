"""The activity simulator: behaviour (pure, seeded) and its Kafka edge (rate, throughput, CLI)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from jobs import events as ev
from common.catalogue import Catalogue
from simulator.behaviour import BAD_KINDS, Simulator, Weighted, zipf_weights

GENRES = ["Rock", "Folk", "Jazz", "Electronic"]


@pytest.fixture(scope="module")
def cat():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    g = np.repeat(np.arange(4), 100)
    vectors = centres[g] + rng.normal(size=(400, 8))
    return Catalogue(np.arange(1, 401), vectors, [""] * 400, [""] * 400, [GENRES[i] for i in g],
                     rng.integers(0, 5000, 400), np.full(400, 30.0), [""] * 400)


def decode(records):
    return [json.loads(v) for _, v in records]


def test_records_follow_the_contract_and_keys_are_users(cat):
    sim = Simulator(cat, 50, seed=1)
    records = sim.records(2000, 1_795_000_000_000, 10)
    known = set(int(t) for t in cat.ids)
    for key, value in records:
        e = ev.parse(value, key=key, ref_ms=1_795_000_000_000 + 20_000, known=known)
        assert isinstance(e, ev.Event), e
    events = decode(records)
    assert len({e["event_id"] for e in events}) == len(events)
    assert {e["action"] for e in events} == {"play", "complete", "skip", "like", "dislike"}


def test_same_seed_same_events_other_seed_other_events(cat):
    a = Simulator(cat, 30, seed=5).records(300, 0)
    b = Simulator(cat, 30, seed=5).records(300, 0)
    c = Simulator(cat, 30, seed=6).records(300, 0)
    assert a == b and a != c


def test_sessions_play_then_finish_each_track_in_order(cat):
    events = decode(Simulator(cat, 20, seed=2, concurrent=5).records(3000, 0))
    by_session = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(e)
    assert len(by_session) > 20
    for evs in by_session.values():
        assert len({e["user_id"] for e in evs}) == 1
        i = 0
        while i < len(evs):
            assert evs[i]["action"] == "play" and evs[i]["ms_played"] == 0
            j = i + 1
            if j < len(evs):
                assert evs[j]["action"] in ("skip", "complete") and evs[j]["track_id"] == evs[i]["track_id"]
                j += 1
                if j < len(evs) and evs[j]["action"] in ("like", "dislike"):
                    assert evs[j]["track_id"] == evs[i]["track_id"]
                    j += 1
            i = j


def test_skips_on_far_tracks_likes_on_close_ones(cat):
    sim = Simulator(cat, 200, seed=3)
    events = decode(sim.records(20_000, 0))
    row = {int(t): i for i, t in enumerate(cat.ids)}
    dist = {}
    outcome = defaultdict(list)
    for e in events:
        if e["action"] in ("skip", "complete", "like"):
            u = int(e["user_id"].split("-")[1])
            d = float(np.linalg.norm(sim.tastes[u] - cat.vectors[row[e["track_id"]]]))
            outcome[e["action"]].append(d)
    assert np.median(outcome["skip"]) > np.median(outcome["complete"]) > np.median(outcome["like"])
    # and the probabilities themselves are monotone in distance
    u = 0
    order = np.argsort(np.linalg.norm(cat.vectors - sim.tastes[u], axis=1))
    near, far = int(order[0]), int(order[-1])
    assert sim.skip_probability(u, near) < 0.2 < 0.5 < sim.skip_probability(u, far)
    assert sim.like_probability(u, near) > 10 * sim.like_probability(u, far)
    # early skips dominate
    skips = [e["ms_played"] for e in events if e["action"] == "skip"]
    assert np.mean(np.array(skips) < 10_000) > 0.6


def test_users_stick_to_their_genres_and_popular_tracks(cat):
    sim = Simulator(cat, 100, seed=4)
    events = decode(sim.records(20_000, 0))
    plays = [e for e in events if e["action"] == "play"]
    own = 0
    for e in plays:
        u = int(e["user_id"].split("-")[1])
        g = cat.genre[int(e["track_id"]) - 1]
        own += g in [cat.genres[x] for x in sim.user_genres[u]]
    assert own / len(plays) > 0.75
    counts = Counter(e["track_id"] for e in plays)
    top = sorted(cat.ids, key=lambda t: -cat.listens[t - 1])[:20]
    bottom = sorted(cat.ids, key=lambda t: cat.listens[t - 1])[:200]
    assert sum(counts[t] for t in top) > sum(counts[t] for t in bottom)


def test_zipf_weights():
    w = zipf_weights(np.array([10, 1000, 100, 100]), 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[1] == pytest.approx(2 * w[2]) and w[2] > w[3] > w[0]


def test_weighted_draws_what_numpy_choice_draws_from_the_same_state():
    p = zipf_weights(np.random.default_rng(1).integers(0, 10_000, 5000), 1.1)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    w = Weighted(p)
    mine = [w.draw(a) for _ in range(2000)]
    assert mine == [int(b.choice(len(p), p=p)) for _ in range(2000)]
    assert len(set(mine)) > 100 and Weighted([0.0, 1.0, 0.0]).draw(a) == 1


def test_bad_records_are_rejected_with_every_reason(cat):
    sim = Simulator(cat, 10, seed=9, bad_rate=0.3)
    records = sim.records(3000, 1_795_000_000_000, 1)
    known = set(int(t) for t in cat.ids)
    codes = Counter()
    for key, value in records:
        r = ev.parse(value, key=key, ref_ms=1_795_000_000_000 + 5_000, known=known)
        if isinstance(r, ev.Reject):
            codes[r.code] += 1
    assert 0.2 < sum(codes.values()) / len(records) < 0.4
    assert set(codes) == {ev.MALFORMED, ev.MISSING, ev.WRONG_TYPE, ev.UNKNOWN_TRACK, ev.UNKNOWN_ACTION, ev.BAD_TIME}
    assert len(BAD_KINDS) == 6


def test_concurrency_bounds_the_users_at_a_time(cat):
    sim = Simulator(cat, 1000, seed=1, concurrent=50)
    users = {e["user_id"] for e in decode(sim.records(200, 0))}
    assert len(users) <= 60
    wide = {e["user_id"] for e in decode(Simulator(cat, 1000, seed=1, concurrent=1000).records(200, 0))}
    assert len(wide) > 150


def test_cli_help_and_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "simulator", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--rate" in out.stdout and "--users" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "simulator", "--rate", "-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage: python -m simulator" in bad.stderr and "--rate must be positive" in bad.stderr
    from simulator.__main__ import parse_args
    assert parse_args(["--duration", "0"]).duration == 0          # until interrupted (the demo)
    assert parse_args([]).duration == 60 and parse_args(["--events", "5"]).duration is None


def test_the_live_linger_grows_with_the_rate_from_5_to_25_ms():
    from simulator.produce import live_linger_ms

    assert [live_linger_ms(r) for r in (1, 20, 100, 200, 400, 1000, 5000)] == [5, 5, 5, 5, 10, 25, 25]


# --- Kafka ---------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_live_rate_is_held_and_5000_per_second_is_reachable(cat, settings, monkeypatch):
    from confluent_kafka import Consumer

    from simulator import produce
    from simulator.produce import run_live
    from stack.services import ensure_topics

    lingers, real = [], produce.make_producer
    monkeypatch.setattr(produce, "make_producer", lambda st, **o: lingers.append(o.get("linger.ms")) or real(st, **o))
    s = settings.model_copy(update={"topic_activity": settings.topic_activity + "-sim"})
    ensure_topics(s)
    sim = Simulator(cat, 10_000, seed=1)
    paced = run_live(sim, s, 1000, duration=2.0, progress=False)
    assert paced.failed == 0 and 1800 <= paced.sent <= 2100
    assert lingers == [25]      # the real producer, with the linger of its rate
    assert 900 <= paced.rate <= 1100
    fast = run_live(sim, s, 1_000_000, max_events=30_000, progress=False)
    assert fast.failed == 0 and fast.sent == 30_000
    assert fast.rate >= 5000, f"only {fast.rate:.0f} events/s"

    consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "sim-test",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([s.topic_activity])
    got, t0 = 0, time.monotonic()
    first = None
    while got < paced.sent + fast.sent and time.monotonic() - t0 < 60:
        for m in consumer.consume(10_000, 1.0):
            if m.error() is None:
                got += 1
                if first is None:
                    first = m
    consumer.close()
    assert got == paced.sent + fast.sent
    e = json.loads(first.value())
    assert first.key().decode() == e["user_id"] and abs(e["event_time"] - first.timestamp()[1]) < 5_000
