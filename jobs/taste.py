"""A listener's taste as pure functions: how one event changes a user's state, and the taste vector.

The state keeps the taste in factored form: a decayed weight per recently played track, positive
(like, complete, play pull towards the track) and negative (skip, dislike push away). The taste vector
in the model's scaled space is then

    P = sum(pos_i * x_i) / sum(pos_i)          the weighted mean of what the user liked
    N = sum(neg_i * x_i) / sum(neg_i)          the weighted mean of what the user rejected
    taste = P + push * Wn / (Wp + Wn) * (P - N)

so it stays on the items' scale (a weighted mean, never shrunk towards zero), and negatives move it
away from what was rejected by at most `push` times the gap. Every event first decays all weights by
2^(-1/half_life), which is exactly the incremental exponentially-weighted mean, kept as weights rather
than as one vector so that the state is independent of the model version (a refit changes the
vectors, not the user's history) and the vector is computed for all users of a micro-batch at once.

Skips count by how early they happen: before `min_skip_s` seconds fully, then linearly less down to
`SKIP_FLOOR` at the end of the track. A negative event clears the track's positive weight, and a
complete or like clears its negative weight (the latest opinion of a track wins).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIP_FLOOR = 0.1


@dataclass(frozen=True)
class Rules:
    half_life_events: float = 20.0
    min_skip_s: float = 10.0
    play: float = 0.25          # started: a weak pull (the user chose it)
    complete: float = 1.0
    like: float = 2.0
    skip: float = 1.0           # times the skip factor
    dislike: float = 2.0
    push: float = 0.5           # how far negatives push the taste away
    history_size: int = 500     # distinct heard tracks remembered (never recommended again)
    max_tracks: int = 200       # weighted tracks kept
    min_weight: float = 1e-3    # decayed weights below this are dropped
    dedupe_events: int = 256    # recent event ids remembered to drop duplicates

    @property
    def decay(self) -> float:
        return 0.5 ** (1.0 / self.half_life_events)

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        return cls(half_life_events=float(settings.taste_half_life_events),
                   min_skip_s=float(settings.min_skip_seconds),
                   history_size=int(settings.history_size))


@dataclass(frozen=True)
class UserState:
    track_ids: tuple[int, ...] = ()
    pos: tuple[float, ...] = ()
    neg: tuple[float, ...] = ()
    heard: tuple[int, ...] = ()         # distinct tracks with any event, oldest first
    event_ids: tuple[int, ...] = ()     # recent event ids' keys (`event_key`), oldest first
    n_events: int = 0
    last_event_ms: int = 0
    partition: int = -1                 # Kafka position of the last applied event
    offset: int = -1

    def weights(self) -> dict[int, tuple[float, float]]:
        return {t: (p, n) for t, p, n in zip(self.track_ids, self.pos, self.neg)}


def event_key(event_id: str) -> int:
    """A 64-bit key of an event id (BLAKE2b): what a state remembers to drop duplicates, 8 bytes whatever the
    id's length (a collision among one user's last `dedupe_events` ids has odds of about 2^-48)."""
    import hashlib

    digest = hashlib.blake2b(str(event_id).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def skip_factor(ms_played: int, duration_s: float | None, min_skip_s: float) -> float:
    """1 for a skip within `min_skip_s`, then falling linearly to SKIP_FLOOR at the track's end."""
    played_s = max(0.0, ms_played / 1000.0)
    if played_s <= min_skip_s:
        return 1.0
    duration = float(duration_s) if duration_s and duration_s > 0 else 30.0
    if duration <= min_skip_s:
        return SKIP_FLOOR
    frac = min(1.0, (played_s - min_skip_s) / (duration - min_skip_s))
    return 1.0 - (1.0 - SKIP_FLOOR) * frac


def signed_weight(action: str, ms_played: int, duration_s: float | None, rules: Rules) -> float:
    """How much one event pulls (> 0) or pushes (< 0)."""
    if action == "play":
        return rules.play
    if action == "complete":
        return rules.complete
    if action == "like":
        return rules.like
    if action == "skip":
        return -rules.skip * skip_factor(ms_played, duration_s, rules.min_skip_s)
    if action == "dislike":
        return -rules.dislike
    raise ValueError(f"unknown action {action!r}")


def apply(state: UserState, event, rules: Rules, duration_s: float | None = None,
          partition: int = -1, offset: int = -1) -> UserState:
    """The state after one validated event (a `jobs.events.Event`); a duplicate event id changes nothing."""
    key = event_key(event.event_id)
    if key in state.event_ids:
        return state
    w = signed_weight(event.action, event.ms_played, duration_s, rules)
    d = rules.decay
    weights = {t: (p * d, n * d) for t, p, n in zip(state.track_ids, state.pos, state.neg)}
    p, n = weights.pop(event.track_id, (0.0, 0.0))
    if w > 0:
        p += w
        if event.action in ("complete", "like"):
            n = 0.0
    else:
        n += -w
        p = 0.0
    weights[event.track_id] = (p, n)  # most recent last
    kept = [(t, p, n) for t, (p, n) in weights.items() if max(p, n) >= rules.min_weight]
    if len(kept) > rules.max_tracks:
        strongest = sorted(range(len(kept)), key=lambda i: (-(kept[i][1] + kept[i][2]), -i))[: rules.max_tracks]
        kept = [kept[i] for i in sorted(strongest)]
    heard = [t for t in state.heard if t != event.track_id]
    heard.append(event.track_id)
    event_ids = (state.event_ids + (key,))[-rules.dedupe_events:] if rules.dedupe_events > 0 else ()
    return UserState(
        track_ids=tuple(t for t, _, _ in kept), pos=tuple(p for _, p, _ in kept),
        neg=tuple(n for _, _, n in kept), heard=tuple(heard[-rules.history_size:]), event_ids=event_ids,
        n_events=state.n_events + 1, last_event_ms=max(state.last_event_ms, event.event_time_ms),
        partition=partition if partition >= 0 else state.partition,
        offset=offset if offset >= 0 else state.offset)


def event_order(event, partition: int = -1, offset: int = -1):
    """The order events of one user are applied in, within a micro-batch: event time, then Kafka position."""
    return (event.event_time_ms, partition, offset, event.event_id)


def fold(state: UserState, events, rules: Rules, durations=None) -> UserState:
    """Apply (event, partition, offset) triples in `event_order`; `durations` maps track id -> seconds."""
    for ev, part, off in sorted(events, key=lambda e: event_order(*e)):
        dur = durations.get(ev.track_id) if durations is not None else None
        state = apply(state, ev, rules, dur, part, off)
    return state


# --- the taste vector -------------------------------------------------------------------------------

def taste_vector(state: UserState, vectors_of, push: float = Rules.push) -> np.ndarray | None:
    """One user's taste in model space; `vectors_of(ids)` gives their vectors. None: no positive signal."""
    pos = np.asarray(state.pos, dtype=np.float64)
    neg = np.asarray(state.neg, dtype=np.float64)
    if pos.sum() <= 0:
        return None
    x = np.asarray(vectors_of(list(state.track_ids)), dtype=np.float64)
    return _combine(pos @ x, pos.sum(), neg @ x, neg.sum(), push)


def _combine(psum, wp, nsum, wn, push):
    p = psum / wp
    if wn <= 0:
        return p
    n = nsum / wn
    return p + push * wn / (wp + wn) * (p - n)


def taste_matrix(track_lists, pos_lists, neg_lists, row_of, vectors: np.ndarray,
                 push: float = Rules.push) -> tuple[np.ndarray, np.ndarray]:
    """Taste vectors of many users at once: (B, d) float32 and a (B,) mask of users that have one.

    `row_of` maps track ids to rows of `vectors`: a dict, or a function of an id array giving rows
    (-1 unknown, as `common.catalogue.Catalogue.rows`); tracks the model does not know are ignored.
    Only the rows the users name are read, so the cost follows the users' tracks, not the catalogue.
    """
    from scipy import sparse

    b = len(track_lists)
    lens = np.fromiter((len(x) for x in track_lists), dtype=np.int64, count=b)
    total = int(lens.sum())
    flat = np.fromiter((int(t) for x in track_lists for t in x), dtype=np.int64, count=total)
    pw = np.fromiter((float(p) for x in pos_lists for p in x), dtype=np.float64, count=total)
    nw = np.fromiter((float(q) for x in neg_lists for q in x), dtype=np.float64, count=total)
    if callable(row_of):
        cols = np.asarray(row_of(flat), dtype=np.int64)
    else:
        cols = np.fromiter((row_of.get(int(t), -1) for t in flat), dtype=np.int64, count=total)
    users = np.repeat(np.arange(b), lens)
    keep = cols >= 0
    used, local = np.unique(cols[keep], return_inverse=True)
    v = np.asarray(vectors[used], dtype=np.float64).reshape(len(used), -1)
    shape = (b, len(used))
    P = sparse.csr_matrix((pw[keep], (users[keep], local)), shape=shape, dtype=np.float64)
    N = sparse.csr_matrix((nw[keep], (users[keep], local)), shape=shape, dtype=np.float64)
    wp = np.asarray(P.sum(axis=1)).ravel()
    wn = np.asarray(N.sum(axis=1)).ravel()
    has = wp > 0
    out = np.zeros((b, np.shape(vectors)[1]), dtype=np.float64)
    if has.any():
        psum, nsum = P @ v, N @ v
        p = psum[has] / wp[has, None]
        out[has] = p
        neg = has & (wn > 0)
        if neg.any():
            pn = psum[neg] / wp[neg, None]
            nn = nsum[neg] / wn[neg, None]
            lam = push * wn[neg] / (wp[neg] + wn[neg])
            out[neg] = pn + lam[:, None] * (pn - nn)
    return out.astype(np.float32), has


def genre_affinity(track_ids, pos, neg, genre_of: dict) -> dict[str, float]:
    """Net weight per genre (positive: the user leans to it)."""
    out: dict[str, float] = {}
    for t, p, n in zip(track_ids, pos, neg):
        g = genre_of.get(int(t))
        if g:
            out[g] = out.get(g, 0.0) + p - n
    return out
