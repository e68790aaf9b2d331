"""Bounded exponential backoff for idempotent writes to a store that may be down for a while.

    retrying(write, what="store musicrec@127.0.0.1:27017", limit_s=120, initial_s=0.5, max_s=10, log=print)

calls `write()` until it returns; after each failure it logs one line (which store, which error, the
next wait) and waits `initial_s`, twice that, ... at most `max_s`; once `limit_s` have passed since the
first failure it raises `StoreUnavailable` with one line that says so. Only idempotent work may be
retried (a replayed micro-batch writes the same documents).
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

MARK = "musicrec store unavailable:"      # how the job finds this failure inside Spark's error text


class StoreUnavailable(RuntimeError):
    """The store stayed unusable past the retry limit; the message is the one line to print."""


def delays(initial_s: float, max_s: float):
    """initial, 2 x initial, 4 x initial, ... capped at max_s."""
    d = max(0.0, initial_s)
    while True:
        yield min(d, max_s)
        d = d * 2 if d > 0 else max_s


def first_line(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retrying(fn: Callable[[], T], *, what: str, limit_s: float, initial_s: float, max_s: float,
             log: Callable[[str], None], retry_on: tuple[type[BaseException], ...] = (Exception,),
             secrets: tuple[str, ...] = (), doing: str = "write", clock=time.monotonic, sleep=time.sleep) -> T:
    started = None
    waits = delays(initial_s, max_s)
    attempt = 0
    while True:
        try:
            return fn()
        except retry_on as exc:
            now = clock()
            started = now if started is None else started
            attempt += 1
            reason = first_line(exc, secrets)
            left = limit_s - (now - started)
            if left <= 0:
                raise StoreUnavailable(f"{MARK} {what} failed for {now - started:.0f} s "
                                       f"(limit {limit_s:.0f} s, {attempt} attempts); last error {reason}") from exc
            wait = min(next(waits), left)
            log(f"{what}: {doing} failed ({reason}); retry {attempt} in {wait:.1f} s")
            sleep(wait)
