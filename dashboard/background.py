"""A value refreshed in a background thread: pages read the latest value at once and never wait for a
slow whole-collection read. The thread loads only while someone has asked for the value recently, so an
idle dashboard does not keep reading the store, and a load that takes long spaces the next one out
(a load every `interval_s`, but never more than 1/`spacing` of the time busy), so a store that scans
slowly is not kept busy by the dashboard."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Loader = Callable[[Any, Callable[[int], None]], Any]  # (previous value, progress(n)) -> new value


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line (driver errors can span many)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Snapshot:
    value: Any
    loaded_at: float | None   # time.time() of the last successful load
    error: str | None         # the last load's error (None after a success)
    busy: bool                # a load is running now
    progress: int | None      # documents read so far by the running load


class Refresher:
    def __init__(self, name: str, load: Loader, interval_s: float, idle_s: float = 300.0, retry_s: float = 5.0,
                 spacing: float = 3.0):
        self.name, self._load, self.interval_s, self.idle_s = name, load, interval_s, idle_s
        self.retry_s = min(retry_s, interval_s)
        self.spacing = spacing
        self.last_duration_s = 0.0
        self._cond = threading.Condition()
        self._value: Any = None
        self._loaded_at: float | None = None
        self._error: str | None = None
        self._busy = False
        self._progress: int | None = None
        self._last_read = time.monotonic()
        self._last_try = float("-inf")
        self._wake = False
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> Snapshot:
        return Snapshot(self._value, self._loaded_at, self._error, self._busy, self._progress)

    def get(self, wait_s: float = 0.0) -> Snapshot:
        """The latest value; waits up to `wait_s` for a first value (or a first error)."""
        with self._cond:
            self._last_read = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"dashboard-{self.name}", daemon=True)
                self._thread.start()
            deadline = time.monotonic() + wait_s
            while self._loaded_at is None and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._snapshot()

    def refresh(self) -> None:
        """Ask for a load now (the next one starts as soon as the running one, if any, ends)."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def _set_progress(self, n: int) -> None:
        with self._cond:
            self._progress = n

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                idle = now - self._last_read > self.idle_s
                every = self.retry_s if self._error is not None else max(self.interval_s,
                                                                          self.spacing * self.last_duration_s)
                due = self._wake or now - self._last_try >= every
                if idle or not due:
                    wait = 1.0 if idle else max(0.05, every - (now - self._last_try))
                    self._cond.wait(min(wait, 1.0))
                    continue
                self._wake = False
                self._last_try = now
                self._busy, self._progress = True, 0
                previous = self._value
            started = time.monotonic()
            try:
                value = self._load(previous, self._set_progress)
            except Exception as exc:  # a store that is down: keep the last value, report, retry later
                with self._cond:
                    self._error = first_line(exc)
                    self._busy, self._progress = False, None
                    self._cond.notify_all()
                continue
            with self._cond:
                self.last_duration_s = time.monotonic() - started
                self._value, self._loaded_at, self._error = value, time.time(), None
                self._busy, self._progress = False, None
                self._cond.notify_all()


class KeyedRefresher:
    """Like Refresher, for many small values by key (a user's recommendations): one thread keeps every
    key that a page asked for within `idle_s` fresh; keys nobody asks for are dropped, and the thread
    ends when no key is left (the next `get` starts it again). A key never read before is read at once on
    a short-lived thread of its own (at most `first_readers` at a time), so a first view does not wait
    behind the refreshes of the keys other pages are showing."""

    def __init__(self, name: str, load_one: Callable[[Any], Any], interval_s: float, idle_s: float = 30.0,
                 spacing: float = 3.0, first_readers: int = 2):
        self.name, self._load_one, self.interval_s, self.idle_s, self.spacing = name, load_one, interval_s, idle_s, spacing
        self.first_readers = first_readers
        self._loading: set = set()   # keys being read right now (by either kind of thread)
        self._cond = threading.Condition()
        self._values: dict = {}      # key -> (value, loaded_at)
        self._errors: dict = {}      # key -> text of the last error
        self._tried: dict = {}       # key -> monotonic time of the last load start
        self._took: dict = {}        # key -> seconds the last load took
        self._read: dict = {}        # key -> monotonic time of the last get
        self._thread: threading.Thread | None = None

    def get(self, key, wait_s: float = 0.0) -> Snapshot:
        with self._cond:
            self._read[key] = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"dashboard-{self.name}", daemon=True)
                self._thread.start()
            if (key not in self._values and key not in self._errors and key not in self._loading
                    and sum(1 for k in self._loading if k not in self._values) < self.first_readers):
                self._loading.add(key)
                threading.Thread(target=self._load, args=(key,), name=f"dashboard-{self.name}-first",
                                 daemon=True).start()
            self._cond.notify_all()
            deadline = time.monotonic() + wait_s
            while key not in self._values and key not in self._errors:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            value, at = self._values.get(key, (None, None))
            return Snapshot(value, at, self._errors.get(key), key in self._tried and key not in self._values, None)

    def _next_key(self, now: float):
        """The key to load now (never loaded first, then the stalest due one), or None."""
        fresh = [k for k, t in self._read.items() if now - t <= self.idle_s]
        for gone in set(self._read) - set(fresh):
            for d in (self._read, self._values, self._errors, self._tried, self._took):
                d.pop(gone, None)
        fresh = [k for k in fresh if k not in self._loading]
        new = [k for k in fresh if k not in self._values and k not in self._errors]
        if new:
            return new[0]
        due = [k for k in fresh
               if now - self._tried.get(k, float("-inf")) >= max(self.interval_s, self.spacing * self._took.get(k, 0.0))]
        return min(due, key=lambda k: self._tried.get(k, float("-inf"))) if due else None

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                if not self._read:
                    self._thread = None
                    return
                key = self._next_key(now)
                if key is None:
                    self._cond.wait(0.1)
                    continue
                self._loading.add(key)
            self._load(key)

    def _load(self, key) -> None:
        """Read one key and publish the value (or the error) to the waiting pages."""
        start = time.monotonic()
        with self._cond:
            self._tried[key] = start
        try:
            value = self._load_one(key)
        except Exception as exc:
            with self._cond:
                self._errors[key] = first_line(exc)
                self._took[key] = time.monotonic() - start
                self._loading.discard(key)
                self._cond.notify_all()
            return
        with self._cond:
            self._took[key] = time.monotonic() - start
            if key in self._read:
                self._values[key] = (value, time.time())
                self._errors.pop(key, None)
            self._loading.discard(key)
            self._cond.notify_all()
