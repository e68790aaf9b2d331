"""What the pages read, cached: one MongoDB client per URI (`st.cache_resource`); the reads by key (a
user's recommendations and events, a track's neighbours, the models) straight from the store with a TTL
of `dashboard_ttl_s` (`st.cache_data`): each is one indexed find. The reads whose cost grows with a
collection run in background readers shared by all sessions: the newest events and the last hour of
micro-batches every `dashboard_ttl_s`, the catalogue (with its 2-D map) and the user list when the store
changes, so a page never waits for a scan. Every accessor returns an empty value instead of raising when
the store is down; the status bar says so in one line."""
from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from conf import Settings
from common.catalogue import Catalogue
from dashboard import background, config, listdiff, metrics, store, trackmap
from dashboard.timefmt import to_utc

TTL = float(config.current().dashboard_ttl_s)
FEED_WINDOW = 500          # newest events read for the feed and the recent-user list
BATCH_WINDOW_MIN = 60      # minutes of micro-batches read for the Live page (its longest window)
LIVE_WAIT_S = 1.5          # how long a page waits for the first feed/batches read of a new process
LIVE_IDLE_S = 60.0         # the live reads stop this long after the last page asked for them
USER_EVENTS = 20
CATALOGUE_CHECK_S = 30.0   # how often a background snapshot checks the current model version
COUNT_CHECK_S = 600.0      # how often it also counts the collection (a re-extraction without a new model)
USERS_REFRESH_S = 120.0   # the full user list (the recently active ones come with the feed)


def settings() -> Settings:
    return config.current()


def refresh_s() -> float:
    return max(0.5, float(settings().dashboard_ttl_s))


def _where(s: Settings) -> tuple[str, str]:
    return (s.mongo_uri_with_secret, s.mongo_db)


@st.cache_resource(show_spinner=False)
def _client(uri: str, _s: Settings):
    return store.client(_s)


def database(s: Settings | None = None):
    s = s or settings()
    return _client(s.mongo_uri_with_secret, s)[s.mongo_db]


# --- health ------------------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def _store_health(where: tuple[str, str], _s: Settings) -> store.Health:
    return store.store_health(_client(where[0], _s), _s)


@st.cache_data(ttl=max(TTL, 5.0), show_spinner=False)
def _kafka_health(bootstrap: str, topic: str, _s: Settings) -> store.Health:
    return store.kafka_health(_s)


def store_health() -> store.Health:
    s = settings()
    return _store_health(_where(s), s)


def kafka_health() -> store.Health:
    s = settings()
    return _kafka_health(s.kafka_bootstrap, s.topic_activity, s)


def store_up() -> bool:
    return store_health().ok


# --- per-refresh queries -------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def _user_events(where, user: str, limit: int, _s: Settings) -> list[dict]:
    return store.user_events(database(_s), _s, user, limit)


@st.cache_data(ttl=TTL, show_spinner=False)
def _recommendation(where, user: str, _s: Settings) -> dict | None:
    return store.recommendation(database(_s), _s, user)


@st.cache_data(ttl=max(TTL, 30.0), show_spinner=False)
def _neighbours_of(where, track_id: int, _s: Settings) -> tuple[str | None, list[tuple[int, float]]]:
    return store.neighbours_of(database(_s), _s, track_id)


@st.cache_data(ttl=max(TTL, 5.0), show_spinner=False)
def _models(where, _s: Settings):
    return store.models(database(_s), _s)


def _safe(fn, default, *args):
    s = settings()
    if not store_up():
        return default
    try:
        return fn(_where(s), *args, s)
    except Exception:  # the store went away between the health check and the query
        return default


def _live(kind: str) -> list[dict]:
    if not store_up():
        return []
    return snapshot(kind, wait_s=LIVE_WAIT_S).value or []


def batches(minutes: float) -> list[dict]:
    """Micro-batches of the last `minutes` (at most BATCH_WINDOW_MIN), oldest first."""
    since = metrics.since(datetime.now(timezone.utc), minutes)
    out = []
    for doc in _live("batches"):
        at = to_utc(doc.get("written_at"))
        if at is not None and at.replace(tzinfo=None) >= since:
            out.append(doc)
    return out


def latest_events(limit: int = FEED_WINDOW) -> list[dict]:
    return _live("feed")[:limit]


def user_events(user: str, limit: int = USER_EVENTS) -> list[dict]:
    """A user's newest events."""
    return _safe(_user_events, [], str(user), int(limit))


def recommendation(user: str) -> dict | None:
    """The user's recommendations document, or None (no document yet, or the store is down)."""
    return _safe(_recommendation, None, str(user))


def neighbours_of(track_id) -> tuple[str | None, list[tuple[int, float]]]:
    """(model version, [(track id, distance)] nearest first) of one track from the neighbour table."""
    try:
        tid = int(track_id)
    except (TypeError, ValueError):
        return None, []
    return _safe(_neighbours_of, (None, []), tid)


def models() -> tuple[str | None, list[dict]]:
    return _safe(_models, (None, []))


@st.cache_resource(show_spinner=False)
def history(where) -> listdiff.History:
    """The versions of each user's list this process has seen (for 'how the list changed')."""
    return listdiff.History()


def list_history() -> listdiff.History:
    return history(_where(settings()))


# --- background snapshots -------------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def snapshot_path(s: Settings, kind: str, key: str, suffix: str) -> Path:
    digest = hashlib.sha1(f"{s.mongo_uri}|{key}".encode()).hexdigest()[:12]
    return Path(s.dashboard_cache_dir) / f"{_safe_name(s.mongo_db)}-{kind}-{digest}{suffix}"


def _prune(s: Settings, kind: str, keep: Path) -> None:
    for old in Path(s.dashboard_cache_dir).glob(f"{_safe_name(s.mongo_db)}-{kind}-*"):
        if old.name != keep.name:
            old.unlink(missing_ok=True)


_UNSET = object()


def snapshot_key(db, s: Settings, collection: str, ferretdb: bool, version=_UNSET) -> str:
    """What a snapshot depends on: the database, the collection's size and the current model version."""
    version = store.current_model_version(db, s) if version is _UNSET else version
    return f"{s.mongo_db}|{collection}={store.count(db, collection, ferretdb)}|model={version}"


_COUNTED: dict[tuple, tuple[str | None, float]] = {}  # (kind, uri, db) -> (model version, when counted)


def _unchanged(kind: str, s: Settings, db, previous) -> bool:
    """Cheap check between full ones: the model version is read every time (one document by text _id),
    the collection size only every COUNT_CHECK_S (collStats takes seconds on a big FerretDB table)."""
    if previous is None:
        return False
    last = _COUNTED.get((kind, s.mongo_uri, s.mongo_db))
    return (last is not None and last[0] == store.current_model_version(db, s)
            and time.monotonic() - last[1] < COUNT_CHECK_S)


def _full_key(kind: str, s: Settings, client, collection: str) -> str:
    db = client[s.mongo_db]
    version = store.current_model_version(db, s)
    key = snapshot_key(db, s, collection, store.store_health(client, s).ferretdb, version)
    _COUNTED[(kind, s.mongo_uri, s.mongo_db)] = (version, time.monotonic())
    return key


def _load_snapshot(kind: str, collection: str, suffix: str, cls, build, rows, s: Settings, client, previous,
                   progress):
    """The snapshot of `collection`: the previous one while unchanged, else the one saved on disk for
    the current key, else rebuilt from the store and saved."""
    db = client[s.mongo_db]
    if _unchanged(kind, s, db, previous):
        return previous
    key = _full_key(kind, s, client, collection)
    if previous is not None and previous.key == key:
        return previous
    path = snapshot_path(s, kind, key, suffix)
    if path.exists():
        try:
            snap = cls.load(path)
            if snap.key == key:
                return snap
        except Exception:
            pass
    snap = build(rows(db, s), key=key, progress=progress)
    try:
        snap.save(path)
        _prune(s, kind, path)
    except OSError:
        pass  # a read-only disk only costs the next start a rebuild
    return snap


def load_track_map(s: Settings, client, previous, progress) -> trackmap.TrackMap:
    return _load_snapshot("catalogue", s.coll_tracks, trackmap.SUFFIX, trackmap.TrackMap,
                          trackmap.build_track_map, store.iter_tracks, s, client, previous, progress)


def load_users(s: Settings, client, previous, progress) -> list[str]:
    """Users with recommendations, most recently updated first (ids as text)."""
    from dashboard.timefmt import to_utc

    rows = store.user_list(client[s.mongo_db], s)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    rows.sort(key=lambda r: to_utc(r[1]) or epoch, reverse=True)
    return [str(uid) for uid, _ in rows]


def load_feed(s: Settings, client, previous, progress) -> list[dict]:
    return store.latest_events(client[s.mongo_db], s, FEED_WINDOW)


def load_batches(s: Settings, client, previous, progress) -> list[dict]:
    since = metrics.since(datetime.now(timezone.utc), BATCH_WINDOW_MIN)
    return store.batches_since(client[s.mongo_db], s, since)[::-1]


# kind: (loader, seconds between loads, seconds without a reader before it pauses)
_LOADERS = {"catalogue": (load_track_map, CATALOGUE_CHECK_S, 300.0),
            "users": (load_users, USERS_REFRESH_S, 300.0),
            "feed": (load_feed, TTL, LIVE_IDLE_S),
            "batches": (load_batches, TTL, LIVE_IDLE_S)}


@st.cache_resource(show_spinner=False)
def _refresher(kind: str, where, _s: Settings) -> background.Refresher:
    """One background reader per kind and store, shared by every session of this process."""
    load, every, idle = _LOADERS[kind]
    client = store.client(_s, timeout_ms=store.STORE_TIMEOUT_MS)
    return background.Refresher(kind, lambda prev, progress: load(_s, client, prev, progress), every, idle_s=idle)


def snapshot(kind: str, wait_s: float = 0.0) -> background.Snapshot:
    s = settings()
    return _refresher(kind, _where(s), s).get(wait_s=wait_s)


def track_map(wait_s: float = 0.0) -> trackmap.TrackMap | None:
    return snapshot("catalogue", wait_s).value


def tracks() -> Catalogue | None:
    """The catalogue's tracks from the snapshot (None while it loads)."""
    snap = track_map()
    return snap.tracks if snap is not None else None


def track_label(track_id) -> str:
    snap = track_map()
    return snap.label(track_id) if snap is not None else f"#{track_id}"


def audio_file(track_id, snap: trackmap.TrackMap | None = None) -> Path | None:
    """The track's clip on disk, if there: the stored `path` under audio_dir, else FMA's layout
    (<audio_dir>/123/123456.mp3). Never a file outside audio_dir: a stored path is resolved (symlinks and
    `..` followed) and dropped unless it lands inside the resolved audio root."""
    s = settings()
    root = Path(s.audio_dir)
    candidates = []
    stored = snap.path_of(track_id) if snap is not None else ""
    if stored:
        p = Path(stored)
        candidates.append(p if p.is_absolute() else root / p)
    try:
        tid = int(track_id)
        candidates.append(root / f"{tid:06d}"[:3] / f"{tid:06d}.mp3")
    except (TypeError, ValueError):
        pass
    return next((p for p in candidates if inside(p, root) and p.is_file()), None)


def inside(path: Path, root: Path) -> bool:
    """`path`, resolved, lies under `root`, resolved (no `..`, absolute path or symlink leads out)."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):
        return False
