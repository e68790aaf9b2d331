"""Rows for the pages' tables: the activity feed, a user's recommendations (with how each item moved),
the model history. Pure functions over stored documents; anything missing shows as empty, never fails."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from common.catalogue import Catalogue, reason_text
from dashboard.listdiff import ListChange, change_label
from dashboard.timefmt import to_utc

Label = Callable[[object], str]

FEED_COLUMNS = ["time", "user", "track", "action", "ms_played", "track_id"]
REC_COLUMNS = ["rank", "change", "title", "artist", "genre", "score", "reason", "track_id"]


def event_time(doc: Mapping):
    """An event's time: event_time, else the time it was written."""
    for name in ("event_time", "written_at", "at"):
        at = to_utc(doc.get(name))
        if at is not None:
            return at
    return None


def _event_label(doc: Mapping, label: Label | None) -> str:
    title = doc.get("title")
    if title:
        artist = doc.get("artist")
        return f"{title} - {artist}" if artist else str(title)
    tid = doc.get("track_id")
    if label is not None and tid is not None:
        return label(tid)
    return "" if tid is None else f"#{tid}"


def feed_rows(events: Iterable[Mapping], label: Label | None = None, limit: int | None = None) -> pd.DataFrame:
    """Newest first: time (UTC), user, track ('Title - Artist' when known, else '#id'), action, ms played."""
    rows = []
    for doc in events:
        if not isinstance(doc, Mapping):
            continue
        ms = doc.get("ms_played")
        rows.append({"time": event_time(doc), "user": "" if doc.get("user_id") is None else str(doc.get("user_id")),
                     "track": _event_label(doc, label), "action": str(doc.get("action") or ""),
                     "ms_played": ms if isinstance(ms, (int, float)) and not isinstance(ms, bool) else None,
                     "track_id": doc.get("track_id")})
    df = pd.DataFrame(rows, columns=FEED_COLUMNS)
    if len(df):
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df = df.sort_values("time", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return df.head(limit) if limit else df


def same_user(a, b) -> bool:
    """User ids compare as text, so 42 and "42" are one user (Kafka keys are text, stores may hold ints)."""
    return a is not None and b is not None and str(a) == str(b)


def recent_users(events: Iterable[Mapping], limit: int = 50) -> list[str]:
    """Distinct users of the events, most recent first (as text)."""
    ordered = sorted((e for e in events if isinstance(e, Mapping) and e.get("user_id") is not None),
                     key=lambda e: (event_time(e) is not None, event_time(e) or 0), reverse=True)
    out: list[str] = []
    for e in ordered:
        uid = str(e["user_id"])
        if uid not in out:
            out.append(uid)
            if len(out) >= limit:
                break
    return out


def _score(value):
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


_NO_TRACKS = Catalogue.of_ids([])


def rec_rows(items: Sequence | None, change: ListChange | None = None, tracks: Catalogue | None = None,
             label: Label | None = None) -> pd.DataFrame:
    """A recommendation list as table rows in rank order; `change` adds the moved/new marker.

    Items carry ids (common/contracts.py): `tracks` (the catalogue) gives each track's title, artist and
    genre, `label(track_id)` names the track a reason points at (default: the catalogue's label); an
    item that still carries its own texts, from an older document, keeps them."""
    tracks = tracks if tracks is not None else _NO_TRACKS
    by_track = change.by_track() if change is not None else {}
    name = label or tracks.label
    rows = []
    for i, item in enumerate(items or (), 1):
        if not isinstance(item, Mapping):
            continue
        tid = item.get("track_id")
        r = tracks.row(tid)
        title, artist, genre = (str(a[r]) if r >= 0 else "" for a in (tracks.title, tracks.artist, tracks.genre))
        rows.append({"rank": i, "change": change_label(by_track.get(tid)) if change is not None else "",
                     "title": str(item.get("title") or title or (f"#{tid}" if tid is not None else "")),
                     "artist": str(item.get("artist") or artist),
                     "genre": str(item.get("genre_top") or genre or item.get("genre") or ""),
                     "score": _score(item.get("score")), "reason": reason_text(item, name), "track_id": tid})
    return pd.DataFrame(rows, columns=REC_COLUMNS)


def taste_weights(events: Iterable[Mapping]) -> dict:
    """How much each recent track pulls the user's taste: like/complete +1, play +0.5, skip/dislike -1
    (the streaming job's actions); summed per track."""
    weight = {"like": 1.0, "complete": 1.0, "play": 0.5, "skip": -1.0, "dislike": -1.0}
    out: dict = {}
    for e in events:
        tid = e.get("track_id")
        if tid is None:
            continue
        out[tid] = out.get(tid, 0.0) + weight.get(str(e.get("action")), 0.0)
    return out


HEADLINE = {  # the page's three figures and the metric names the model job may use for them
    "recall": ("recall_at_10", "recall_at_k"),
    "genre_precision": ("genre_precision_at_10", "genre_precision_at_k"),
    "coverage": ("coverage",),
}


def headline(metrics: Mapping | None) -> dict:
    """{recall, genre_precision, coverage, k} from a model's metrics, whichever of the names it uses
    (`recall_at_10` or `recall_at_k` with `k`); missing values are None, k defaults to 10."""
    metrics = metrics if isinstance(metrics, Mapping) else {}
    out = {name: next((v for v in (_score(metrics.get(n)) for n in names) if v is not None), None)
           for name, names in HEADLINE.items()}
    k = metrics.get("k")
    out["k"] = int(k) if isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0 else 10
    return out


def model_rows(models: Iterable[Mapping]) -> pd.DataFrame:
    """One row per model version (pointer documents skipped), newest first: version, created, catalogue
    size, k, recall@k, genre precision@k, coverage."""
    rows = []
    for doc in models:
        if not isinstance(doc, Mapping) or doc.get("_id") == "current" or not (doc.get("version") or doc.get("_id")):
            continue
        head = headline(doc.get("metrics"))
        rows.append({"version": str(doc.get("version") or doc.get("_id")), "created_at": to_utc(doc.get("created_at")),
                     "catalogue_size": doc.get("catalogue_size"), "k": head["k"], "recall": head["recall"],
                     "genre_precision": head["genre_precision"], "coverage": head["coverage"]})
    df = pd.DataFrame(rows, columns=["version", "created_at", "catalogue_size", "k", "recall", "genre_precision",
                                     "coverage"])
    if len(df):
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
        df = df.sort_values(["created_at", "version"], ascending=False, na_position="last").reset_index(drop=True)
    return df


def flat(mapping: Mapping | None, prefix: str = "") -> dict:
    """Nested parameters/metrics as flat 'a.b' keys with printable values."""
    out = {}
    for k, v in (mapping or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(map(str, v)) if len(v) <= 12 else f"[{len(v)} values]"
        else:
            out[key] = v
    return out
