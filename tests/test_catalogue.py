"""common.catalogue.Catalogue lookups: one id at a time (`row`) and many at once (`rows`) agree."""
from __future__ import annotations

import numpy as np

from common.catalogue import Catalogue


def test_row_and_rows_agree_on_every_kind_of_id():
    ids = np.array([40, 7, 19, 7, 2**62, 0])                   # 7 twice: its first row counts
    cat = Catalogue.of_ids(ids, duration=np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.0]))
    probe = [40, 7, 19, 0, 2**62, np.int64(19), 19.0, True, "40", 3, -7]
    assert [cat.row(t) for t in probe] == cat.rows([int(t) for t in probe]).tolist() == [0, 1, 2, 5, 4, 2, 2, -1, 0, -1, -1]
    # more than a few ids take the binary search, not the dict: the same rows
    assert cat.rows([int(t) for t in probe] * 4).tolist() == cat.rows([int(t) for t in probe]).tolist() * 4
    assert cat.rows([]).tolist() == [] and cat.rows(np.zeros(0, dtype=np.int64)).dtype == np.int64
    for bad in (None, "x", float("nan"), float("inf"), 2**70, [1], {}):
        assert cat.row(bad) == -1 and bad not in cat
    assert cat.duration_of(7) == 2.0 and cat.duration_of(0) is None and cat.duration_of("nope") is None
