"""The model's tracks as one type: ids, their vectors in the model's space and their metadata, row-aligned.

The streaming job ranks with it (and ships it to the executors as one `.npz` file named by its
content), the simulator draws listeners from it, and the dashboard resolves the ids of a
recommendation document into titles with it. Pure numpy; `from_documents` takes any iterable of
`tracks` documents, so the store edge stays with the caller.

Rows follow the model's order (`ids[i]` is `vectors[i]`); lookups by id go through a sorted copy of the
ids (`rows`), vectorised.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# what a recommendation item's `reason` says (the recommendation document's contract: common/contracts.py)
SIMILAR, TASTE, POPULAR_GENRE, POPULAR = "similar", "taste", "popular_genre", "popular"
META_FIELDS = {"title": 1, "artist": 1, "genre_top": 1, "listens": 1, "duration": 1, "recording": 1}
DEFAULT_DURATION_S = 30.0


def normalise_title(title: str | None) -> str:
    """'Song (Live) [Remastered 2011] - Radio Edit' -> 'song'."""
    if not title:
        return ""
    t = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[\(\[\{].*?[\)\]\}]", " ", t)
    t = re.split(r"\s+[-\u2013\u2014]\s+", t)[0]
    t = re.sub(r"\b(feat|ft)\.?\s.*$", " ", t)
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return " ".join(t.split())


def version_key(track_id: int, title: str | None, artist: str | None, recording: str | None) -> str:
    """Tracks with the same key are versions of one song."""
    if recording:
        return f"rec:{recording}"
    nt = normalise_title(title)
    if not nt:
        return f"id:{track_id}"
    return f"song:{normalise_title(artist)}|{nt}"


def _codes(values) -> np.ndarray:
    index: dict = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _strings(values) -> np.ndarray:
    """A fixed-width unicode array (saved without pickle); '' for missing."""
    return np.array(["" if v is None else str(v) for v in values], dtype=np.str_)


@dataclass
class Catalogue:
    ids: np.ndarray              # (n,) int64 track ids, the model's order
    vectors: np.ndarray          # (n, d) float32 in the model's space ((n, 0) when not needed)
    title: np.ndarray            # (n,) str ('' unknown)
    artist: np.ndarray           # (n,) str
    genre: np.ndarray            # (n,) str ('' no genre)
    listens: np.ndarray          # (n,) int64
    duration: np.ndarray         # (n,) float64 seconds (0 unknown)
    recording: np.ndarray        # (n,) str (source recording of a demo clip, '' unknown)
    version: str = ""            # the model version the vectors belong to
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int64)
        n = len(self.ids)
        self.vectors = np.ascontiguousarray(self.vectors if self.vectors is not None else np.zeros((n, 0)),
                                            dtype=np.float32)
        self.title, self.artist, self.genre, self.recording = (
            a if isinstance(a, np.ndarray) and a.dtype.kind == "U" else _strings(a)
            for a in (self.title, self.artist, self.genre, self.recording))
        self.listens = np.maximum(np.asarray(self.listens, dtype=np.int64), 0)
        self.duration = np.asarray(self.duration, dtype=np.float64)
        if not all(len(a) == n for a in (self.vectors, self.title, self.artist, self.genre, self.listens,
                                         self.duration, self.recording)):
            raise ValueError("catalogue columns differ in length")

    # --- building -----------------------------------------------------------------------------------

    @classmethod
    def from_documents(cls, ids, vectors, documents, version: str = "") -> "Catalogue":
        """Rows for `ids` (with `vectors`) from `tracks` documents (any may be missing or partial)."""
        meta = {int(d["_id"]): d for d in documents}
        rows = [meta.get(int(t), {}) for t in np.asarray(ids)]
        return cls(ids, vectors, [r.get("title") for r in rows], [r.get("artist") for r in rows],
                   [r.get("genre_top") for r in rows], [int(r.get("listens") or 0) for r in rows],
                   [float(r.get("duration") or 0.0) for r in rows], [r.get("recording") for r in rows], version)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def of_ids(cls, ids, duration=None) -> "Catalogue":
        """Ids (and durations) only, no vectors or metadata: what event validation needs."""
        n = len(ids)
        return cls(ids, None, [""] * n, [""] * n, [""] * n, np.zeros(n), np.zeros(n) if duration is None
                   else duration, [""] * n)

    def without_vectors(self) -> "Catalogue":
        return Catalogue(self.ids, None, self.title, self.artist, self.genre, self.listens, self.duration,
                         self.recording, self.version)

    # --- lookups ------------------------------------------------------------------------------------

    def _sorted(self):
        if "sorted" not in self._cache:
            order = np.argsort(self.ids, kind="stable")
            self._cache["sorted"] = (self.ids[order], order)
        return self._cache["sorted"]

    def rows(self, track_ids) -> np.ndarray:
        """Row of each id (-1 where the catalogue does not hold it); a few ids (one user's tracks, as the
        stream asks several times per user) are looked up in `row`'s dict, more by a binary search."""
        want = np.asarray(track_ids, dtype=np.int64).ravel()
        if len(want) <= 32:
            get = self._row_of().get
            return np.fromiter((get(t, -1) for t in want.tolist()), dtype=np.int64, count=len(want))
        keys, order = self._sorted()
        if not len(keys) or not len(want):
            return np.full(len(want), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        return np.where(keys[pos] == want, order[pos], -1)

    def row(self, track_id) -> int:
        """Row of one id (-1 if the catalogue does not hold it, or it is no integer): a dict lookup, as
        every event of the stream validates its track and reads its duration one at a time."""
        try:
            key = int(track_id)
        except (TypeError, ValueError, OverflowError):
            return -1
        return self._row_of().get(key, -1)

    def _row_of(self) -> dict:
        """{track id: row}, the first row of a repeated id (as the binary search finds it)."""
        if "row_of" not in self._cache:
            n = len(self.ids)
            self._cache["row_of"] = dict(zip(self.ids[::-1].tolist(), range(n - 1, -1, -1)))
        return self._cache["row_of"]

    def __contains__(self, track_id) -> bool:
        return self.row(track_id) >= 0

    def duration_of(self, track_id) -> float | None:
        r = self.row(track_id)
        return float(self.duration[r]) if r >= 0 and self.duration[r] > 0 else None

    def label(self, track_id, between: str = " by ") -> str:
        """'Title by Artist' (`between` joins the two; '#id' for a track the catalogue does not hold)."""
        r = self.row(track_id)
        if r < 0:
            return f"#{track_id}"
        title = str(self.title[r]) or f"#{track_id}"
        return f"{title}{between}{self.artist[r]}" if self.artist[r] else title

    # --- derived, computed once -----------------------------------------------------------------------

    def _derived(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def version_code(self) -> np.ndarray:
        """Equal codes: versions of one song (same recording, or same artist and normalised title)."""
        return self._derived("version_code", lambda: _codes(
            version_key(int(t), ti or None, a or None, r or None)
            for t, ti, a, r in zip(self.ids, self.title, self.artist, self.recording)))

    @property
    def artist_code(self) -> np.ndarray:
        return self._derived("artist_code", lambda: _codes(
            (str(a).strip().lower() or f"id:{t}") for t, a in zip(self.ids, self.artist)))

    @property
    def popular(self) -> np.ndarray:
        """Rows by listens, most first (ties by id)."""
        return self._derived("popular", lambda: np.lexsort((self.ids, -self.listens)))

    @property
    def max_listens(self) -> int:
        """The most listens of a track (at least 1)."""
        return self._derived("max_listens", lambda: max(1, int(self.listens.max())) if len(self) else 1)

    @property
    def genres(self) -> list[str]:
        return self._derived("genres", lambda: sorted({str(g) for g in self.genre if g}))

    @property
    def rows_of_genre(self) -> dict[str, np.ndarray]:
        """Rows of each genre, in catalogue order."""
        return self._derived("rows_of_genre", lambda: {g: np.flatnonzero(self.genre == g) for g in self.genres})

    @property
    def popular_by_genre(self) -> dict[str, np.ndarray]:
        """Rows of each genre by listens, most first."""
        def make():
            pop = self.popular
            g = self.genre[pop]
            return {name: pop[g == name] for name in self.genres}
        return self._derived("popular_by_genre", make)

    @property
    def sq_norms(self) -> np.ndarray:
        return self._derived("sq_norms", lambda: np.einsum("ij,ij->i", self.vectors, self.vectors))

    # --- a file named by its content --------------------------------------------------------------

    def _arrays(self) -> dict:
        return dict(ids=self.ids, vectors=self.vectors, title=self.title, artist=self.artist, genre=self.genre,
                    listens=self.listens, duration=self.duration, recording=self.recording,
                    version=np.array(self.version))

    @property
    def name(self) -> str:
        """A file name unique to this content."""
        def make():
            h = hashlib.sha1()
            for k, a in self._arrays().items():
                h.update(k.encode())
                h.update(np.ascontiguousarray(a).tobytes())
            return f"musicrec-catalogue-{h.hexdigest()[:16]}.npz"
        return self._derived("name", make)

    def save(self, folder, extra: dict | None = None, name: str | None = None) -> str:
        """Write `<folder>/<name>` once (atomically) with `extra` arrays beside the catalogue's."""
        path = Path(folder) / (name or self.name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{id(self)}.tmp")
            with open(tmp, "wb") as fh:
                # compressed: the fixed-width text columns are mostly padding (100k tracks without vectors,
                # titles of 15-75 characters: 1.2 MB instead of 40 MB)
                np.savez_compressed(fh, **self._arrays(), **{f"extra_{k}": v for k, v in (extra or {}).items()})
            tmp.replace(path)
        return str(path)

    @classmethod
    def read(cls, path) -> tuple["Catalogue", dict]:
        """(catalogue, extra arrays) from `save`."""
        with np.load(path, allow_pickle=False) as z:
            cat = cls(z["ids"], z["vectors"], z["title"], z["artist"], z["genre"], z["listens"], z["duration"],
                      z["recording"], str(z["version"]))
            extra = {k[len("extra_"):]: z[k] for k in z.files if k.startswith("extra_")}
        return cat, extra


def reason_text(item: dict, label) -> str:
    """What the reason of a recommendation item says to a listener; `label(track_id)` names a track
    (a Catalogue's `label`, or the dashboard's). A reason that is no code (an older document's text)
    is shown as it is."""
    label = getattr(label, "label", label)
    reason = item.get("reason")
    if reason == SIMILAR and item.get("reason_track_id") is not None:
        return f"because you played \u201c{label(item['reason_track_id'])}\u201d"
    if reason == TASTE:
        return "close to your taste"
    if reason == POPULAR_GENRE and item.get("genre"):
        return f"popular in {item['genre']}"
    if reason == POPULAR:
        return "popular on musicrec"
    return str(reason or "")
