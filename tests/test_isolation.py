"""The crash and time boundary on its own: real signals, a real hang, and the child's state."""
from __future__ import annotations

import ctypes
import os
import time

from feature_extraction.isolation import CRASHED, OK, TIMEOUT, Isolated


def work(what: str):
    if what == "segv":
        ctypes.string_at(0)          # a real segmentation fault
    if what == "abort":
        os.abort()
    if what == "exit":
        os._exit(3)
    if what == "hang":
        time.sleep(3600)
    if what == "pid":
        return os.getpid()
    if what == "threads":
        from threadpoolctl import threadpool_info

        return sorted({d["num_threads"] for d in threadpool_info()})
    return what * 2


def test_each_failure_costs_its_call_only():
    with Isolated(work, timeout_s=2.0) as iso:
        outcomes = [(what, iso.call(what)) for what in ("a", "segv", "b", "abort", "exit", "hang", "c")]
        assert iso.forks == 5   # a fresh child after each of the four failures
    got = {what: (o.status, o.value, o.signal, o.exitcode) for what, o in outcomes}
    assert got["a"] == (OK, "aa", None, None) and got["b"][:2] == (OK, "bb") and got["c"][:2] == (OK, "cc")
    assert got["segv"] == (CRASHED, None, "SIGSEGV", -11)
    assert got["abort"] == (CRASHED, None, "SIGABRT", -6)
    assert got["exit"] == (CRASHED, None, None, 3)
    assert got["hang"][0] == TIMEOUT and got["hang"][3] == -9
    by = dict(outcomes)
    assert by["segv"].detail == "the extracting process died of SIGSEGV on this file"
    assert by["hang"].detail.startswith("no result after 2 s") and 2.0 <= by["hang"].seconds < 5


def test_one_child_serves_many_calls_and_runs_the_initializer():
    from feature_extraction.worker import one_thread

    with Isolated(work, timeout_s=30, initializer=one_thread) as iso:
        pids = {iso.call("pid").value for _ in range(20)}
        assert len(pids) == 1 and os.getpid() not in pids
        assert iso.call("threads").value == [1]
    with Isolated(work, timeout_s=30) as bare:
        assert bare.call("pid").value != os.getpid()
