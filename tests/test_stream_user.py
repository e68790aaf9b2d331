"""The per-user step of the stream, a task's batch of users and the documents, without Spark or services."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from common.reclist import items_of
from jobs import events as ev
from jobs import recommend_stream as rs
from jobs import stream_sink as sk
from jobs import taste
from common.catalogue import Catalogue
from conf import Settings
from jobs import ranking
from jobs import stream_batch as sb
from jobs.lsh import BandedIndex

T0 = 1_795_000_000_000
KNOWN = Catalogue.of_ids([10, 11, 12, 13, 14], [30.0, 30.0, 0.0, 200.0, 30.0])
RULES, LIMITS = taste.Rules(), ev.Limits()


def rec(value, offset, key="u1", ts=T0 + 60_000, partition=0):
    raw = value if isinstance(value, (bytes, type(None))) else (value if isinstance(value, str) else json.dumps(value)).encode()
    return SimpleNamespace(key=None if key is None else key.encode(), value=raw, topic="t", partition=partition,
                           offset=offset, kafka_ms=ts)


def event(i, track, action="complete", ms=30_000, user="u1", t=None):
    return {"event_id": f"e{i}", "user_id": user, "track_id": track, "action": action,
            "event_time": T0 + (t if t is not None else i) * 1000, "ms_played": ms, "session_id": "s"}


def test_known_catalogue_lookup():
    assert 12 in KNOWN and 99 not in KNOWN and 9 not in KNOWN
    assert KNOWN.duration_of(13) == 200.0 and KNOWN.duration_of(12) is None and KNOWN.duration_of(99) is None
    assert "x" not in KNOWN and 2**70 not in KNOWN


def test_valid_events_update_the_state_and_emit_user_and_event_rows():
    rows = [rec(event(1, 10), 5), rec(event(0, 11, "like"), 4), rec(event(2, 12, "skip", 2000), 6)]
    new, out = rs.process_user("u1", rows, taste.UserState(), KNOWN, RULES, LIMITS)
    kinds = [r.kind for r in out]
    assert kinds == ["event", "event", "event", "user"]
    assert [r.event_id for r in out[:3]] == ["e0", "e1", "e2"]          # applied in event-time order
    user = out[-1]
    assert user.n_events == 3 and user.n_new == 3 and user.event_time_max == T0 + 2000
    assert (user.partition, user.offset) == (0, 6)
    assert list(user.heard) == [11, 10, 12] and new.heard == (11, 10, 12)
    assert new == rs.state_from_doc(rs.state_doc(new))
    assert rs.state_from_doc(rs.state_doc(taste.UserState())) == taste.UserState() == rs.state_from_doc(None)


def test_rejects_become_dead_rows_with_the_raw_value_and_the_state_stays():
    bad = [rec("{oops", 1), rec(event(1, 99), 2), rec(dict(event(2, 10), action="pause"), 3),
           rec(b"\xff\xfe", 4), rec(None, 5), rec(event(3, 10), 6, key="someone-else")]
    new, out = rs.process_user("u1", bad, taste.UserState(), KNOWN, RULES, LIMITS)
    assert new is None
    assert [r.kind for r in out] == ["dead"] * 6
    codes = [ev.reason_code(r.reason) for r in out]
    assert codes == [ev.MALFORMED, ev.UNKNOWN_TRACK, ev.UNKNOWN_ACTION, ev.MALFORMED, ev.MALFORMED, ev.KEY_MISMATCH]
    assert out[0].raw == b"{oops" and out[0].offset == 1 and out[0].topic == "t"


def test_a_mixed_batch_keeps_the_good_events():
    state = taste.UserState()
    new, out = rs.process_user("u1", [rec("[]", 1), rec(event(1, 10), 2)], state, KNOWN, RULES, LIMITS)
    assert new.n_events == 1 and [r.kind for r in out] == ["dead", "event", "user"]


def test_duplicates_of_applied_events_emit_nothing():
    s1, _ = rs.process_user("u1", [rec(event(1, 10), 2)], taste.UserState(), KNOWN, RULES, LIMITS)
    s2, out = rs.process_user("u1", [rec(event(1, 10), 9)], s1, KNOWN, RULES, LIMITS)
    assert s2 is None and out == []


def test_event_times_are_judged_against_the_record_timestamp():
    far = rec(event(1, 10, t=10_000), 1, ts=T0)          # 10,000 s after its record
    _, out = rs.process_user("u1", [far], taste.UserState(), KNOWN, RULES, LIMITS)
    assert ev.reason_code(out[0].reason) == ev.BAD_TIME


def test_skip_weight_uses_the_catalogue_duration():
    late = 150_000   # 150 s into a 200 s track (13) vs. past the end of a 30 s track (14)
    s13, _ = rs.process_user("u1", [rec(event(1, 13, "skip", late), 1)], taste.UserState(), KNOWN, RULES, LIMITS)
    s14, _ = rs.process_user("u1", [rec(event(1, 14, "skip", late), 1)], taste.UserState(), KNOWN, RULES, LIMITS)
    assert s13.weights()[13][1] > s14.weights()[14][1] == pytest.approx(taste.SKIP_FLOOR)


def test_a_batch_applies_to_stored_states_and_a_replay_applies_nothing_twice():
    u1 = [rec(event(1, 10), 1), rec(event(2, 11, "like"), 2)]
    u2 = [rec(event(3, 12, user="u2"), 3, key="u2"), rec("{bad", 4, key="u2")]
    earlier, _ = rs.process_user("u2", [rec(event(0, 13, user="u2"), 0, key="u2")], taste.UserState(), KNOWN, RULES,
                                 LIMITS)
    stored = {"u1": None, "u2": {"state": rs.state_doc(earlier), "applied": {"query": "q", "batch": 4, "events": 1}}}
    out, changed, replayed = rs.apply_batch({"u1": u1, "u2": u2}, stored, KNOWN, RULES, LIMITS, query_id="q", batch_id=5)
    assert replayed == 0 and set(changed) == {"u1", "u2"}
    assert changed["u2"]["applied"] == {"query": "q", "batch": 5, "events": 1}
    assert rs.state_from_doc(changed["u2"]["state"]).heard == (13, 12)        # applied on top of the stored state
    assert sorted(r.kind for r in out) == ["dead", "event", "event", "event", "user", "user"]
    # the replay of batch 5 after u1's document was written, u2's not: u1 is skipped, u2 applied as before
    stored_after = {"u1": changed["u1"], "u2": stored["u2"]}
    out2, changed2, replayed2 = rs.apply_batch({"u1": u1, "u2": u2}, stored_after, KNOWN, RULES, LIMITS, query_id="q",
                                               batch_id=5)
    assert set(changed2) == {"u2"} and changed2["u2"] == changed["u2"] and replayed2 == 2
    assert sorted(r.kind for r in out2) == ["dead", "event", "replayed", "replayed", "user"]
    # another query (a new checkpoint) applies on top of what is stored: duplicates of stored events change nothing
    _, changed3, _ = rs.apply_batch({"u1": u1}, stored_after, KNOWN, RULES, LIMITS, query_id="other", batch_id=0)
    assert changed3 == {}


def test_a_users_state_round_trips_smaller_than_before_and_the_old_format_still_reads():
    rng = np.random.default_rng(1)
    ids = [f"{uuid}-{i}" for i, uuid in enumerate(rng.integers(0, 2**62, 256).astype(str))]
    full = taste.UserState(track_ids=tuple(range(1000, 1200)), pos=tuple(rng.random(200)), neg=tuple(rng.random(200)),
                           heard=tuple(range(5000, 5500)), event_ids=tuple(taste.event_key(e) for e in ids),
                           n_events=9999, last_event_ms=T0, partition=1, offset=77)
    doc = rs.state_doc(full)
    assert doc["format"] == 2 and rs.state_from_doc(doc) == full
    # format 1, as written before: the same arrays, then the event ids as text
    head = np.array([9999, T0, 1, 77, 200, 500], np.int64)
    old = b"".join([head.tobytes(), np.arange(1000, 1200, dtype=np.int64).tobytes(), np.asarray(full.pos).tobytes(),
                    np.asarray(full.neg).tobytes(), np.arange(5000, 5500, dtype=np.int64).tobytes(),
                    "\n".join(ids).encode()])
    assert len(doc["data"]) < 0.6 * len(old)
    back = rs.state_from_doc({"format": 1, "data": old})
    assert back == full
    # an event applied under format 1 is still a duplicate after the move
    dup = ev.Event(event_id=ids[-1], user_id="u", track_id=1000, action="like", event_time_ms=T0, ms_played=0,
                   session_id="s")
    assert taste.apply(back, dup, RULES) is back
    with pytest.raises(ValueError):
        rs.state_from_doc({"format": 9, "data": b""})


def test_a_partition_cache_serves_only_the_batch_right_after_its_own():
    c = sb.StateCache(max_users=3)
    key = ("q", 2)
    assert c.lookup(key, 5, ["a"]) == {}
    c.commit(key, 5, {"a": {"state": 1}, "b": None})
    assert c.lookup(key, 6, ["a", "b", "c"]) == {"a": {"state": 1}, "b": None}       # c: read from the store
    c.commit(key, 6, {"a": {"state": 2}, "c": None})
    assert c.lookup(key, 7, ["a"]) == {"a": {"state": 2}}
    assert c.lookup(key, 9, ["a"]) == {}                      # batch 8 ran elsewhere: start over
    c.commit(key, 9, {"a": {"state": 3}})
    assert c.lookup(("other", 2), 10, ["a"]) == {}            # another query (or partition count)
    c.commit(key, 10, {"a": {"state": 4}})
    assert c.lookup(key, 10, ["a"]) == {}                     # a replay of the batch it already wrote
    c.commit(key, 11, {str(i): None for i in range(4)})       # over max_users: forgets everything
    assert c.lookup(key, 12, ["0"]) == {}
    # with every stored document loaded at a start, users without a document are known too
    full = sb.StateCache(max_users=3)
    assert full.lookup(key, 5, ["a", "z"], lambda limit: {"a": {"state": 1}}) == {"a": {"state": 1}, "z": None}
    full.commit(key, 5, {"z": {"state": 9}})
    assert full.lookup(key, 6, ["z", "y"], lambda limit: 1 / 0) == {"z": {"state": 9}, "y": None}
    assert full.lookup(key, 8, ["z"], lambda limit: 1 / 0) == {}     # after a gap: not loaded again
    # another query (a restart in the same application, another benchmark run) loads once for itself
    assert full.lookup(("next", 2), 0, ["z", "y"], lambda limit: {"z": {"state": 10}}) == {"z": {"state": 10}, "y": None}
    too_many = sb.StateCache(max_users=3)
    assert too_many.lookup(key, 5, ["a"], lambda limit: None) == {}


# --- the driver's documents ---------------------------------------------------------------------------

class MemorySink:
    def __init__(self):
        self.recs, self.dead, self.feed, self.batches = {}, {}, {}, {}

    def write_recommendations(self, docs, on_written=None):
        self.recs.update({d["_id"]: d for d in docs})
        if on_written is not None:
            on_written([d["_id"] for d in docs])

    def write_dead_letters(self, docs):
        for d in docs:
            self.dead.setdefault(d["_id"], d)

    def write_activity(self, docs):
        for d in docs:
            self.feed.setdefault(d["_id"], d)

    def write_batch(self, doc):
        self.batches[doc["_id"]] = doc


    def housekeeping(self):
        return 0


@pytest.fixture(scope="module")
def served():
    rng = np.random.default_rng(0)
    ids = np.arange(10, 40)
    vectors = rng.normal(size=(30, 6)).astype(np.float32)
    docs = [{"_id": int(t), "title": f"T{t}", "artist": f"A{t % 7}", "genre_top": ["Rock", "Jazz"][t % 2],
             "listens": int(t), "duration": 30.0} for t in ids]
    proj = rng.normal(size=(16, 6))
    proj /= np.linalg.norm(proj, axis=1, keepdims=True)
    return sb.Served(Catalogue.from_documents(ids, vectors, docs, version="v-test"),
                     BandedIndex.build(vectors, ids, proj, 3.0, 4))


def batch_frame(records, users=("u1", "u2")):
    rows = []
    for user in users:
        mine = [r for r in records if json.loads(r.value)["user_id"] == user]
        _, out = rs.process_user(user, mine, taste.UserState(), Catalogue.of_ids(range(10, 40), [30.0] * 30),
                                 RULES, LIMITS)
        rows += [r.asDict() for r in out]
    rows.append(rs._out(kind="dead", raw=b"{x", key=b"u9", reason="malformed_json: x", topic="t", partition=1,
                        offset=77, kafka_ms=T0).asDict())
    return pd.DataFrame(rows, columns=[n for n, _ in rs.OUT_FIELDS])


def serve(pdf, served, sink, batch_id, **how):
    """What the micro-batch's tasks and then the driver do, here with the rows split into two tasks
    (`how`: serve_frame's writers)."""
    half = len(pdf) // 2
    users = pdf["user_id"].fillna("")
    parts = [pdf[users <= "u1"], pdf[users > "u1"]]
    assert half and all(len(p) for p in parts)
    rows = [sb.serve_frame(p, served, sink, batch_id=batch_id, top_k=5, max_per_artist=2, feed_size=500, **how)
            for p in parts]
    return sb.merge_metrics(rows, batch_id, served.version, duration_ms=10)


def test_the_feed_trim_runs_beside_the_micro_batches_never_inside_one():
    import threading

    release, ran, lines = threading.Event(), [], []

    class SlowSink(MemorySink):
        def housekeeping(self):             # the local store's full scan, held open by the test
            ran.append(1)
            if len(ran) == 2:
                raise ConnectionError("store down")
            release.wait(30)
            return 0

    coordinator = sb.BatchCoordinator(Settings(), models=None, sink=SlowSink(), log=lines.append)
    row = {"users": 1, "events": 1, "dead": 0, "candidates": 5, "read_ms": 0, "cached": 0, "rank_ms": 1,
           "write_ms": 1, "task_ms": 2, "latencies": [3], "offsets": "[]"}
    coordinator.finish([row], 0, "v", 10)               # starts a trim, which hangs
    assert coordinator.sink.batches[0]["events"] == 1
    for b in (1, 2):                                    # batches go on, and no second trim piles up
        coordinator.finish([row], b, "v", 10)
        assert b in coordinator.sink.batches
    assert len(ran) == 1 and not coordinator.housekeeping.start_if_idle()
    release.set()
    coordinator.housekeeping.wait(10)
    coordinator.finish([row], 3, "v", 10)                # the next trim starts, and fails
    coordinator.housekeeping.wait(10)
    assert len(ran) == 2 and lines == []
    coordinator.finish([row], 4, "v", 10)                # the failure is said in one line; a third starts
    coordinator.housekeeping.wait(10)
    assert len(ran) == 3 and len(lines) == 1 and "ConnectionError" in lines[0]


def test_a_replayed_batch_writes_the_same_documents(served):
    sink = MemorySink()
    records = [rec(event(i, 10 + (i * 7) % 30, ["play", "complete", "like", "skip"][i % 4], 3000,
                         user=["u1", "u2"][i % 2]), i, key=["u1", "u2"][i % 2]) for i in range(12)]
    pdf = batch_frame(records)
    first = serve(pdf, served, sink, 7)
    docs1 = {k: dict(v) for k, v in sink.recs.items()}
    # the same batch, its rows in another order, written by three threads
    second = serve(pdf.sample(frac=1.0, random_state=3), served, sink, 7, writers=3)
    docs2 = sink.recs
    assert set(docs1) == {"u1", "u2"}
    for u in docs1:
        assert sk.comparable(docs1[u]) == sk.comparable(docs2[u])
        assert docs1[u]["updated_at"] <= docs2[u]["updated_at"]
    d = docs1["u1"]
    heard = {json.loads(r.value)["track_id"] for r in records if json.loads(r.value)["user_id"] == "u1"}
    assert len(items_of(d)) == 5 and not heard & {it["track_id"] for it in items_of(d)}
    assert all(it["reason"] in (ranking.SIMILAR, ranking.TASTE, ranking.POPULAR, ranking.POPULAR_GENRE)
               and set(it) <= {"track_id", "score", "reason", "reason_track_id", "genre"} for it in items_of(d))
    assert d["batch_id"] == 7 and d["model_version"] == "v-test" and d["n_events"] == 6
    assert d["offsets"] == {"topic": "t", "partition": 0, "offset": 10}
    assert d["event_time_max"] == datetime.fromtimestamp((T0 + 10_000) / 1000, tz=timezone.utc)
    assert first["users"] == 2 and first["events"] == 12 and first["dead"] == 1 and first["rows"] == 13
    assert first["tasks"] == 2 and {o["partition"] for o in first["offsets"]} == {0, 1}
    assert first["latency_ms_p50"] is not None
    dead_id = f"t-1-77-{T0}"
    assert sink.dead[dead_id]["code"] == "malformed_json" and sink.dead[dead_id]["raw"] == "{x"
    assert len(sink.feed) == 12
    for k in ("duration_ms", "spark_ms", "rank_ms", "write_ms", "written_at", "latency_ms_p50", "latency_ms_p95",
              "latency_ms_p99", "latency_hist"):
        first.pop(k), second.pop(k)
    assert first == second


def test_the_longest_waiting_user_is_written_first_and_each_latency_ends_at_its_own_command(served):
    import time

    class OneCommandPerUser(MemorySink):
        """Acknowledges each user's document on its own, 60 ms apart."""
        def __init__(self):
            super().__init__()
            self.order = []

        def write_recommendations(self, docs, on_written=None):
            for d in docs:
                time.sleep(0.06)
                self.recs[d["_id"]] = d
                self.order.append(d["_id"])
                on_written([d["_id"]])

    # u2's events come first (event times 0-5 s), u1's after (6-11 s): u2 has waited longest
    records = [rec(event(i, 10 + i, "complete", user="u2" if i < 6 else "u1"), i, key="u2" if i < 6 else "u1")
               for i in range(12)]
    pdf = batch_frame(records)
    sink = OneCommandPerUser()
    row = sb.serve_frame(pdf, served, sink, batch_id=1, top_k=5, max_per_artist=2, feed_size=0)
    assert sink.order == ["u2", "u1"]
    events = pdf[pdf["kind"] == "event"]
    acked = events["event_time"].to_numpy(dtype=np.int64) + np.asarray(row["latencies"])   # when each was served
    by_user = {u: set(acked[(events["user_id"] == u).to_numpy()].tolist()) for u in ("u1", "u2")}
    assert all(len(v) == 1 for v in by_user.values())          # one acknowledgement per user, for all its events
    assert min(by_user["u1"]) - max(by_user["u2"]) >= 50       # u1's document was acknowledged a command later


def test_a_chunk_of_users_is_written_while_the_next_is_ranked_and_the_documents_are_the_same(served, monkeypatch):
    import threading
    import time

    records = [rec(event(i, 10 + i, "complete", user="u2" if i < 6 else "u1"), i, key="u2" if i < 6 else "u1")
               for i in range(12)]
    pdf = batch_frame(records)
    whole = MemorySink()
    sb.serve_frame(pdf, served, whole, batch_id=1, top_k=5, max_per_artist=2, feed_size=0)
    log, lock = [], threading.Lock()

    class SlowSink(MemorySink):
        def write_recommendations(self, docs, on_written=None):
            with lock:
                log.append(("write", [d["_id"] for d in docs]))
            time.sleep(0.3)
            super().write_recommendations(docs, on_written)
            with lock:
                log.append(("written", [d["_id"] for d in docs]))

    rank = sb.recommend

    def logged(served_, users, *a):
        with lock:
            log.append(("rank", list(users["user_id"])))
        return rank(served_, users, *a)

    monkeypatch.setattr(sb, "recommend", logged)
    chunked = SlowSink()
    row = sb.serve_frame(pdf, served, chunked, batch_id=1, top_k=5, max_per_artist=2, feed_size=0, writers=2,
                         chunk_users=1)
    # u2 waited longest: ranked and sent first; u1 is ranked while u2's document is being written
    assert log[:3] == [("rank", ["u2"]), ("write", ["u2"]), ("rank", ["u1"])] or \
        log[:3] == [("rank", ["u2"]), ("rank", ["u1"]), ("write", ["u2"])]
    assert log.index(("rank", ["u1"])) < log.index(("written", ["u2"]))
    assert {u: sk.comparable(d) for u, d in chunked.recs.items()} == {u: sk.comparable(d) for u, d in whole.recs.items()}
    assert row["users"] == 2 and len(row["latencies"]) == 12 and row["rank_ms"] >= 0 and row["write_ms"] >= 250


def test_a_failed_write_stops_the_ranking_and_the_queued_writes_and_the_feed_follows_the_users(
        served, monkeypatch):
    import threading
    import time

    users = [f"u{i}" for i in range(6)]
    records = [rec(event(i, 10 + i, "complete", user=u), i, key=u) for i, u in enumerate(users)]
    pdf = batch_frame(records, users)
    calls, lock = [], threading.Lock()
    rank = sb.recommend

    def slow_rank(served_, chunk, *a):
        calls.append(("rank", list(chunk["user_id"])))
        time.sleep(0.1)
        return rank(served_, chunk, *a)

    class Down(MemorySink):
        def write_recommendations(self, docs, on_written=None):
            with lock:
                calls.append(("write", [d["_id"] for d in docs]))
            raise ConnectionError("store down")

    class Logged(MemorySink):
        def write_recommendations(self, docs, on_written=None):
            with lock:
                calls.append(("write", [d["_id"] for d in docs]))
            super().write_recommendations(docs, on_written)

        def write_activity(self, docs):
            with lock:
                calls.append(("feed", len(docs)))
            super().write_activity(docs)

    monkeypatch.setattr(sb, "recommend", slow_rank)
    with pytest.raises(ConnectionError):
        sb.serve_frame(pdf, served, Down(), batch_id=1, top_k=5, max_per_artist=2, feed_size=10, writers=1,
                       chunk_users=1)
    ranked = [c for c in calls if c[0] == "rank"]
    assert ranked[0] == ("rank", ["u0"]) and len(ranked) <= 3        # not all six chunks ranked after u0's failed
    assert sum(c[0] == "write" for c in calls) <= 2

    calls.clear()
    sink = Logged()
    sb.serve_frame(pdf, served, sink, batch_id=1, top_k=5, max_per_artist=2, feed_size=10, writers=1,
                   chunk_users=2)
    writes = [c for c in calls if c[0] != "rank"]
    # the oldest users' documents first, the feed after every user's
    assert writes == [("write", ["u0", "u1"]), ("write", ["u2", "u3"]), ("write", ["u4", "u5"]), ("feed", 6)]
    assert set(sink.recs) == set(users) and len(sink.feed) == 6


def test_a_task_parses_a_chunk_of_users_only_once_the_chunk_before_is_being_written(served, monkeypatch):
    """serve_records: the users whose first record reached Kafka first are the first chunk, and the next
    chunk's records are parsed and applied only after the first chunk's documents went to the store (here
    the second chunk's apply waits for the first write: applying every chunk first would time out)."""
    import threading

    first_written, log = threading.Event(), []
    apply = rs.apply_batch

    def logged_apply(by_user, *a, **k):
        log.append(("apply", sorted(by_user)))
        if len(log) > 1:
            assert first_written.wait(10), "the second chunk was applied before the first chunk was written"
        return apply(by_user, *a, **k)

    class Sink(MemorySink):
        def write_recommendations(self, docs, on_written=None):
            log.append(("write", [d["_id"] for d in docs]))
            super().write_recommendations(docs, on_written)
            first_written.set()

    monkeypatch.setattr(rs, "apply_batch", logged_apply)
    # u3's record reached Kafka first, then u1's, then u2's; one record without a user id
    records = [rec(event(i, 10 + i, user=u), i, key=u, ts=T0 + ts) for i, (u, ts) in
               enumerate([("u1", 200), ("u2", 300), ("u3", 100), ("u1", 400)])]
    records.append(rec(b"{x", 9, key=None, ts=T0 + 50))
    pdf = pd.DataFrame([{"user_key": json.loads(r.value)["user_id"] if r.value != b"{x" else "", **vars(r)}
                        for r in records])
    settings = Settings(stream_rank_chunk_users=1, activity_feed_size=10)
    cache = sb.StateCache(100)
    cache.lookup(("q", settings.stream_partitions), 0, [], lambda limit: {})     # knows every user: none stored
    cache.commit(("q", settings.stream_partitions), 0, {})
    sink = Sink()
    sink.db = {settings.coll_recommendations: None}      # never read: the cache knows every user
    m = sb.serve_records(pdf, served, sink, settings, query_id="q", batch_id=1, cache=cache)
    assert [c for c in log if c[0] == "apply"] == [("apply", ["", "u3"]), ("apply", ["u1"]), ("apply", ["u2"])]
    assert log.index(("write", ["u3"])) < log.index(("apply", ["u1"]))
    assert m["users"] == 3 and m["events"] == 4 and m["dead"] == 1 and len(m["latencies"]) == 4
    assert set(sink.recs) == {"u1", "u2", "u3"} and len(sink.dead) == 1 and len(sink.feed) == 4
    assert sink.recs["u1"]["n_events"] == 2 and sink.recs["u1"]["applied"]["batch"] == 1
    assert json.loads(m["offsets"]) == [{"topic": "t", "partition": 0, "first": 0, "last": 9}]


def test_a_chunk_whose_records_are_all_rejected_writes_its_dead_letters_and_ranks_nobody(served):
    records = [rec(b"{x", 1, key="u1"), rec(event(2, 99, user="u2"), 2, key="u2"),   # malformed; unknown track
               rec(event(3, 11, user="u3"), 3, key="u3")]
    pdf = pd.DataFrame([{"user_key": u, **vars(r)} for u, r in zip(["u1", "u2", "u3"], records)])
    settings = Settings(stream_rank_chunk_users=1, activity_feed_size=10)
    cache = sb.StateCache(100)
    cache.lookup(("q", settings.stream_partitions), 0, [], lambda limit: {})
    cache.commit(("q", settings.stream_partitions), 0, {})
    sink = MemorySink()
    sink.db = {settings.coll_recommendations: None}
    m = sb.serve_records(pdf, served, sink, settings, query_id="q", batch_id=1, cache=cache)
    assert (m["users"], m["events"], m["dead"]) == (1, 1, 2) and set(sink.recs) == {"u3"} and len(sink.dead) == 2


def test_the_served_model_ships_as_one_file_named_by_its_content(served, tmp_path):
    back = sb.Served.read(served.save(tmp_path))
    assert back.version == "v-test" and back.name == served.name
    assert np.array_equal(back.catalogue.ids, served.catalogue.ids) and list(back.catalogue.title) == list(
        served.catalogue.title)
    q = served.catalogue.vectors[:4]
    for a, b in zip(served.index.query(q, 5), back.index.query(q, 5)):     # the index is not re-hashed
        assert np.array_equal(a, b)
    assert served.save(tmp_path) == str(tmp_path / served.name)            # saved once


def test_latency_histograms_merge_into_percentiles():
    a = sk.latency_summary([5, 15, 25, 35])
    b = sk.latency_summary([1000] * 4)
    lo, n = sk.merge_histograms([a["latency_hist"], b["latency_hist"]])
    assert list(lo) == [0, 10, 20, 30, 1000] and list(n) == [1, 1, 1, 1, 4]
    p50, p95, p99 = sk.histogram_percentiles(lo, n)
    assert p50 == 40.0 and p95 == 1010.0 and p99 == 1010.0
    assert sk.latency_summary([])["latency_ms_p50"] is None


def test_comparable_drops_write_time_and_across_runs_the_batch_id():
    doc = {"_id": "u", "items": [], "updated_at": 1, "batch_id": 3, "applied": {"query": "q", "batch": 3}}
    assert sk.comparable(doc) == {"_id": "u", "items": [], "batch_id": 3, "applied": {"query": "q", "batch": 3}}
    assert sk.comparable(doc, across_runs=True) == {"_id": "u", "items": []}


def test_dead_letter_documents_truncate_huge_raw_values():
    d = sk.dead_letter_doc(b"x" * 10_000, "too_large: big", topic="t", partition=0, offset=1, key=None,
                           kafka_ms=None, batch_id=0, at=sk.now_utc())
    assert len(d["raw"]) == sk.RAW_MAX_CHARS and d["raw_bytes"] == 10_000 and d["code"] == "too_large"
    empty = sk.dead_letter_doc(None, "malformed_json: the record has no value", topic="t", partition=0, offset=2,
                               key=b"\xff", kafka_ms=None, batch_id=0, at=sk.now_utc())
    assert empty["raw"] is None and empty["key"] == "\ufffd" and "raw_bytes" not in empty
    # cut on the executor already: the document keeps the full size it was told
    pre = sk.dead_letter_doc(b"x" * 100, "too_large: big", topic="t", partition=0, offset=3, key=None,
                             kafka_ms=None, batch_id=0, at=sk.now_utc(), raw_size=50_000)
    assert pre["raw"] == "x" * 100 and pre["raw_bytes"] == 50_000


def test_huge_values_and_keys_leave_the_operator_cut_to_the_stored_size():
    big = ("é" * 30_000).encode()          # two bytes per character: the cut must not split one
    _, out = rs.process_user("u1", [rec(big, 1, key="k" * 100_000)], taste.UserState(), KNOWN, RULES, LIMITS)
    (row,) = out
    assert row.kind == "dead" and ev.reason_code(row.reason) == ev.TOO_LARGE
    assert len(row.raw) <= ev.RAW_KEEP_BYTES and row.raw.decode("utf-8") == "é" * (ev.RAW_KEEP_BYTES // 2)
    assert row.raw_size == 60_000 and len(row.key) == ev.KEY_KEEP_BYTES
    doc = sk.dead_letter_doc(row.raw, row.reason, topic="t", partition=0, offset=1, key=row.key, kafka_ms=5,
                             batch_id=0, at=sk.now_utc(), raw_size=row.raw_size)
    assert doc["raw_bytes"] == 60_000 and "\ufffd" not in doc["raw"] and doc["_id"] == "t-0-1-5"


def test_dead_letter_ids_differ_across_topic_generations_and_repeat_on_replay():
    a = sk.dead_letter_id("t", 0, 5, 1_795_000_000_000)      # offset 5 of the first topic
    b = sk.dead_letter_id("t", 0, 5, 1_795_000_900_000)      # offset 5 again, after the topic was recreated
    assert a != b and a == sk.dead_letter_id("t", 0, 5, 1_795_000_000_000)


def test_the_catalogue_ships_as_a_file_named_by_its_content(tmp_path):
    a = Catalogue.of_ids([3, 1, 2], [30.0, 10.0, 0.0])
    b = Catalogue.of_ids([3, 1, 2], [30.0, 10.0, 0.0])
    c = Catalogue.of_ids([1, 2, 4], [10.0, 0.0, 30.0])
    assert a.name == b.name != c.name
    back, _ = Catalogue.read(a.save(tmp_path))
    assert list(back.ids) == [3, 1, 2] and back.duration_of(1) == 10.0 and back.duration_of(2) is None and 3 in back
    assert a.save(tmp_path) == str(tmp_path / a.name)      # saved once
