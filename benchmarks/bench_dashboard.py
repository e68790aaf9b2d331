"""How fast the dashboard answers with a big store: 100k tracks (519 synthetic features), 10k users'
recommendations, the neighbour table, an activity feed and micro-batch progress, on the configured store
(FerretDB on PostgreSQL here). Prints three tables:

1. the data each page reads, timed at the store edge (no Streamlit cache), against a naive baseline;
2. the catalogue snapshot: cold build (full scan + PCA) against a warm restart (read from disk);
3. each page's full script run in Streamlit's AppTest with its query cache cleared (what a refresh
   costs; background readers warm, as in a running dashboard), including a user not shown before, and,
   unless --no-browser, the time a served page takes in headless Chromium from navigation to its content,
   including a user the dashboard has not shown before (the first read of their recommendations).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dashboard.py [--tracks 100000] [--users 10000] [--runs 5]
        [--refill] [--no-browser] [--skip-cold]

The catalogue is generated (clustered synthetic vectors, benchmarks/synthetic.py) and kept in the
database `musicrec_bench_dashboard` between runs (--refill rebuilds it); activity and batches are
rewritten on every run so the "last minutes" windows hold data.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # no "missing ScriptRunContext" noise from AppTest

from common.reclist import items_of  # noqa: E402
from conf import get_settings  # noqa: E402
from dashboard import indexes, listdiff, metrics, store, synthetic, tables, trackmap  # noqa: E402

PAGES = [("Live", None), ("User", "views/user.py"), ("Catalogue", "views/catalogue.py"), ("Model", "views/model.py")]
TARGET_S = 2.0


def timed(fn, runs: int) -> tuple[list[float], object]:
    out, value = [], None
    for _ in range(runs):
        t = time.perf_counter()
        value = fn()
        out.append(time.perf_counter() - t)
    return out, value


def fmt(times: list[float]) -> tuple[str, str]:
    med = statistics.median(times)
    worst = max(times)
    return f"{med * 1000:,.0f}", f"{worst * 1000:,.0f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


@contextmanager
def step(text: str):
    t = time.perf_counter()
    print(f"[bench] {text} …", flush=True)
    yield
    print(f"[bench] {text}: {time.perf_counter() - t:,.1f} s", flush=True)


def fill(db, s, args) -> None:
    from tqdm import tqdm

    ferret = store.store_health(db.client, s).ferretdb
    have = {c: store.count(db, c, ferret) for c in (s.coll_tracks, s.coll_recommendations, s.coll_neighbours)}
    light = []  # tracks without features: what the other generators need
    if args.refill or have[s.coll_tracks] != args.tracks or have[s.coll_neighbours] != args.tracks \
            or have[s.coll_recommendations] != args.users:
        db.client.drop_database(s.mongo_db)
        with tqdm(total=args.tracks, unit="track", desc="tracks") as bar:
            for docs in synthetic.track_chunks(args.tracks):
                db[s.coll_tracks].insert_many(docs, ordered=False)
                light += [{k: d[k] for k in ("_id", "title", "artist", "genre_top")} for d in docs]
                bar.update(len(docs))
        models = synthetic.model_docs(3, catalogue_size=args.tracks)
        db[s.coll_models].insert_many(models)
        for name, docs in ((s.coll_neighbours, synthetic.neighbour_docs(light, version=models[-2]["version"])),
                           (s.coll_recommendations, synthetic.recommendation_docs(light, args.users))):
            with tqdm(total=len(docs), unit="doc", desc=name) as bar:
                for i in range(0, len(docs), 2000):
                    db[name].insert_many(docs[i:i + 2000], ordered=False)
                    bar.update(len(docs[i:i + 2000]))
    else:
        light = [{"_id": i + 2, "title": f"#{i + 2}", "artist": "", "genre_top": ""} for i in range(args.tracks)]
    # the live collections are rewritten every run, so "the last 10 minutes" holds data
    db[s.coll_activity].drop()
    db[s.coll_batches].drop()
    synthetic._insert(db[s.coll_activity], synthetic.activity_docs(light, args.users, args.events), chunk=2000)
    synthetic._insert(db[s.coll_batches], synthetic.batch_docs(args.batches, minutes=60), chunk=2000)
    indexes.ensure(db, s)  # the dashboard's setup step (python -m dashboard.indexes)


def data_rows(db, s, args, ferret: bool) -> list[list[str]]:
    user = synthetic.user_id(args.users - 1)  # the last one written: the worst case of a scan
    now = datetime.now(timezone.utc)
    rows = []

    def add(page, what, fn, base_what="", base_fn=None, runs=args.runs):
        times, value = timed(fn, runs)
        med, worst = fmt(times)
        if base_fn is not None:
            btimes, _ = timed(base_fn, max(1, min(runs, 3)))
            bmed, _ = fmt(btimes)
            ratio = f"{statistics.median(btimes) / statistics.median(times):,.1f}x"
        else:
            bmed, ratio = "", ""
        rows.append([page, what, med, worst, base_what, bmed, ratio])
        return value

    batches = add("Live", "stream_batches of the last 10 min", lambda: store.batches_since(db, s, metrics.since(now, 10)),
                  "every batch (find {})", lambda: list(db[s.coll_batches].find({})))
    add("Live", "shape: frame, bins, summary", lambda: metrics.summary(
        metrics.last_minutes(metrics.batches_frame(batches), now, 10), now) and metrics.events_per_second(
        metrics.batches_frame(batches), now, 10, 10))
    events = add("Live", "newest 500 events", lambda: store.latest_events(db, s, 500))
    add("User", "recommendations by _id (last user)", lambda: store.recommendation(db, s, user),
        "by field user_id", lambda: db[s.coll_recommendations].find_one({"user_id": user}))
    add("User", "user's events (find {user_id} sorted)", lambda: store.user_events(db, s, user, 20))
    add("Catalogue", "a track's neighbours by _id", lambda: store.neighbours_of(db, s, args.tracks // 2))
    doc = store.recommendation(db, s, user)
    add("User", "rows + list diff", lambda: tables.rec_rows(items_of(doc), listdiff.diff_items(items_of(doc)[::-1], items_of(doc))))
    add("Model", "models + pointer", lambda: store.models(db, s))
    add("(background)", "user list (all recommendations)", lambda: store.user_list(db, s), runs=1)
    return rows, events


def snapshot_rows(db, s, args, ferret: bool) -> tuple[list[list[str]], str]:
    from dashboard import data as data_mod  # noqa: F401  (Streamlit-free functions only)
    from dashboard.data import load_track_map, snapshot_key, snapshot_path

    rows = []
    key = snapshot_key(db, s, s.coll_tracks, ferret)
    path = snapshot_path(s, "catalogue", key, trackmap.SUFFIX)
    if not args.skip_cold or not path.exists():
        path.unlink(missing_ok=True)
        with step(f"cold catalogue snapshot: full scan of {args.tracks:,} tracks + PCA"):
            t = time.perf_counter()
            cat = load_track_map(s, db.client, None, lambda n: None)
            cold = time.perf_counter() - t
        rows.append(["catalogue", "cold: scan the store + PCA + save", f"{cold:,.1f}", f"{len(cat):,} tracks"])
    times, cat = timed(lambda: load_track_map(s, db.client, None, lambda n: None), 3)
    rows.append(["catalogue", "warm restart: key check + read from disk", f"{statistics.median(times):,.2f}",
                 f"{len(cat):,} tracks"])
    times, _ = timed(lambda: load_track_map(s, db.client, cat, lambda n: None), 3)
    rows.append(["catalogue", "check every 30 s: model version", f"{statistics.median(times):,.2f}", ""])
    times, _ = timed(lambda: snapshot_key(db, s, s.coll_tracks, ferret), 3)
    rows.append(["catalogue", "check every 10 min: + collStats count", f"{statistics.median(times):,.2f}", ""])
    times, _ = timed(lambda: cat.search("4242", 100), 5)
    rows.append(["catalogue", "search '4242' in memory (title, artist, id)", f"{statistics.median(times):,.3f}", ""])
    return rows, key


def apptest_rows(s, args) -> list[list[str]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import data

    with step("background snapshots for the pages (catalogue, users, feed, batches)"):
        for kind in ("catalogue", "users", "feed", "batches"):
            snap = data.snapshot(kind, wait_s=1800)
            if snap.value is None:
                raise SystemExit(f"bench_dashboard: {kind} snapshot failed: {snap.error}")
    app = str(ROOT / "dashboard" / "app.py")
    warm = AppTest.from_file(app, default_timeout=120)
    warm.run()  # imports and first-run costs, not measured
    rows = []
    fresh = iter(synthetic.user_id(args.users - 3 - args.runs - i) for i in range(args.runs))
    for name, page in PAGES + [("User, first view", "views/user.py")]:
        times = []
        for _ in range(args.runs):
            at = AppTest.from_file(app, default_timeout=120)
            at.query_params["user"] = next(fresh) if name == "User, first view" else synthetic.user_id(1)
            if page:
                at.run()
                at.switch_page(page)
            st.cache_data.clear()  # every query goes to the store, as after a TTL expiry
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise SystemExit(f"bench_dashboard: {name} page raised: {at.exception[0].value}")
        med, worst = fmt(times)
        rows.append([name, "AppTest script run, query cache cleared", med, worst,
                     "yes" if max(times) < TARGET_S else "NO"])
    return rows


def browser_rows(s, args, env: dict) -> list[list[str]]:
    from stack.browser import Browser

    port = s.dashboard_port
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench_dashboard: streamlit did not start")
                time.sleep(0.3)
        user = synthetic.user_id(1)
        fresh = iter(synthetic.user_id(args.users - 2 - i) for i in range(args.runs))
        checks = {"Live": (lambda: "", "Newest activity"),
                  "User": (lambda: f"user?user={user}", "recommendations ·"),
                  "User, first view": (lambda: f"user?user={next(fresh)}", "recommendations ·"),
                  "Catalogue": (lambda: "catalogue", "tracks drawn"), "Model": (lambda: "model", "History")}
        with Browser(timeout_s=120) as browser:
            page = browser.new_page(f"{url}/")  # server warm-up: snapshots, imports
            page.wait_for(lambda p: "Newest activity" in p.text(), 600, what="the first page")
            page.wait_for(lambda p: True, 1)
            page.navigate(f"{url}/user?user={user}")
            page.wait_for(lambda p: "recommendations ·" in p.text(), 120, what="the user page")
            for name, (path, marker) in checks.items():
                times = []
                for _ in range(args.runs):
                    page.navigate("about:blank")
                    browser.pump(0.3)
                    t = time.perf_counter()
                    page.navigate(f"{url}/{path()}")
                    page.wait_for(lambda p: marker in p.text(), 120, poll_s=0.02, what=f"{name}: {marker!r}")
                    times.append(time.perf_counter() - t)
                med, worst = fmt(times)
                rows.append([name, f"Chromium: navigate -> {marker!r} shown", med, worst,
                             "yes" if max(times) < TARGET_S else "NO"])
            page.navigate(f"{url}/catalogue?user={user}")
            page.wait_for(lambda p: "tracks drawn" in p.text(), 120, what="the map")
            browser.pump(2)
            page.screenshot(Path(s.data_dir) / "screenshots" / "dashboard-catalogue-bench.png")
    finally:
        proc.terminate()
        proc.wait(20)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="bench_dashboard.py [--tracks N] [--users N] [--runs N] [--refill] "
                                           "[--no-browser] [--skip-cold]")
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=2_400, help="micro-batches over the last hour")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", default="musicrec_bench_dashboard")
    parser.add_argument("--refill", action="store_true", help="drop and regenerate the benchmark database")
    parser.add_argument("--skip-cold", action="store_true", help="reuse snapshots on disk (no cold scan)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)

    base = get_settings()
    s = base.model_copy(update={"mongo_db": args.db, "dashboard_cache_dir": Path(base.data_dir) / "cache" / "dashboard-bench",
                                "dashboard_port": base.dashboard_port + 17})
    env = {"MUSICREC_MONGO_DB": s.mongo_db, "MUSICREC_DASHBOARD_CACHE_DIR": str(s.dashboard_cache_dir)}
    os.environ.update(env)
    client = store.client(s, timeout_ms=3000)
    health = store.store_health(client, s)
    if not health.ok:
        print(f"bench_dashboard: {health.text}; run `make up`", file=sys.stderr)
        return 1
    db = client[s.mongo_db]
    with step(f"store: {args.tracks:,} tracks, {args.users:,} users, {args.events:,} events, {args.batches:,} batches"):
        fill(db, s, args)

    data, _ = data_rows(db, s, args, health.ferretdb)
    snaps, _ = snapshot_rows(db, s, args, health.ferretdb)
    pages = apptest_rows(s, args)
    if not args.no_browser:
        pages += browser_rows(s, args, env)

    print(f"\nDashboard benchmark on {health.text}; {args.tracks:,} tracks x {synthetic.FEATURE_DIM} features "
          f"(synthetic, clustered), {args.users:,} users, {args.events:,} events, {args.batches:,} batches; "
          f"{args.runs} runs each; times in ms unless noted")
    table("1. Data each page reads (store edge, no cache)",
          ["page", "read", "median", "max", "baseline", "baseline median", "speed-up"], data)
    table("2. Catalogue snapshot (seconds)", ["snapshot", "what", "seconds", "size"], snaps)
    table(f"3. Page answers (target < {TARGET_S:.0f} s)", ["page", "measured", "median", "max", "under target"], pages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
