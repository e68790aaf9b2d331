"""The fault suite: the streaming job under faults, compared with a reference run over the same events.

Black-box: events go in through Kafka, the job runs as `./spark-submit.sh jobs/recommend_stream.py`
(a subprocess that the test kills, starves or cuts off), documents come out of the store. Each case
reads its own topic holding the same records as the reference run's topic, writes its own collections,
and must end with exactly the reference's recommendations (every user, every field but the write time
and batch numbering), the same dead letters, and batch metrics that count every applied event once:
nothing lost, nothing twice.

    pytest -m faults            # about 5-7 minutes on 2 cores
"""
from __future__ import annotations

import time

import pytest

from jobs import recommend_stream as rs
from simulator.produce import produce_records
from stack.services import ensure_topics
from tests.streamjob import Job, assert_same, case_settings, job_env, outcome, records_for, reference_run, service

pytestmark = [pytest.mark.integration, pytest.mark.faults]

N_EVENTS = 50_000          # the SIGKILL case's run (the figure)
N_SHORT = 12_000           # the other cases


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


@pytest.fixture(scope="module")
def long_events(model):
    return records_for(model, N_EVENTS, seed=12)


@pytest.fixture(scope="module")
def short_events(model):
    return records_for(model, N_SHORT, seed=13)


@pytest.fixture(scope="module")
def reference_long(spark, model, mongo, long_events, tmp_path_factory):
    base, bundle, _ = model
    s = case_settings(base, "ref-long", tmp_path_factory.mktemp("ref-long"), max_offsets_per_trigger=10_000)
    assert produce_records(s, long_events).sent == len(long_events)
    out = reference_run(spark, mongo, s, bundle)
    assert len(out["recs"]) >= 250 and out["dead"]
    return out


@pytest.fixture(scope="module")
def reference_short(spark, model, mongo, short_events, tmp_path_factory):
    base, bundle, _ = model
    s = case_settings(base, "ref-short", tmp_path_factory.mktemp("ref-short"), max_offsets_per_trigger=10_000)
    assert produce_records(s, short_events).sent == len(short_events)
    return reference_run(spark, mongo, s, bundle)


# --- the cases ----------------------------------------------------------------------------------------

def test_sigkill_three_times_during_50k_events_then_restart(model, mongo, long_events, reference_long, tmp_path):
    base, bundle, _ = model
    s = case_settings(base, "sigkill", tmp_path)
    assert produce_records(s, long_events).sent == len(long_events)
    batches_needed = -(-N_EVENTS // s.max_offsets_per_trigger)
    kills = []
    t0 = time.monotonic()
    for k in range(3):
        job = Job(s, tmp_path / "sigkill.log")
        done = len(job.batches("commits"))
        # kill while a micro-batch is planned but not committed, after at least two new commits
        job.wait_for(lambda: len(job.batches("commits")) >= done + 1 and job.in_flight(), 300,
                     f"a micro-batch in flight after kill {k}")
        job.kill()
        kills.append((len(job.batches("commits")), job.in_flight()))
        job.finish()
        print(f"kill {k + 1} at {time.monotonic() - t0:.0f} s, after {kills[-1][0]} of {batches_needed} batches")
    assert all(flight for _, flight in kills) and kills[-1][0] < batches_needed, kills   # each kill mid-stream
    job = Job(s, tmp_path / "sigkill.log")
    assert job.finish() == 0, job.text()[-3000:]
    print(f"restart finished at {time.monotonic() - t0:.0f} s")
    assert "recommend_stream: idle after" in job.text()
    assert not job.in_flight()
    assert_same(reference_long, outcome(mongo, s), "SIGKILL x3")


def test_kafka_broker_stopped_and_restarted_during_a_run(model, mongo, short_events, reference_short, tmp_path):
    base, bundle, _ = model
    s = case_settings(base, "broker", tmp_path, max_offsets_per_trigger=1000)
    assert produce_records(s, short_events).sent == len(short_events)
    kafka = service(base, "kafka")
    job = Job(s, tmp_path / "broker.log", until_idle=5.0)
    try:
        job.wait_for(lambda: len(job.batches("commits")) >= 2, 240, "two committed micro-batches")
        kafka.stop()
        down_at = time.monotonic()
        time.sleep(8)
        kafka.start()
        print(f"broker down {time.monotonic() - down_at:.1f} s")
    finally:
        if kafka.pid() is None:
            kafka.start()
    assert job.finish() == 0, job.text()[-3000:]
    assert len(job.batches("commits")) < -(-N_SHORT // 1000) + 3
    assert_same(reference_short, outcome(mongo, s), "broker restart")


def test_store_stopped_for_30_s_during_a_run(model, mongo, short_events, reference_short, tmp_path):
    base, bundle, _ = model
    s = case_settings(base, "store", tmp_path, max_offsets_per_trigger=1000, store_retry_limit_s=90.0,
                      store_retry_max_s=4.0)
    assert produce_records(s, short_events).sent == len(short_events)
    store = service(base, "ferretdb")
    job = Job(s, tmp_path / "store.log", until_idle=5.0)
    try:
        job.wait_for(lambda: len(job.batches("commits")) >= 2, 240, "two committed micro-batches")
        store.stop()
        time.sleep(30)
    finally:
        store.start()
    assert job.finish() == 0, job.text()[-3000:]
    retries = [l for l in job.text().splitlines() if ": write failed (" in l]
    assert retries and all(l.startswith(f"store {s.mongo_where}: write failed (") for l in retries), retries[:3]
    assert_same(reference_short, outcome(mongo, s), "store down 30 s")


def test_store_down_past_the_limit_exits_with_one_line_and_resumes(model, mongo, short_events, reference_short,
                                                                   tmp_path):
    base, bundle, _ = model
    s = case_settings(base, "limit", tmp_path, max_offsets_per_trigger=1000, store_retry_limit_s=6.0,
                      store_retry_initial_s=0.5, store_retry_max_s=2.0)
    assert produce_records(s, short_events).sent == len(short_events)
    store = service(base, "ferretdb")
    job = Job(s, tmp_path / "limit.log")
    try:
        job.wait_for(lambda: len(job.batches("commits")) >= 2, 240, "two committed micro-batches")
        store.stop()
        code = job.proc.wait(120)
    finally:
        store.start()
    job.finish()
    assert code == 1, job.text()[-3000:]
    errors = [l for l in job.text().splitlines() if l.startswith("recommend_stream: error:")]
    assert len(errors) == 1 and "store unavailable" in errors[0] and "limit 6 s" in errors[0], errors
    again = Job(s, tmp_path / "limit-again.log")
    assert again.finish() == 0, again.text()[-3000:]
    assert_same(reference_short, outcome(mongo, s), "store down past the limit, then restarted")


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


def test_a_recreated_topic_stops_with_one_actionable_line_or_continues_when_allowed(spark, model, mongo, tmp_path):
    base, bundle, _ = model
    s = case_settings(base, "recreated", tmp_path)
    good = records_for(model, 400, seed=31)
    bad = [("u-x", "{broken")] * 4
    assert produce_records(s, bad + good).sent == 404              # offsets 0-3 of a partition: dead letters
    assert reference_run(spark, mongo, s, bundle)["dead"]
    first = {d["_id"] for d in mongo[s.coll_dead_letters].find()}

    _recreate_topic(s)                                              # a new generation, offsets from 0 again
    time.sleep(0.01)
    assert produce_records(s, bad + records_for(model, 50, seed=32)).sent == 54
    query = rs.run(spark, s, bundle=bundle)
    try:
        with pytest.raises(RuntimeError) as exc:
            rs.wait(query, s, timeout=120, until_idle=2.0)
    finally:
        query.stop()
    line = rs.data_loss_line(exc.value, s)
    assert line and "\n" not in line and "MUSICREC_KAFKA_FAIL_ON_DATA_LOSS=false" in line and s.topic_activity in line

    allowed = s.model_copy(update={"kafka_fail_on_data_loss": False})
    before = {d["_id"]: d["n_events"] for d in mongo[s.coll_recommendations].find()}
    query = rs.run(spark, allowed, bundle=bundle)
    try:
        assert rs.wait(query, allowed, timeout=120, until_idle=2.0) == "idle"
    finally:
        query.stop()
    after = {d["_id"]: d["n_events"] for d in mongo[s.coll_recommendations].find()}
    assert sum(after.values()) > sum(before.values())                # the new generation's events applied
    dead = {d["_id"] for d in mongo[s.coll_dead_letters].find()}
    assert first < dead and len(dead) == len(first) + 4              # no dead letter of either generation lost


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


def test_the_job_rides_out_a_stalling_store(model, mongo, short_events, reference_short, tmp_path):
    from tests.stallproxy import StallProxy

    base, bundle, _ = model
    host, port = base.mongo_where.split("@", 1)[1].split(",")[0].rsplit(":", 1)
    with StallProxy(host, int(port)) as proxy:
        s = case_settings(base, "stall", tmp_path, max_offsets_per_trigger=1000,
                          mongo_uri=f"mongodb://127.0.0.1:{proxy.port}/", store_retry_limit_s=90.0,
                          store_retry_max_s=3.0)
        assert produce_records(s, short_events).sent == len(short_events)
        env = job_env(s, MUSICREC_MONGO_SOCKET_TIMEOUT_MS="3000", MUSICREC_MONGO_SERVER_SELECTION_TIMEOUT_MS="3000",
                      MUSICREC_MONGO_CONNECT_TIMEOUT_MS="2000")
        job = Job(s, tmp_path / "stall.log", until_idle=5.0, env=env)
        job.wait_for(lambda: len(job.batches("commits")) >= 2, 240, "two committed micro-batches")
        proxy.stall()
        stalled_at = time.monotonic()
        job.wait_for(lambda: ": write failed (" in job.text(), 60, "a retry line while the store stalls")
        first_retry = time.monotonic() - stalled_at
        time.sleep(max(0.0, 15 - first_retry))
        proxy.resume()
        assert job.finish() == 0, job.text()[-3000:]
    print(f"first retry {first_retry:.1f} s after the store stalled")
    assert first_retry < 3.0 + 3.0 + 10.0          # socket timeout + selection + a micro-batch's own work
    assert_same(reference_short, outcome(mongo, s), "stalling store")
