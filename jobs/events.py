"""The activity event contract: parsing and validation as pure functions.

A Kafka `activity` record (key = user id, value = JSON) becomes either an `Event` or a `Reject` with a
reason that says exactly what is wrong. Nothing here raises on bad input: malformed JSON, wrong types,
missing fields, unknown actions or tracks and absurd times are all rejects, which the stream sends to
the dead-letter sink with the raw value.

    {"event_id": "e-1", "user_id": "u-42", "track_id": 2, "action": "skip",
     "event_time": "2026-11-24T22:15:03.120Z", "ms_played": 4200, "session_id": "s-9"}

- `event_id`, `user_id`, `session_id`: non-empty strings of at most `MAX_ID_CHARS` characters, valid
  Unicode (no lone surrogates such as `"\\ud800"`, which JSON allows but UTF-8 cannot encode) and free of
  control and bidirectional-override characters (they are shown in the dashboard and stored).
- `track_id`: an integer (JSON number without a fraction; booleans are not integers) of the catalogue,
  at most 2**63 - 1 (it is stored as a 64-bit integer).
- `action`: one of `common.contracts.ACTIONS` (play, complete, skip, like, dislike).
- `event_time`: ISO-8601 (UTC; a time without an offset is read as UTC) or integer epoch milliseconds.
  It is judged against the Kafka record's timestamp, never the wall clock, so a replay of the same
  records accepts and rejects exactly the same events: earlier than `MIN_EVENT_TIME`, more than
  `max_future_s` after the record or more than `max_age_s` before it is absurd.
- `ms_played`: an integer in [0, `MAX_MS_PLAYED`].
Other fields are ignored (forward compatible). A Kafka key, when present, must equal `user_id`.
An object that names one key twice (at any depth) is rejected: readers disagree on which value wins (the
stream's JVM side takes one `user_id`, Python's json another).

Whatever passes `parse` can be encoded (UTF-8, Arrow, BSON) and stored; whatever fails is a `Reject`
whose reason is printable ASCII-safe text (values are shown with `repr`). `cut` shortens a raw value or key
to what the dead-letter sink stores, on the executor, so oversized records never reach the driver whole.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, Container

from common.contracts import ACTIONS

FIELDS = ("event_id", "user_id", "track_id", "action", "event_time", "ms_played", "session_id")
MAX_RAW_BYTES = 16_384            # a real event is ~200 bytes; more is garbage or abuse
RAW_KEEP_BYTES = 4096             # what the dead-letter sink keeps of a raw value (cut on the executor)
KEY_KEEP_BYTES = 512              # ... and of a Kafka key
MAX_ID_CHARS = 128
MAX_INT64 = 2**63 - 1
MAX_MS_PLAYED = 24 * 3600 * 1000  # a day of play for one event is absurd
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
MIN_EVENT_MS = int(MIN_EVENT_TIME.timestamp() * 1000)
MAX_EVENT_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
MAX_EVENT_MS = int(MAX_EVENT_TIME.timestamp() * 1000)    # the largest time ISO-8601 text can name

# reason codes: the first word of every reason, stable for dashboards and tests
MALFORMED = "malformed_json"
NOT_OBJECT = "not_an_object"
TOO_LARGE = "too_large"
MISSING = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_VALUE = "bad_value"
UNKNOWN_ACTION = "unknown_action"
UNKNOWN_TRACK = "unknown_track"
BAD_TIME = "bad_time"
KEY_MISMATCH = "key_mismatch"
DUPLICATE_KEY = "duplicate_key"
BAD_TEXT = "bad_text"
USER_FAILED = "user_failed"       # handling this user's events failed (not the record's fault, maybe)
REASON_CODES = (MALFORMED, NOT_OBJECT, TOO_LARGE, MISSING, WRONG_TYPE, BAD_VALUE, UNKNOWN_ACTION,
                UNKNOWN_TRACK, BAD_TIME, KEY_MISMATCH, DUPLICATE_KEY, BAD_TEXT, USER_FAILED)


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    track_id: int
    action: str
    event_time_ms: int      # epoch milliseconds, UTC
    ms_played: int
    session_id: str

    def to_json(self) -> str:
        """The canonical wire form (event_time as epoch ms)."""
        d = asdict(self)
        d["event_time"] = d.pop("event_time_ms")
        return json.dumps(d, separators=(",", ":"))


@dataclass(frozen=True)
class Reject:
    code: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class Limits:
    """How far an event time may lie from its Kafka record's timestamp."""
    max_future_s: float = 300.0
    max_age_s: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(max_future_s=float(settings.event_max_future_seconds),
                   max_age_s=float(settings.event_max_age_days) * 86400.0)


def _short(value, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _type_name(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_time_ms(value) -> int | Reject:
    """ISO-8601 text or integer epoch milliseconds -> epoch ms (UTC), or a Reject."""
    if _is_int(value):
        ms = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            return Reject(BAD_TIME, f"event_time {_short(value)} is not ISO-8601 or epoch milliseconds")
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        ms = int(round(dt.timestamp() * 1000))
    elif isinstance(value, float):
        return Reject(WRONG_TYPE, f"event_time must be ISO-8601 text or integer epoch ms, got number {_short(value)}")
    else:
        return Reject(WRONG_TYPE, f"event_time must be ISO-8601 text or integer epoch ms, got {_type_name(value)}")
    return ms


def _check_time(ms: int, ref_ms: int | None, limits: Limits) -> Reject | None:
    if ms > MAX_EVENT_MS:
        return Reject(BAD_TIME, f"event_time {_short(ms)} ms is after {MAX_EVENT_TIME:%Y-%m-%d}")
    if ms < MIN_EVENT_MS:
        hint = " (epoch seconds? the contract wants milliseconds)" if ms > 0 and ms * 1000 >= MIN_EVENT_MS else ""
        return Reject(BAD_TIME, f"event_time {_short(ms)} ms is before {MIN_EVENT_TIME:%Y-%m-%d}{hint}")
    if ref_ms is not None:
        ahead = (ms - ref_ms) / 1000.0
        if ahead > limits.max_future_s:
            return Reject(BAD_TIME, f"event_time is {ahead:.0f} s after its Kafka record "
                                    f"(at most {limits.max_future_s:.0f} s allowed)")
        if -ahead > limits.max_age_s:
            return Reject(BAD_TIME, f"event_time is {-ahead / 86400:.1f} days before its Kafka record "
                                    f"(at most {limits.max_age_s / 86400:.1f} days allowed)")
    return None


# bidirectional overrides and isolates reorder what a reader sees ("Trojan Source"); never part of an id
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be an id (stored, encoded as UTF-8, shown in the dashboard), or None."""
    if value.isascii() and value.isprintable():     # most ids: no surrogate, no bidi, no control character
        return None
    for i, ch in enumerate(value):
        o = ord(ch)
        if 0xD800 <= o <= 0xDFFF:
            return f"a lone surrogate U+{o:04X} at character {i} (not encodable as UTF-8)"
        if o < 0x20 or 0x7F <= o < 0xA0:
            return f"the control character U+{o:04X} at character {i}"
        if ch in _BIDI:
            return f"the bidirectional control U+{o:04X} at character {i}"
    return None


def _id_field(obj: dict, name: str) -> str | Reject:
    value = obj[name]
    if not isinstance(value, str):
        return Reject(WRONG_TYPE, f"{name} must be a string, got {_type_name(value)} {_short(value)}")
    if not value.strip():
        return Reject(BAD_VALUE, f"{name} is empty")
    if len(value) > MAX_ID_CHARS:
        return Reject(BAD_VALUE, f"{name} is longer than {MAX_ID_CHARS} characters")
    problem = text_problem(value)
    if problem:
        return Reject(BAD_TEXT, f"{name} holds {problem}")
    return value


def validate(obj, *, key: str | None = None, ref_ms: int | None = None,
             known: Container[int] | Callable[[int], bool] | None = None,
             limits: Limits = Limits()) -> Event | Reject:
    """A decoded JSON value -> Event, or the first problem found (in field order)."""
    if not isinstance(obj, dict):
        return Reject(NOT_OBJECT, f"the value must be a JSON object, got {_type_name(obj)}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        return Reject(MISSING, f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    values = {}
    for name in ("event_id", "user_id", "session_id"):
        v = _id_field(obj, name)
        if isinstance(v, Reject):
            return v
        values[name] = v
    if key is not None and key != values["user_id"]:
        return Reject(KEY_MISMATCH, f"Kafka key {_short(key)} differs from user_id {_short(values['user_id'])}")

    track = obj["track_id"]
    if not _is_int(track):
        return Reject(WRONG_TYPE, f"track_id must be an integer, got {_type_name(track)} {_short(track)}")
    if track < 0:
        return Reject(BAD_VALUE, f"track_id {_short(track)} is negative")
    if track > MAX_INT64:
        return Reject(BAD_VALUE, f"track_id {_short(track)} is larger than a 64-bit integer")

    action = obj["action"]
    if not isinstance(action, str):
        return Reject(WRONG_TYPE, f"action must be a string, got {_type_name(action)} {_short(action)}")
    if action not in ACTIONS:
        return Reject(UNKNOWN_ACTION, f"action {_short(action)} is not one of {', '.join(ACTIONS)}")

    ms = parse_time_ms(obj["event_time"])
    if isinstance(ms, Reject):
        return ms
    bad = _check_time(ms, ref_ms, limits)
    if bad is not None:
        return bad

    played = obj["ms_played"]
    if not _is_int(played):
        return Reject(WRONG_TYPE, f"ms_played must be an integer, got {_type_name(played)} {_short(played)}")
    if not 0 <= played <= MAX_MS_PLAYED:
        return Reject(BAD_VALUE, f"ms_played {played} is outside [0, {MAX_MS_PLAYED}]")

    if known is not None:
        is_known = known(track) if callable(known) else track in known
        if not is_known:
            return Reject(UNKNOWN_TRACK, f"track_id {track} is not in the catalogue")
    return Event(values["event_id"], values["user_id"], int(track), action, int(ms), int(played),
                 values["session_id"])


def parse(raw: str | bytes | None, *, key: str | None = None, ref_ms: int | None = None,
          known: Container[int] | Callable[[int], bool] | None = None,
          limits: Limits = Limits()) -> Event | Reject:
    """A raw Kafka value -> Event or Reject. Never raises."""
    if raw is None:
        return Reject(MALFORMED, "the record has no value")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > MAX_RAW_BYTES:       # judged before decoding: a huge value is never decoded
            return Reject(TOO_LARGE, f"the value has {len(raw)} bytes (at most {MAX_RAW_BYTES})")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Reject(MALFORMED, f"the value is not UTF-8 ({exc.reason} at byte {exc.start})")
    size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > MAX_RAW_BYTES:
        return Reject(TOO_LARGE, f"the value has {size} bytes (at most {MAX_RAW_BYTES})")
    try:
        obj = json.loads(raw, parse_constant=_no_constants, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        return Reject(DUPLICATE_KEY, str(exc))
    except (ValueError, RecursionError) as exc:
        return Reject(MALFORMED, str(exc)[:200].encode("ascii", "backslashreplace").decode("ascii"))
    try:
        return validate(obj, key=key, ref_ms=ref_ms, known=known, limits=limits)
    except Exception as exc:  # a validator bug must not kill the query: the event is still a dead letter
        return Reject(BAD_VALUE, f"unexpected {type(exc).__name__}: {str(exc)[:160]}")


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"the key {_short(k)} appears twice in one object")
        out[k] = v
    return out


def cut(value: bytes | bytearray | memoryview | None, limit: int) -> tuple[bytes | None, int]:
    """(the first at most `limit` bytes of `value`, ending on a UTF-8 character boundary; its full size).

    The dead-letter sink stores no more than this, so the executor sends no more to the driver."""
    if value is None:
        return None, 0
    value = bytes(value)
    if len(value) <= limit:
        return value, len(value)
    end = limit
    while end > limit - 3 and end > 0 and (value[end] & 0xC0) == 0x80:   # a continuation byte: back off, at most 3
        end -= 1
    return value[:end], len(value)


def reason_code(reason: str) -> str:
    """The code of a reason text ('unknown_track: ...' -> 'unknown_track')."""
    return reason.split(":", 1)[0]
