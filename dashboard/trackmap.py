"""The dashboard's in-memory snapshot of the `tracks` collection: the tracks as the one catalogue type
(common.catalogue.Catalogue: ids, titles, artists, genres; its lookups resolve ids for every page) and,
row-aligned beside it, what is the map's own: each track's place on the 2-D map and its audio path.
Built from documents in one pass (any iterable, so the store edge stays thin), saved next to the app so a
restart reads it back instead of scanning the store again. Pure apart from the explicit save/load."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.catalogue import Catalogue
from dashboard import projection

SUFFIX = ".npz"        # a snapshot file: the catalogue's arrays with the map's beside them
BETWEEN = " - "        # the dashboard names a track 'Title - Artist'
Progress = Callable[[int], None]


def _int_id(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _stack(rows: list, dim: int | None) -> np.ndarray:
    blank = np.full(dim or 0, np.nan, dtype=np.float32)
    return np.vstack([blank if r is None else r for r in rows])


@dataclass
class TrackMap:
    tracks: Catalogue          # every track of the collection, ids ascending; title, artist, genre (no vectors,
                               # listens, durations or recordings: the pages do not show them)
    x: np.ndarray              # (n,) float32 map position (NaN: the track has no usable features)
    y: np.ndarray              # (n,) float32
    path: np.ndarray           # (n,) str the stored audio path ('' unknown)
    explained: np.ndarray = field(default_factory=lambda: np.zeros(2))  # variance ratio of the 2 axes
    key: str = ""
    built_at: float = 0.0
    n_features: int = 0
    _lower: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.tracks)

    def label(self, track_id) -> str:
        """'Title - Artist' (or '#id' for a track the snapshot does not hold)."""
        return self.tracks.label(track_id, between=BETWEEN)

    def path_of(self, track_id) -> str:
        """The track's stored audio path ('' unknown)."""
        r = self.tracks.row(track_id)
        return str(self.path[r]) if r >= 0 else ""

    def points(self, rows) -> pd.DataFrame:
        """The map's points of catalogue `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        t = self.tracks
        return pd.DataFrame({"track_id": t.ids[rows], "title": t.title[rows], "artist": t.artist[rows],
                             "genre_top": t.genre[rows], "x": self.x[rows], "y": self.y[rows]})

    def points_of(self, track_ids) -> pd.DataFrame:
        """The points of the known ids among `track_ids`, in the given order."""
        return self.points([r for r in map(self.tracks.row, track_ids) if r >= 0])

    def search(self, text: str, limit: int = 50) -> np.ndarray:
        """Ids of the tracks whose title, artist or id contains `text` (case-insensitive); titles that start
        with it first, then by title. Empty text gives the first `limit` tracks."""
        text = (text or "").strip().lower()
        t = self.tracks
        if not text:
            return t.ids[:limit]
        if not self._lower:
            self._lower.update(title=np.strings.lower(t.title), artist=np.strings.lower(t.artist))
        title = self._lower["title"]
        hit = (np.strings.find(title, text) >= 0) | (np.strings.find(self._lower["artist"], text) >= 0)
        exact = t.row(text) if text.isdigit() else -1
        if exact >= 0:
            hit[exact] = True
        found = np.flatnonzero(hit)
        first = np.lexsort((t.title[found], ~np.strings.startswith(title[found], text)))
        return t.ids[found[first[:limit]]]

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the snapshot to `path` (replacing what is there)."""
        path = Path(path)
        path.unlink(missing_ok=True)  # the catalogue writes a file name once; a snapshot is rewritten
        extra = {"x": self.x, "y": self.y, "path": self.path, "explained": np.asarray(self.explained, dtype=float),
                 "key": np.array(self.key), "built_at": np.array(self.built_at),
                 "n_features": np.array(self.n_features)}
        return Path(self.tracks.save(path.parent, extra=extra, name=path.name))

    @classmethod
    def load(cls, path: Path) -> "TrackMap":
        tracks, extra = Catalogue.read(path)
        return cls(tracks, extra["x"], extra["y"], extra["path"], extra["explained"], key=str(extra["key"]),
                   built_at=float(extra["built_at"]), n_features=int(extra["n_features"]))


def build_track_map(docs: Iterable[Mapping], key: str = "", progress: Progress | None = None,
                    max_fit_rows: int = 20_000, seed: int = 0) -> TrackMap:
    """One pass over `tracks` documents: ids, titles, artists, genres, paths and the 2-D PCA of their
    z-scored features. A track without a usable feature vector (missing, wrong length, not numbers) stays
    in the snapshot with no map position (x, y NaN); documents whose _id is not an integer are skipped; of
    a repeated _id the last document counts."""
    ids, title, artist, genre, path = [], [], [], [], []
    chunks, chunk, has_vec = [], [], []
    dim = None
    read = 0
    for read, doc in enumerate(docs, 1):
        tid = _int_id(doc.get("_id"))
        if tid is None:
            continue
        ids.append(tid)
        for column, name in ((title, "title"), (artist, "artist"), (genre, "genre_top"), (path, "path")):
            column.append(doc.get(name))
        vec = doc.get("features")
        row = None
        if isinstance(vec, (list, tuple)) and vec:
            if dim is None:
                dim = len(vec)
            if len(vec) == dim:
                try:
                    row = np.asarray(vec, dtype=np.float32)
                except (TypeError, ValueError):
                    row = None
        has_vec.append(row is not None)
        chunk.append(row)
        if len(chunk) >= 5000:
            chunks.append(_stack(chunk, dim))
            chunk = []
        if progress is not None and read % 1000 == 0:
            progress(read)
    if chunk:
        chunks.append(_stack(chunk, dim))
    n = len(ids)
    xy = np.full((n, 2), np.nan, dtype=np.float32)
    explained = np.zeros(2)
    mask = np.asarray(has_vec, dtype=bool)
    if dim and mask.any():
        feats = np.vstack([c if c.shape[1] == dim else np.full((len(c), dim), np.nan, np.float32) for c in chunks])
        coords, explained = projection.pca_2d(feats[mask], max_rows=max_fit_rows, seed=seed)
        xy[mask] = coords
        del feats
    ids = np.asarray(ids, dtype=np.int64)
    _, last = np.unique(ids[::-1], return_index=True)
    keep = n - 1 - last                     # the last document of each id, ids ascending
    title, artist, genre, path = (np.array(["" if v is None else str(v) for v in c], dtype=np.str_)[keep]
                                  for c in (title, artist, genre, path))
    m = len(keep)
    tracks = Catalogue(ids[keep], None, title, artist, genre, np.zeros(m), np.zeros(m), np.full(m, "", dtype=np.str_))
    if progress is not None:
        progress(read)
    return TrackMap(tracks, xy[keep, 0], xy[keep, 1], path, explained, key=key, built_at=time.time(),
                    n_features=int(dim or 0))
