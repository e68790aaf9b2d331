"""The streaming job as the fault and security tests drive it: its own topic, checkpoint and collections
per case (`case_settings`), simulated records, `./spark-submit.sh jobs/recommend_stream.py` as a
subprocess (`Job`), the in-process reference run, and what a run left in the store (`outcome`)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from jobs import recommend_stream as rs
from jobs import stream_sink as sk
from simulator.behaviour import Simulator
from stack import services as stack
from stack.services import ensure_topics
from tests.pipeline import env_for

JOB_TIMEOUT_S = 420


def records_for(model, n: int, seed: int):
    from jobs.model_store import load_catalogue

    s, bundle, _ = model
    sim = Simulator(load_catalogue(s, bundle), 300, seed=seed, concurrent=120, bad_rate=0.01)
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
        if not self.log.closed:
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
