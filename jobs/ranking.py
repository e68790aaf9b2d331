"""From taste vectors to ranked, filtered, explained recommendations: pure numpy, no services.

For all users of a micro-batch at once:
1. candidates: each taste vector is hashed with the model's banded LSH and looked up in the catalogue
   hashed once at start-up (`jobs.lsh.BandedIndex.candidate_mask`); the candidates are re-ranked by the
   exact Euclidean distance (float64, so a user's list never depends on who else is in the batch);
2. filters: nothing the user already heard, skipped or disliked, no second version of one song (same
   source recording, or same artist and normalised title) and no version of a song the user heard, at
   most `max_per_artist` tracks per artist;
3. fill (cold start, or too few candidates): popular tracks, genre-aware once the user has a signal
   (genres the user leans to first, genres the user rejects last);
4. every item carries a score (1 / (1 + distance) for similarity picks, half the popularity share for
   popular picks) and a reason: the user's own track it is closest to, or the genre it is popular in.
Ties break on track id, and scores are rounded to 6 decimals, so the same state gives the same list.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

SCORE_DECIMALS = 6
SEED_TRACKS = 3          # the user's strongest tracks, a second candidate source for sparse buckets


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


@dataclass
class Catalogue:
    """The model's catalogue with what ranking needs, row-aligned with the model's `ids`/`vectors`."""
    ids: np.ndarray
    vectors: np.ndarray
    title: list
    artist: list
    genre: list
    listens: np.ndarray
    duration: np.ndarray
    version: np.ndarray = field(repr=False, default=None)
    artist_code: np.ndarray = field(repr=False, default=None)
    row_of: dict = field(repr=False, default=None)
    popular: np.ndarray = field(repr=False, default=None)
    popular_by_genre: dict = field(repr=False, default=None)
    _sq: np.ndarray = field(repr=False, default=None)

    @classmethod
    def build(cls, ids, vectors, meta: dict[int, dict]) -> "Catalogue":
        """`meta[track_id]`: title, artist, genre_top, listens, duration, recording (any may be missing)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = [meta.get(int(t), {}) for t in ids]
        title = [r.get("title") or f"track {t}" for t, r in zip(ids, rows)]
        artist = [r.get("artist") or "" for r in rows]
        genre = [r.get("genre_top") or None for r in rows]
        listens = np.array([max(0, int(r.get("listens") or 0)) for r in rows], dtype=np.int64)
        duration = np.array([float(r.get("duration") or 0.0) for r in rows], dtype=np.float64)
        version = _codes(version_key(int(t), r.get("title"), r.get("artist"), r.get("recording"))
                         for t, r in zip(ids, rows))
        artist_code = _codes((a.strip().lower() or f"id:{t}") for t, a in zip(ids, artist))
        popular = np.lexsort((ids, -listens))
        by_genre: dict = {}
        for r in popular:
            if genre[r]:
                by_genre.setdefault(genre[r], []).append(r)
        return cls(ids, np.asarray(vectors, dtype=np.float32), title, artist, genre, listens, duration, version,
                   artist_code, {int(t): i for i, t in enumerate(ids)}, popular,
                   {g: np.array(v, dtype=np.int64) for g, v in by_genre.items()})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sq_norms(self) -> np.ndarray:
        if self._sq is None:
            self._sq = np.einsum("ij,ij->i", self.vectors, self.vectors)
        return self._sq

    def durations(self) -> dict[int, float]:
        return {int(t): float(d) for t, d in zip(self.ids, self.duration) if d > 0}


@dataclass
class Query:
    """One user to recommend for: taste vector (None: cold start), what they heard, their signals."""
    taste: np.ndarray | None
    heard: tuple = ()
    positives: tuple = ()          # (track_id, weight) of tracks the user leans to
    affinity: dict = field(default_factory=dict)   # genre -> net weight


@dataclass
class Item:
    track_id: int
    title: str
    artist: str
    genre_top: str | None
    score: float
    reason: str
    reason_track_id: int | None

    def to_doc(self) -> dict:
        return dict(self.__dict__)


# --- candidates -----------------------------------------------------------------------------------------

def candidates(index, catalogue: Catalogue, tastes: np.ndarray, n: int, exclude: list,
               seeds: list | None = None, cells: int = 4_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSH candidates of every taste, exactly re-ranked: (rows (q, n) catalogue rows or -1,
    distances (q, n) float64, number of LSH candidates per query). `exclude[i]`: track ids never returned.

    Per block of queries: the band lookup gives the candidate mask; one float32 matrix product ranks the
    candidates and keeps a shortlist of 2n; the shortlist is re-ranked by the exact float64 distance,
    computed per pair, and the first n are kept. So a user's result does not depend on the other users
    of the block (the shortlist is twice as long as what is kept), and ties break on track id.

    `seeds[i]`: track ids whose buckets are looked up too when the taste's own buckets hold fewer than
    n candidates (a taste between clusters can fall in empty buckets; the user's own tracks never do).
    """
    tastes = np.asarray(tastes, dtype=np.float64)
    q, size = len(tastes), len(catalogue)
    out_rows = np.full((q, n), -1, dtype=np.int64)
    out_d = np.full((q, n), np.inf, dtype=np.float64)
    n_cand = np.zeros(q, dtype=np.int64)
    if q == 0 or size == 0:
        return out_rows, out_d, n_cand
    vectors = catalogue.vectors
    sq = catalogue.sq_norms
    short = min(2 * n, size)
    block = max(1, cells // size)
    for s in range(0, q, block):
        t = tastes[s:s + block]
        t32 = t.astype(np.float32)
        mask = index.candidate_mask(t32)
        if seeds is not None:
            _add_seed_buckets(index, catalogue, mask, seeds[s:s + block], n)
        for r, ex in enumerate(exclude[s:s + block]):
            drop = [catalogue.row_of[x] for x in ex if x in catalogue.row_of]
            if drop:
                mask[r, drop] = False
        n_cand[s:s + block] = counts = np.count_nonzero(mask, axis=1)
        approx = t32 @ vectors.T                                   # |v|^2 - 2 q.v: the order of |q - v|
        approx *= -2.0
        approx += sq
        for r in range(len(t)):
            if counts[r] == 0:
                continue
            rows = np.flatnonzero(mask[r])
            if len(rows) > short:
                rows = rows[np.argpartition(approx[r, rows], short - 1)[:short]]
            diff = vectors[rows].astype(np.float64) - t[r]
            d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            order = np.lexsort((catalogue.ids[rows], d))[:n]
            out_rows[s + r, : len(order)] = rows[order]
            out_d[s + r, : len(order)] = d[order]
    return out_rows, out_d, n_cand


def _add_seed_buckets(index, catalogue: Catalogue, mask: np.ndarray, seeds: list, n: int) -> None:
    """OR the buckets of each sparse row's seed tracks into its candidate mask (in place)."""
    sparse_rows = [r for r in range(len(mask)) if seeds[r] and mask[r].sum() < n]
    owners, vecs = [], []
    for r in sparse_rows:
        for t in seeds[r]:
            row = catalogue.row_of.get(int(t))
            if row is not None:
                owners.append(r)
                vecs.append(catalogue.vectors[row])
    if vecs:
        extra = index.candidate_mask(np.asarray(vecs, dtype=np.float32))
        for r, m in zip(owners, extra):
            mask[r] |= m


# --- selection --------------------------------------------------------------------------------------

def _score(distance: float) -> float:
    return round(1.0 / (1.0 + float(distance)), SCORE_DECIMALS)


def _popular_order(catalogue: Catalogue, affinity: dict):
    """Rows of popular tracks: preferred genres first (strongest first), then the rest, rejected last."""
    liked = sorted((g for g, w in affinity.items() if w > 0 and g in catalogue.popular_by_genre),
                   key=lambda g: (-affinity[g], g))
    rejected = {g for g, w in affinity.items() if w < 0}
    for g in liked:
        for r in catalogue.popular_by_genre[g]:
            yield int(r), g
    later = []
    for r in catalogue.popular:
        g = catalogue.genre[r]
        if g in rejected:
            later.append(int(r))
        elif g not in liked:
            yield int(r), None
    for r in later:
        yield r, None


def select(catalogue: Catalogue, query: Query, cand_rows, cand_d, k: int, max_per_artist: int) -> list[Item]:
    """The user's top k: candidates in distance order through the filters, then popular fill."""
    heard = {int(t) for t in query.heard}
    heard_versions = {int(catalogue.version[catalogue.row_of[t]]) for t in heard if t in catalogue.row_of}
    used_versions: set = set()
    per_artist: dict = {}
    chosen: list[tuple[int, float | None, str | None]] = []   # (row, distance, fill genre)

    def take(r: int) -> bool:
        if int(catalogue.ids[r]) in heard:
            return False
        v = int(catalogue.version[r])
        if v in heard_versions or v in used_versions:
            return False
        a = int(catalogue.artist_code[r])
        if per_artist.get(a, 0) >= max_per_artist:
            return False
        used_versions.add(v)
        per_artist[a] = per_artist.get(a, 0) + 1
        return True

    for r, d in zip(cand_rows, cand_d):
        if len(chosen) >= k:
            break
        if r >= 0 and take(int(r)):
            chosen.append((int(r), float(d), None))
    if len(chosen) < k:
        for r, g in _popular_order(catalogue, query.affinity):
            if len(chosen) >= k:
                break
            if take(r):
                chosen.append((r, None, g or ""))
    return _explain(catalogue, query, chosen)


def _explain(catalogue: Catalogue, query: Query, chosen) -> list[Item]:
    pos = [(int(t), w) for t, w in query.positives if w > 0 and int(t) in catalogue.row_of]
    pos_rows = np.array([catalogue.row_of[t] for t, _ in pos], dtype=np.int64)
    pv = catalogue.vectors[pos_rows].astype(np.float64) if len(pos_rows) else None
    top = max(1, int(catalogue.listens.max())) if len(catalogue) else 1
    items = []
    for r, d, g in chosen:
        tid = int(catalogue.ids[r])
        reason_id = None
        if d is not None:
            score = _score(d)
            if pv is not None:
                diff = pv - catalogue.vectors[r].astype(np.float64)
                dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
                best = int(np.lexsort((pos_rows, dist))[0])
                reason_id = int(catalogue.ids[pos_rows[best]])
                rt = catalogue.row_of[reason_id]
                by = f" by {catalogue.artist[rt]}" if catalogue.artist[rt] else ""
                reason = f"because you played \u201c{catalogue.title[rt]}\u201d{by}"
            else:
                reason = "close to your taste"
        else:
            score = round(0.5 * float(catalogue.listens[r]) / top, SCORE_DECIMALS)
            reason = f"popular in {g}" if g else "popular on musicrec"
        items.append(Item(tid, catalogue.title[r], catalogue.artist[r], catalogue.genre[r], score, reason, reason_id))
    return items


def recommend(index, catalogue: Catalogue, queries: list[Query], k: int, max_per_artist: int,
              n_candidates: int | None = None) -> tuple[list[list[Item]], np.ndarray]:
    """Top-k items for every query, and the number of LSH candidates each had (0 for cold starts)."""
    n_candidates = n_candidates or max(4 * k, k + 20)
    warm = [i for i, q in enumerate(queries) if q.taste is not None]
    rows = np.full((len(queries), n_candidates), -1, dtype=np.int64)
    dist = np.full((len(queries), n_candidates), np.inf)
    n_cand = np.zeros(len(queries), dtype=np.int64)
    if warm:
        tastes = np.stack([np.asarray(queries[i].taste, dtype=np.float64) for i in warm])
        seeds = [tuple(t for t, _ in sorted(queries[i].positives, key=lambda p: (-p[1], p[0]))[:SEED_TRACKS])
                 for i in warm]
        r, d, c = candidates(index, catalogue, tastes, n_candidates, [queries[i].heard for i in warm], seeds)
        rows[warm], dist[warm], n_cand[warm] = r, d, c
    out = [select(catalogue, q, rows[i], dist[i], k, max_per_artist) for i, q in enumerate(queries)]
    return out, n_cand
