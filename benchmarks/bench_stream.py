"""Event-to-recommendation latency and sustained throughput of the streaming recommender.

For each catalogue (the demo model, if one is current in the configured database, and a 100k-track
synthetic catalogue), each trigger interval and each offered rate, the query runs in this process on
local[2] while `python -m simulator` (a separate process) offers `rate` events/s from `--users` users
(`--sessions` of them in a session at a time) for `--warmup` + `--seconds` seconds. Measured:

- latency: every applied event's write-completion time of its user's document minus its event time
  (the simulator stamps event_time at produce), from the per-batch histograms in `stream_batches`
  (10 ms buckets) of the batches written after the warm-up, drain included;
- sustained: the backlog (Kafka end offsets minus the query's) sampled every second; a rate is
  sustained when the backlog grows by less than 5% of the rate per second over the measured window and
  drains once the simulator stops (the backlog left then, a batch or two in flight, is latency, which
  the percentiles report);
- where the time goes: mean per micro-batch of the Spark part (the batch's time outside its slowest
  task), the users' state reads, the parsing, retrieval and ranking, and the MongoDB writes;
- ceiling: a backlog of `--ceiling-events` records drained with trigger 0 (events/s).

Ratios are p95 against the 100 events/s run of the same catalogue and trigger (the baseline, same run).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stream.py [--catalogues demo,synthetic]
        [--rates 100,1000,5000] [--triggers 0,0.25] [--users 10000] [--sessions 2000]
        [--warmup 10] [--seconds 30] [--ceiling-events 30000]

The synthetic catalogues are clustered vectors (benchmarks/synthetic.py) standardised into a 64-d model
space, with the banded LSH setting the model job's tuner (jobs/tuning.py) picks for recall@10 >= 0.95,
written as a model bundle without a Spark fit,
with metadata-only `tracks` documents, kept in the database `musicrec_bench_stream` between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conf import Settings, get_settings  # noqa: E402

SYNTH_DB = "musicrec_bench_stream"
SYNTH_VERSION = "synthetic-tuned-v2"
TARGET_P95_MS = 1000.0


# --- catalogues -----------------------------------------------------------------------------------------

def synthetic_catalogue(base: Settings, n: int, models_dir: Path) -> Settings:
    """A 100k-track catalogue and model bundle in SYNTH_DB (built once, then reused)."""
    from benchmarks.synthetic import GENRES, clustered
    from common import storage
    from common.store import database
    from jobs.lsh import exact_top_k
    from jobs.tuning import Grid, random_projections, tune
    from jobs.model_store import ModelBundle, bundle_path, current_version, set_current

    s = base.model_copy(update={"mongo_db": SYNTH_DB, "models_dir": models_dir, "coll_tracks": f"tracks_{n}",
                                "coll_models": f"models_{n}"})
    db = database(s, 30_000)
    version = f"{SYNTH_VERSION}-{n}"
    if current_version(s) == version and storage.exists(bundle_path(s, version)) and \
            db[s.coll_tracks].estimated_document_count() == n:
        return s
    print(f"building the synthetic catalogue: {n} tracks into {SYNTH_DB} (once)", flush=True)
    cat = clustered(n, dim=64, seed=7, clips_per_recording=2, recordings_per_album=5)
    x = cat.features
    vectors = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    rng = np.random.default_rng(7)
    ids = np.arange(1, n + 1, dtype=np.int64)
    # the LSH setting the model job would pick for this catalogue (jobs.tuning, recall@10 >= 0.95)
    query_pos = rng.choice(n, size=min(n, 300), replace=False)
    truth, _ = exact_top_k(vectors[query_pos], vectors, ids, 10, exclude_self=True, query_pos=query_pos)
    grid = Grid(pca_k=(0,), bucket_factor=(1.5, 2.0, 3.0), band_size=(8, 12), bands=(16, 32, 64))
    chosen = tune({0: vectors}, ids, query_pos, truth, 0.95, grid=grid, seed=7, progress=False)["chosen"]
    proj = random_projections(chosen["band_size"] * chosen["bands"], 64, rng)
    print(f"  LSH for {n} tracks: bucket length {chosen['bucket_length']:.2f}, {chosen['bands']} bands of "
          f"{chosen['band_size']}, recall@10 {chosen['recall']:.3f}, {chosen['candidate_fraction']:.1%} candidates",
          flush=True)
    bundle = ModelBundle(version=version, feature_version="synthetic", mean=np.zeros(64), scale=np.ones(64),
                         pca=None, projections=proj, bucket_length=chosen["bucket_length"],
                         band_size=chosen["band_size"], ids=ids, vectors=vectors)
    bundle.save(bundle_path(s, version))
    db[s.coll_tracks].drop()
    listens = (100_000 / (1 + rng.permutation(n))).astype(int)
    for start in range(0, n, 5000):
        db[s.coll_tracks].insert_many([
            {"_id": int(i + 1), "title": f"Synthetic {i + 1}", "artist": f"Artist {cat.artist[i]}",
             "album": f"Album {cat.album[i]}", "genre_top": GENRES[int(cat.genre[i])], "listens": int(listens[i]),
             "duration": 30.0, "recording": f"rec-{cat.recording[i]}", "feature_version": "synthetic"}
            for i in range(start, min(n, start + 5000))])
    set_current(s, version)
    return s


# --- one run --------------------------------------------------------------------------------------------

def backlog(query, settings) -> int:
    from jobs.recommend_stream import kafka_end_offsets

    latest = kafka_end_offsets(settings)[settings.topic_activity]
    done = {}
    p = query.lastProgress
    if p:
        for src in json.loads(p.json).get("sources", []):
            end = src.get("endOffset") or {}
            done = {k: int(v) for k, v in end.get(settings.topic_activity, {}).items()}
    return int(sum(max(0, v - done.get(k, 0)) for k, v in latest.items()))


def simulator_env(s: Settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    for f in ("mongo_uri", "mongo_db", "coll_tracks", "coll_models", "models_dir", "kafka_bootstrap"):
        env[f"MUSICREC_{f.upper()}"] = str(getattr(s, f))
    env["PYTHONPATH"] = str(ROOT)
    return env


def outputs(s: Settings) -> Settings:
    """Where a run writes: always the bench database, whichever database holds the catalogue."""
    return s.model_copy(update={"mongo_db": SYNTH_DB, "coll_recommendations": "bench_recs",
                                "coll_activity": "bench_activity", "coll_dead_letters": "bench_dead",
                                "coll_batches": "bench_batches"})


def one_run(spark, base: Settings, bundle, catalogue, name: str, rate: float, trigger: float, args) -> dict:
    from common.store import database
    from jobs import recommend_stream as rs
    from jobs import stream_sink as sk
    from simulator.produce import produce_records
    from stack.services import ensure_topics

    tag = f"{name}-{int(rate)}-{str(trigger).replace('.', 'p')}-{uuid.uuid4().hex[:6]}"
    s = outputs(base).model_copy(update={
        "topic_activity": f"bench-stream-{tag}", "topic_dead_letters": f"bench-stream-dl-{tag}",
        "checkpoint_dir": Path(args.tmp) / tag, "trigger_seconds": trigger})
    cat_settings = base.model_copy(update={"topic_activity": s.topic_activity})
    db = database(s, 30_000)
    for c in (s.coll_recommendations, s.coll_activity, s.coll_dead_letters, s.coll_batches):
        db[c].drop()
    ensure_topics(s)
    query = rs.run(spark, s, bundle=bundle, catalogue=catalogue)
    try:
        # warm the query up (Python workers, first plan) with one event
        t = int(bundle.ids[0])
        produce_records(s, [("warm", json.dumps({"event_id": "warm", "user_id": "warm", "track_id": t,
                                                  "action": "play", "event_time": int(time.time() * 1000),
                                                  "ms_played": 0, "session_id": "warm"}))])
        assert rs.wait(query, s, timeout=120, until_idle=0.5) == "idle"
        db[s.coll_batches].drop()
        total = args.warmup + args.seconds
        sim = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--rate", str(rate), "--duration", str(total), "--users",
             str(args.users), "--sessions", str(args.sessions), "--topic", s.topic_activity, "--quiet",
             "--seed", "11"], cwd=ROOT, env=simulator_env(cat_settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        samples = []
        started = None
        while sim.poll() is None:
            if query.exception() is not None:
                raise RuntimeError(str(query.exception())[:500])
            b = backlog(query, s)
            samples.append((time.monotonic(), b))
            if started is None and b > 0:
                started = time.monotonic()
            time.sleep(1.0)
        out = sim.stdout.read()
        if sim.returncode != 0:
            raise RuntimeError(f"simulator failed: {out[-500:]}")
        end_backlog = backlog(query, s)
        produced_at_end = time.monotonic()
        measure_from = (started or produced_at_end - total) + args.warmup
        t0 = time.monotonic()
        how = rs.wait(query, s, timeout=args.drain, until_idle=0.5)
        drain_s = time.monotonic() - t0
    finally:
        query.stop()
    window = [(t, b) for t, b in samples if t >= measure_from]
    slope = float(np.polyfit([t for t, _ in window], [b for _, b in window], 1)[0]) if len(window) >= 3 else 0.0
    wall_from = datetime.now(timezone.utc).timestamp() - (time.monotonic() - measure_from)
    batches = [b for b in db[s.coll_batches].find() if b["events"] and b["written_at"].replace(
        tzinfo=timezone.utc).timestamp() >= wall_from]
    lo, n = sk.merge_histograms([b["latency_hist"] for b in batches])
    p50, p95, p99 = sk.histogram_percentiles(lo, n)
    events = sum(b["events"] for b in batches)
    sustained = how == "idle" and slope < 0.05 * rate
    mean = lambda k: float(np.mean([b[k] for b in batches])) if batches else float("nan")  # noqa: E731
    return {"catalogue": name, "trigger": trigger, "rate": rate, "events": events, "slope": slope,
            "end_backlog": end_backlog, "drain_s": drain_s if how == "idle" else float("nan"),
            "sustained": sustained, "p50": p50, "p95": p95, "p99": p99, "batches": len(batches),
            "batch_ms": mean("duration_ms"), "users": mean("users"), "spark_ms": mean("spark_ms"),
            "read_ms": float(np.mean([b.get("read_ms", 0) for b in batches])) if batches else float("nan"),
            "rank_ms": mean("rank_ms"), "write_ms": mean("write_ms"), "sim": out.strip().splitlines()[-1]}


def ceiling(spark, base: Settings, bundle, catalogue, name: str, args) -> dict:
    """Events/s drained from a backlog with trigger 0 (large micro-batches)."""
    from common.store import database
    from jobs import recommend_stream as rs
    from simulator.behaviour import Simulator
    from simulator.produce import produce_records
    from stack.services import ensure_topics

    tag = f"{name}-ceiling-{uuid.uuid4().hex[:6]}"
    s = outputs(base).model_copy(update={"topic_activity": f"bench-stream-{tag}",
                                         "checkpoint_dir": Path(args.tmp) / tag, "max_offsets_per_trigger": 20_000})
    db = database(s, 30_000)
    for c in (s.coll_recommendations, s.coll_batches):
        db[c].drop()
    ensure_topics(s)
    sim = Simulator(catalogue, args.users, seed=5, concurrent=args.sessions)
    produce_records(s, sim.records(args.ceiling_events, int(time.time() * 1000) - 30_000, 1))
    query = rs.run(spark, s, bundle=bundle, catalogue=catalogue, trigger_seconds=0.0)
    try:
        how = rs.wait(query, s, timeout=args.drain * 4, until_idle=0.5)
    finally:
        query.stop()
    batches = sorted(db[s.coll_batches].find(), key=lambda b: b["_id"])
    rate = float("nan")
    if len(batches) >= 2:   # from the end of the first batch (start-up) to the end of the last
        span = (batches[-1]["written_at"] - batches[0]["written_at"]).total_seconds()
        rate = sum(b["rows"] for b in batches[1:]) / span if span > 0 else float("nan")
    return {"catalogue": name, "events_per_s": rate, "batches": len(batches), "drained": how == "idle",
            "users_per_batch": float(np.mean([b["users"] for b in batches])) if batches else float("nan"),
            "batch_ms": float(np.mean([b["duration_ms"] for b in batches])) if batches else float("nan")}


# --- the per-batch floor ----------------------------------------------------------------------------------

FLOOR_VARIANTS = {
    "as shipped": {},
    "zips re-read every task (pyspark's worker)": {"stream_lazy_zip_caches": False},
    "checkpoint logs with .crc files (Hadoop's default)": {"stream_checkpoint_checksums": True},
    "two tasks per batch": {"stream_partitions": 2},
}


def floor(spark, base: Settings, bundle, catalogue, name: str, args, variant: str, overrides: dict) -> dict:
    """Where a small micro-batch's time goes: `--floor-batches` batches of `--floor-events` events from
    as many users, trigger 0; medians of the query's own progress durations and of our batch metrics."""
    from common.store import database
    from jobs import recommend_stream as rs
    from simulator.behaviour import Simulator
    from simulator.produce import produce_records
    from stack.services import ensure_topics

    tag = f"{name}-floor-{uuid.uuid4().hex[:6]}"
    settings_over = {k: v for k, v in overrides.items() if not k.startswith("spark.")}
    conf = {k: v for k, v in overrides.items() if k.startswith("spark.")}
    s = outputs(base).model_copy(update={"topic_activity": f"bench-stream-{tag}", "checkpoint_dir": Path(args.tmp) / tag,
                                         "max_offsets_per_trigger": args.floor_events, **settings_over})
    db = database(s, 30_000)
    for c in (s.coll_recommendations, s.coll_batches):
        db[c].drop()
    ensure_topics(s)
    n = args.floor_events * args.floor_batches
    sim = Simulator(catalogue, max(args.floor_events, 200), seed=6, concurrent=max(args.floor_events, 200))
    produce_records(s, sim.records(n, int(time.time() * 1000) - 60_000, 1))
    saved = {k: spark.conf.get(k, None) for k in conf}
    for k, v in conf.items():
        spark.conf.set(k, v)
    try:
        query = rs.run(spark, s, bundle=bundle, catalogue=catalogue, trigger_seconds=0.0, log=lambda m: None)
        try:
            rs.wait(query, s, timeout=args.drain * 4, until_idle=0.5)
            progress = [json.loads(p.json) for p in query.recentProgress]
        finally:
            query.stop()
    finally:
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
    progress = [p for p in progress if p.get("numInputRows")][3:]          # past the first (cold) batches
    batches = sorted(db[s.coll_batches].find(), key=lambda b: b["_id"])[3:]
    med = lambda xs: float(np.median(xs)) if len(xs) else float("nan")  # noqa: E731
    dur = lambda k: med([p["durationMs"].get(k, 0) for p in progress])  # noqa: E731
    return {"variant": variant, "batches": len(progress), "trigger_ms": dur("triggerExecution"),
            "add_batch_ms": dur("addBatch"), "planning_ms": dur("queryPlanning"), "offsets_ms": dur("walCommit") +
            dur("latestOffset") + dur("commitOffsets"), "latest_offset_ms": dur("latestOffset"),
            "wal_commit_ms": dur("walCommit"), "commit_offsets_ms": dur("commitOffsets"),
            "spark_ms": med([b["spark_ms"] for b in batches]), "read_ms": med([b.get("read_ms", 0) for b in batches]),
            "rank_ms": med([b["rank_ms"] for b in batches]), "write_ms": med([b["write_ms"] for b in batches]),
            "users": med([b["users"] for b in batches])}


# --- rank cost and write cost, without Spark ----------------------------------------------------------------

def user_frame(cat, users: int, events_per_user: int, seed: int = 3):
    """The `user` rows a task ranks: simulated listeners' states after about `events_per_user` events."""
    import pandas as pd

    from jobs import events as ev
    from jobs import taste
    from simulator.behaviour import Simulator

    sim = Simulator(cat, users, seed=seed, concurrent=users)
    rules, states = taste.Rules(), {}
    for key, value in sim.records(users * events_per_user, int(time.time() * 1000) - 3_600_000, 1):
        e = ev.parse(value.encode(), key=key, ref_ms=int(time.time() * 1000), known=cat)
        if isinstance(e, ev.Event):
            states[e.user_id] = taste.apply(states.get(e.user_id, taste.UserState()), e, rules,
                                            cat.duration_of(e.track_id))
    return pd.DataFrame([{"user_id": u, "track_ids": list(st.track_ids), "pos": list(st.pos), "neg": list(st.neg),
                          "heard": list(st.heard), "state": st} for u, st in sorted(states.items())])


def rank_cost(name: str, bundle, cat, users: int, repeats: int = 3) -> dict:
    """Milliseconds per user of `stream_batch.recommend` (taste, LSH candidates, re-rank, filters,
    reasons) on one core, as one task runs it, for batches of `users` users; best of `repeats`."""
    import numba

    from jobs import stream_batch as sb

    numba.set_num_threads(1)
    served = sb.Served.of(bundle, cat)
    frame = user_frame(cat, users, 20)
    sb.recommend(served, frame.head(5), 10, 2)          # compiled kernels loaded
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _, n_cand = sb.recommend(served, frame, 10, 2)
        best = min(best, time.perf_counter() - t)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return {"catalogue": name, "tracks": len(cat), "users": len(frame), "ms_per_user": 1000 * best / len(frame),
            "candidates": float(np.mean(n_cand)), "candidate_share": float(np.mean(n_cand)) / len(cat)}


def capped_state(st, rng):
    """`st` grown to every cap of taste.Rules (200 weighted tracks, 500 heard, 256 event ids), as a
    long-lived listener's state is; and its event ids as text (what state format 1 stored)."""
    import dataclasses

    from jobs import taste

    texts = [f"{rng.integers(0, 2**62):x}-{rng.integers(0, 2**31):x}-{i}" for i in range(256)]  # uuid-like
    grown = dataclasses.replace(st, track_ids=tuple(range(10**6, 10**6 + 200)), pos=tuple(rng.random(200)),
                                neg=tuple(rng.random(200) * (rng.random(200) < 0.3)),
                                heard=tuple(range(2 * 10**6, 2 * 10**6 + 500)),
                                event_ids=tuple(taste.event_key(e) for e in texts))
    return grown, texts


def state_doc_format1(st, texts) -> dict:
    """The user's state as format 1 wrote it (the baseline: arrays uncompressed, event ids as text)."""
    head = np.array([st.n_events, st.last_event_ms, st.partition, st.offset, len(st.track_ids), len(st.heard)], np.int64)
    return {"format": 1, "data": b"".join([head.tobytes(), np.asarray(st.track_ids, np.int64).tobytes(),
                                            np.asarray(st.pos, np.float64).tobytes(),
                                            np.asarray(st.neg, np.float64).tobytes(),
                                            np.asarray(st.heard, np.int64).tobytes(), "\n".join(texts).encode()])}


def write_cost(base: Settings, bundle, cat, users: int, rounds: int = 3) -> list[dict]:
    """Milliseconds per user of writing recommendation documents (upserts over `users` existing users,
    each written with the same shape before and changed since: another batch id and time, as the stream's
    next micro-batch writes it; the store skips a replacement that changes nothing, which measured 2.6-2.7x
    cheaper), from one writer and from two and four at once: the items
    with and without the titles copied in, as a list of sub-documents (before) and by field (common.reclist,
    now), and with the user's state as the stream stores it, after the simulated users' ~20 events and at
    every cap of a long-lived listener (state format 1 against 2). The variants take turns for `rounds`
    rounds, each round starting at the next variant, and each figure is the median (on this machine one pass of a variant drifted by 20% between
    runs, more than the differences between shapes)."""
    from concurrent.futures import ThreadPoolExecutor

    import bson

    from common.store import database
    from jobs import recommend_stream as rs
    from jobs import stream_batch as sb
    from jobs import stream_sink as sk

    served = sb.Served.of(bundle, cat)
    frame = user_frame(cat, users, 20, seed=9)
    items, n_cand = sb.recommend(served, frame, 10, 2)
    s = outputs(base).model_copy(update={"coll_recommendations": "bench_write_cost"})
    db = database(s, 30_000)
    rng = np.random.default_rng(4)
    capped = [capped_state(st, rng) for st in frame["state"]]
    twenty = [rs.state_doc(st) for st in frame["state"]]
    variants = {        # (titles copied in, states, items as a list of sub-documents rather than by field)
        "ids + titles, item list (before)": (True, None, True),
        "ids, item list": (False, None, True),
        "ids + state ~20 events, item list (before)": (False, twenty, True),
        "ids + state ~20 events, by field (now)": (False, twenty, False),
        "ids + state at every cap, format 1 (before)": (False, [state_doc_format1(st, t) for st, t in capped], False),
        "ids + state at every cap, format 2 (now)": (False, [rs.state_doc(st) for st, _ in capped], False),
    }
    built = {}
    for what, (text, states, as_list) in variants.items():
        lists = [[sb.item_doc(it, cat, with_text=text) for it in its] for its in items]
        docs = [sk.recommendation_doc(u, li, model_version=bundle.version, event_time_max_ms=0, n_events=1,
                                      offsets={"topic": "t", "partition": 0, "offset": 0},
                                      batch_id=0, updated_at=sk.now_utc(), candidates=int(c))
                for u, li, c in zip(frame["user_id"], lists, n_cand)]
        for d, li in zip(docs, lists if as_list else ()):
            d["items"] = li     # the shape documents had before common.reclist
        for d, st in zip(docs, states or ()):
            d.update(state=st, applied={"query": "bench", "batch": 0, "events": 1})
        built[what] = docs
    times: dict = {}
    order = list(built.items())
    for r in range(max(1, int(rounds))):
        k = r % len(order)      # each round starts at another variant, so a drift within a round hits them alike
        for what, docs in order[k:] + order[:k]:
            db[s.coll_recommendations].drop()
            sk.Sink(s, db).write_recommendations(docs)              # the users exist: the next writes replace
            for writers in (1, 2, 4):
                sinks = [sk.Sink(s, database(s, 30_000)) for _ in range(writers)]
                now = sk.now_utc()
                tag = 10 * r + writers
                parts = [[dict(d, batch_id=tag, updated_at=now) for d in docs[i::writers]] for i in range(writers)]
                t = time.perf_counter()
                with ThreadPoolExecutor(writers) as pool:
                    list(pool.map(lambda a: a[0].write_recommendations(a[1]), zip(sinks, parts)))
                times.setdefault((what, writers), []).append(1000 * (time.perf_counter() - t) / len(docs))
                for sink in sinks:
                    sink.db.client.close()
                assert db[s.coll_recommendations].count_documents({"batch_id": tag}) == len(docs), "not replaced"
    db[s.coll_recommendations].drop()
    return [{"items": what, "bytes": float(np.mean([len(bson.encode(d)) for d in docs])), "writers": w,
             "ms_per_user": float(np.median(times[(what, w)])), "rounds": len(times[(what, w)])}
            for what, docs in built.items() for w in (1, 2, 4)]


# --- the table ------------------------------------------------------------------------------------------

def table(rows: list[dict], ceilings: list[dict]) -> str:
    head = ("catalogue", "trigger s", "offered/s", "sustained", "lag +/s", "p50 ms", "p95 ms", "p99 ms",
            "p95 vs 100/s", "batch ms", "users/batch", "spark ms", "read ms", "rank ms", "write ms")
    base = {(r["catalogue"], r["trigger"]): r["p95"] for r in rows if r["rate"] == min(x["rate"] for x in rows)}
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        b = base.get((r["catalogue"], r["trigger"]))
        ratio = f"{r['p95'] / b:.1f}x" if b and b == b and r["p95"] == r["p95"] else "-"
        lines.append(" | ".join([
            r["catalogue"], f"{r['trigger']:g}", f"{r['rate']:g}", "yes" if r["sustained"] else "NO",
            f"{r['slope']:.0f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{r['p99']:.0f}", ratio,
            f"{r['batch_ms']:.0f}", f"{r['users']:.0f}", f"{r['spark_ms']:.0f}", f"{r['read_ms']:.0f}",
            f"{r['rank_ms']:.0f}",
            f"{r['write_ms']:.0f}"]))
    if ceilings:
        lines += ["", "catalogue | drained events/s (trigger 0, backlog) | users/batch | batch ms",
                  "--- | --- | --- | ---"]
        for c in ceilings:
            rate = f"{c['events_per_s']:.0f}" + ("" if c["drained"] else " (not drained)")
            lines.append(f"{c['catalogue']} | {rate} | {c['users_per_batch']:.0f} | {c['batch_ms']:.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench_stream.py", description=__doc__.splitlines()[0])
    p.add_argument("--catalogues", default="demo,10k,100k",
                   help="demo (the current model) and/or synthetic sizes such as 10k, 100k")
    p.add_argument("--rates", default="100,1000,5000")
    p.add_argument("--triggers", default="0,0.25")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--sessions", type=int, default=2_000)
    p.add_argument("--rank-users", type=int, default=2000, help="users of the rank-cost table (0: none)")
    p.add_argument("--write-users", type=int, default=2000, help="users of the write-cost table (0: none)")
    p.add_argument("--write-rounds", type=int, default=3, help="turns of every write-cost variant (medians)")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--drain", type=float, default=60.0, help="longest wait for the backlog to drain")
    p.add_argument("--ceiling-events", type=int, default=30_000, help="0: no ceiling runs")
    p.add_argument("--floor", action="store_true", help="also measure the per-batch floor (small batches)")
    p.add_argument("--floor-events", type=int, default=50, help="events per micro-batch of the floor runs")
    p.add_argument("--floor-batches", type=int, default=30, help="micro-batches per floor run")
    p.add_argument("--floor-rounds", type=int, default=2, help="runs of each floor variant, in turn (medians)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    triggers = [float(x) for x in args.triggers.split(",")]
    names = [x.strip() for x in args.catalogues.split(",") if x.strip()]
    sizes = {}
    for n in names:
        if n != "demo":
            try:
                sizes[n] = int(float(n.lower().rstrip("k")) * (1000 if n.lower().endswith("k") else 1))
            except ValueError:
                p.error(f"--catalogues: {n!r} is neither demo nor a size such as 10k")

    from common.spark import build_session
    from common.store import client
    from jobs import recommend_stream as rs
    from jobs.model_store import load_bundle
    from jobs.model_store import load_catalogue

    base = get_settings()
    try:
        client(base, 3000).admin.command("ping")
    except Exception as exc:
        print(f"bench_stream: error: the store at {base.mongo_uri} is not reachable ({type(exc).__name__}); run `make up`",
              file=sys.stderr)
        return 1
    args.tmp = tempfile.mkdtemp(prefix="bench_stream_")
    base = base.model_copy(update={"spark_master": "local[2]"})
    catalogues = []
    for name in names:
        if name == "demo":
            try:
                bundle = load_bundle(base)
            except (LookupError, FileNotFoundError) as exc:
                print(f"bench_stream: demo catalogue skipped: {exc}", flush=True)
                continue
            s = base
        else:
            s = synthetic_catalogue(base, sizes[name], Path(args.tmp).parent / "musicrec_bench_stream_models")
            bundle = load_bundle(s)
        t = time.monotonic()
        cat = load_catalogue(s, bundle)
        bundle.index()
        print(f"{name}: {len(cat)} tracks, {bundle.dim}-d, loaded and hashed in {time.monotonic() - t:.1f} s",
              flush=True)
        catalogues.append((name, s, bundle, cat))
    if not catalogues:
        print("bench_stream: error: no catalogue to run on", file=sys.stderr)
        return 1

    ranks, writes = [], []
    if args.rank_users:
        for name, s, bundle, cat in catalogues:
            ranks.append(rank_cost(name, bundle, cat, args.rank_users))
            print(f"  {name}: rank {ranks[-1]['ms_per_user']:.3f} ms per user, "
                  f"{ranks[-1]['candidates']:.0f} candidates", flush=True)
    if args.write_users:
        name, s, bundle, cat = catalogues[0]
        writes = write_cost(base, bundle, cat, args.write_users, args.write_rounds)
        for w in writes:
            print(f"  write: {w}", flush=True)

    spark = build_session(base, "bench-stream", rs.STREAM_CONF)
    rows, ceilings, floors = [], [], []
    try:
        # Spark hands a task to its idle Python workers in turn, and each worker keeps its own state cache:
        # a variant with two tasks per batch leaves two workers behind, so the runs after it would miss
        # the cache every other batch (one query per application, as served, never meets that). So
        # the one-task variants run before the rate runs, after a warm-up run that is not reported (the
        # first query of an application runs on cold JVM code), and the others run last.
        variants = list(FLOOR_VARIANTS.items()) if args.floor else []
        runs: dict[str, list] = {}

        def run_floors(which, rounds: int):
            name, s, bundle, cat = catalogues[0]
            for _ in range(rounds):             # the variants in turn, so a drift of the machine hits them alike
                for variant, over in which:
                    runs.setdefault(variant, []).append(floor(spark, s, bundle, cat, name, args, variant, over))
                    print(f"  floor, {variant}: {runs[variant][-1]}", flush=True)
        if variants:
            name, s, bundle, cat = catalogues[0]
            floor(spark, s, bundle, cat, name, args, "warm-up", {})
        one_task = [(v, o) for v, o in variants if int(o.get("stream_partitions", 1)) == 1]
        run_floors(one_task, args.floor_rounds)
        for name, s, bundle, cat in catalogues:
            for trigger in triggers:
                for rate in rates:
                    t = time.monotonic()
                    r = one_run(spark, s, bundle, cat, name, rate, trigger, args)
                    rows.append(r)
                    print(f"  {name} trigger {trigger:g} s, {rate:g}/s: p95 {r['p95']:.0f} ms, "
                          f"{'sustained' if r['sustained'] else 'NOT sustained'} (lag {r['slope']:+.0f}/s), "
                          f"{r['batches']} batches, {time.monotonic() - t:.0f} s [{r['sim']}]", flush=True)
            if args.ceiling_events:
                c = ceiling(spark, s, bundle, cat, name, args)
                ceilings.append(c)
                print(f"  {name} ceiling: {c['events_per_s']:.0f} events/s", flush=True)
        run_floors([(v, o) for v, o in variants if (v, o) not in one_task], args.floor_rounds)
        floors = [{k: (float(np.median([r[k] for r in runs[v]])) if isinstance(runs[v][0][k], float) else runs[v][0][k])
                   for k in runs[v][0]} for v, _ in variants]
    finally:
        spark.stop()
    print()
    print(f"Streaming recommender, local[2] on {os.cpu_count()} cores, {args.users} users ({args.sessions} in a "
          f"session at a time), store {base.mongo_uri}; target p95 <= {TARGET_P95_MS:.0f} ms at 1000/s sustained")
    print(table(rows, ceilings))
    if floors:
        print()
        print(f"Per-batch floor: {args.floor_batches} micro-batches of {args.floor_events} events, trigger 0, "
              f"medians in ms (Spark's progress durations) over {args.floor_rounds} runs of each variant, run in turn after "
              f"a warm-up run; ratio of the trigger time against the first row)")
        head = ["variant", "trigger", "vs first", "addBatch", "planning", "offset log + commit", "Spark (ours)",
                "read", "rank", "write", "users"]
        print(" | ".join(head))
        print(" | ".join("---" for _ in head))
        for f in floors:
            print(" | ".join([f["variant"], f"{f['trigger_ms']:.0f}", f"{f['trigger_ms'] / floors[0]['trigger_ms']:.2f}x"]
                             + [f"{f[k]:.0f}" for k in ("add_batch_ms", "planning_ms", "offsets_ms", "spark_ms",
                                                       "read_ms", "rank_ms", "write_ms", "users")]))
    if ranks:
        print()
        print(f"Rank cost per user (one core, batches of {args.rank_users} simulated users; ratio against the "
              f"smallest catalogue of this run)")
        print("catalogue | tracks | LSH candidates | share of catalogue | ms per user | vs smallest")
        print("--- | --- | --- | --- | --- | ---")
        small = min(ranks, key=lambda r: r["tracks"])["ms_per_user"]
        for r in ranks:
            print(f"{r['catalogue']} | {r['tracks']} | {r['candidates']:.0f} | {r['candidate_share']:.1%} | "
                  f"{r['ms_per_user']:.3f} | {r['ms_per_user'] / small:.2f}x")
    if writes:
        print()
        print(f"Write cost per user ({args.write_users} existing users' documents replaced; medians of "
              f"{max(1, args.write_rounds)} turns of every variant; ratio against one writer with titles in the items)")
        print("document | bytes per document | writers | ms per user | vs baseline")
        print("--- | --- | --- | --- | ---")
        b = writes[0]["ms_per_user"]
        for w in writes:
            print(f"{w['items']} | {w['bytes']:.0f} | {w['writers']} | {w['ms_per_user']:.3f} | "
                  f"{w['ms_per_user'] / b:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ceilings": ceilings, "rank": ranks, "write": writes,
                                               "floor": floors},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
