"""The stored shape of a recommendation list (common/reclist.py): columns in, the same items out."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import reclist

SIMILAR = {"track_id": 7, "score": 0.9, "reason": "similar", "reason_track_id": 3}
FILL = {"track_id": 8, "score": 0.1, "reason": "popular_genre", "genre": "Rock"}


def test_a_list_is_stored_by_field_and_read_back_item_by_item():
    stored = reclist.pack([SIMILAR, FILL])
    assert stored == {"track_id": [7, 8], "score": [0.9, 0.1], "reason": ["similar", "popular_genre"],
                      "reason_track_id": [3, None], "genre": [None, "Rock"]}
    assert reclist.unpack(stored) == [SIMILAR, FILL]
    assert reclist.items_of({"_id": "u", "items": stored}) == [SIMILAR, FILL]
    assert reclist.track_ids({"items": stored}) == [7, 8]


def test_a_field_no_item_has_is_left_out():
    only_similar = reclist.pack([SIMILAR, dict(SIMILAR, track_id=9)])
    assert set(only_similar) == {"track_id", "score", "reason", "reason_track_id"}
    assert reclist.pack([]) == {"track_id": [], "score": [], "reason": []} and reclist.unpack(reclist.pack([])) == []


def test_documents_written_before_hold_a_list_of_items_and_still_read():
    old = [dict(SIMILAR, title="t", artist="a"), "junk", FILL]
    assert reclist.items_of({"items": old}) == [dict(SIMILAR, title="t", artist="a"), FILL]


def test_what_is_not_a_list_reads_as_no_items():
    for stored in (None, 5, "x", {}, {"track_id": "7"}, {"score": [1.0]}):
        assert reclist.unpack(stored) == []
    assert reclist.items_of(None) == [] and reclist.track_ids({"x": 1}) == []
    # a short column leaves its field out where it does not reach; a column that is no list is ignored
    assert reclist.unpack({"track_id": [1, 2], "score": [0.5], "reason": "similar"}) == [
        {"track_id": 1, "score": 0.5}, {"track_id": 2}]


item = st.fixed_dictionaries(
    {"track_id": st.integers(0, 2**31 - 1), "score": st.floats(0, 1), "reason": st.sampled_from(["similar", "taste"])},
    optional={"reason_track_id": st.integers(0, 2**31 - 1), "genre": st.text(min_size=1, max_size=5)})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])   # a loaded CI machine is no bug
@given(st.lists(item, max_size=12))
def test_pack_then_unpack_gives_the_list_back(items):
    assert reclist.unpack(reclist.pack(items)) == items
