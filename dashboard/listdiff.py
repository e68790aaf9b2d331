"""How a user's recommendation list changed between two versions, and a small memory of the versions
the dashboard has seen (a recommendations document is replaced in place, so the previous list exists
only where someone kept it). Pure logic plus a thread-safe bounded history; no Streamlit, no store."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

NEW, UP, DOWN, SAME = "new", "up", "down", "same"


def _track_ids(items: Sequence) -> list:
    out = []
    for item in items or ():
        tid = item.get("track_id") if isinstance(item, dict) else None
        if tid is not None and tid not in out:  # a duplicate entry counts once, at its best rank
            out.append(tid)
    return out


@dataclass
class ListChange:
    """Per current item: its rank (1-based), the previous rank (None if new) and the change; plus the
    items that dropped out (with their previous rank)."""
    rows: list[dict] = field(default_factory=list)       # {track_id, rank, prev_rank, change, moved}
    removed: list[dict] = field(default_factory=list)    # {track_id, prev_rank}

    @property
    def added(self) -> int:
        return sum(r["change"] == NEW for r in self.rows)

    @property
    def moved(self) -> int:
        return sum(r["change"] in (UP, DOWN) for r in self.rows)

    @property
    def unchanged(self) -> bool:
        return not self.added and not self.moved and not self.removed

    def text(self) -> str:
        if self.unchanged:
            return "unchanged"
        parts = []
        if self.added:
            parts.append(f"{self.added} new")
        if self.moved:
            parts.append(f"{self.moved} moved")
        if self.removed:
            parts.append(f"{len(self.removed)} dropped")
        return ", ".join(parts)

    def by_track(self) -> dict:
        return {r["track_id"]: r for r in self.rows}


def diff_items(previous: Sequence | None, current: Sequence) -> ListChange:
    """Compare two ranked item lists by track_id. `moved` > 0 means the track climbed that many places."""
    prev_ids = _track_ids(previous or [])
    prev_rank = {tid: i + 1 for i, tid in enumerate(prev_ids)}
    cur_ids = _track_ids(current)
    change = ListChange()
    for i, tid in enumerate(cur_ids):
        rank = i + 1
        before = prev_rank.get(tid)
        if before is None:
            kind, moved = NEW, 0
        else:
            moved = before - rank
            kind = UP if moved > 0 else DOWN if moved < 0 else SAME
        change.rows.append({"track_id": tid, "rank": rank, "prev_rank": before, "change": kind, "moved": moved})
    current_set = set(cur_ids)
    change.removed = [{"track_id": tid, "prev_rank": prev_rank[tid]} for tid in prev_ids if tid not in current_set]
    return change


def change_label(row: dict | None) -> str:
    """A short marker for a table cell: 'new', '▲ 2', '▼ 1' or ''."""
    if not row:
        return ""
    if row["change"] == NEW:
        return "new"
    if row["change"] == UP:
        return f"▲ {row['moved']}"
    if row["change"] == DOWN:
        return f"▼ {-row['moved']}"
    return ""


class History:
    """The last two distinct versions of each user's list that this process has seen, for at most
    `max_users` users (least recently seen dropped first). `observe` returns the version before the
    current one, or None when the dashboard has seen only one."""

    def __init__(self, max_users: int = 10_000):
        self.max_users = max_users
        self._lock = threading.Lock()
        self._seen: OrderedDict[Hashable, list[tuple[Hashable, list]]] = OrderedDict()

    def observe(self, user: Hashable, version: Hashable, items: Sequence) -> tuple[Hashable, list] | None:
        with self._lock:
            versions = self._seen.pop(user, [])
            if not versions or versions[-1][0] != version:
                versions = (versions + [(version, list(items))])[-2:]
            self._seen[user] = versions
            while len(self._seen) > self.max_users:
                self._seen.popitem(last=False)
            return versions[-2] if len(versions) == 2 else None
