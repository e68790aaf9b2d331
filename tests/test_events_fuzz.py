"""Generated bad input (hypothesis) over the event parser: it never raises, whatever it accepts can be
encoded and stored (UTF-8, Arrow, BSON) and whatever it rejects carries a storable reason.

The same kinds of input go through the real query in tests/test_faults.py."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from bson import BSON
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from common.catalogue import Catalogue
from jobs import events as ev
from jobs import recommend_stream as rs
from jobs import taste
from tests.test_events import REF, good

KNOWN = {2, 5, 140}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every code point, lone surrogates and control characters included
any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40)
nasty_text = st.one_of(any_text, st.sampled_from(["\ud800", "a\udfffb", "\x00", "u\x1b[31m", "\u202eevil", "\x85",
                                                   "", " ", "x" * 129, "é" * 128]))
huge_int = st.one_of(st.integers(), st.integers(min_value=2**63 - 5, max_value=2**70),
                     st.integers(max_value=-(2**63) + 5, min_value=-(2**70)),
                     st.builds(pow, st.just(10), st.just(4000)))    # 10**4000 (st.just's repr spelled out 4,000 digits)
SAFE = st.characters(categories=("L", "N", "P", "S"))
json_leaf = st.one_of(st.none(), st.booleans(), huge_int, st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_value = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                             st.dictionaries(nasty_text, kids, max_size=4)),
                          max_leaves=12)


def field_values():
    """A mostly valid event with any field replaced by anything."""
    return st.fixed_dictionaries({}, optional={
        "event_id": st.one_of(st.just("e-1"), json_value), "user_id": st.one_of(st.just("u-1"), json_value),
        "track_id": st.one_of(st.sampled_from([2, 5, 140]), json_value),
        "action": st.one_of(st.sampled_from(["play", "skip", "like"]), json_value),
        "event_time": st.one_of(st.just(REF - 1000), huge_int, json_value),
        "ms_played": st.one_of(st.just(100), huge_int, json_value),
        "session_id": st.one_of(st.just("s-1"), json_value)})


def assert_storable(res) -> None:
    """An Event encodes as UTF-8, in the operator's Arrow row types and as BSON; a Reject's reason too."""
    if isinstance(res, ev.Reject):
        assert res.code in ev.REASON_CODES
        res.reason.encode("utf-8")                   # strict: no lone surrogates
        BSON.encode({"reason": res.reason})
        return
    assert isinstance(res, ev.Event)
    for name in ("event_id", "user_id", "session_id"):
        v = getattr(res, name)
        v.encode("utf-8")
        assert ev.text_problem(v) is None and 0 < len(v) <= ev.MAX_ID_CHARS
    row = {"event_id": res.event_id, "user_id": res.user_id, "session_id": res.session_id, "action": res.action,
           "track_id": res.track_id, "event_time": res.event_time_ms, "ms_played": res.ms_played}
    pa.RecordBatch.from_pylist([row], schema=pa.schema([
        ("event_id", pa.string()), ("user_id", pa.string()), ("session_id", pa.string()), ("action", pa.string()),
        ("track_id", pa.int64()), ("event_time", pa.int64()), ("ms_played", pa.int64())]))
    BSON.encode(row)
    assert ev.parse(res.to_json(), ref_ms=REF, known=KNOWN) == res


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_parse_to_something_storable(raw):
    assert_storable(ev.parse(raw, ref_ms=REF, known=KNOWN))


@FUZZ
@given(json_value)
def test_any_json_value_parses_to_something_storable(value):
    raw = json.dumps(value)          # ensure_ascii: surrogates travel as \ud800 escapes, as a producer sends them
    assert_storable(ev.parse(raw, ref_ms=REF, known=KNOWN))
    assert_storable(ev.parse(raw.encode(), ref_ms=None, known=None))


@FUZZ
@given(field_values())
@example({**good(), "user_id": "u\ud800"})
@example({**good(), "track_id": 2**64})
@example({**good(), "event_time": 10**20})
def test_events_with_any_field_replaced_are_storable(obj):
    raw = json.dumps(obj)
    assert_storable(ev.parse(raw, ref_ms=REF, known=KNOWN))
    assert_storable(ev.parse(raw, ref_ms=None, known=None))     # no catalogue, no reference time: bounds still hold


@FUZZ
@given(st.sampled_from(["event_id", "user_id", "session_id"]), st.text(SAFE, max_size=10), st.text(SAFE, max_size=10),
       st.sampled_from(["\ud800", "\udfff", "\x00", "\x07", "\x1b", "\x7f", "\x9b", "\u202e", "\u2066"]))
def test_ids_with_surrogates_or_controls_are_bad_text(field, before, after, bad):
    value = (before + bad + after)[: ev.MAX_ID_CHARS]
    if not value.strip() or bad not in value:
        return
    res = ev.parse(json.dumps({**good(), field: value}), ref_ms=REF, known=KNOWN)
    assert isinstance(res, ev.Reject) and res.code == ev.BAD_TEXT, res
    assert field in res.detail and f"U+{ord(bad):04X}" in res.detail


@FUZZ
@given(st.sampled_from(list(good())), json_value)
def test_a_key_named_twice_is_rejected_wherever_it_is(name, value):
    body = json.dumps(good())[1:-1]
    raw = "{" + body + f", {json.dumps(name)}: {json.dumps(value)}" + "}"
    assume(len(raw) <= ev.MAX_RAW_BYTES)          # else it is too_large, judged first
    res = ev.parse(raw, ref_ms=REF, known=KNOWN)
    assert isinstance(res, ev.Reject) and res.code == ev.DUPLICATE_KEY and repr(name) in res.detail
    nested = json.dumps(good(extra=None)).replace('"extra": null', '"extra": {"a": 1, "a": 2}')
    assert ev.parse(nested, ref_ms=REF, known=KNOWN).code == ev.DUPLICATE_KEY


@FUZZ
@given(st.integers(min_value=ev.MAX_RAW_BYTES + 1, max_value=200_000), st.sampled_from(["x", "é", "\U0001F3B5"]))
def test_oversized_values_are_too_large_and_leave_the_operator_cut(size, ch):
    raw = (ch * (size // len(ch.encode()) + 1)).encode()
    res = ev.parse(raw, ref_ms=REF, known=KNOWN)
    assert res.code == ev.TOO_LARGE and f"{len(raw)} bytes" in res.detail
    rec = type("R", (), dict(key=b"u-1", value=raw, topic="t", partition=0, offset=1, kafka_ms=REF))
    _, (row,) = rs.process_user("u-1", [rec], taste.UserState(), Catalogue.of_ids([2], [30.0]), taste.Rules(), ev.Limits())
    assert row.kind == "dead" and len(row.raw) <= ev.RAW_KEEP_BYTES and row.raw_size == len(raw)
    assert row.raw.decode("utf-8") == raw.decode("utf-8")[: len(row.raw.decode("utf-8"))]


@FUZZ
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=70))
@example(b"\x00\x00\x80\x80\x80\x80", 5)   # four stray continuation bytes: a character has at most three
def test_cut_keeps_a_prefix_within_the_limit_on_a_character_boundary(value, limit):
    kept, size = ev.cut(value, limit)
    assert size == len(value) and len(kept) <= limit and value.startswith(kept)
    assert len(kept) >= min(len(value), limit) - 3
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return
    kept.decode("utf-8")           # a valid value stays valid when cut


def test_huge_numbers_are_rejected_with_the_reason():
    assert ev.parse(json.dumps(good(track_id=2**63)), ref_ms=REF).code == ev.BAD_VALUE
    assert ev.parse(json.dumps(good(event_time=10**30)), ref_ms=None).code == ev.BAD_TIME
    assert ev.parse(json.dumps(good(ms_played=10**30)), ref_ms=REF).code == ev.BAD_VALUE
    r = ev.parse('{"track_id": ' + "9" * 5000 + "}", ref_ms=REF)
    assert r.code == ev.MALFORMED and "digits" in r.detail
    inf = json.dumps(good()).replace('"ms_played": 4200', '"ms_played": 1e400')
    assert ev.parse(inf, ref_ms=REF).code == ev.WRONG_TYPE
