"""Bounded exponential backoff (common.retry), on a fake clock."""
from __future__ import annotations

import pytest

from common.retry import MARK, StoreUnavailable, delays, retrying


class Clock:
    def __init__(self):
        self.t = 0.0
        self.slept = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.slept.append(s)
        self.t += s


def flaky(failures, exc=ConnectionError("connection refused: 127.0.0.1:1")):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc
        return "written"
    return fn, calls


def test_delays_double_up_to_the_cap():
    d = delays(0.5, 4.0)
    assert [next(d) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_store_back_within_the_limit_is_ridden_out_with_one_line_per_retry():
    clock, lines = Clock(), []
    fn, calls = flaky(4)
    out = retrying(fn, what="store db@h:1", limit_s=60, initial_s=0.5, max_s=10, log=lines.append,
                   clock=clock, sleep=clock.sleep)
    assert out == "written" and calls["n"] == 5
    assert clock.slept == [0.5, 1.0, 2.0, 4.0]
    assert len(lines) == 4 and all(l.startswith("store db@h:1: write failed (ConnectionError: connection refused")
                                   for l in lines)
    assert lines[0].endswith("retry 1 in 0.5 s")


def test_past_the_limit_it_raises_one_clear_line_without_secrets():
    clock, lines = Clock(), []
    fn, calls = flaky(10**6, RuntimeError("auth failed for p@ss"))
    with pytest.raises(StoreUnavailable) as exc:
        retrying(fn, what="store db@h:1", limit_s=30, initial_s=1, max_s=8, log=lines.append, secrets=("p@ss",),
                 clock=clock, sleep=clock.sleep)
    msg = str(exc.value)
    assert msg.startswith(MARK) and "\n" not in msg and "limit 30 s" in msg and "p@ss" not in msg and "***" in msg
    assert sum(clock.slept) == pytest.approx(30) and max(clock.slept) <= 8
    assert all("p@ss" not in l for l in lines)


def test_other_errors_are_not_retried():
    fn, calls = flaky(1, KeyError("bug"))
    with pytest.raises(KeyError):
        retrying(fn, what="s", limit_s=10, initial_s=0, max_s=0, log=print, retry_on=(ConnectionError,))
    assert calls["n"] == 1
