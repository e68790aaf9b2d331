"""How a recommendation list is stored: one array per field ("columns"), not one sub-document per item.

In code a list is what `ranking.Item.to_doc` gives: `[{track_id, score, reason, reason_track_id?, genre?}]`,
best first. In the `recommendations` document its `items` field holds the same list by field:

    items: {track_id: [int], score: [float], reason: [str], reason_track_id: [int|None], genre: [str|None]}

with `reason_track_id` and `genre` left out when no item of the list has one. Why: the local store
(FerretDB on PostgreSQL) keeps a type schema beside every value and decodes the stored document again on
every replacement; ten sub-documents of four or five fields made up about half of what a write cost,
and the columns take about a fifth less of the store's CPU per write (benchmarks/bench_stream.py, write
cost). `unpack` also reads the list form that documents written before had.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

FIELDS = ("track_id", "score", "reason")
OPTIONAL = ("reason_track_id", "genre")


def pack(items: Sequence[Mapping]) -> dict:
    """The stored form of `items` (a list of item dicts, best first)."""
    tid, score, reason, because, genre = [], [], [], [], []
    for it in items:        # one pass: the stream packs every active user's list in every micro-batch
        g = it.get
        tid.append(g("track_id")), score.append(g("score")), reason.append(g("reason"))
        because.append(g("reason_track_id")), genre.append(g("genre"))
    cols = {"track_id": tid, "score": score, "reason": reason}
    for f, values in zip(OPTIONAL, (because, genre)):
        if any(v is not None for v in values):
            cols[f] = values
    return cols


def unpack(stored) -> list[dict]:
    """The item dicts of a stored list, best first: the columns (`pack`), or the list of sub-documents that
    older documents hold. Anything else, or a column that is not a list, reads as no items; a shorter
    column leaves its field out of the items it does not reach, and a None is left out too."""
    if isinstance(stored, list):
        return [dict(it) for it in stored if isinstance(it, Mapping)]
    if not isinstance(stored, Mapping) or not isinstance(stored.get("track_id"), list):
        return []
    cols = {f: v for f, v in stored.items() if f in FIELDS + OPTIONAL and isinstance(v, list)}
    out = []
    for i in range(len(cols["track_id"])):
        out.append({f: v[i] for f, v in cols.items() if i < len(v) and v[i] is not None})
    return out


def items_of(doc: Mapping | None) -> list[dict]:
    """The recommendation list of a `recommendations` document (none for None)."""
    return unpack(doc.get("items")) if isinstance(doc, Mapping) else []


def track_ids(doc: Mapping | None) -> list:
    """The recommended track ids of a document, best first."""
    return [it["track_id"] for it in items_of(doc) if "track_id" in it]
