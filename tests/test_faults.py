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

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jobs import recommend_stream as rs
from jobs import stream_sink as sk
from simulator.behaviour import SimCatalogue, Simulator
from simulator.produce import produce_records
from stack import services as stack
from stack.services import ensure_topics
from tests.pipeline import env_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

N_EVENTS = 50_000          # the SIGKILL case's run (the figure)
N_SHORT = 12_000           # the other cases
JOB_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


def records_for(model, n: int, seed: int):
    _, bundle, genre = model
    sim = Simulator(SimCatalogue(bundle.ids, bundle.vectors, [genre.get(int(t)) for t in bundle.ids],
                                 np.ones(len(bundle.ids)), np.full(len(bundle.ids), 30.0)),
                    300, seed=seed, concurrent=120, bad_rate=0.01)
    now = int(time.time() * 1000)
    return sim.records(n, now - n * 5, 5)        # event times over the last few minutes


def case_settings(base, name: str, tmp: Path, **over):
    update = {"topic_activity": f"{base.topic_activity}-f-{name}", "topic_dead_letters": f"{base.topic_dead_letters}-f-{name}",
              "checkpoint_dir": tmp / f"ckpt-{name}", "coll_recommendations": f"recs_{name}",
              "coll_activity": f"activity_{name}", "coll_dead_letters": f"dead_{name}",
              "coll_batches": f"batches_{name}", "trigger_seconds": 0.2, "max_offsets_per_trigger": 4000}
    update.update(over)
    s = base.model_copy(update=update)
    ensure_topics(s)
    return s


def outcome(mongo, s) -> dict:
    """What a run left in the store, in a form two runs over the same events can be compared by."""
    recs = {}
    for d in mongo[s.coll_recommendations].find():
        d = sk.comparable(d, across_runs=True)
        d["offsets"].pop("topic")
        recs[d["_id"]] = d
    strip = ("_id", "at", "batch_id", "topic", "kafka_time")
    dead = sorted(({k: v for k, v in d.items() if k not in strip} for d in mongo[s.coll_dead_letters].find()),
                  key=lambda d: (d["partition"], d["offset"]))
    events = sum(b["events"] for b in mongo[s.coll_batches].find())
    return {"recs": recs, "dead": dead, "batch_events": events}


def assert_same(ref: dict, got: dict, what: str) -> None:
    assert set(got["recs"]) == set(ref["recs"]), f"{what}: users differ"
    lost = {u for u in ref["recs"] if got["recs"][u]["n_events"] < ref["recs"][u]["n_events"]}
    assert not lost, f"{what}: events lost for {len(lost)} users"
    assert got["recs"] == ref["recs"], f"{what}: documents differ"
    assert got["dead"] == ref["dead"], f"{what}: dead letters differ"
    applied = sum(d["n_events"] for d in got["recs"].values())
    assert got["batch_events"] == applied, f"{what}: batch metrics count {got['batch_events']} events, {applied} applied"


def reference_run(spark, mongo, s, bundle) -> dict:
    t0 = time.monotonic()
    query = rs.run(spark, s, bundle=bundle)
    try:
        assert rs.wait(query, s, timeout=JOB_TIMEOUT_S, until_idle=2.0) == "idle"
    finally:
        query.stop()
    print(f"reference run {s.topic_activity}: {time.monotonic() - t0:.0f} s")
    return outcome(mongo, s)


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


# --- the job as a subprocess --------------------------------------------------------------------------

def job_env(s, **extra) -> dict[str, str]:
    env = env_for(s)
    for name in ("store_retry_limit_s", "store_retry_initial_s", "store_retry_max_s", "kafka_fail_on_data_loss"):
        env[f"MUSICREC_{name.upper()}"] = str(getattr(s, name))
    env.update(extra)
    return env


class Job:
    """./spark-submit.sh jobs/recommend_stream.py --until-idle, in its own process group, logged to a file."""

    def __init__(self, s, log: Path, until_idle: float = 3.0, env: dict | None = None):
        self.s, self.log_path = s, log
        self.ckpt = s.checkpoint_dir / rs.QUERY_NAME
        self.log = open(log, "a")
        self.proc = subprocess.Popen(
            ["./spark-submit.sh", "jobs/recommend_stream.py", "--until-idle", str(until_idle),
             "--timeout", str(JOB_TIMEOUT_S)], cwd=s.root, env=env or job_env(s), start_new_session=True,
            stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def batches(self, kind: str) -> set[int]:
        folder = self.ckpt / kind
        return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.exists() else set()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"the job exited ({self.proc.returncode}) before {what}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.text()[-3000:]}"
            time.sleep(0.05)

    def in_flight(self) -> bool:
        return bool(self.batches("offsets") - self.batches("commits"))

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def finish(self, timeout: float = JOB_TIMEOUT_S + 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.log.close()


def service(settings, name: str):
    return next(svc for svc in stack.services(settings) if svc.name == name)


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
