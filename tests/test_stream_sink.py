"""The stream's MongoDB writes on the real store: idempotent, bounded, never a missing document."""
from __future__ import annotations

import pytest

from jobs import stream_sink as sk

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(settings, mongo, request):
    """A sink on collections of its own."""
    name = request.node.name[-20:].replace("[", "_").replace("]", "_")
    s = settings.model_copy(update={"coll_recommendations": f"sink_recs_{name}", "coll_activity": f"sink_act_{name}",
                                    "coll_dead_letters": f"sink_dead_{name}", "coll_batches": f"sink_batches_{name}",
                                    "activity_feed_size": 50, "stream_batches_kept": 10})
    return sk.Sink(s, mongo), s


def rec(user, batch, n):
    return sk.recommendation_doc(user, [{"track_id": n, "title": "t", "artist": "a", "genre_top": None, "score": 0.5,
                                          "reason": "r", "reason_track_id": None}],
                                 model_version="v", event_time_max_ms=1_795_000_000_000 + n, n_events=n,
                                 offsets={"topic": "t", "partition": 0, "offset": n}, batch_id=batch,
                                 updated_at=sk.now_utc(), candidates=3)


def test_replacing_many_existing_documents_in_one_batch(sink, mongo):
    # 250 replacements of existing documents in one batch: one command of that many would exhaust FerretDB's
    # pool and hang it (common.store.PoolLimits); the sink's commands stay within the limit
    sink_, s = sink
    sink_.write_recommendations([rec(f"u{i}", 1, 1) for i in range(250)])
    sink_.write_recommendations([rec(f"u{i}", 2, 2) for i in range(250)])
    docs = list(mongo[s.coll_recommendations].find())
    assert len(docs) == 250 and {d["batch_id"] for d in docs} == {2} and {d["n_events"] for d in docs} == {2}


def test_each_command_is_reported_once_its_documents_can_be_read(sink, mongo):
    # the stream's latency ends at this report: by then a reader must see the new document
    sink_, s = sink
    step = s.store_statements_per_command
    sink_.write_recommendations([rec(f"u{i}", 1, 1) for i in range(25)])
    seen = []

    def on_written(ids):
        stored = {d["_id"]: d["batch_id"] for d in mongo[s.coll_recommendations].find({"_id": {"$in": ids}})}
        seen.append((ids, stored))

    sink_.write_recommendations([rec(f"u{i}", 2, 2) for i in range(25)], on_written=on_written)
    assert [len(ids) for ids, _ in seen] == [step, step, 25 - 2 * step]
    assert [u for ids, _ in seen for u in ids] == [f"u{i}" for i in range(25)]
    assert all(stored == dict.fromkeys(ids, 2) for ids, stored in seen)


def test_a_batch_mixing_new_and_existing_users(sink, mongo):
    sink_, s = sink
    sink_.write_recommendations([rec(f"u{i}", 1, 1) for i in range(0, 40, 2)])    # the even users
    sink_.write_recommendations([rec(f"u{i}", 2, 2) for i in range(40)])          # every user
    docs = {d["_id"]: d for d in mongo[s.coll_recommendations].find()}
    assert sorted(docs) == sorted(f"u{i}" for i in range(40)) and {d["batch_id"] for d in docs.values()} == {2}


def test_replayed_writes_give_the_same_documents(sink, mongo):
    sink_, s = sink
    docs = [rec(f"u{i}", 7, i) for i in range(5)]
    sink_.write_recommendations(docs)
    first = {d["_id"]: sk.comparable(d) for d in mongo[s.coll_recommendations].find()}
    again = [dict(d, updated_at=sk.now_utc()) for d in docs]
    sink_.write_recommendations(again)
    second = {d["_id"]: sk.comparable(d) for d in mongo[s.coll_recommendations].find()}
    assert first == second and len(first) == 5

    dead = [sk.dead_letter_doc(b"{x", "malformed_json: x", topic="t", partition=0, offset=i, key=b"u", kafka_ms=1,
                               batch_id=7, at=sk.now_utc()) for i in range(3)]
    assert sink_.write_dead_letters(dead) == 3
    assert sink_.write_dead_letters(dead + [dict(dead[0], _id="t-0-99-1", offset=99)]) == 1   # replay + one new
    assert mongo[s.coll_dead_letters].count_documents({}) == 4
    # a NUL in bad input (PostgreSQL's jsonb rejects it) is stored as U+FFFD, not a failed batch
    nul = sk.dead_letter_doc(b"\xff\x00x", "malformed_json: \x00", topic="t", partition=1, offset=0, key=b"\x00",
                             kafka_ms=1, batch_id=7, at=sk.now_utc())
    assert sink_.write_dead_letters([nul]) == 1
    back = mongo[s.coll_dead_letters].find_one({"_id": sk.dead_letter_id("t", 1, 0, 1)})
    assert back["raw"] == "\ufffd\ufffdx" and back["key"] == "\ufffd" and back["reason"] == "malformed_json: \ufffd"

    batch = {"_id": 7, "events": 5, "written_at": sk.now_utc()}
    sink_.write_batch(batch)
    sink_.write_batch(dict(batch, events=6))       # a replayed batch replaces its metrics
    assert mongo[s.coll_batches].find_one({"_id": 7})["events"] == 6
    assert mongo[s.coll_batches].count_documents({}) == 1


def test_the_activity_feed_and_batch_metrics_stay_bounded(sink, mongo):
    sink_, s = sink
    for b in range(3):
        evs = [{"event_id": f"e{b}-{i}", "user_id": "u", "track_id": i, "action": "play",
                "event_time": 1_795_000_000_000 + b * 1000 + i, "ms_played": 0, "session_id": "s", "partition": 0,
                "offset": b * 100 + i} for i in range(80)]
        sink_.write_activity([sk.activity_doc(e, title="t", artist="a", at=sk.now_utc()) for e in evs])
        sink_._last_trim = 0.0
    sink_.trim_activity(s.activity_feed_size)
    feed = list(mongo[s.coll_activity].find())
    assert len(feed) <= s.activity_feed_size
    assert max(d["_id"] for d in feed) == "e2-79"          # the newest are kept
    for b in range(25):
        sink_._last_batch_trim = 0.0
        sink_.write_batch({"_id": b, "events": 1, "written_at": sk.now_utc()})
        sink_.housekeeping()
    ids = sorted(d["_id"] for d in mongo[s.coll_batches].find())
    assert ids[-1] == 24 and len(ids) <= s.stream_batches_kept


def test_a_reader_never_sees_a_rewritten_user_missing(sink, mongo):
    """While batches rewrite the same users, a reader polling one of them always finds a document."""
    import threading

    sink_, s = sink
    users = [f"u{i}" for i in range(60)]
    sink_.write_recommendations([rec(u, 0, 0) for u in users])
    done, seen = threading.Event(), []

    def poll():
        coll = mongo[s.coll_recommendations]
        while not done.is_set():
            doc = coll.find_one({"_id": "u30"}, {"batch_id": 1})
            seen.append(None if doc is None else doc["batch_id"])

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for b in range(1, 16):
            sink_.write_recommendations([rec(u, b, b) for u in users])
    finally:
        done.set()
        reader.join(30)
    assert len(seen) > 20 and None not in seen
    assert seen == sorted(seen) and seen[-1] >= 14      # in order, up to the last batches


def test_users_states_read_back_one_by_one_and_all_at_once(sink, mongo):
    from jobs import recommend_stream as rs
    from jobs import stream_batch as sb
    from jobs import taste

    snk, s = sink
    state = taste.UserState(track_ids=(3, 4), pos=(1.0, 0.0), neg=(0.0, 0.5), heard=(3, 4),
                            event_ids=(taste.event_key("é-1"), taste.event_key("e2")),
                            n_events=2, last_event_ms=5, partition=1, offset=9)
    docs = [rec(u, 1, 1) for u in ("a", "b", "c")]
    for d in docs:
        d.update(state=rs.state_doc(state), applied={"query": "q", "batch": 1, "events": 2})
    snk.write_recommendations(docs)
    coll = mongo[s.coll_recommendations]
    one = sb.read_documents(coll, ["a", "b", "nobody"], readers=2)
    assert one["nobody"] is None and rs.state_from_doc(one["a"]["state"]) == state
    assert one["b"]["applied"] == {"query": "q", "batch": 1, "events": 2} and "items" not in one["b"]
    every = sb.load_documents(coll, 3)
    assert sorted(every) == ["a", "b", "c"] and rs.state_from_doc(every["c"]["state"]) == state
    assert sb.load_documents(coll, 2) is None
