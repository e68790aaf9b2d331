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
