"""Headless Chromium opens the served dashboard while the activity simulator and the streaming job run
(both as the user starts them: `python -m simulator`, `./spark-submit.sh jobs/recommend_stream.py`),
on the catalogue and model the real pipeline built (tests/pipeline.py), and watches a user's
recommendations appear and then change without a reload; a screenshot is saved under data/screenshots/
(ignored by git)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from common.reclist import items_of
from stack.browser import Browser
from tests.pipeline import env_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SIM_USERS = 2   # the simulator's users: user-0 and user-1
USER = "user-0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_settings(pipeline, tmp_path_factory):
    """The pipeline's catalogue and model; a topic, checkpoint and output collections of its own, so this
    module's streaming job and the session's in-process one never write the same documents from two
    different states (and the in-process restart never follows a SIGTERMed run, see tests/pipeline.py)."""
    from stack.services import ensure_topics

    tmp = tmp_path_factory.mktemp("dashboard-browser")
    s = pipeline.settings.model_copy(update={
        "dashboard_cache_dir": tmp / "cache", "dashboard_port": free_port(), "checkpoint_dir": tmp / "checkpoints",
        "topic_activity": f"{pipeline.settings.topic_activity}-browser",
        "topic_dead_letters": f"{pipeline.settings.topic_dead_letters}-browser",
        "coll_recommendations": "browser_recommendations", "coll_activity": "browser_activity",
        "coll_dead_letters": "browser_dead_letters", "coll_batches": "browser_stream_batches"})
    ensure_topics(s)
    return s


@pytest.fixture(scope="module")
def filled(pipeline):
    return pipeline.db()


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


@pytest.fixture
def live_pipeline(browser_settings, filled, tmp_path):
    """The streaming job and the simulator, running until the test ends."""
    env = env_for(browser_settings)
    job = start(["./spark-submit.sh", "jobs/recommend_stream.py", "--timeout", "600"], env, tmp_path / "stream.log")
    sim = start([sys.executable, "-m", "simulator", "--rate", "4", "--users", str(SIM_USERS), "--duration", "0",
                 "--seed", "3", "--quiet"], env, tmp_path / "simulator.log")
    yield job, sim, tmp_path
    for proc in (sim, job):
        stop(proc)


@pytest.fixture(scope="module")
def served(browser_settings, filled, tmp_path_factory):
    """`streamlit run dashboard/app.py` on a free port, pointed at the test database."""
    port = browser_settings.dashboard_port
    env = env_for(browser_settings)
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.headless", "true", "--browser.gatherUsageStats", "false",
                                 "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start (exit {proc.poll()}): {log.read_text()[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


def table_text(page) -> str:
    """The text of the recommendations table (st.table renders an HTML table in the DOM)."""
    return page.evaluate("Array.from(document.querySelectorAll('[data-testid=\"stTable\"]'))"
                         ".map(e => e.innerText).join('\\n')") or ""


def test_recommendations_change_on_the_open_page_without_a_reload(served, filled, browser_settings, live_pipeline):
    job, sim, logs = live_pipeline
    coll = filled[browser_settings.coll_recommendations]
    titles = {t["_id"]: t["title"] for t in filled[browser_settings.coll_tracks].find({}, {"title": 1})}

    def tail(name: str) -> str:
        return (logs / name).read_text(errors="replace")[-3000:]

    with Browser() as browser:
        page = browser.new_page(f"{served}/user?user={USER}")
        def current() -> dict | None:
            # None between the job's delete and insert of a batch's documents (FerretDB, see common.store)
            doc = coll.find_one({"_id": USER})
            return doc if items_of(doc) else None

        page.wait_for(lambda p: (d := current()) is not None and titles[items_of(d)[0]["track_id"]] in table_text(p), 180,
                      what="the first list")
        first = current()
        marker = uuid.uuid4().hex
        page.evaluate(f"window.__musicrecMarker = '{marker}'")
        navigations = len(page.navigations())
        shown_first = table_text(page)
        # the simulator's events reach the streaming job, which rewrites user-0's document; the open page
        # follows without a reload
        started = time.monotonic()
        deadline = started + 180
        while True:
            assert job.poll() is None, f"the streaming job exited ({job.returncode}): {tail('stream.log')}"
            assert sim.poll() is None, f"the simulator exited ({sim.returncode}): {tail('simulator.log')}"
            assert time.monotonic() < deadline, f"the page never showed a new list; job log: {tail('stream.log')}"
            now = current()
            shown = table_text(page)
            if now is not None and now["batch_id"] != first["batch_id"] and shown and shown != shown_first and \
                    all(titles[it["track_id"]] in shown for it in items_of(now)) and "How the list changed since batch" in page.text():
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        assert now["model_version"] == first["model_version"] and now["n_events"] > first["n_events"]
        # the same document: no reload, no navigation (a reload would drop the marker)
        assert page.evaluate("window.__musicrecMarker") == marker
        assert len(page.navigations()) == navigations
        shot = page.screenshot(Path(browser_settings.data_dir) / "screenshots" / "dashboard-user-live.png")
    assert shot.stat().st_size > 10_000
    print(f"the list of {USER} changed on the open page {seconds:.1f} s into the live run; screenshot {shot}")
