"""Headless Chromium opens the served dashboard and watches a user's recommendations change without a
reload while the store is being written, as the streaming job does; a screenshot is saved under
data/screenshots/ (ignored by git).

`advance_recommendations` is the writer: today it replaces the user's document the way the streaming
job does; with the pipeline in place the lead can run the simulator and the streaming job instead."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from dashboard import synthetic
from tests.browser.cdp import Browser
from tests.test_dashboard_app import dashboard_env, fill_dashboard_store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER = synthetic.user_id(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_settings(settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    return settings.model_copy(update={"mongo_db": f"{settings.mongo_db}_browser", "dashboard_cache_dir": tmp / "cache",
                                       "audio_dir": tmp / "audio", "dashboard_port": free_port()})


@pytest.fixture(scope="module")
def filled(browser_settings):
    from common.store import client

    c = client(browser_settings)
    try:
        c.admin.command("ping")
    except Exception as exc:
        pytest.fail(f"store not reachable at {browser_settings.mongo_uri}: {exc}. Run `make up`.")
    db = c[browser_settings.mongo_db]
    written = fill_dashboard_store(browser_settings, db)
    yield db, written
    c.drop_database(browser_settings.mongo_db)
    c.close()


@pytest.fixture(scope="module")
def served(browser_settings, filled, tmp_path_factory):
    """`streamlit run dashboard/app.py` on a free port, pointed at the test database."""
    port = browser_settings.dashboard_port
    env = {**os.environ, **dashboard_env(browser_settings), "PYTHONPATH": str(ROOT)}
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


def advance_recommendations(db, settings, written, user: str, batch_id: int, tag: str) -> list[str]:
    """Replace the user's recommendations with a new list, as the streaming job's upsert does; returns
    the titles the page should show."""
    tracks = written[settings.coll_tracks]
    pick = tracks[batch_id % 7::7][:10]
    items = [{"track_id": t["_id"], "title": f"{tag} {i + 1}", "artist": t["artist"], "genre_top": t["genre_top"],
              "score": round(1.0 - i / 20, 3), "reason": f"because you liked {tracks[0]['title']}",
              "reason_track_id": tracks[0]["_id"]} for i, t in enumerate(pick)]
    db[settings.coll_recommendations].replace_one({"_id": user}, synthetic.recommendation_doc(user, items, batch_id),
                                                  upsert=True)
    return [it["title"] for it in items]


def table_text(page) -> str:
    """The text of the recommendations table (st.table renders an HTML table in the DOM)."""
    return page.evaluate("Array.from(document.querySelectorAll('[data-testid=\"stTable\"]'))"
                         ".map(e => e.innerText).join('\\n')") or ""


def test_recommendations_change_on_the_open_page_without_a_reload(served, filled, browser_settings):
    db, written = filled
    run = uuid.uuid4().hex[:6]
    first = advance_recommendations(db, browser_settings, written, USER, 10, f"Alpha-{run}")
    with Browser() as browser:
        page = browser.new_page(f"{served}/user?user={USER}")
        page.wait_for(lambda p: all(t in table_text(p) for t in first), 90, what="the first list")
        marker = uuid.uuid4().hex
        page.evaluate(f"window.__musicrecMarker = '{marker}'")
        navigations = len(page.navigations())
        second = advance_recommendations(db, browser_settings, written, USER, 11, f"Beta-{run}")
        started = time.monotonic()
        page.wait_for(lambda p: second[0] in table_text(p), 60, what="the second list")
        seconds = time.monotonic() - started
        shown = table_text(page)
        assert all(title in shown for title in second) and not any(t.split()[0] in shown for t in first)
        assert "How the list changed since batch 10: 10 new, 10 dropped" in page.text()
        # the same document: no reload, no navigation (a reload would drop the marker)
        assert page.evaluate("window.__musicrecMarker") == marker
        assert len(page.navigations()) == navigations
        shot = page.screenshot(Path(browser_settings.data_dir) / "screenshots" / "dashboard-user-live.png")
    assert shot.stat().st_size > 10_000
    print(f"recommendations changed on the open page {seconds:.1f} s after the store write; screenshot {shot}")
