"""The streaming recommender end to end over the real Kafka, the real store and a real model fit.

One module fixture fits a model on a synthetic catalogue (jobs.fit_model, written to the test
database); each test then runs its own query (own topic, checkpoint and collections).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from datetime import timezone

import numpy as np
import pytest

from benchmarks.synthetic import clustered, track_documents
from common.reclist import items_of
from jobs import events as ev
from jobs import recommend_stream as rs
from jobs import stream_sink as sk
from simulator.behaviour import Simulator
from simulator.produce import produce_records
from tests.pipeline import env_for
from tests.streamjob import case_settings

pytestmark = pytest.mark.integration

N_TRACKS = 800


@pytest.fixture(scope="module")
def model(spark, settings, mongo):
    from jobs.fit_model import run as fit
    from jobs.model_store import load_bundle

    s = settings.model_copy(update={"coll_tracks": "stream_tracks", "coll_models": "stream_models",
                                    "coll_neighbours": "stream_neighbours"})
    # small albums, so each genre has a dozen artists (the per-artist cap and version filter leave room)
    docs = track_documents(clustered(N_TRACKS, seed=21, n_genres=4, clips_per_recording=2, recordings_per_album=4),
                           "fv-stream")
    mongo[s.coll_tracks].insert_many(docs)
    fit(spark, s, tune=False, write_neighbours=False, progress=False, pca_k=16, bucket_length=6.0, band_size=4,
        bands=16)
    bundle = load_bundle(s)
    genre = {d["_id"]: d["genre_top"] for d in docs}
    return s, bundle, genre


@pytest.fixture(scope="module")
def catalogue(model):
    from jobs.model_store import load_catalogue

    s, bundle, _ = model
    return load_catalogue(s, bundle)


def stream_settings(s, name, tmp_path, **over):
    return case_settings(s, name, tmp_path, **{"max_offsets_per_trigger": 2000, **over})


def now_ms() -> int:
    return int(time.time() * 1000)


def expected(records, known):
    """Per user, what the stream must end with: applied events, heard tracks, last event and position."""
    out = defaultdict(lambda: {"events": [], "heard": set(), "disliked": set()})
    rejects = 0
    for key, value in records:
        r = ev.parse(value, key=key, ref_ms=now_ms(), known=known)
        if isinstance(r, ev.Reject):
            rejects += 1
            continue
        u = out[r.user_id]
        if r.event_id in {e.event_id for e in u["events"]}:
            continue
        u["events"].append(r)
        u["heard"].add(r.track_id)
        if r.action == "dislike":
            u["disliked"].add(r.track_id)
    return out, rejects


def run_until_idle(spark, s, bundle, idle=2.0, timeout=180):
    query = rs.run(spark, s, bundle=bundle)
    try:
        how = rs.wait(query, s, timeout=timeout, until_idle=idle)
        assert how == "idle", how
    finally:
        query.stop()
    return query


def test_simulated_sessions_give_every_user_a_clean_document(spark, model, catalogue, mongo, tmp_path):
    base, bundle, genre = model
    s = stream_settings(base, "sessions", tmp_path)
    sim = Simulator(catalogue,
                    60, seed=3, concurrent=25, bad_rate=0.03)
    records = sim.records(1500, now_ms() - 30_000, 10)
    assert produce_records(s, records).sent == len(records)
    run_until_idle(spark, s, bundle)

    want, rejects = expected(records, set(int(t) for t in bundle.ids))
    docs = {d["_id"]: d for d in mongo[s.coll_recommendations].find()}
    assert set(docs) == set(want) and len(want) >= 45
    for user, w in want.items():
        d = docs[user]
        items = [it["track_id"] for it in items_of(d)]
        assert len(items) == len(set(items)) == base.top_k
        assert not set(items) & w["heard"], user            # nothing heard, skipped or disliked
        assert d["model_version"] == bundle.version and d["n_events"] == len(w["events"])
        last = max(w["events"], key=lambda e: e.event_time_ms)
        assert d["event_time_max"] == sk.utc_ms(last.event_time_ms).replace(tzinfo=None)
        assert all(0 < it["score"] <= 1 and it["reason"] for it in items_of(d))
        scores = [it["score"] for it in items_of(d)]
        assert scores == sorted(scores, reverse=True)
        artists = [catalogue.artist[catalogue.row(it["track_id"])] for it in items_of(d)]
        assert max(artists.count(a) for a in artists) <= base.max_per_artist
    warm = [d for d in docs.values() if any(it.get("reason_track_id") for it in items_of(d))]
    assert len(warm) >= 0.9 * len(docs)                 # LSH picks with a reason for nearly everyone
    for d in warm:
        for it in items_of(d):
            if it.get("reason_track_id"):
                assert it["reason_track_id"] in want[d["_id"]]["heard"]

    dead = list(mongo[s.coll_dead_letters].find())
    assert len(dead) == rejects > 0
    assert all(x["raw"] and ev.reason_code(x["reason"]) in ev.REASON_CODES for x in dead)
    batches = list(mongo[s.coll_batches].find())
    assert sum(b["events"] for b in batches) == sum(len(w["events"]) for w in want.values())
    assert sum(b["dead"] for b in batches) == rejects
    assert all(b["latency_ms_p95"] is not None for b in batches if b["events"])
    assert 0 < mongo[s.coll_activity].count_documents({}) <= s.activity_feed_size


def test_a_user_who_likes_one_genre_drifts_towards_it(spark, model, mongo, tmp_path):
    base, bundle, genre = model
    s = stream_settings(base, "drift", tmp_path)
    by_genre = defaultdict(list)
    for t in bundle.ids:
        by_genre[genre[int(t)]].append(int(t))
    first, second = sorted(by_genre)[:2]
    t0 = now_ms() - 60_000
    n = 0

    def listen(tracks, action):
        nonlocal n
        out = []
        for t in tracks:
            for a in ("play", action):
                n += 1
                e = {"event_id": f"d{n}", "user_id": "drifter", "track_id": t, "action": a, "event_time": t0 + n * 100,
                     "ms_played": 0 if a == "play" else 30_000, "session_id": "s1"}
                out.append(("drifter", json.dumps(e)))
        return out

    def share(doc, g):
        return sum(genre[it["track_id"]] == g for it in items_of(doc)) / len(items_of(doc))

    query = rs.run(spark, s, bundle=bundle)
    try:
        spread = lambda tracks, k: tracks[:: max(1, len(tracks) // k)][:k]    # across the genre's albums
        produce_records(s, listen(spread(by_genre[first], 6), "complete"))
        assert rs.wait(query, s, timeout=120, until_idle=1.5) == "idle"
        before = mongo[s.coll_recommendations].find_one({"_id": "drifter"})
        produce_records(s, listen(spread(by_genre[second], 30), "like"))
        assert rs.wait(query, s, timeout=120, until_idle=1.5) == "idle"
        after = mongo[s.coll_recommendations].find_one({"_id": "drifter"})
    finally:
        query.stop()
    assert share(before, first) >= 0.7
    assert share(after, second) >= 0.7 and share(after, second) > share(before, second)
    assert after["n_events"] == before["n_events"] + 60


def test_bad_events_land_in_the_dead_letters_and_the_query_lives(spark, model, mongo, tmp_path):
    from confluent_kafka import Producer

    base, bundle, genre = model
    s = stream_settings(base, "bad", tmp_path)
    track = int(bundle.ids[0])
    good = {"event_id": "g0", "user_id": "u-bad", "track_id": track, "action": "complete",
            "event_time": now_ms() - 1000, "ms_played": 30000, "session_id": "s"}
    bad = [  # (key, value, expected reason code)
        ("u-bad", b"{not json", ev.MALFORMED),
        ("u-bad", b"\xff\xfe\x00garbage", ev.MALFORMED),
        ("u-bad", None, ev.MALFORMED),
        (None, b"[1, 2, 3]", ev.NOT_OBJECT),
        ("u-bad", json.dumps({**good, "event_id": "b1", "track_id": 10**9}).encode(), ev.UNKNOWN_TRACK),
        ("u-bad", json.dumps({**good, "event_id": "b2", "action": "pause"}).encode(), ev.UNKNOWN_ACTION),
        ("u-bad", json.dumps({**good, "event_id": "b3", "ms_played": "30000"}).encode(), ev.WRONG_TYPE),
        ("u-bad", json.dumps({k: v for k, v in good.items() if k != "session_id"}).encode(), ev.MISSING),
        ("u-bad", json.dumps({**good, "event_id": "b4", "event_time": "2190-01-01T00:00:00Z"}).encode(), ev.BAD_TIME),
        ("u-bad", json.dumps({**good, "event_id": "b5", "event_time": 1}).encode(), ev.BAD_TIME),
        ("intruder", json.dumps({**good, "event_id": "b6"}).encode(), ev.KEY_MISMATCH),
        (None, json.dumps({**good, "event_id": "b7", "user_id": 42}).encode(), ev.WRONG_TYPE),
        ("u-bad", b"x" * 50_000, ev.TOO_LARGE),
    ]
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap})
    for key, value, _ in bad:
        producer.produce(s.topic_activity, key=key, value=value)
    producer.flush(10)
    query = rs.run(spark, s, bundle=bundle)
    try:
        assert rs.wait(query, s, timeout=120, until_idle=1.5) == "idle"
        produce_records(s, [("u-bad", json.dumps(good))])      # a good event after all the bad ones
        assert rs.wait(query, s, timeout=120, until_idle=1.5) == "idle"
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    dead = sorted(mongo[s.coll_dead_letters].find(), key=lambda d: d["offset"] + 1000 * d["partition"])
    assert len(dead) == len(bad)
    assert sorted(d["code"] for d in dead) == sorted(code for _, _, code in bad)
    huge = next(d for d in dead if d["code"] == ev.TOO_LARGE)
    assert huge["raw_bytes"] == 50_000 and len(huge["raw"]) == sk.RAW_MAX_CHARS
    for d in dead:      # topic-partition-offset-timestamp (kafka_time is the same instant, stored to the ms)
        prefix, ts = d["_id"].rsplit("-", 1)
        assert prefix == f"{d['topic']}-{d['partition']}-{d['offset']}" and d["reason"]
        assert abs(int(ts) - d["kafka_time"].replace(tzinfo=timezone.utc).timestamp() * 1000) < 2
    assert sum(d["raw"] is None for d in dead) == 1 and all(d["raw"] for d in dead if d["code"] != ev.MALFORMED)
    doc = mongo[s.coll_recommendations].find_one({"_id": "u-bad"})
    assert doc["n_events"] == 1 and track not in [it["track_id"] for it in items_of(doc)]


def _batches(folder) -> set[int]:
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.exists() else set()


def test_sigkill_mid_stream_and_restart_equals_an_uninterrupted_run(spark, model, catalogue, mongo, tmp_path):
    base, bundle, genre = model
    sim = Simulator(catalogue,
                    40, seed=8, concurrent=20, bad_rate=0.02)
    records = sim.records(1000, now_ms() - 60_000, 20)
    # the same events in two topics: one for the uninterrupted run, one for the killed one
    whole = stream_settings(base, "whole", tmp_path, max_offsets_per_trigger=700, stream_partitions=1)
    # and the killed run hashes its users over two tasks (a shuffle), the uninterrupted one runs one task
    killed = stream_settings(base, "killed", tmp_path, max_offsets_per_trigger=100, stream_partitions=2)
    for s in (whole, killed):
        assert produce_records(s, records).sent == len(records)

    cmd = ["./spark-submit.sh", "jobs/recommend_stream.py", "--until-idle", "2", "--timeout", "300"]
    ckpt = Path(killed.checkpoint_dir) / rs.QUERY_NAME
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(cmd, cwd=base.root, env=env_for(killed), start_new_session=True, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:   # kill while a micro-batch is planned but not committed, after a few committed ones
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the killed run never got going"
            planned, committed = _batches(ckpt / "offsets"), _batches(ckpt / "commits")
            if len(committed) >= 2 and planned - committed:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
    in_flight = _batches(ckpt / "offsets") - _batches(ckpt / "commits")
    assert len(in_flight) == 1, "the kill did not land inside a micro-batch"
    assert len(_batches(ckpt / "commits")) < -(-len(records) // 100), "the kill came too late to be mid-stream"

    run_until_idle(spark, whole, bundle)       # the uninterrupted run, meanwhile, in this process

    done = subprocess.run(cmd, cwd=base.root, env=env_for(killed), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "recommend_stream: idle after" in done.stdout
    assert not _batches(ckpt / "offsets") - _batches(ckpt / "commits")     # the batch in flight was replayed
    assert not list(ckpt.rglob("*.crc"))       # the checkpoint's logs were written without side files

    a = {d["_id"]: sk.comparable(d, across_runs=True) for d in mongo[whole.coll_recommendations].find()}
    b = {d["_id"]: sk.comparable(d, across_runs=True) for d in mongo[killed.coll_recommendations].find()}
    for d in list(a.values()) + list(b.values()):
        d["offsets"].pop("topic")          # the two runs read two topics
    assert len(a) >= 38 and set(a) == set(b)
    assert a == b
    strip = ("_id", "at", "batch_id", "topic", "kafka_time")
    dead_a = sorted(({k: v for k, v in d.items() if k not in strip} for d in mongo[whole.coll_dead_letters].find()),
                    key=lambda d: (d["partition"], d["offset"]))
    dead_b = sorted(({k: v for k, v in d.items() if k not in strip} for d in mongo[killed.coll_dead_letters].find()),
                    key=lambda d: (d["partition"], d["offset"]))
    assert dead_a == dead_b and len(dead_a) > 0
    events_b = sum(x["events"] for x in mongo[killed.coll_batches].find())
    assert events_b == sum(d["n_events"] for d in b.values())   # a replayed batch rewrites its metrics: nothing lost or twice


def test_a_new_current_model_is_served_from_the_next_micro_batch(spark, model, mongo, tmp_path):
    from dataclasses import replace

    from jobs.model_store import bundle_path, set_current

    base, bundle, genre = model
    s = stream_settings(base, "switch", tmp_path, coll_models="switch_models")
    set_current(s, bundle.version)
    # the second model: the same tracks, each with the vectors of another one (so its lists differ)
    v2 = replace(bundle, version=f"{bundle.version}-next", vectors=np.roll(bundle.vectors, 97, axis=0), _index=None)
    v2.save(bundle_path(s, v2.version))
    tracks = [int(t) for t in bundle.ids[::40]][:8]
    t0 = now_ms() - 60_000

    def listen(user, first):
        return [(user, json.dumps({"event_id": f"{user}-{i}", "user_id": user, "track_id": t, "action": "complete",
                                   "event_time": t0 + first + i, "ms_played": 30_000, "session_id": "s"}))
                for i, t in enumerate(tracks)]

    logged = []
    query = rs.run(spark, s, log=logged.append)          # no model given: it follows the current one
    try:
        produce_records(s, listen("before", 0))
        assert rs.wait(query, s, timeout=120, until_idle=1.0) == "idle"
        set_current(s, v2.version)                        # while the query runs
        produce_records(s, listen("after", 100))
        assert rs.wait(query, s, timeout=120, until_idle=1.0) == "idle"
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    before = mongo[s.coll_recommendations].find_one({"_id": "before"})
    after = mongo[s.coll_recommendations].find_one({"_id": "after"})
    assert before["model_version"] == bundle.version and after["model_version"] == v2.version
    # the same listening under the two models: the lists differ, so the new vectors ranked it
    assert [it["track_id"] for it in items_of(before)] != [it["track_id"] for it in items_of(after)]
    batches = sorted(mongo[s.coll_batches].find(), key=lambda b: b["_id"])
    versions = [b["model_version"] for b in batches]
    assert versions == sorted(versions, key=lambda v: v == v2.version) and versions[-1] == v2.version
    assert any(v2.version in line for line in logged)


def test_sigterm_stops_between_micro_batches_and_exits_0(model, catalogue, tmp_path):
    base, bundle, genre = model
    s = stream_settings(base, "sigterm", tmp_path, max_offsets_per_trigger=50)
    sim = Simulator(catalogue, 30, seed=4, concurrent=10)
    assert produce_records(s, sim.records(3000, now_ms() - 60_000, 20)).sent == 3000
    ckpt = s.checkpoint_dir / rs.QUERY_NAME
    proc = subprocess.Popen(["./spark-submit.sh", "jobs/recommend_stream.py", "--timeout", "300"], cwd=base.root,
                            env=env_for(s), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while len(_batches(ckpt / "commits")) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the stream never got going"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)       # to spark-submit.sh, as `kill` or the demo's cleanup sends it
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("recommend_stream: stopped by SIGTERM between micro-batches after"), out[-3000:]
    assert "Traceback" not in out and "ERROR" not in out, out[-3000:]
    assert _batches(ckpt / "offsets") == _batches(ckpt / "commits")         # nothing left half done
    assert len(_batches(ckpt / "commits")) < 3000 // 50                    # it stopped mid-stream
