"""Create the indexes the dashboard's queries use (idempotent): a setup step, because the dashboard
itself never writes to the store.

    python -m dashboard.indexes            # on the configured database
    python -m dashboard.indexes --list     # only print the indexes that exist

On MongoDB these serve the per-refresh queries (newest activity, a user's activity, the last minutes of
micro-batches). FerretDB v1.24 accepts and keeps them, but the filters it pushes down to PostgreSQL
(`_jsonb->'field' @> value`) cannot use them, and sorts and ranges are not pushed down at all; there the
dashboard reads single documents by `_id` (indexed, see common/store.py) and the bounded collections in
the background instead (see store.py and data.py).
"""
from __future__ import annotations

import argparse
import sys

from conf import Settings, get_settings


def wanted(settings: Settings) -> dict[str, list[tuple[str, list[tuple[str, int]]]]]:
    """{collection: [(index name, keys)]} for the queries in dashboard/store.py."""
    return {
        settings.coll_activity: [("event_time_desc", [("event_time", -1)]),
                                 ("user_event_time", [("user_id", 1), ("event_time", -1)])],
        settings.coll_batches: [("written_at_desc", [("written_at", -1)])],
    }


def ensure(db, settings: Settings) -> tuple[list[str], list[str]]:
    """Create what is missing on the collections that exist; returns ('collection.index' created or
    already there, collections skipped). A collection that does not exist yet is left to its writer (the
    streaming job may create it with options, e.g. capped, which an index would pre-empt): run this step
    again once it exists."""
    from pymongo import IndexModel

    done, skipped = [], []
    present = set(db.list_collection_names())
    for coll, specs in wanted(settings).items():
        if coll not in present:
            skipped.append(coll)
            continue
        have = set(db[coll].index_information())
        missing = [IndexModel(keys, name=name) for name, keys in specs if name not in have]
        if missing:  # only what is missing: FerretDB v1.24 panics on re-creating an existing compound index
            db[coll].create_indexes(missing)
        done += [f"{coll}.{name}" for name, _ in specs]
    return done, skipped


def existing(db, settings: Settings) -> dict[str, list[str]]:
    return {coll: sorted(db[coll].index_information()) for coll in wanted(settings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.indexes", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the existing indexes, create nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    from common.store import database

    db = database(settings)
    try:
        if args.list:
            for coll, names in existing(db, settings).items():
                print(f"{settings.mongo_db}.{coll}: {', '.join(names) or '-'}")
        else:
            done, skipped = ensure(db, settings)
            for name in done:
                print(f"index {settings.mongo_db}.{name}: ok")
            for coll in skipped:
                print(f"index {settings.mongo_db}.{coll}: skipped, the collection does not exist yet")
    except Exception as exc:
        print(f"dashboard.indexes: cannot reach the store at {settings.mongo_uri}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
