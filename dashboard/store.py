"""The dashboard's read-only edge to MongoDB and Kafka: health checks and the few queries the pages
make. Nothing here writes (no insert, update, delete or index creation: see indexes.py for the setup
step that creates the indexes these reads use).

Every query is a plain find with filter, projection, sort and limit, or a document by `_id`, so it runs
on MongoDB (served by the indexes) and on the local FerretDB, where a find by `_id` or by equality on a
top-level field is pushed down to PostgreSQL (by `_id`: an index hit, see common/store.py) and other
filters and sorts are done over the whole collection. So a page reads single documents by `_id`, and
the small, bounded collections (activity feed, micro-batches) whole; only the catalogue and the user
list, which grow with the data, are read in the background (data.py)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from common import store as common_store
from conf import Settings
from dashboard.background import first_line as _first_line

STORE_TIMEOUT_MS = 1500
KAFKA_TIMEOUT_S = 1.5
CURRENT = "current"  # the models pointer document (jobs/model_store.py)


@dataclass(frozen=True)
class Health:
    ok: bool
    text: str                 # one line for the status bar
    ferretdb: bool = False    # the store is FerretDB (counts by collStats, see count())


def client(settings: Settings, timeout_ms: int = STORE_TIMEOUT_MS):
    """The project's client (common/store.py) with the dashboard's short timeouts."""
    return common_store.client(settings, timeout_ms)


def store_health(mongo_client, settings: Settings) -> Health:
    """A ping with the client's short server-selection timeout."""
    try:
        info = mongo_client.admin.command("buildInfo")
    except Exception as exc:  # any driver error means: not usable right now
        return Health(False, f"store unreachable at {settings.mongo_uri} ({_first_line(exc)})")
    ferret = "ferretdbVersion" in info
    engine = "FerretDB" if ferret else f"MongoDB {info.get('version', '?')}"
    return Health(True, f"store ok ({engine}, db {settings.mongo_db})", ferretdb=ferret)


def kafka_health(settings: Settings, timeout_s: float = KAFKA_TIMEOUT_S) -> Health:
    """A metadata request (list_topics) with a short timeout; a fresh, silent client each time so a
    broker that is down leaves no client retrying in the background."""
    try:
        from confluent_kafka.admin import AdminClient

        quiet = logging.getLogger("musicrec.dashboard.kafka")
        quiet.setLevel(logging.CRITICAL)
        from common.kafka import client_config

        admin = AdminClient(client_config(settings, **{"socket.connection.setup.timeout.ms": int(timeout_s * 1000),
                                                       "reconnect.backoff.max.ms": 1000, "logger": quiet}))
        meta = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        return Health(False, f"Kafka unreachable at {settings.kafka_bootstrap} ({_first_line(exc)})")
    topic = meta.topics.get(settings.topic_activity)
    if topic is None or topic.error is not None:
        return Health(True, f"Kafka ok, no topic {settings.topic_activity!r} yet")
    return Health(True, f"Kafka ok ({settings.topic_activity}: {len(topic.partitions)} partitions)")


# --- small, per-refresh reads --------------------------------------------------------------------------
def _id_candidates(user) -> list:
    """A user id as typed or as stored: '42' may be stored as 42 and the other way round."""
    out = [user]
    if isinstance(user, str) and user.strip().lstrip("-").isdigit():
        out.append(int(user.strip()))
    elif isinstance(user, int) and not isinstance(user, bool):
        out.append(str(user))
    return out


def recommendation(db, settings: Settings, user) -> dict | None:
    """The user's recommendations document (by `_id`, trying the text and the integer form), without the
    stream's own fields (the user's binary taste state and the batch that applied it)."""
    coll = db[settings.coll_recommendations]
    for candidate in _id_candidates(user):
        doc = coll.find_one({"_id": candidate}, {"state": 0, "applied": 0})
        if doc is not None:
            return doc
    return None


def batches_since(db, settings: Settings, since: datetime, limit: int = 5000) -> list[dict]:
    """Micro-batch progress written at or after `since` (naive UTC), newest first."""
    cur = (db[settings.coll_batches].find({"written_at": {"$gte": since}})
           .sort("written_at", -1).limit(limit))
    return list(cur)


def is_capped(db, name: str) -> bool:
    for info in db.list_collections(filter={"name": name}):
        return bool((info.get("options") or {}).get("capped"))
    return False


def latest_events(db, settings: Settings, limit: int) -> list[dict]:
    """The newest activity events: natural order of a capped feed (insertion order), else by event_time."""
    coll = db[settings.coll_activity]
    if is_capped(db, settings.coll_activity):
        return list(coll.find({}).sort("$natural", -1).limit(limit))
    return list(coll.find({}).sort("event_time", -1).limit(limit))


def user_events(db, settings: Settings, user, limit: int) -> list[dict]:
    """A user's newest events (one equality find per id form: pushed down on FerretDB, served by the
    (user_id, event_time) index on MongoDB)."""
    coll = db[settings.coll_activity]
    for candidate in _id_candidates(user):
        docs = list(coll.find({"user_id": candidate}).sort("event_time", -1).limit(limit))
        if docs:
            return docs
    return []


def neighbours_of(db, settings: Settings, track_id) -> tuple[str | None, list[tuple[int, float]]]:
    """(model version, [(track id, distance)] nearest first) of one track, by `_id`."""
    try:
        tid = int(track_id)
    except (TypeError, ValueError):
        return None, []
    doc = db[settings.coll_neighbours].find_one({"_id": tid}, {"neighbours": 1, "model_version": 1})
    if not doc:
        return None, []
    pairs = []
    for entry in doc.get("neighbours") or ():
        try:
            pairs.append((int(entry["track_id"]), float(entry.get("distance", float("nan")))))
        except (TypeError, ValueError, KeyError):
            continue
    version = doc.get("model_version")
    return (None if version is None else str(version)), pairs


def models(db, settings: Settings) -> tuple[str | None, list[dict]]:
    """(current version, every model document), versions without the pointer document."""
    docs = list(db[settings.coll_models].find({}))
    current = next((d.get("version") for d in docs if d.get("_id") == CURRENT), None)
    return (None if current is None else str(current)), [d for d in docs if d.get("_id") != CURRENT]


def current_model_version(db, settings: Settings) -> str | None:
    doc = db[settings.coll_models].find_one({"_id": CURRENT})
    return None if not doc or doc.get("version") is None else str(doc["version"])


def count(db, name: str, ferretdb: bool) -> int:
    """Documents in a collection without reading them: collStats on FerretDB (its `count` decodes every
    document), the metadata count on MongoDB."""
    if ferretdb:
        try:
            return int(db.command("collStats", name).get("count", 0))
        except Exception:
            return 0
    return int(db[name].estimated_document_count())


# --- whole-collection reads (background only) ---------------------------------------------------------
TRACK_FIELDS = {"title": 1, "artist": 1, "genre_top": 1, "path": 1, "features": 1}


def iter_tracks(db, settings: Settings, batch_size: int = 1000) -> Iterator[dict]:
    return db[settings.coll_tracks].find({}, TRACK_FIELDS, batch_size=batch_size)


def user_list(db, settings: Settings) -> list[tuple[str, datetime | None]]:
    """Every user with recommendations and when they were last updated."""
    cur = db[settings.coll_recommendations].find({}, {"updated_at": 1}, batch_size=5000)
    return [(d["_id"], d.get("updated_at")) for d in cur]
