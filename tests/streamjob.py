"""The streaming job as the fault and security tests drive it: its own topic, checkpoint and collections
per case (`case_settings`), simulated records, `./spark-submit.sh jobs/recommend_stream.py` as a
subprocess (`Job`) or the same `serve` in a thread of the test's warm session (`Background`), and what a
run left in the store (`outcome`), compared with an uninterrupted run (`assert_same`)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
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
    """`base` with a topic, checkpoint and collections of the case's own (`name` unique per test session);
    the topics created."""
    update = {"topic_activity": f"{base.topic_activity}-{name}", "topic_dead_letters": f"{base.topic_dead_letters}-{name}",
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


def produce(s, records) -> None:
    from simulator.produce import produce_records

    sent = produce_records(s, records).sent
    assert sent == len(records), f"{sent} of {len(records)} records sent to {s.topic_activity}"


def serve_until_idle(spark, s, idle: float = 2.0, timeout: float = JOB_TIMEOUT_S) -> dict:
    """The job's `serve` in this process over what the topic holds beyond the checkpoint, until caught up
    (a restart after a crash, or an uninterrupted reference run)."""
    t0 = time.monotonic()
    done = rs.serve(spark, s, timeout=timeout, until_idle=idle, log=lambda m: None)
    assert done["how"] == "idle", f"{s.topic_activity}: the job did not catch up: {done}"
    print(f"{s.topic_activity}: caught up in {time.monotonic() - t0:.0f} s, {done['batches']} micro-batches")
    return done


# --- the job as a subprocess --------------------------------------------------------------------------
# --- the job as a subprocess --------------------------------------------------------------------------

def job_env(s, **extra) -> dict[str, str]:
    env = env_for(s)
    for name in ("store_retry_limit_s", "store_retry_initial_s", "store_retry_max_s", "kafka_fail_on_data_loss"):
        env[f"MUSICREC_{name.upper()}"] = str(getattr(s, name))
    env.update(extra)
    return env


class _Checkpointed:
    """What a running job shows of itself: its checkpoint's planned and committed micro-batches, its log."""

    s = None

    @property
    def ckpt(self) -> Path:
        return Path(self.s.checkpoint_dir) / rs.QUERY_NAME

    def batches(self, kind: str) -> set[int]:
        folder = self.ckpt / kind
        return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.exists() else set()

    def commits(self) -> int:
        return len(self.batches("commits"))

    def in_flight(self) -> bool:
        return bool(self.batches("offsets") - self.batches("commits"))

    def running(self) -> bool:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.running(), f"the job ended before {what}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.text()[-3000:]}"
            time.sleep(0.05)


class Job(_Checkpointed):
    """./spark-submit.sh jobs/recommend_stream.py --until-idle, in its own process group, logged to a file."""

    def __init__(self, s, log: Path, until_idle: float = 3.0, env: dict | None = None):
        self.s, self.log_path = s, log
        self.log = open(log, "a")
        self.proc = subprocess.Popen(
            ["./spark-submit.sh", "jobs/recommend_stream.py", "--until-idle", str(until_idle),
             "--timeout", str(JOB_TIMEOUT_S)], cwd=s.root, env=env or job_env(s), start_new_session=True,
            stdout=self.log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

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


class Background(_Checkpointed):
    """The job's `serve` (what `main` runs) in a thread of this process, on the test's warm Spark session:
    for faults of the services around the job, where a new JVM would only add its start-up."""

    def __init__(self, spark, s, until_idle: float = 3.0):
        self.spark, self.s = spark, s
        self.lines: list[str] = []
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(until_idle,), daemon=True, name="stream-job")
        self.thread.start()

    def _serve(self, until_idle: float) -> None:
        try:
            self.result = rs.serve(self.spark, self.s, timeout=JOB_TIMEOUT_S, until_idle=until_idle,
                                   log=self.lines.append)
        except BaseException as exc:   # noqa: BLE001 - handed to the test by finish()
            self.error = exc

    def running(self) -> bool:
        return self.thread.is_alive()

    def text(self) -> str:
        return "\n".join(self.lines + ([f"{type(self.error).__name__}: {self.error}"] if self.error else []))

    def finish(self, timeout: float = JOB_TIMEOUT_S + 60) -> dict:
        self.thread.join(timeout)
        if self.thread.is_alive():       # a hang: stop the query so that the session can go on
            for q in self.spark.streams.active:
                if q.name == rs.QUERY_NAME:
                    q.stop()
            self.thread.join(60)
            raise AssertionError(f"the job did not end within {timeout} s:\n{self.text()[-3000:]}")
        if self.error is not None:
            raise self.error
        return self.result


def service(settings, name: str):
    return next(svc for svc in stack.services(settings) if svc.name == name)
