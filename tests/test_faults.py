"""The fault suite: the streaming job under faults, compared with an uninterrupted run over the same events.

Events go in through Kafka and documents come out of the store; in between runs the job's own `serve`,
either as `./spark-submit.sh jobs/recommend_stream.py` (a process the test kills or starves: `Job`) or,
for faults of the services around it, in a thread of the test's warm Spark session (`Background`). Each
case reads its own topic holding the same records as the reference run's topic, writes its own
collections, and must end with exactly the reference's recommendations (every user, every field but the
write time and batch numbering), the same dead letters, and batch metrics that count every applied event
once: nothing lost, nothing twice.

One reference run serves every case: it reads the first N_SHORT events, is compared with there, then
reads the rest of the 50,000.

    pytest -m faults tests/test_faults.py       # part of `make test`; see the README's "Faults" table
"""
from __future__ import annotations

import re
import time

import pytest

from jobs import recommend_stream as rs
from stack.services import ensure_topics
from tests.streamjob import (Background, Job, assert_same, case_settings, job_env, outcome, produce, records_for,
                             serve_until_idle, service)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

N_EVENTS = 50_000          # the SIGKILL case's run (the figure)
N_SHORT = 3_000            # the first events: the other cases' run
RETRY = re.compile(r": (write|read of the current model) failed \(.*\); retry \d+ in ")
SHORT_BATCH = 500          # their micro-batches: 6, the fault after the second, so that it lands mid-stream
MID = N_SHORT // SHORT_BATCH - 1     # a fault must come before this many micro-batches are committed


@pytest.fixture(scope="module")
def events(small_model):
    return records_for(small_model, N_EVENTS, seed=12)


@pytest.fixture(scope="module")
def reference(spark, small_model, mongo, events, tmp_path_factory):
    """{"short": what an uninterrupted run left after the first N_SHORT events, "long": after all of them}."""
    base, _, _ = small_model
    s = case_settings(base, "ref", tmp_path_factory.mktemp("ref"), max_offsets_per_trigger=10_000)
    produce(s, events[:N_SHORT])
    serve_until_idle(spark, s)
    short = outcome(mongo, s)
    produce(s, events[N_SHORT:])
    serve_until_idle(spark, s)
    long = outcome(mongo, s)
    assert len(long["recs"]) >= 250 and long["dead"] and sum(d["n_events"] for d in long["recs"].values()) > 45_000
    assert len(short["recs"]) >= 80 and short["dead"]
    return {"short": short, "long": long}


def short_case(base, name, tmp_path, events, **over):
    s = case_settings(base, name, tmp_path, **{"max_offsets_per_trigger": SHORT_BATCH, **over})
    produce(s, events[:N_SHORT])
    return s


# --- the cases ----------------------------------------------------------------------------------------

def test_sigkill_three_times_during_50k_events_then_restart(spark, small_model, mongo, events, reference, tmp_path):
    base, _, _ = small_model
    s = case_settings(base, "sigkill", tmp_path)
    produce(s, events)
    batches_needed = -(-N_EVENTS // s.max_offsets_per_trigger)
    kills = []
    t0 = time.monotonic()
    for k in range(3):
        job = Job(s, tmp_path / "sigkill.log")
        done = job.commits()
        # killed while a micro-batch is planned but not committed, once this start has committed one
        job.wait_for(lambda: job.commits() > done and job.in_flight(), 300, f"a micro-batch in flight after kill {k}")
        job.kill()
        kills.append((job.commits(), job.in_flight()))
        job.finish()
        print(f"kill {k + 1} at {time.monotonic() - t0:.0f} s, after {kills[-1][0]} of {batches_needed} batches")
    assert all(flight for _, flight in kills) and kills[-1][0] < batches_needed - 1, kills   # each kill mid-stream
    serve_until_idle(spark, s)                 # the restart: replays the batch in flight, reads the rest
    print(f"restart caught up at {time.monotonic() - t0:.0f} s")
    assert not job.in_flight()
    assert_same(reference["long"], outcome(mongo, s), "SIGKILL x3")


def test_kafka_broker_stopped_and_restarted_during_a_run(spark, small_model, mongo, events, reference, tmp_path):
    base, _, _ = small_model
    s = short_case(base, "broker", tmp_path, events)
    kafka = service(base, "kafka")
    job = Background(spark, s)
    try:
        job.wait_for(lambda: job.commits() >= 2, 240, "two committed micro-batches")
        at = job.commits()
        kafka.stop()
        down_at = time.monotonic()
        time.sleep(5)
    finally:
        kafka.start()
    print(f"broker down {time.monotonic() - down_at:.1f} s, after {at} micro-batches")
    job.finish()
    assert at < MID, "the broker stopped too late to be mid-stream"
    assert_same(reference["short"], outcome(mongo, s), "broker restart")


def test_store_stopped_for_30_s_during_a_run(spark, small_model, mongo, events, reference, tmp_path):
    base, _, _ = small_model
    # smaller micro-batches: stopping FerretDB takes a few seconds, and the outage must find work left
    s = short_case(base, "store", tmp_path, events, max_offsets_per_trigger=SHORT_BATCH // 2,
                   store_retry_limit_s=90.0, store_retry_max_s=4.0)
    store = service(base, "ferretdb")
    job = Background(spark, s)
    try:
        job.wait_for(lambda: job.commits() >= 1, 240, "a committed micro-batch")
        store.stop()
        down = job.commits()
        time.sleep(30)
        during = job.commits()
    finally:
        store.start()
    job.finish()
    assert down < 2 * N_SHORT // SHORT_BATCH and job.result["batches"] > down, "the store stopped after the last batch"
    assert during <= down + 1, "micro-batches committed while the store was down"
    assert_same(reference["short"], outcome(mongo, s), "store down 30 s")


def test_a_stalling_store_gives_a_retry_in_time_then_one_line_past_the_limit_and_resumes(
        spark, small_model, mongo, events, reference, tmp_path):
    """A store that accepts connections and never answers: each write fails within the socket timeout and
    is retried (one line each), the job exits with one line once the retry limit has passed, never hangs,
    and the next start resumes from the checkpoint with nothing lost or twice."""
    from tests.stallproxy import StallProxy

    base, _, _ = small_model
    host, port = base.mongo_where.split("@", 1)[1].split(",")[0].rsplit(":", 1)
    timeouts = {"mongo_socket_timeout_ms": 2000, "mongo_server_selection_timeout_ms": 2000,
                "mongo_connect_timeout_ms": 1000}
    limit = 8.0
    with StallProxy(host, int(port)) as proxy:
        s = short_case(base, "stall", tmp_path, events, mongo_uri=f"mongodb://127.0.0.1:{proxy.port}/",
                       store_retry_limit_s=limit, store_retry_initial_s=0.5, store_retry_max_s=2.0, **timeouts)
        env = job_env(s, **{f"MUSICREC_{k.upper()}": str(v) for k, v in timeouts.items()})
        job = Job(s, tmp_path / "stall.log", env=env)
        try:
            job.wait_for(lambda: job.commits() >= 2, 300, "two committed micro-batches")
            at = job.commits()
            proxy.stall()
            stalled_at = time.monotonic()
            job.wait_for(lambda: RETRY.search(job.text()), 60, "a retry line while the store stalls")
            first_retry = time.monotonic() - stalled_at
            code = job.proc.wait(120)
            exited = time.monotonic() - stalled_at
        finally:
            job.finish()
    print(f"first retry {first_retry:.1f} s, exit {exited:.1f} s after the store stalled (after {at} micro-batches)")
    budget = 2.0 + 2.0 + 1.0                 # socket + server selection + connect timeouts of one attempt
    assert first_retry < budget + 10.0       # + the rest of a micro-batch's own work
    assert exited < budget + 10.0 + limit + budget + 15.0
    assert code == 1, job.text()[-3000:]
    lines = job.text().splitlines()
    retries = [l for l in lines if RETRY.search(l)]
    assert retries and all(l.startswith(f"store {s.mongo_where}: ") for l in retries), retries[:3]
    errors = [l for l in lines if l.startswith("recommend_stream: error:")]
    assert len(errors) == 1 and "store unavailable" in errors[0] and f"limit {limit:.0f} s" in errors[0], errors
    assert at < MID, "the store stalled too late to be mid-stream"
    serve_until_idle(spark, s.model_copy(update={"mongo_uri": base.mongo_uri}))     # the next start
    assert_same(reference["short"], outcome(mongo, s), "stalling store past the limit, then restarted")


def test_a_store_that_accepts_but_never_answers_fails_fast_not_forever(settings, mongo):
    from common.store import client
    from tests.stallproxy import StallProxy

    host, port = settings.mongo_where.split("@", 1)[1].split(",")[0].rsplit(":", 1)
    with StallProxy(host, int(port)) as proxy:
        s = settings.model_copy(update={"mongo_uri": f"mongodb://127.0.0.1:{proxy.port}/", "mongo_socket_timeout_ms": 1500,
                                        "mongo_server_selection_timeout_ms": 2000, "mongo_connect_timeout_ms": 1000})
        c = client(s)
        c[s.mongo_db].stall_probe.insert_one({"_id": "before"})
        proxy.stall()                                   # the connection in the pool now gets no answer
        t0 = time.monotonic()
        with pytest.raises(Exception) as exc:
            c[s.mongo_db].stall_probe.find_one({"_id": "before"})
        took = time.monotonic() - t0
        assert took < 1.5 + 2.0 + 3.0, f"{type(exc.value).__name__} after {took:.1f} s"
        fresh = client(s)                               # a new client: accepted, never answered
        t0 = time.monotonic()
        with pytest.raises(Exception):
            fresh.admin.command("ping")
        assert time.monotonic() - t0 < 2.0 + 1.5 + 3.0
        proxy.resume()
        c.close(), fresh.close()


def _recreate_topic(s) -> None:
    from confluent_kafka.admin import AdminClient

    from common.kafka import client_config

    admin = AdminClient(client_config(s))
    for fut in admin.delete_topics([s.topic_activity]).values():
        fut.result(30)
    deadline = time.monotonic() + 60
    while s.topic_activity in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "topic never went away"
        time.sleep(0.5)
    ensure_topics(s)


def test_a_recreated_topic_stops_with_one_actionable_line_or_continues_when_allowed(spark, small_model, mongo,
                                                                                    tmp_path):
    base, _, _ = small_model
    s = case_settings(base, "recreated", tmp_path)
    bad = [("u-x", "{broken")] * 4                                  # offsets 0-3 of one partition: dead letters
    produce(s, bad + records_for(small_model, 400, seed=31))
    serve_until_idle(spark, s)
    old = {d["_id"]: (d["partition"], d["offset"]) for d in mongo[s.coll_dead_letters].find()}
    assert len(old) >= 4

    _recreate_topic(s)                                              # a new generation, offsets from 0 again
    produce(s, bad[:1])                                             # offset 0 of that partition
    query = rs.run(spark, s)
    try:
        with pytest.raises(RuntimeError) as exc:
            rs.wait(query, s, timeout=120, until_idle=2.0)
    finally:
        query.stop()
    line = rs.data_loss_line(exc.value, s)
    assert line and "\n" not in line and "MUSICREC_KAFKA_FAIL_ON_DATA_LOSS=false" in line and s.topic_activity in line

    # allowed: it goes on from the new topic's end, skipping what the new topic got before (Spark 4.1.1's
    # SPARK-55271 stops the first start after the offsets went back; `serve`, as the job runs it, starts the
    # query again when it dies of exactly that)
    allowed = s.model_copy(update={"kafka_fail_on_data_loss": False})
    serve_until_idle(spark, allowed)
    before = {d["_id"]: d["n_events"] for d in mongo[s.coll_recommendations].find()}
    later = records_for(small_model, 60, seed=32)
    produce(allowed, bad + later)                                   # offsets 1-4 of that partition
    serve_until_idle(spark, allowed)
    after = {d["_id"]: d["n_events"] for d in mongo[s.coll_recommendations].find()}
    dead = {d["_id"]: (d["partition"], d["offset"]) for d in mongo[s.coll_dead_letters].find()}
    new = {k: v for k, v in dead.items() if k not in old}
    assert set(old) < set(dead)                                     # no dead letter of the old generation lost
    assert len(set(new.values()) & set(old.values())) >= 3          # ... nor overwritten by one at its position
    applied = sum(after.values()) - sum(before.values())
    assert applied + len(new) == len(later) + 4 and applied > 50    # every new record applied or dead, once
