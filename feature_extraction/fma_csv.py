"""Writers of FMA's metadata files in their real layouts (for the demo corpus and for tests).

`tracks.csv` has 52 columns in four groups, sorted (album 13, artist 17, set 2, track 20), and three
header lines: the group names, the field names, then `track_id,,,...`. This is what
`pandas.read_csv(path, index_col=0, header=[0, 1])` reads back (as FMA's own `utils.load` does).
List columns (tags, genres, genres_all) hold Python literals such as `[21]` or `['awol']`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

TRACKS_FIELDS = {
    "album": ("comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
              "listens", "producer", "tags", "title", "tracks", "type"),
    "artist": ("active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
               "date_created", "favorites", "id", "latitude", "location", "longitude", "members", "name",
               "related_projects", "tags", "website", "wikipedia_page"),
    "set": ("split", "subset"),
    "track": ("bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
              "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
              "listens", "lyricist", "number", "publisher", "tags", "title"),
}
TRACKS_COLUMNS = tuple((group, field) for group, fields in TRACKS_FIELDS.items() for field in fields)
LIST_COLUMNS = (("album", "tags"), ("artist", "tags"), ("track", "tags"), ("track", "genres"),
                ("track", "genres_all"))


def write_tracks_csv(rows: dict[int, dict[tuple[str, str], object]], path: str | Path) -> Path:
    """Write `{track_id: {(group, field): value}}` as an FMA tracks.csv. Missing cells stay empty;
    list cells are written as Python literals."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for tid in sorted(rows):
        cells = rows[tid]
        unknown = set(cells) - set(TRACKS_COLUMNS)
        if unknown:
            raise ValueError(f"not tracks.csv columns: {sorted(unknown)}")
        rec = {}
        for col in TRACKS_COLUMNS:
            value = cells.get(col)
            if col in LIST_COLUMNS:
                value = repr(list(value or []))
            rec[col] = value
        records.append(rec)
    df = pd.DataFrame(records, index=pd.Index(sorted(rows), name="track_id"),
                      columns=pd.MultiIndex.from_tuples(TRACKS_COLUMNS))
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp)
    tmp.replace(path)
    return path


def write_genres_csv(genres: pd.DataFrame, path: str | Path) -> Path:
    """Write a genres frame (index genre_id; columns '#tracks', parent, title, top_level) as FMA's
    genres.csv."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = genres[["#tracks", "parent", "title", "top_level"]].copy()
    out.index.name = "genre_id"
    out.to_csv(path)
    return path
