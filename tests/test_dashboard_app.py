"""The dashboard's pages run in-process with Streamlit's AppTest against the real store, filled by the
real pipeline (tests/pipeline.py: demo-corpus audio -> Spark extraction -> two model fits -> simulator ->
Kafka -> the streaming job). Every expectation is read back from the store the pipeline wrote."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from common.reclist import items_of
from dashboard import tables

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def dashboard_env(settings) -> dict[str, str]:
    """The MUSICREC_ variables that point an in-process or served dashboard at `settings`."""
    names = ["mongo_uri", "mongo_db", "kafka_bootstrap", "topic_activity", "dashboard_cache_dir", "audio_dir",
             "dashboard_ttl_s"] + [n for n in type(settings).model_fields if n.startswith("coll_")]
    return {f"MUSICREC_{n.upper()}": str(getattr(settings, n)) for n in names}


@pytest.fixture(scope="module")
def dash_settings(pipeline, tmp_path_factory):
    """The pipeline's settings with a private snapshot folder for the dashboard."""
    return pipeline.settings.model_copy(update={"dashboard_cache_dir": tmp_path_factory.mktemp("dashboard") / "cache"})


@pytest.fixture(scope="module")
def store(pipeline, dash_settings):
    """(database, {collection: documents}) as the pipeline left them."""
    return pipeline.db(), pipeline.documents()


@pytest.fixture(scope="module")
def user(pipeline) -> str:
    """The most active simulated user."""
    return pipeline.users[0]


@pytest.fixture
def env(dash_settings, monkeypatch):
    for key, value in dashboard_env(dash_settings).items():
        monkeypatch.setenv(key, value)
    return dash_settings


def app(page: str | None = None, **query):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_until(at, predicate, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while not predicate(at):
        if time.monotonic() > deadline:
            pytest.fail(f"page never showed {what}")
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


# --- Live ---------------------------------------------------------------------------------------------
def test_live_page_shows_stream_figures_charts_and_feed(pipeline, store, env):
    db, written = store
    # the page shows the last 10 minutes, and on a slow machine the shared pipeline may have streamed
    # longer ago than that: the stream first applies a few fresh events (another user than the User
    # page's test looks at)
    seen = next(e for e in written[env.coll_activity] if e["user_id"] != pipeline.users[0])
    t0 = int(time.time() * 1000)
    pipeline.produce([(seen["user_id"], json.dumps({
        "event_id": f"live-{t0}-{i}", "user_id": seen["user_id"], "track_id": seen["track_id"], "action": "play",
        "event_time": t0 + i, "ms_played": 5000, "session_id": "live-test"})) for i in range(3)])
    pipeline.stream()
    batches = list(db[env.coll_batches].find())
    at = app()
    assert texts(at, "title") == ["Live"]
    assert "store ok" in at.caption[0].value and "Kafka" in at.caption[0].value
    now = datetime.now(timezone.utc)
    in_window = [b for b in batches if (now - b["written_at"]).total_seconds() < 10 * 60 - 5]
    assert abs(int(metric(at, "Batches").replace(",", "")) - len(in_window)) <= 2
    newest = max(batches, key=lambda b: b["written_at"])
    assert metric(at, "Batch duration") == f"{newest['duration_ms']:,.0f} ms"
    assert metric(at, "Latency p50 / p95") == f"{newest['latency_ms_p50']:,.0f} ms / {newest['latency_ms_p95']:,.0f} ms"
    assert len(at.get("arrow_area_chart")) + len(at.get("arrow_line_chart")) + len(at.get("vega_lite_chart")) >= 3
    feed = at.dataframe[0].value
    events = sorted(db[env.coll_activity].find(), key=lambda e: e["event_time"], reverse=True)
    assert events[0]["session_id"] == "live-test"
    assert len(feed) == 50
    assert feed["user"].tolist()[:5] == [e["user_id"] for e in events[:5]]
    assert feed["action"].tolist()[:5] == [e["action"] for e in events[:5]]
    first = next(t for t in written[env.coll_tracks] if t["_id"] == events[0]["track_id"])
    assert feed["track"].iloc[0] in (f"{first['title']} - {first['artist']}", f"#{first['_id']}")
    assert len(batches) >= 3 and newest["rows"] == 3 and newest in in_window  # the streaming job's own batches
    # the window selector narrows the figures to the batches written in the chosen last minutes
    at.radio[0].set_value(1).run()
    now = datetime.now(timezone.utc)
    last_minute = [b for b in batches if (now - b["written_at"]).total_seconds() < 60]
    assert abs(int(metric(at, "Batches (1 min)").replace(",", "")) - len(last_minute)) <= 2


# --- User ---------------------------------------------------------------------------------------------
def test_user_page_shows_recommendations_activity_and_changes(pipeline, store, env, user):
    db, written = store
    coll = db[env.coll_recommendations]
    doc = coll.find_one({"_id": user})
    # the page reads the list without the stream's binary taste state
    from dashboard import store as dashboard_store
    shown = dashboard_store.recommendation(db, env, user)
    assert "state" in doc and "state" not in shown and "applied" not in shown and shown["items"] == doc["items"]
    at = app("views/user.py", user=user)
    assert at.selectbox(key="user_pick").value == user
    table = at.table[0].value
    tracks = {t["_id"]: t for t in written[env.coll_tracks]}
    assert len(items_of(doc)) > 0 and table["title"].tolist() == [tracks[it["track_id"]]["title"] for it in items_of(doc)]
    assert table["genre"].tolist() == [tracks[it["track_id"]]["genre_top"] or "" for it in items_of(doc)]
    for it, reason in zip(items_of(doc), table["reason"]):     # reasons name the user's own track by title
        assert (tracks[it["reason_track_id"]]["title"] in reason) if it.get("reason_track_id") else reason
    assert any("first version this dashboard has seen" in c for c in texts(at, "caption"))
    mine = [e for e in written[env.coll_activity] if e["user_id"] == user]
    activity = at.dataframe[0].value
    assert 0 < len(activity) == min(20, len(mine))

    # the user likes the top three of the list: the streaming job folds the events in and rewrites the
    # document, and the open page shows the new list (the liked tracks, now heard, are gone) and the change
    liked = [it["track_id"] for it in items_of(doc)[:3]]
    t0 = int(time.time() * 1000)
    events = [{"event_id": f"dash-{user}-{i}", "user_id": user, "track_id": tid, "action": "like",
               "event_time": t0 + i, "ms_played": 30_000, "session_id": "dash-test"} for i, tid in enumerate(liked)]
    pipeline.produce([(user, json.dumps(e)) for e in events])
    pipeline.stream()
    new = coll.find_one({"_id": user})
    assert new["batch_id"] != doc["batch_id"] and new["n_events"] == doc["n_events"] + 3
    titles = [tracks[it["track_id"]]["title"] for it in items_of(new)]
    run_until(at, lambda a: a.table[0].value["title"].tolist() == titles, 30, "the new list")
    assert not {it["track_id"] for it in items_of(new)} & set(liked)
    change = next(c for c in texts(at, "caption") if c.startswith("How the list changed since batch"))
    assert f"batch `{doc['batch_id']}`" in change and "dropped" in change
    # every clip of the corpus is on disk: the player offers one of the recommended tracks
    at.run()
    assert at.selectbox(key="clip").value in {it["track_id"] for it in items_of(new)} and len(at.get("audio")) == 1


def test_user_search_filters_the_user_list(pipeline, store, env, user):
    at = app("views/user.py")
    run_until(at, lambda a: set(pipeline.users) <= set(a.selectbox(key="user_pick").options), 30, "every user")
    at.text_input(key="user_search").input(user).run()
    options = at.selectbox(key="user_pick").options
    assert user in options and all(user in o for o in options) and len(options) < len(pipeline.users)
    at.text_input(key="user_search").input("nobody-like-this").run()
    assert at.selectbox(key="user_pick").options == ["nobody-like-this"]
    assert any("No recommendations for nobody\\-like\\-this" in i for i in texts(at, "info"))   # escaped markdown


# --- Catalogue ----------------------------------------------------------------------------------------
def chart_data(at) -> tuple[dict, list]:
    """The map's Vega-Lite spec and its datasets (Arrow tables) as sent to the browser."""
    import json

    import pyarrow as pa

    chart = at.get("vega_lite_chart")[0].proto
    return json.loads(chart.spec), [pa.ipc.open_stream(ds.data.data).read_all().to_pandas() for ds in chart.datasets]


def test_catalogue_page_maps_tracks_and_finds_more_like_this(store, env, user):
    db, written = store
    at = app("views/catalogue.py")
    run_until(at, lambda a: len(a.get("vega_lite_chart")) == 1, 60, "the map")
    n = len(written[env.coll_tracks])
    assert n >= 40 and f"{n} of {n} tracks drawn" in next(c for c in texts(at, "caption") if "tracks drawn" in c)
    # more like this: the neighbour table of the chosen track, nearest first
    target = written[env.coll_tracks][10]
    at.text_input(key="track_search").input(str(target["_id"])).run()
    assert at.selectbox(key="track_pick").value == target["_id"]
    expected = next(n for n in written[env.coll_neighbours] if n["_id"] == target["_id"])["neighbours"]
    table = at.table[0].value
    titles = {t["_id"]: t["title"] for t in written[env.coll_tracks]}
    assert table["title"].tolist() == [titles[e["track_id"]] for e in expected]
    assert table["distance"].tolist() == pytest.approx([e["distance"] for e in expected])
    # marking a user adds their recent tracks, taste and recommendations to the map
    at.text_input(key="catalogue_user").input(user).run()
    caption = next(c for c in texts(at, "caption") if "tracks drawn" in c)
    assert "recommended" in caption and "recent" in caption and "selected" in caption and "neighbour" in caption
    spec, datasets = chart_data(at)
    assert len(spec["layer"]) == 2 and sorted(len(d) for d in datasets)[-1] == n
    marked = next(d for d in datasets if "mark" in d.columns)
    current = db[env.coll_recommendations].find_one({"_id": user})
    assert set(marked.loc[marked["mark"] == "recommended", "track_id"]) == {it["track_id"] for it in items_of(current)}
    assert set(marked.loc[marked["mark"] == "neighbour", "track_id"]) == {e["track_id"] for e in expected}
    assert (marked["mark"] == "taste").sum() <= 1
    heard = {e["track_id"] for e in db[env.coll_activity].find({"user_id": user})}
    assert set(marked.loc[marked["mark"] == "recent", "track_id"]) <= heard


# --- Model --------------------------------------------------------------------------------------------
def test_model_page_shows_current_model_and_history(store, env):
    db, written = store
    models = sorted((m for m in written[env.coll_models] if m["_id"] != "current"), key=lambda m: m["created_at"])
    at = app("views/model.py")
    assert len(models) == 2  # the pipeline fitted twice; the second is current
    newest = models[-1]
    head = tables.headline(newest["metrics"])
    assert any(f"Current model `{newest['version']}`" in m for m in texts(at, "markdown"))
    assert metric(at, "Recall@10") == f"{head['recall']:.3f}"
    assert metric(at, "Genre precision@10") == f"{head['genre_precision']:.3f}"
    assert metric(at, "Coverage") == f"{head['coverage']:.3f}"
    params = at.table[0].value
    shown = dict(zip(params.index, params["value"]))
    expected = {**tables.flat(newest["params"]), **tables.flat(newest.get("tuning") or {}, "tuning.")}
    assert shown == {k: str(v) for k, v in expected.items()} and "bands" in shown
    history = at.dataframe[0].value
    assert history["version"].tolist() == [m["version"] for m in reversed(models)]
    # the pointer decides which version is current
    db[env.coll_models].replace_one({"_id": "current"}, {"_id": "current", "version": models[0]["version"]})
    try:
        run_until(at, lambda a: any(f"Current model `{models[0]['version']}`" in m for m in texts(a, "markdown")),
                  30, "the older current model")
        assert metric(at, "Recall@10") == f"{tables.headline(models[0]['metrics'])['recall']:.3f}"
    finally:
        db[env.coll_models].replace_one({"_id": "current"}, {"_id": "current", "version": newest["version"]})


def test_pages_show_empty_states_on_an_empty_database(env, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICREC_MONGO_DB", f"{env.mongo_db}_empty")
    for page in (None, "views/user.py", "views/model.py"):
        at = app(page)
        assert at.info, page  # one line saying what is missing, no traceback
    at = app("views/catalogue.py")
    run_until(at, lambda a: any("catalogue is empty" in i for i in texts(a, "info")), 30, "the empty catalogue")


# --- a store that goes away and comes back ------------------------------------------------------------
class Proxy:
    """A TCP forwarder to the store that the test can stop and restart on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv) -> None:
        while True:
            try:
                a, _ = srv.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target)
            except OSError:
                a.close()
                continue
            self._conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(x, y) -> None:
        try:
            while data := x.recv(65536):
                y.sendall(data)
        except OSError:
            pass
        finally:
            for s in (x, y):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self._conns = []


def test_store_and_kafka_outages_are_one_line_and_pages_recover(store, env, monkeypatch, user):
    from urllib.parse import urlsplit

    host = urlsplit(env.mongo_uri)
    proxy = Proxy((host.hostname, host.port or 27017))
    proxy.start()
    monkeypatch.setenv("MUSICREC_MONGO_URI", f"mongodb://127.0.0.1:{proxy.port}/")
    try:
        at = app("views/user.py", user=user)
        assert "store ok" in at.caption[0].value and len(at.table) == 1
        proxy.stop()
        run_until(at, lambda a: "store unreachable" in a.caption[0].value, 30, "the store outage")
        assert len(at.table) == 0 and any("store is down" in w for w in texts(at, "warning"))
        assert len(at.caption[0].value.splitlines()) == 1
        for page in ("views/live.py", "views/model.py", "views/user.py"):
            at.switch_page(page).run()
            assert not at.exception and "store unreachable" in at.caption[0].value
        proxy.start()
        run_until(at, lambda a: "store ok" in a.caption[0].value and len(a.table) == 1, 60, "the store again")
    finally:
        proxy.stop()
    # Kafka down: said in the same line, the pages keep working from the store
    monkeypatch.setenv("MUSICREC_MONGO_URI", env.mongo_uri)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("MUSICREC_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed}")
    at = app()
    line = at.caption[0].value
    assert "store ok" in line and "Kafka unreachable" in line and len(line.splitlines()) == 1
    assert at.dataframe and not at.exception


def test_index_setup_step_is_idempotent_and_leaves_missing_collections_to_their_writers(dash_settings):
    from common.store import client

    from dashboard import indexes

    s = dash_settings.model_copy(update={"mongo_db": f"{dash_settings.mongo_db}_idx"})
    c = client(s)
    db = c[s.mongo_db]
    try:
        db[s.coll_activity].insert_one({"_id": "e1", "user_id": "u", "event_time": datetime.now(timezone.utc)})
        done, skipped = indexes.ensure(db, s)
        assert skipped == [s.coll_batches] and s.coll_batches not in db.list_collection_names()
        assert {"event_time_desc", "user_event_time"} <= set(db[s.coll_activity].index_information())
        assert indexes.ensure(db, s) == (done, skipped)  # again: nothing new, no error
        db[s.coll_batches].insert_one({"_id": 1})
        assert indexes.ensure(db, s)[1] == []
        assert "written_at_desc" in db[s.coll_batches].index_information()
    finally:
        c.drop_database(s.mongo_db)
        c.close()


WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "createIndexes", "dropIndexes", "drop",
                  "dropDatabase", "create", "collMod", "renameCollection", "bulkWrite"}


def test_the_dashboard_never_writes_to_the_store(store, env, monkeypatch, user):
    """Every command the pages and their background snapshots send is recorded: none is a write."""
    from pymongo import monitoring

    class Recorder(monitoring.CommandListener):
        def __init__(self):
            self.commands: list[str] = []
            self.active = True

        def started(self, event):
            if self.active:
                self.commands.append(event.command_name)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    recorder = Recorder()
    monitoring.register(recorder)  # applies to clients created from now on: a new URI makes new ones
    monkeypatch.setenv("MUSICREC_MONGO_URI", f"{env.mongo_uri.rstrip('/')}/?appname=readonly-check")
    try:
        at = app(user=user)
        for page in ("views/user.py", "views/catalogue.py", "views/model.py", "views/live.py"):
            at.switch_page(page).run()
            assert not at.exception
        at.switch_page("views/catalogue.py").run()
        run_until(at, lambda a: len(a.get("vega_lite_chart")) == 1, 60, "the map")
        at.text_input(key="track_search").input("a").run()
    finally:
        recorder.active = False  # pymongo cannot unregister a listener; this one stops recording
    assert {"find", "buildInfo"} <= set(recorder.commands)
    assert sorted(set(recorder.commands) & WRITE_COMMANDS) == []
