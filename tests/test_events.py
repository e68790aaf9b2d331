"""The activity event contract: every kind of bad input is a reject with its reason, never an exception."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from jobs import events as ev
from jobs.events import Event, Limits, Reject, parse

REF = int(datetime(2026, 11, 24, 22, 0, tzinfo=timezone.utc).timestamp() * 1000)
KNOWN = {2, 5, 140}


def good(**over):
    d = {"event_id": "e-1", "user_id": "u-1", "track_id": 2, "action": "skip",
         "event_time": "2026-11-24T21:59:58.500Z", "ms_played": 4200, "session_id": "s-1"}
    d.update(over)
    return d


def p(value, **kw):
    raw = value if isinstance(value, (str, bytes)) or value is None else json.dumps(value)
    kw.setdefault("ref_ms", REF)
    kw.setdefault("known", KNOWN)
    return parse(raw, **kw)


def test_a_valid_event_parses_with_iso_or_epoch_ms_times():
    e = p(good())
    assert e == Event("e-1", "u-1", 2, "skip", REF - 1500, 4200, "s-1")
    assert p(good(event_time=REF - 1500)) == e
    assert p(good(event_time="2026-11-24T21:59:58.500+00:00")) == e
    assert p(good(event_time="2026-11-24T22:59:58.500+01:00")) == e
    assert p(good(event_time="2026-11-24T21:59:58.500")) == e  # no offset: UTC
    assert p(json.dumps(good()).encode()) == e                   # bytes as Kafka gives them
    assert p(good(extra="ignored", nested={"a": 1})) == e        # forward compatible
    assert p(good(), key="u-1") == e
    assert parse(e.to_json(), ref_ms=REF, known=KNOWN) == e      # the canonical form round-trips


@pytest.mark.parametrize("raw, code, words", [
    ("{not json", ev.MALFORMED, "Expecting"),
    ("", ev.MALFORMED, "Expecting value"),
    (None, ev.MALFORMED, "no value"),
    (b"\xff\xfe{}", ev.MALFORMED, "not UTF-8"),
    ('{"a": NaN}', ev.MALFORMED, "NaN"),
    ("[1, 2]", ev.NOT_OBJECT, "got array"),
    ('"text"', ev.NOT_OBJECT, "got string"),
    ("null", ev.NOT_OBJECT, "got null"),
    ("x" * 20000, ev.TOO_LARGE, "20000 bytes"),
    (b"x" * 20000, ev.TOO_LARGE, "20000 bytes"),
    ("[" * 100000 + "]" * 100000, ev.TOO_LARGE, "bytes"),
])
def test_undecodable_values_are_rejected_with_the_reason(raw, code, words):
    r = p(raw)
    assert isinstance(r, Reject) and r.code == code and words in r.detail, r


def test_deeply_nested_json_is_a_reject_not_a_recursion_crash():
    r = p("[" * 5000 + "]" * 5000)
    assert isinstance(r, Reject) and r.code in (ev.MALFORMED, ev.NOT_OBJECT)


@pytest.mark.parametrize("change, code, words", [
    ({"track_id": None}, ev.WRONG_TYPE, "track_id must be an integer, got null"),
    ({"track_id": "2"}, ev.WRONG_TYPE, "got string '2'"),
    ({"track_id": 2.0}, ev.WRONG_TYPE, "got number 2.0"),
    ({"track_id": 2.5}, ev.WRONG_TYPE, "got number"),
    ({"track_id": True}, ev.WRONG_TYPE, "got boolean"),
    ({"track_id": -4}, ev.BAD_VALUE, "negative"),
    ({"track_id": 999}, ev.UNKNOWN_TRACK, "999 is not in the catalogue"),
    ({"user_id": 42}, ev.WRONG_TYPE, "user_id must be a string, got integer"),
    ({"user_id": "  "}, ev.BAD_VALUE, "user_id is empty"),
    ({"event_id": "x" * 129}, ev.BAD_VALUE, "longer than 128"),
    ({"session_id": ["s"]}, ev.WRONG_TYPE, "session_id must be a string, got array"),
    ({"action": "pause"}, ev.UNKNOWN_ACTION, "'pause' is not one of play, complete, skip, like, dislike"),
    ({"action": 3}, ev.WRONG_TYPE, "action must be a string"),
    ({"ms_played": "4200"}, ev.WRONG_TYPE, "ms_played must be an integer, got string"),
    ({"ms_played": 4200.5}, ev.WRONG_TYPE, "ms_played must be an integer, got number"),
    ({"ms_played": -1}, ev.BAD_VALUE, "outside"),
    ({"ms_played": 10**12}, ev.BAD_VALUE, "outside"),
    ({"event_time": "yesterday"}, ev.BAD_TIME, "not ISO-8601"),
    ({"event_time": 1.7e12}, ev.WRONG_TYPE, "integer epoch ms, got number"),
    ({"event_time": {"t": 1}}, ev.WRONG_TYPE, "got object"),
    ({"event_time": "1999-12-31T23:59:59Z"}, ev.BAD_TIME, "before 2000-01-01"),
    ({"event_time": REF // 1000}, ev.BAD_TIME, "epoch seconds?"),
    ({"event_time": 0}, ev.BAD_TIME, "before 2000-01-01"),
    ({"event_time": "9999-01-01T00:00:00Z"}, ev.BAD_TIME, "after its Kafka record"),
    ({"event_time": REF + 301_000}, ev.BAD_TIME, "301 s after its Kafka record"),
    ({"event_time": REF - 31 * 86400_000}, ev.BAD_TIME, "31.0 days before"),
])
def test_every_wrong_field_is_rejected_with_a_precise_reason(change, code, words):
    r = p(good(**change))
    assert isinstance(r, Reject), r
    assert r.code == code and words in r.detail, r.reason
    assert r.reason.startswith(code + ": ") and ev.reason_code(r.reason) == code


def test_missing_fields_are_all_named():
    d = good()
    del d["track_id"], d["session_id"]
    r = p(d)
    assert r.code == ev.MISSING and r.detail == "missing fields: track_id, session_id"
    r = p({k: v for k, v in good().items() if k != "ms_played"})
    assert r.detail == "missing field: ms_played"
    assert p({}).detail.startswith("missing fields: event_id, user_id, track_id")


def test_times_are_judged_against_the_kafka_record_not_the_clock():
    limits = Limits(max_future_s=10, max_age_s=60)
    assert isinstance(p(good(event_time=REF + 9_000), limits=limits), Event)
    assert p(good(event_time=REF + 11_000), limits=limits).code == ev.BAD_TIME
    assert isinstance(p(good(event_time=REF - 59_000), limits=limits), Event)
    assert p(good(event_time=REF - 61_000), limits=limits).code == ev.BAD_TIME
    # without a reference only the absolute floor applies
    assert isinstance(p(good(event_time="2090-01-01T00:00:00Z"), ref_ms=None), Event)


def test_key_must_match_the_user_when_present():
    assert p(good(), key="u-2").code == ev.KEY_MISMATCH
    assert isinstance(p(good(), key=None), Event)


def test_known_may_be_a_predicate_and_unknown_is_checked_last():
    assert isinstance(p(good(track_id=7), known=lambda t: t % 7 == 0), Event)
    assert p(good(track_id=8), known=lambda t: t % 7 == 0).code == ev.UNKNOWN_TRACK
    assert isinstance(p(good(track_id=12345), known=None), Event)
    # a wrong type elsewhere is reported before the catalogue is consulted
    assert p(good(track_id=999, ms_played="x")).code == ev.WRONG_TYPE


def test_a_failing_catalogue_lookup_is_a_reject_not_a_crash():
    def broken(_):
        raise RuntimeError("catalogue down")
    r = p(good(), known=broken)
    assert isinstance(r, Reject) and "RuntimeError" in r.detail


def test_all_reason_codes_are_distinct_words():
    assert len(set(ev.REASON_CODES)) == len(ev.REASON_CODES)
    assert all(c.isidentifier() for c in ev.REASON_CODES)


def test_text_problem_on_every_ascii_character_and_beyond():
    from jobs.events import text_problem

    for c in range(0x80):          # the all-printable-ASCII fast path and the full scan agree
        assert (text_problem(f"user-{chr(c)}-1") is None) == (0x20 <= c < 0x7F), hex(c)
    assert "U+0085" in text_problem("a\x85b") and "bidirectional" in text_problem("a\u2066b")
    assert "surrogate" in text_problem("a\udc80") and text_problem("Zoë – ♫") is None
