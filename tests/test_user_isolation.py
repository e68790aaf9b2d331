"""Per-user failure isolation in the stateful operator: a failure while handling one user's records turns
exactly that user's records into dead letters with the reason; the user's state stays; others go on."""
from __future__ import annotations

from common.catalogue import Catalogue
from jobs import events as ev
from jobs import recommend_stream as rs
from jobs import taste
from tests.test_stream_user import KNOWN, LIMITS, RULES, event, rec


class Poisoned(Catalogue):
    """A catalogue whose lookup fails for one track (a stand-in for any bug in the per-user step)."""

    def duration_of(self, track_id):
        if int(track_id) == 13:
            raise ZeroDivisionError("poisoned track")
        return super().duration_of(track_id)


POISONED = Poisoned.of_ids(KNOWN.ids, KNOWN.duration)


def test_a_failing_user_becomes_dead_letters_and_keeps_its_state():
    state = taste.UserState(n_events=4)
    rows = [rec(event(1, 10), 1), rec(event(2, 13), 2), rec("{bad", 3)]
    new, out = rs.process_user_isolated("u1", rows, state, POISONED, RULES, LIMITS)
    assert new is None
    assert [r.kind for r in out] == ["dead"] * 3 and [r.offset for r in out] == [1, 2, 3]
    assert all(ev.reason_code(r.reason) == ev.USER_FAILED for r in out)
    assert "ZeroDivisionError: poisoned track" in out[0].reason and out[0].raw == rows[0].value


def test_other_users_of_the_same_bucket_go_on():
    ok_new, ok_out = rs.process_user_isolated("u2", [rec(event(1, 10, user="u2"), 5, key="u2")], taste.UserState(),
                                              POISONED, RULES, LIMITS)
    assert ok_new.n_events == 1 and [r.kind for r in ok_out] == ["event", "user"]


def test_an_output_that_cannot_be_encoded_is_caught_before_the_state_changes(monkeypatch):
    real = ev.parse

    def leaky(*a, **kw):           # a validator gap: an event whose session id cannot be encoded
        e = real(*a, **kw)
        return ev.Event(e.event_id, e.user_id, e.track_id, e.action, e.event_time_ms, e.ms_played, "s\ud800")

    monkeypatch.setattr(ev, "parse", leaky)
    new, out = rs.process_user_isolated("u1", [rec(event(1, 10), 1)], taste.UserState(), KNOWN, RULES, LIMITS)
    assert new is None and len(out) == 1 and ev.reason_code(out[0].reason) == ev.USER_FAILED
    assert "UnicodeEncodeError" in out[0].reason
    out[0].reason.encode("utf-8")
