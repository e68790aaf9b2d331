"""Security over the real services, during a demo-like run: the streaming job (./spark-submit.sh), the
simulator and the dashboard run with a MongoDB user and a password full of URI characters. The password
shows in no `ps` line, no log, no Spark UI page; nothing any of them opened listens beyond loopback."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from simulator.produce import produce_records
from stack import services as stack
from tests import sockets
from tests.streamjob import Job, case_settings, job_env, records_for
from tests.pipeline import env_for

pytestmark = pytest.mark.integration

PASSWORD = "p@ss:w/rd%25-\"q\\x"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", errors="replace")


def spark_ui_pages(pids) -> dict[str, str]:
    """Every REST page of the Spark UI served by one of `pids` (found among their listening ports)."""
    ports = sorted({int(a.rsplit(":", 1)[1]) for addrs in sockets.listening(pids).values() for a in addrs},
                   key=lambda p: (not 4040 <= p < 4140, p))       # Spark's UI ports first
    for port in ports:
        try:
            apps = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/applications", 20.0))
        except Exception:
            continue
        pages = {}
        for app in apps:
            base = f"http://127.0.0.1:{port}/api/v1/applications/{app['id']}"
            for page in ("environment", "sql?details=true&planDescription=true", "jobs", "stages?details=true",
                         "executors", "streaming/statistics"):
                try:
                    pages[page] = _get(f"{base}/{page}", 30.0)
                except Exception as exc:     # e.g. no streaming tab
                    pages[page] = f"({exc})"
            pages["environment-html"] = _get(f"http://127.0.0.1:{port}/environment/", 30.0)
        return pages
    return {}


def forms(secret: str) -> list[str]:
    from urllib.parse import quote

    return [secret, quote(secret, safe=""), "p@ss", "p%40ss"]


def test_a_demo_like_run_leaks_no_password_and_listens_on_loopback_only(small_model, mongo, tmp_path):
    base, bundle, genre = small_model
    s = case_settings(base, "secure", tmp_path, mongo_username="musicrec", mongo_auth_mechanism="PLAIN",
                      max_offsets_per_trigger=500)
    assert produce_records(s, records_for(small_model, 3000, seed=21)).sent == 3000
    secret_env = {"MUSICREC_MONGO_PASSWORD": PASSWORD, "MUSICREC_MONGO_USERNAME": "musicrec",
                  "MUSICREC_MONGO_AUTH_MECHANISM": "PLAIN"}
    job = Job(s, tmp_path / "job.log", until_idle=4.0, env=job_env(s, **secret_env))
    sim_log, dash_log = open(tmp_path / "sim.log", "w"), open(tmp_path / "dash.log", "w")
    env = {**env_for(s), **secret_env, "MUSICREC_DASHBOARD_PORT": str(_free_port())}
    sim = subprocess.Popen([str(s.root / ".venv/bin/python"), "-m", "simulator", "--rate", "50", "--duration", "60",
                            "--users", "30", "--quiet"], cwd=s.root, env=env, stdout=sim_log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    dash = subprocess.Popen(["bash", "scripts/dashboard.sh"], cwd=s.root, env=env, stdout=dash_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job.wait_for(lambda: len(job.batches("commits")) >= 2, 240, "two committed micro-batches")
        deadline = time.monotonic() + 60
        while b"You can now view" not in (tmp_path / "dash.log").read_bytes() and "Local URL" not in (
                tmp_path / "dash.log").read_text():
            assert dash.poll() is None and time.monotonic() < deadline, (tmp_path / "dash.log").read_text()
            time.sleep(0.5)
        _get(f"http://127.0.0.1:{env['MUSICREC_DASHBOARD_PORT']}/?user=x", 30)   # a page view

        ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
        for f in forms(PASSWORD):
            assert f not in ps, f"password in ps output: {[l for l in ps.splitlines() if f in l][:2]}"

        ours = sockets.tree([job.proc.pid, sim.pid, dash.pid])
        service_pids = [p for p in (svc.pid() for svc in stack.services(base)) if p]
        assert service_pids, "the local services are not running from this checkout"
        listening = sockets.listening(ours | sockets.tree(service_pids))
        assert listening, "found no listening socket at all: the check sees nothing"
        wide = {pid: [a for a in addrs if not sockets.is_loopback(a)] for pid, addrs in listening.items()}
        assert not any(wide.values()), f"listening beyond loopback: {wide}"
        # and whoever listens on a port of our services (a service started under another user, PostgreSQL)
        ports = {svc.port for svc in stack.services(base)} | {base.kafka_controller_port,
                                                               int(env["MUSICREC_DASHBOARD_PORT"])}
        on_ours = [a for a in sockets.listening_by_inode().values() if int(a.rsplit(":", 1)[1]) in ports]
        assert on_ours and all(sockets.is_loopback(a) for a in on_ours), on_ours

        pages = spark_ui_pages(sockets.tree([job.proc.pid]))
        assert "environment" in pages and "spark.app.name" in pages["environment"], list(pages)
        for name, text in pages.items():
            for f in forms(PASSWORD):
                assert f not in text, f"password in Spark UI page {name}"
    finally:
        for proc in (sim, dash):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        sim_log.close(), dash_log.close()
    assert job.finish() == 0, job.text()[-3000:]
    assert mongo[s.coll_recommendations].count_documents({}) > 0        # it did run with the credentials
    for log in ("job.log", "sim.log", "dash.log"):
        text = (tmp_path / log).read_text()
        for f in forms(PASSWORD):
            assert f not in text, f"password in {log}"


def test_a_user_id_written_as_markdown_renders_literally_in_the_dashboard(settings, mongo, monkeypatch, tmp_path):
    from datetime import datetime, timezone
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tests.test_security import _rendered_text

    user, version = "**bold** _u_ [click](http://evil.example) <b>x</b> :red[y]", "`v1` **m**"
    db = f"{settings.mongo_db}_md"
    mongo.client[db]["recommendations"].insert_one({
        "_id": user, "user_id": user, "model_version": version, "batch_id": 3, "n_events": 2,
        "updated_at": datetime.now(timezone.utc), "event_time_max": datetime.now(timezone.utc),
        "items": [{"track_id": 1, "title": "# [t](http://x)", "artist": "*a*", "genre_top": "g", "score": 0.5,
                   "reason": "because"}]})
    env = {"MUSICREC_MONGO_URI": settings.mongo_uri, "MUSICREC_MONGO_DB": db,
           "MUSICREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "MUSICREC_DASHBOARD_CACHE_DIR": str(tmp_path / "c"),
           "MUSICREC_AUDIO_DIR": str(tmp_path / "audio")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py"), default_timeout=60)
        at.query_params["user"] = user
        at.run()
        at.switch_page("views/user.py").run()
        deadline = time.monotonic() + 60
        while not any("recommendations" in m.value for m in at.markdown):
            assert time.monotonic() < deadline, [m.value for m in at.markdown]
            time.sleep(0.5)
            at.run()
        assert not at.exception
        line = next(m.value for m in at.markdown if "recommendations" in m.value)
        assert f"model {version} · 2 events" in _rendered_text(line)
        assert at.selectbox(key="user_pick").value == user
        assert at.table[0].value["title"].tolist() == ["# [t](http://x)"]
        monkeypatch.setenv("MUSICREC_MONGO_DB", f"{db}_none")          # a user with no document yet
        at.run()
        deadline = time.monotonic() + 60
        while not any("No recommendations for" in i.value for i in at.info):
            assert time.monotonic() < deadline, [i.value for i in at.info]
            time.sleep(0.5)
            at.run()
        info = next(i.value for i in at.info if "No recommendations for" in i.value)
        assert _rendered_text(info) == f"No recommendations for {user} yet."
    finally:
        mongo.client.drop_database(db)
