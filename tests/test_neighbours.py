"""Writing the neighbour table (jobs/neighbours.py) to the real store: documents, idempotent rewrite,
stale versions removed."""
from __future__ import annotations

import numpy as np
import pytest

from jobs import neighbours


def test_documents_keep_order_and_drop_missing():
    docs = list(neighbours.documents(np.array([1, 2]), np.array([[2, -1], [1, 3]]),
                                     np.array([[0.5, np.inf], [0.5, 0.7]], dtype=np.float32), "v1"))
    assert docs[0] == {"_id": 1, "model_version": "v1", "neighbours": [{"track_id": 2, "distance": 0.5}]}
    assert [n["track_id"] for n in docs[1]["neighbours"]] == [1, 3]


@pytest.mark.integration
def test_write_is_idempotent_and_removes_other_versions(settings, mongo):
    s = settings.model_copy(update={"coll_neighbours": "neighbours_write_test"})
    coll = mongo[s.coll_neighbours]
    coll.insert_one({"_id": 999, "neighbours": [], "model_version": "v0"})
    ids = np.arange(1, 2501)
    nb = np.stack([np.roll(ids, -1), np.roll(ids, -2)], axis=1)
    d = np.ones(nb.shape, dtype=np.float32)
    for _ in range(2):
        counts = neighbours.write(s, neighbours.documents(ids, nb, d, "v1"), "v1", batch=1000, progress=False)
        assert counts["written"] == 2500
    assert counts["deleted_stale"] == 0  # the second run had nothing stale left
    assert coll.count_documents({}) == 2500 and coll.count_documents({"model_version": "v1"}) == 2500
    assert coll.find_one({"_id": 2500})["neighbours"][0] == {"track_id": 1, "distance": 1.0}
