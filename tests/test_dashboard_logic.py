"""The dashboard's pure logic: times, stream metrics, list diffs, the 2-D map, snapshots, table rows,
the background refresher and fresh settings. No services needed."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from common.catalogue import Catalogue
from dashboard import config, listdiff, metrics, projection, synthetic, tables, trackmap
from dashboard.background import Refresher
from dashboard.timefmt import age_text, to_utc

UTC = timezone.utc
NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


# --- times -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (datetime(2026, 1, 2, 12, 0), NOW),                                   # naive = UTC (pymongo)
    (datetime(2026, 1, 2, 13, 0, tzinfo=timezone(timedelta(hours=1))), NOW),
    ("2026-01-02T12:00:00Z", NOW), ("2026-01-02T12:00:00+00:00", NOW),
    (NOW.timestamp(), NOW), (NOW.timestamp() * 1000, NOW), (str(int(NOW.timestamp() * 1000)), NOW),
])
def test_to_utc_reads_every_time_shape(value, expected):
    assert to_utc(value) == expected


@pytest.mark.parametrize("value", [None, "", "yesterday", float("nan"), True, [1], {"a": 1}, 1e300])
def test_to_utc_is_none_for_what_is_not_a_time(value):
    assert to_utc(value) is None


def test_age_text():
    assert [age_text(s) for s in (None, 3, 200, 3 * 3600, 3 * 86400)] == ["never", "3 s", "3 min", "3 h", "3 d"]


# --- stream metrics --------------------------------------------------------------------------------------
def batch(i, seconds_ago, rows=100, **kw):
    doc = {"_id": i, "rows": rows, "duration_ms": 100.0 + i, "latency_ms_p50": 10.0 * i, "latency_ms_p95": 20.0 * i,
           "latency_ms_p99": 30.0 * i, "written_at": (NOW - timedelta(seconds=seconds_ago)).replace(tzinfo=None)}
    doc.update(kw)
    return doc


def test_batches_frame_sorts_and_survives_bad_documents():
    docs = [batch(2, 10), batch(1, 20), {"_id": 3, "rows": 5}, batch(4, 5, rows="many"), {"written_at": "garbage"}]
    df = metrics.batches_frame(docs)
    assert df["batch_id"].tolist() == [1, 2, 4]
    assert np.isnan(df["rows"].iloc[2]) and df["written_at"].dt.tz is not None
    empty = metrics.batches_frame([])
    assert empty.empty and list(empty.columns) == list(metrics.COLUMNS)


def test_events_per_second_bins_rows_and_fills_gaps():
    # 10 s bins over the last minute; 300 rows 5 s ago, 100 rows 25 s ago, nothing else (one batch is too old)
    docs = [batch(1, 5, rows=300), batch(2, 25, rows=100), batch(3, 3600, rows=999)]
    eps = metrics.events_per_second(metrics.batches_frame(docs), NOW, minutes=1, bin_s=10)
    assert len(eps) == 6 and eps["time"].is_monotonic_increasing
    assert eps["events_per_s"].iloc[-1] == pytest.approx(300 / 10)  # NOW is a bin edge: the last bin is full
    assert eps["events_per_s"].iloc[-3] == pytest.approx(100 / 10)
    assert eps["events_per_s"].sum() == pytest.approx(40.0)
    with pytest.raises(ValueError):
        metrics.events_per_second(metrics.batches_frame(docs), NOW, 1, 0)


def test_summary_of_a_window():
    frame = metrics.last_minutes(metrics.batches_frame([batch(i, 100 - i * 10) for i in range(1, 10)]
                                                     + [batch(99, 7200)]), NOW, 10)
    head = metrics.summary(frame, NOW, recent_s=60)
    assert head["batches"] == 9 and head["events"] == 900
    assert head["events_per_s_recent"] == pytest.approx(500 / 60)    # batches 5..9 are within the last 60 s
    assert head["last_batch_id"] == 9 and head["last_batch_age_s"] == pytest.approx(10)
    assert head["last_p95_ms"] == 180.0 and head["worst_p95_ms"] == 180.0
    assert head["median_duration_ms"] == pytest.approx(105.0)
    empty = metrics.summary(metrics.batches_frame([]), NOW)
    assert empty["batches"] == 0 and empty["last_batch_age_s"] is None


def test_percentile_ignores_missing_values():
    assert metrics.percentile([1, None, float("nan"), 3], 50) == 2.0
    assert metrics.percentile([], 95) is None


def test_since_is_naive_utc():
    assert metrics.since(NOW, 10) == datetime(2026, 1, 2, 11, 50)


# --- list diff ---------------------------------------------------------------------------------------------
def items(*ids):
    return [{"track_id": t, "title": f"T{t}"} for t in ids]


def test_diff_items_new_moved_dropped():
    change = listdiff.diff_items(items(1, 2, 3, 4), items(3, 1, 5, 2))
    by = change.by_track()
    assert (by[3]["change"], by[3]["moved"]) == (listdiff.UP, 2)
    assert (by[1]["change"], by[1]["moved"]) == (listdiff.DOWN, -1)
    assert by[5]["change"] == listdiff.NEW and by[5]["prev_rank"] is None
    assert by[2]["change"] == listdiff.DOWN and by[2]["moved"] == -2
    assert change.removed == [{"track_id": 4, "prev_rank": 4}]
    assert change.text() == "1 new, 3 moved, 1 dropped"
    assert [listdiff.change_label(by[t]) for t in (3, 1, 5)] == ["▲ 2", "▼ 1", "new"]


def test_diff_items_unchanged_and_first():
    assert listdiff.diff_items(items(1, 2), items(1, 2)).text() == "unchanged"
    first = listdiff.diff_items(None, items(7, 8))
    assert first.added == 2 and not first.removed
    assert listdiff.diff_items(items(1), [{"title": "no id"}, None, {"track_id": 1}]).rows[0]["track_id"] == 1


def test_history_keeps_the_version_before_the_current():
    h = listdiff.History(max_users=2)
    assert h.observe("u", 1, items(1)) is None
    assert h.observe("u", 1, items(1)) is None          # the same version again: nothing before it yet
    assert h.observe("u", 2, items(2)) == (1, items(1))
    assert h.observe("u", 2, items(2)) == (1, items(1))  # stays until a newer version arrives
    assert h.observe("u", 3, items(3)) == (2, items(2))
    h.observe("v", 1, items(1))
    h.observe("w", 1, items(1))                         # evicts u, the least recently seen
    assert h.observe("u", 4, items(4)) is None


# --- map -------------------------------------------------------------------------------------------------
def test_pca_2d_finds_the_dominant_direction_whatever_the_feature_scales():
    rng = np.random.default_rng(0)
    n = 2000
    t = rng.normal(size=n) * 5
    x = np.column_stack([t + rng.normal(size=n) * 0.1, t + rng.normal(size=n) * 0.1, rng.normal(size=n),
                         np.full(n, 7.0)])
    x = x * np.array([1.0, 1000.0, 1.0, 1.0]) + np.array([0, 50, 3, 0])  # scales must not matter (z-score)
    coords, ratio = projection.pca_2d(x)
    assert coords.shape == (n, 2) and coords.dtype == np.float32
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.99
    assert ratio[0] > 0.6 and ratio.sum() <= 1.0 + 1e-9
    # fitting on a subset gives (almost) the same axes
    sub, _ = projection.pca_2d(x, max_rows=500)
    assert abs(np.corrcoef(sub[:, 0], coords[:, 0])[0, 1]) > 0.99


def test_pca_2d_edge_cases():
    assert projection.pca_2d(np.zeros((0, 5)))[0].shape == (0, 2)
    one, _ = projection.pca_2d(np.ones((1, 5)))
    assert one.shape == (1, 2) and np.all(one == 0)
    with pytest.raises(ValueError):
        projection.pca_2d(np.zeros(5))


def test_sample_indices_keeps_marked_points():
    idx = projection.sample_indices(10_000, 100, keep=np.array([5, 9999, 20_000]))
    assert 100 <= len(idx) <= 102 and {5, 9999} <= set(idx.tolist()) and np.all(np.diff(idx) > 0)
    assert projection.sample_indices(10, 100).tolist() == list(range(10))


def test_track_map_from_contract_documents(tmp_path):
    docs = synthetic.track_docs(300, seed=1)
    docs[5]["features"] = None                      # no vector: kept, not drawn
    docs[6]["features"] = [1.0, 2.0]                # wrong length: kept, not drawn
    docs.append({"_id": "not-an-int", "title": "x"})  # skipped
    docs.append({**docs[9], "title": "Renamed"})    # a repeated _id: the last document counts
    seen = []
    tmap = trackmap.build_track_map(iter(docs), key="k1", progress=seen.append)
    cat = tmap.tracks
    assert len(tmap) == 300 and tmap.n_features == synthetic.FEATURE_DIM and seen[-1] == 302
    assert np.all(np.diff(cat.ids) > 0) and cat.title[cat.row(docs[9]["_id"])] == "Renamed"
    assert np.isnan(tmap.x[cat.row(docs[5]["_id"])]) and np.isfinite(tmap.x).sum() == 298
    assert tmap.path_of(docs[0]["_id"]) == docs[0]["path"] and tmap.path_of(10**9) == ""
    # same-genre tracks sit together: genre explains most of the map's spread (synthetic clusters)
    drawn = tmap.points(np.flatnonzero(np.isfinite(tmap.x)))
    assert list(drawn.columns) == ["track_id", "title", "artist", "genre_top", "x", "y"]
    within = drawn.groupby("genre_top")[["x", "y"]].var().mean().sum()
    total = drawn[["x", "y"]].var().sum()
    assert within < 0.5 * total
    assert tmap.points_of([docs[0]["_id"], 10**9, "7", None, 10**30])["track_id"].tolist() == [docs[0]["_id"], 7]
    assert tmap.label(docs[0]["_id"]) == f"{docs[0]['title']} - {docs[0]['artist']}" and tmap.label(10**9) == "#1000000000"
    hits = tmap.search("synthetic 1", limit=5)
    assert len(hits) == 5 and all(str(cat.title[cat.row(t)]).lower().startswith("synthetic 1") for t in hits)
    q = docs[7]["artist"].lower()
    by_artist = tmap.search(q.upper(), limit=500)
    assert set(by_artist.tolist()) == {d["_id"] for d in docs[:300] if q in d["artist"].lower() or q in d["title"].lower()}
    assert docs[7]["_id"] in set(by_artist.tolist())
    assert tmap.search(str(docs[3]["_id"]))[0] in {d["_id"] for d in docs}
    assert tmap.search("")[:3].tolist() == cat.ids[:3].tolist() and len(tmap.search("\u00b2")) == 0
    path = tmap.save(tmp_path / "c.npz")
    path = tmap.save(path)                          # a snapshot file is rewritten, not kept
    back = trackmap.TrackMap.load(path)
    assert back.key == "k1" and back.n_features == tmap.n_features and np.allclose(back.explained, tmap.explained)
    assert back.points(range(300)).equals(tmap.points(range(300))) and back.path.tolist() == tmap.path.tolist()
    empty = trackmap.build_track_map(iter([]))
    assert len(empty) == 0 and len(trackmap.TrackMap.load(empty.save(tmp_path / "e.npz"))) == 0


def test_feed_rows_newest_first_with_labels():
    events = [{"user_id": "u1", "track_id": 2, "action": "play", "event_time": "2026-01-02T12:00:00Z", "ms_played": 1000},
              {"user_id": 7, "track_id": 3, "action": "like", "event_time": NOW + timedelta(seconds=5),
               "title": "Own title", "artist": "Own artist"},
              {"user_id": "u2", "track_id": 4, "action": "skip"},      # no time: last
              "not a document"]
    df = tables.feed_rows(events, label=lambda t: f"label {t}")
    assert df["user"].tolist() == ["7", "u1", "u2"]
    assert df["track"].tolist() == ["Own title - Own artist", "label 2", "label 4"]
    assert df["ms_played"].iloc[1] == 1000 and tables.feed_rows([]).columns.tolist() == tables.FEED_COLUMNS
    assert tables.recent_users(events) == ["7", "u1", "u2"]


def test_rec_rows_with_change_markers():
    prev, cur = items(1, 2), [{"track_id": 2, "score": "0.9", "reason": "similar", "reason_track_id": 1},
                              {"track_id": 9, "reason": "popular_genre", "genre": "Jazz"}, {"track_id": 1, "score": True}]
    known = Catalogue.from_documents([1, 2], None, [{"_id": 1, "title": "One", "artist": "B", "genre_top": "Folk"},
                                                    {"_id": 2, "title": "Two", "artist": "A", "genre_top": "Rock"}])
    df = tables.rec_rows(cur, listdiff.diff_items(prev, cur), tracks=known)
    assert df["rank"].tolist() == [1, 2, 3] and df["change"].tolist() == ["▲ 1", "new", "▼ 2"]
    assert df["title"].tolist() == ["Two", "#9", "One"] and df["score"].iloc[0] == 0.9 and np.isnan(df["score"].iloc[2])
    assert df["artist"].tolist() == ["A", "", "B"] and df["genre"].tolist() == ["Rock", "Jazz", "Folk"]
    assert df["reason"].tolist()[:2] == ["because you played \u201cOne by B\u201d", "popular in Jazz"]
    named = tables.rec_rows(cur, tracks=known, label=lambda t: f"track {t}")
    assert named["reason"].iloc[0] == "because you played \u201ctrack 1\u201d" and named["change"].tolist() == [""] * 3
    old = tables.rec_rows([{"track_id": 2, "title": "Own", "reason": "because you liked One"}])   # an older document
    assert old["title"].tolist() == ["Own"] and old["reason"].tolist() == ["because you liked One"]
    assert tables.rec_rows(None).empty


def test_model_rows_and_taste():
    docs = synthetic.model_docs(3)
    docs.append({"_id": "broken", "metrics": "n/a"})
    df = tables.model_rows(docs)
    assert df["version"].tolist()[:3] == ["v003", "v002", "v001"] and "current" not in df["version"].tolist()
    assert df["recall"].tolist()[:3] == pytest.approx([0.96, 0.94, 0.92]) and df["k"].iloc[0] == 10
    # the model job's names: recall_at_k with k
    job = tables.headline({"k": 5, "recall_at_k": 0.97, "genre_precision_at_k": 0.5, "coverage": 0.8})
    assert job == {"recall": 0.97, "genre_precision": 0.5, "coverage": 0.8, "k": 5}
    assert tables.headline(None) == {"recall": None, "genre_precision": None, "coverage": None, "k": 10}
    assert tables.flat({"a": {"b": 1}, "c": [1, 2]}) == {"a.b": 1, "c": "1, 2"}
    w = tables.taste_weights([{"track_id": 1, "action": "like"}, {"track_id": 1, "action": "skip"},
                              {"track_id": 2, "action": "complete"}, {"action": "like"}])
    assert w == {1: 0.0, 2: 1.0}


# --- background refresher ----------------------------------------------------------------------------
def test_refresher_loads_in_background_and_reports_errors():
    calls = []
    gate = threading.Event()

    def load(previous, progress):
        calls.append(previous)
        progress(len(calls))
        if len(calls) == 2:
            raise ConnectionError("store down\nmore detail")
        gate.wait(5)
        return len(calls)

    r = Refresher("t", load, interval_s=0.2, idle_s=60, retry_s=0.1)
    first = r.get(wait_s=0.05)
    assert first.value is None                       # does not block past wait_s
    gate.set()
    assert r.get(wait_s=5).value == 1
    deadline = time.monotonic() + 5
    while r.get().error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    snap = r.get()
    assert snap.error == "store down" and snap.value == 1   # the last value is kept
    while r.get().value != 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.get().value == 3 and r.get().error is None and calls[:2] == [None, 1]


def test_refresher_stays_idle_when_nobody_reads():
    calls = []
    r = Refresher("idle", lambda prev, progress: calls.append(1) or len(calls), interval_s=0.05, idle_s=0.2)
    assert r.get(wait_s=2).value == 1
    time.sleep(0.6)
    n = len(calls)
    time.sleep(0.5)
    assert len(calls) == n                           # no loads while idle


def test_refresher_spaces_out_slow_loads():
    starts = []

    def load(prev, progress):
        starts.append(time.monotonic())
        time.sleep(0.2)
        return len(starts)

    r = Refresher("slow", load, interval_s=0.01, idle_s=60, spacing=3.0)
    deadline = time.monotonic() + 3
    while len(starts) < 3 and time.monotonic() < deadline:
        r.get()
        time.sleep(0.02)
    gaps = np.diff(starts)
    assert len(gaps) >= 2 and gaps.min() >= 0.55  # 3 x 0.2 s between starts, not 0.2 s + 0.01 s


def test_settings_are_read_fresh_from_the_environment(monkeypatch):
    monkeypatch.setenv("MUSICREC_MONGO_DB", "first_db")
    assert config.current().mongo_db == "first_db"
    monkeypatch.setenv("MUSICREC_MONGO_DB", "second_db")
    assert config.current().mongo_db == "second_db"
    assert config.current() is config.current()     # cached while the environment stays the same
