"""From taste vectors to ranked, filtered, explained recommendations: pure numpy, no services.

For all users of a batch at once:
1. candidates: the model's banded LSH index (`jobs.lsh.BandedIndex.query`, the index the LSH benchmark
   measures and the model job evaluates) walks each taste's band buckets and keeps the best `2n` by
   float32 distance; only those are re-ranked by the exact float64 distance, so a user's cost follows
   the number of LSH candidates, not the catalogue, and a user's list never depends on who else is in
   the batch;
2. filters: nothing the user already heard, skipped or disliked, no second version of one song (same
   source recording, or same artist and normalised title) and no version of a song the user heard, at
   most `max_per_artist` tracks per artist;
3. fill (cold start, or too few candidates): popular tracks, genre-aware once the user has a signal
   (genres the user leans to first, genres the user rejects last);
4. every item carries a score and a reason: the user's own track it is closest to (`similar`, with
   `reason_track_id`), the taste itself (`taste`: no liked track to point at), or popularity
   (`popular_genre` with its `genre`, `popular`).

What the score means: a similarity pick scores 1 / (1 + d), d its Euclidean distance to the user's
taste in the model's space (1 = the taste itself). A popular fill scores its popularity share (listens
over the catalogue's most listened track) times the score of the last personal pick (1 for a cold
start), capped by the score above it: within a list the scores never rise, so a fill never outscores
a personal pick above it. Ties break on track id and scores
are rounded to 6 decimals, so the same state gives the same list.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.catalogue import (POPULAR, POPULAR_GENRE, SIMILAR, TASTE, Catalogue,  # noqa: F401  (re-exported)
                              normalise_title, reason_text, version_key)

SCORE_DECIMALS = 6
SEED_TRACKS = 3          # the user's strongest tracks, a second candidate source for sparse buckets


@dataclass
class Query:
    """One user to recommend for: taste vector (None: cold start), what they heard, their signals."""
    taste: np.ndarray | None
    heard: tuple = ()
    positives: tuple = ()          # (track_id, weight) of tracks the user leans to
    affinity: dict = field(default_factory=dict)   # genre -> net weight


@dataclass
class Item:
    """One recommendation: ids, score and the reason's kind; titles are the catalogue's to resolve."""
    track_id: int
    score: float
    reason: str                    # SIMILAR, TASTE, POPULAR_GENRE or POPULAR
    reason_track_id: int | None = None
    genre: str | None = None       # the genre of a POPULAR_GENRE fill

    def to_doc(self) -> dict:
        d = {"track_id": self.track_id, "score": self.score, "reason": self.reason}
        if self.reason_track_id is not None:
            d["reason_track_id"] = self.reason_track_id
        if self.genre:
            d["genre"] = self.genre
        return d


# --- candidates -----------------------------------------------------------------------------------------

def candidates(index, catalogue: Catalogue, tastes: np.ndarray, n: int, exclude: list,
               seeds: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSH candidates of every taste, exactly re-ranked: (rows (q, n) catalogue rows or -1,
    distances (q, n) float64, number of LSH candidates per query). `exclude[i]`: track ids never returned.

    The index returns each taste's best `2n` candidates by float32 distance (it scores every
    candidate once, in its band buckets only); that shortlist is re-ranked by the exact float64
    distance and the first n are kept, ties on track id.

    `seeds[i]`: track ids whose buckets are searched too when the taste's own buckets hold fewer than
    n candidates (a taste between clusters can fall in empty buckets; the user's own tracks never do).
    `index` rows must be the catalogue's rows (both come from the model bundle).
    """
    tastes = np.asarray(tastes, dtype=np.float64)
    q = len(tastes)
    out_rows = np.full((q, n), -1, dtype=np.int64)
    out_d = np.full((q, n), np.inf, dtype=np.float64)
    n_cand = np.zeros(q, dtype=np.int64)
    if q == 0 or len(catalogue) == 0:
        return out_rows, out_d, n_cand
    short = min(2 * n, len(catalogue))
    pos, _, n_cand = index.query(tastes.astype(np.float32), short, exclude=list(exclude), positions=True)
    extra: dict[int, np.ndarray] = {}
    if seeds is not None:
        sparse = [r for r in range(q) if seeds[r] and n_cand[r] < n]
        owners, vecs = [], []
        for r in sparse:
            for row in catalogue.rows([int(t) for t in seeds[r]]):
                if row >= 0:
                    owners.append(r)
                    vecs.append(catalogue.vectors[row])
        if vecs:
            # the seeds' own neighbours, judged below by their distance to the taste
            spos, _, scount = index.query(np.asarray(vecs, dtype=np.float32), short,
                                          exclude=[exclude[r] for r in owners], positions=True)
            for r, p, c in zip(owners, spos, scount):
                extra[r] = np.concatenate([extra.get(r, np.zeros(0, dtype=np.int64)), p[p >= 0]])
                n_cand[r] += c
    vectors, ids = catalogue.vectors, catalogue.ids
    for r in range(q):
        rows = pos[r][pos[r] >= 0]
        if r in extra:
            rows = np.unique(np.concatenate([rows, extra[r]]))
        if not len(rows):
            continue
        diff = vectors[rows].astype(np.float64) - tastes[r]
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        order = np.lexsort((ids[rows], d))[:n]
        out_rows[r, : len(order)] = rows[order]
        out_d[r, : len(order)] = d[order]
    return out_rows, out_d, n_cand


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
        g = str(catalogue.genre[r])
        if g in rejected:
            later.append(int(r))
        elif g not in liked:
            yield int(r), None
    for r in later:
        yield r, None


def select(catalogue: Catalogue, query: Query, cand_rows, cand_d, k: int, max_per_artist: int) -> list[Item]:
    """The user's top k: candidates in distance order through the filters, then popular fill."""
    ids, vcode, acode = catalogue.ids, catalogue.version_code, catalogue.artist_code
    heard = {int(t) for t in query.heard}
    heard_rows = catalogue.rows(np.fromiter(heard, dtype=np.int64, count=len(heard)))
    used_versions = set(vcode[heard_rows[heard_rows >= 0]].tolist())    # no version of a heard song either
    per_artist: dict = {}
    chosen: list[tuple[int, float | None, str | None]] = []   # (row, distance, fill genre)

    def take(r: int) -> bool:
        if int(ids[r]) in heard:
            return False
        v = int(vcode[r])
        if v in used_versions:
            return False
        a = int(acode[r])
        if per_artist.get(a, 0) >= max_per_artist:
            return False
        used_versions.add(v)
        per_artist[a] = per_artist.get(a, 0) + 1
        return True

    for r, d in zip(np.asarray(cand_rows).tolist(), np.asarray(cand_d).tolist()):
        if len(chosen) >= k:
            break
        if r >= 0 and take(r):
            chosen.append((r, d, None))
    if len(chosen) < k:
        for r, g in _popular_order(catalogue, query.affinity):
            if len(chosen) >= k:
                break
            if take(r):
                chosen.append((r, None, g or ""))
    return _explain(catalogue, query, chosen)


def _reason_tracks(catalogue: Catalogue, query: Query, rows: list[int]) -> list[int | None]:
    """For each catalogue row, the user's positive track closest to it (ties: the smaller id)."""
    pos = sorted({int(t) for t, w in query.positives if w > 0})
    pos_rows = catalogue.rows(np.asarray(pos, dtype=np.int64)) if pos else np.zeros(0, dtype=np.int64)
    pos_rows = pos_rows[pos_rows >= 0]               # in id order, so the first minimum is the smaller id
    if not len(pos_rows) or not rows:
        return [None] * len(rows)
    pv = catalogue.vectors[pos_rows].astype(np.float64)
    cv = catalogue.vectors[rows].astype(np.float64)
    d2 = (cv * cv).sum(axis=1)[:, None] - 2.0 * (cv @ pv.T) + (pv * pv).sum(axis=1)[None, :]
    return catalogue.ids[pos_rows[np.argmin(d2, axis=1)]].tolist()


def _explain(catalogue: Catalogue, query: Query, chosen) -> list[Item]:
    top = catalogue.max_listens
    similar = [r for r, d, _ in chosen if d is not None]
    because = iter(_reason_tracks(catalogue, query, similar))
    items: list[Item] = []
    above = floor = 1.0     # the score of the item above (scores never rise) and of the last personal pick
    for r, d, g in chosen:
        tid = int(catalogue.ids[r])
        if d is not None:
            score = floor = min(above, _score(d))
            reason_id = next(because)
            items.append(Item(tid, score, SIMILAR, reason_track_id=int(reason_id)) if reason_id is not None
                         else Item(tid, score, TASTE))
        else:
            share = float(catalogue.listens[r]) / top
            score = min(above, max(10.0 ** -SCORE_DECIMALS, round(floor * share, SCORE_DECIMALS)))
            items.append(Item(tid, score, POPULAR_GENRE, genre=g) if g else Item(tid, score, POPULAR))
        above = score
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
