"""The jobs on a real Spark standalone cluster: `python -m stack.cluster` (a master and two 1-core workers on
loopback, in cleaned environments, each with its own work folder) runs feature extraction, the model fit
and the streaming job submitted with `./spark-submit.sh --master spark://...`, whose executors run the
packed environment (`python -m deploy`). The same input runs with local[2] in this process. The store must
hold the same tracks and features, the same model metrics and the same recommendation documents apart
from write times. The cluster's extraction is also the fault case: a worker is killed with SIGKILL (with its
executor and Python workers) while it runs a task, and the job still stores every track exactly once, with
the same features as local[2]. Bounded: a small corpus, one cluster application per job, polls not sleeps;
`timings` (printed with -s) says where the time went."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conf import Settings
from stack import cluster as cl
from tests.pipeline import env_for

ROOT = Path(__file__).resolve().parent.parent
# the module's runs (its fixtures) count against its first test's timeout: about 5 min on a quiet machine,
# 15 at a load average of 20 on the 2 cores
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(1800)]
PACKAGES = ("supertux-data",)   # downloaded by the corpus tests anyway
MAX_RECORDINGS, MAX_CLIPS = 6, 2
USERS, EVENTS = 8, 160
SUBMIT_TIMEOUT_S = 900   # bounds a hung run; a quiet machine needs about a minute per job
# measured quantities that depend on time, not on the data
TIMED_METRICS = {"lsh_ms_per_query", "exact_ms_per_query", "speedup_vs_exact", "neighbours_seconds", "ms_per_query"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(settings):
    """The local standalone cluster, started unless it runs already (then left running)."""
    from stack.services import StackError

    from deploy.artefacts import build

    was_up = all(p.pid() is not None and p.healthy() for p in cl.processes(settings))
    t0 = time.monotonic()
    # what ./spark-submit.sh ships (built once per checkout, then reused: a fresh clone's first run builds
    # the packed environment from PyPI here, outside the submits' timeouts)
    build(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"[test_cluster] artefacts: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    try:
        cl.up(settings)
    except StackError as exc:
        pytest.fail(f"the local Spark cluster did not start: {exc}")
    assert len(cl.alive_workers(settings)) == settings.cluster_workers
    yield cl.master_url(settings)
    if not was_up:
        cl.down(settings)


@pytest.fixture(scope="module")
def corpus_dirs(tmp_path_factory, settings):
    from feature_extraction import corpus

    tmp = tmp_path_factory.mktemp("cluster-corpus")
    s = settings.model_copy(update={"audio_dir": tmp / "fma", "metadata_dir": tmp / "meta"})
    built = corpus.build(s, packages=PACKAGES, max_recordings=MAX_RECORDINGS, max_clips=MAX_CLIPS, progress=False)
    assert built.clips >= 8, built
    return s.audio_dir, s.metadata_dir


def run_settings(settings: Settings, corpus_dirs, tmp: Path, name: str, topic: str) -> Settings:
    audio, meta = corpus_dirs
    return settings.model_copy(update={
        "mongo_db": f"{settings.mongo_db}_{name}", "audio_dir": audio, "metadata_dir": meta,
        "models_dir": tmp / f"models-{name}", "checkpoint_dir": tmp / f"ckpt-{name}", "topic_activity": topic,
        "trigger_seconds": 0.2})


def submit(s: Settings, master: str, *args: str, extra_env: dict | None = None, conf: tuple = (),
           timeout: float = SUBMIT_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = env_for(s) | {f"MUSICREC_{k.upper()}": str(v) for k, v in (extra_env or {}).items()}
    cmd = [str(ROOT / "spark-submit.sh"), "--master", master, *conf, *args]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    # the Python driver's stderr reaches spark-submit's stdout (PythonRunner merges them): show both
    assert proc.returncode == 0, (f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    return proc


_CLIENTS: dict = {}


def db(s: Settings):
    """The run's database, through one client per store address."""
    from common.store import client

    if s.mongo_uri not in _CLIENTS:
        _CLIENTS[s.mongo_uri] = client(s, 10_000)
    return _CLIENTS[s.mongo_uri][s.mongo_db]


def tracks(s: Settings) -> dict[int, dict]:
    return {d["_id"]: d for d in db(s)[s.coll_tracks].find()}


class Phases(dict):
    """Wall seconds per phase of the module's runs, printed as they end (visible with pytest -s)."""

    def __call__(self, name: str):
        from contextlib import contextmanager

        @contextmanager
        def timed():
            t0 = time.monotonic()
            try:
                yield
            finally:
                self[name] = round(time.monotonic() - t0, 1)
                print(f"[test_cluster] {name}: {self[name]} s", file=sys.stderr, flush=True)
        return timed()


def extract_killing_a_worker(s: Settings, master: str, n_tracks: int) -> tuple[subprocess.CompletedProcess, list]:
    """The extraction job on the cluster, with a worker (its process group: worker, executor, Python workers)
    killed by SIGKILL as soon as tracks are being written and a worker runs a task, while at most half of
    them are stored (later, the task seen running could be the worker's last, ending before the kill: a CI
    run saw no executor lost); 2 files per task, so the job has several tasks to lose and re-run. Returns
    the finished submit and [(worker, tracks stored)]."""
    ui = free_port()
    killed: list = []
    done = threading.Event()

    def kill_when_busy():
        while not done.is_set() and not killed:
            stored = db(s)[s.coll_tracks].count_documents({})
            worker = _busy_worker(s, ui) if 0 < stored <= n_tracks // 2 else None
            if worker is not None:
                os.killpg(worker.pid(), signal.SIGKILL)
                killed.append((worker.name, stored))
            done.wait(0.2)

    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    try:
        proc = submit(s, master, "feature_extraction/job.py", "--no-progress",
                      extra_env={"extract_files_per_task": 2}, conf=("--conf", f"spark.ui.port={ui}"))
    finally:
        done.set()
        watcher.join(10)
    return proc, killed


@pytest.fixture(scope="module")
def runs(spark, settings, corpus_dirs, cluster, tmp_path_factory, mongo):
    """The same input through local[2] (in this process) and through the cluster (./spark-submit.sh)."""
    from feature_extraction import job as extraction
    from jobs import recommend_stream as rs
    from jobs.fit_model import run as fit
    from simulator.behaviour import Simulator, load_catalogue
    from simulator.produce import produce_records
    from stack.services import ensure_topics

    tmp = tmp_path_factory.mktemp("cluster-runs")
    topic = f"{settings.topic_activity}-cluster"
    local = run_settings(settings, corpus_dirs, tmp, "local", topic)
    remote = run_settings(settings, corpus_dirs, tmp, "cluster", topic)
    phase = Phases()
    out = {"local": local, "cluster": remote, "timings": phase}
    try:
        with phase("local[2] extraction"):
            out["local_extraction"] = extraction.run(spark, local, progress=False)
        with phase("local[2] fit"):
            out["local_model"] = fit(spark, local, progress=False)
        with phase("cluster extraction, a worker killed"):
            proc, out["killed"] = extract_killing_a_worker(remote, cluster, out["local_extraction"]["files"])
        out["cluster_extraction"] = proc
        out["executors"] = executor_traces(settings)   # now: a worker removes a finished application's folder
        with phase("the killed worker back"):
            cl.up(settings)
        with phase("cluster fit"):
            out["cluster_fit"] = submit(remote, cluster, "jobs/fit_model.py").stdout
        models = db(remote)[remote.coll_models]
        fitted = models.find_one({"_id": models.find_one({"_id": "current"})["version"]})
        for name, record in (("local[2]", out["local_model"]), ("cluster", fitted)):
            print(f"[test_cluster] {name} fit's own timings: {record['timings']}", file=sys.stderr, flush=True)
        # the simulated events, once, in one topic that both streams read from the start
        ensure_topics(local)
        sim = Simulator(load_catalogue(local), USERS, seed=5, concurrent=USERS, bad_rate=0.02, run_id="cl")
        now = int(time.time() * 1000)
        stats = produce_records(local, sim.records(EVENTS, now - EVENTS * 50, 50))
        assert stats.sent == EVENTS
        # both streams serve the model fitted locally (a model version is its fit time), from a shared folder
        version = out["local_model"]["version"]
        with phase("cluster stream"):
            out["cluster_stream"] = submit(remote.model_copy(update={"models_dir": local.models_dir}), cluster,
                                           "jobs/recommend_stream.py", "--until-idle", "3", "--timeout", "600",
                                           "--model-version", version).stdout
        with phase("local[2] stream"):
            query = rs.run(spark, local, model_version=version)
            try:
                assert rs.wait(query, local, timeout=240, until_idle=2.0) == "idle"
            finally:
                query.stop()
        yield out
    finally:
        for s in (local, remote):
            mongo.client.drop_database(s.mongo_db)


def test_extraction_on_the_cluster_stores_the_same_tracks_and_features(runs):
    local, remote = tracks(runs["local"]), tracks(runs["cluster"])
    assert runs["local_extraction"]["failed"] == 0 and len(local) == runs["local_extraction"]["files"]
    assert f"extracted {len(local)}, skipped 0 as current, failed 0" in runs["cluster_extraction"].stdout
    assert sorted(remote) == sorted(local)
    for tid, doc in local.items():
        other = remote[tid]
        # the executors ran the packed env, this process the project's venv: same versions, same numbers
        np.testing.assert_allclose(other["features"], doc["features"], rtol=1e-9, atol=1e-12, err_msg=str(tid))
        same = {k: v for k, v in doc.items() if k not in ("features", "extracted_at")}
        assert {k: other.get(k) for k in same} == same


def executor_traces(settings: Settings) -> dict[str, dict]:
    """Per worker: the unpacked environments' interpreters and the executors' logs in its work folder."""
    out = {}
    for w in (p for p in cl.processes(settings) if isinstance(p, cl.Worker)):
        out[w.name] = {"pythons": sorted(str(p) for p in w.work_dir.glob("app-*/*/env/bin/python")),
                       "stderr": "\n".join(p.read_text(errors="replace") for p in w.work_dir.glob("app-*/*/stderr"))}
    return out


def test_the_executors_ran_the_packed_environment(runs, settings):
    """Each worker unpacked the archive in its own work folder, as ./env beside its executor."""
    traces = runs["executors"]
    assert len(traces) == settings.cluster_workers
    for name, t in traces.items():
        assert t["pythons"], f"{name}: no unpacked environment"
        assert "Unpacking an archive" in t["stderr"] and "musicrec-env-" in t["stderr"], name
    # and nothing else to run: the workers' environment has no project venv on PATH and no PYSPARK_PYTHON
    env = cl.clean_env(settings)
    assert "PYSPARK_PYTHON" not in env and "PYTHONPATH" not in env
    assert str(Path(sys.prefix) / "bin") not in env["PATH"].split(os.pathsep)


def test_fit_on_the_cluster_gives_the_same_model_metrics(runs):
    remote_db = db(runs["cluster"])
    version = remote_db[runs["cluster"].coll_models].find_one({"_id": "current"})["version"]
    remote = remote_db[runs["cluster"].coll_models].find_one({"_id": version})
    local = runs["local_model"]
    assert remote["catalogue_size"] == local["catalogue_size"]
    assert remote["params"] == local["params"]
    chosen = [{k: v for k, v in r["tuning"]["chosen"].items() if k not in TIMED_METRICS} for r in (remote, local)]
    assert chosen[0] == chosen[1]
    lm = {k: v for k, v in local["metrics"].items() if k not in TIMED_METRICS}
    rm = {k: v for k, v in remote["metrics"].items() if k not in TIMED_METRICS}
    assert rm.keys() == lm.keys()
    for k, v in lm.items():
        assert rm[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_stream_on_the_cluster_writes_the_same_recommendations(runs):
    from jobs import stream_sink as sk

    local_s, remote_s = runs["local"], runs["cluster"]
    local = {d["_id"]: sk.comparable(d, across_runs=True) for d in db(local_s)[local_s.coll_recommendations].find()}
    remote = {d["_id"]: sk.comparable(d, across_runs=True) for d in db(remote_s)[remote_s.coll_recommendations].find()}
    assert len(local) >= USERS // 2, "too few users got recommendations to compare anything"
    assert remote == local
    dead_local = sorted(d["_id"] for d in db(local_s)[local_s.coll_dead_letters].find())
    dead_remote = sorted(d["_id"] for d in db(remote_s)[remote_s.coll_dead_letters].find())
    assert dead_remote == dead_local


def _json(url: str):
    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.loads(resp.read())


def _busy_worker(settings: Settings, ui_port: int):
    """The worker whose executor runs a task of the application with this UI port, or None."""
    try:
        app = _json(f"http://127.0.0.1:{ui_port}/api/v1/applications")[0]["id"]
        busy = {e["id"] for e in _json(f"http://127.0.0.1:{ui_port}/api/v1/applications/{app}/executors")
                if e["id"] != "driver" and e.get("activeTasks", 0) > 0}
    except (OSError, ValueError, IndexError, KeyError):
        return None
    for w in (p for p in cl.processes(settings) if isinstance(p, cl.Worker)):
        try:
            execs = _json(f"http://{w.host}:{w.ui_port}/json/").get("executors", [])
        except (OSError, ValueError):
            continue
        if any(str(e.get("id")) in busy and e.get("appid") == app for e in execs):
            return w
    return None


def test_a_worker_killed_during_extraction_loses_no_track_and_duplicates_none(runs):
    """The cluster's extraction above ran with a worker killed (SIGKILL) while it ran a task."""
    s, proc = runs["cluster"], runs["cluster_extraction"]
    assert runs["killed"], "no worker was running a task while tracks were being written"
    expected = tracks(runs["local"])
    assert 0 < runs["killed"][0][1] < len(expected)
    # the lost executor's tasks ran again on the other worker
    assert "ExecutorLostFailure" in proc.stderr or "Lost executor" in proc.stderr, proc.stderr[-3000:]
    ids = [d["_id"] for d in db(s)[s.coll_tracks].find({}, {"_id": 1})]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)
    assert db(s)[s.coll_errors].count_documents({}) == 0


def test_cluster_deploy_mode_on_standalone_is_refused_in_one_line(cluster):
    proc = subprocess.run([str(ROOT / "spark-submit.sh"), "--master", cluster, "--deploy-mode", "cluster",
                           "jobs/fit_model.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not supported for python applications on standalone clusters" in lines[0]
