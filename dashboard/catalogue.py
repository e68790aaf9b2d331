"""The dashboard's in-memory snapshot of the catalogue: metadata of every track plus its place on the
2-D map. Built from documents in one pass (any iterable, so the store edge stays thin), saved next to
the app so a restart reads it back in a second instead of scanning the store again. Pure apart from the
explicit save/load."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard import projection

META_COLUMNS = ("title", "artist", "genre_top", "path")
Progress = Callable[[int], None]


def _text(value) -> str:
    return "" if value is None else str(value)


def _int_id(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _stack(rows: list, dim: int | None) -> np.ndarray:
    blank = np.full(dim or 0, np.nan, dtype=np.float32)
    return np.vstack([blank if r is None else r for r in rows])


@dataclass
class Catalogue:
    frame: pd.DataFrame                   # track_id, title, artist, genre_top, path, x, y; sorted by track_id
    explained: np.ndarray = field(default_factory=lambda: np.zeros(2))  # variance ratio of the 2 axes
    key: str = ""
    built_at: float = 0.0
    n_features: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> np.ndarray:
        return self.frame["track_id"].to_numpy()

    def positions(self, track_ids) -> np.ndarray:
        """Row positions of `track_ids` in the frame (-1 where unknown)."""
        ids = self.ids
        want = np.asarray([(_int_id(t) if _int_id(t) is not None else -(2**62)) for t in track_ids], dtype=np.int64)
        if not len(ids) or not len(want):
            return np.full(len(want), -1, dtype=np.int64)
        pos = np.searchsorted(ids, want)
        pos = np.clip(pos, 0, len(ids) - 1)
        return np.where(ids[pos] == want, pos, -1)

    def rows(self, track_ids) -> pd.DataFrame:
        """The frame rows of the known ids, in the given order."""
        pos = self.positions(track_ids)
        return self.frame.iloc[pos[pos >= 0]].reset_index(drop=True)

    def track(self, track_id) -> dict:
        """title, artist and genre_top of a track ({} for a track the snapshot does not hold)."""
        pos = self.positions([track_id])[0]
        if pos < 0:
            return {}
        row = self.frame.iloc[pos]
        return {"title": row["title"], "artist": row["artist"], "genre_top": row["genre_top"]}

    def label(self, track_id) -> str:
        """'Title - Artist' (or '#id' for a track the snapshot does not hold)."""
        pos = self.positions([track_id])[0]
        if pos < 0:
            return f"#{track_id}"
        row = self.frame.iloc[pos]
        title = row["title"] or f"#{track_id}"
        return f"{title} - {row['artist']}" if row["artist"] else title

    def search(self, text: str, limit: int = 50) -> pd.DataFrame:
        """Tracks whose title, artist or id contains `text` (case-insensitive); titles that start with it
        first. Empty text gives the first `limit` tracks."""
        text = (text or "").strip().lower()
        frame = self.frame
        if not text:
            return frame.head(limit).reset_index(drop=True)
        title = frame["title"].str.lower()
        hit = title.str.contains(text, regex=False) | frame["artist"].str.lower().str.contains(text, regex=False)
        if text.isdigit():
            hit |= frame["track_id"] == int(text)
        found = frame[hit]
        starts = title[hit].str.startswith(text)
        return found.assign(_s=~starts).sort_values(["_s", "title"], kind="stable").drop(columns="_s") \
            .head(limit).reset_index(drop=True)

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        self.frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        meta = {"key": self.key, "built_at": self.built_at, "n_features": self.n_features,
                "explained": [float(v) for v in self.explained]}
        path.with_suffix(".json").write_text(json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: Path) -> "Catalogue":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        frame = pd.read_parquet(path)
        return cls(frame=frame, explained=np.asarray(meta["explained"], dtype=float), key=meta["key"],
                   built_at=float(meta["built_at"]), n_features=int(meta["n_features"]))


def build_catalogue(docs: Iterable[Mapping], key: str = "", progress: Progress | None = None,
                    max_fit_rows: int = 20_000, seed: int = 0) -> Catalogue:
    """One pass over `tracks` documents: metadata columns and the 2-D PCA of their z-scored features.
    A track without a usable feature vector (missing, wrong length, not numbers) stays in the snapshot
    with no map position (x, y NaN); documents whose _id is not an integer are skipped."""
    ids, meta = [], {c: [] for c in META_COLUMNS}
    chunks, chunk, has_vec = [], [], []
    dim = None
    read = 0
    for read, doc in enumerate(docs, 1):
        tid = _int_id(doc.get("_id"))
        if tid is None:
            continue
        ids.append(tid)
        for c in META_COLUMNS:
            meta[c].append(_text(doc.get(c)))
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
    frame = pd.DataFrame({"track_id": np.asarray(ids, dtype=np.int64), **meta,
                          "x": xy[:, 0], "y": xy[:, 1]})
    frame = frame.drop_duplicates("track_id", keep="last").sort_values("track_id").reset_index(drop=True)
    if progress is not None:
        progress(read)
    return Catalogue(frame=frame, explained=explained, key=key, built_at=time.time(), n_features=int(dim or 0))
