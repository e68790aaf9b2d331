"""A crash and time boundary around one call: `Isolated(fn, timeout_s).call(*args)`.

`fn` runs in a child process forked from the caller, which serves calls one at a time over a pipe. Forked
after the caller has warmed up, the child starts warm (librosa imported, filter banks and numba kernels
ready) and needs nothing pickled but the arguments and the result. When the child dies during a call (a
SIGSEGV in a decoder or a numba kernel, an abort, the OOM killer) or gives no answer within `timeout_s`
(it is then killed), that call returns `Outcome(status="crashed" | "timeout", ...)` and the next call
forks a fresh child; the caller, a Spark Python worker with the rest of its partition, lives on.

The cost per call is one pipe round trip of the arguments and the result (see README, "Feature
extraction", for the figure), plus a fork after each crash or timeout.
"""
from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

OK, CRASHED, TIMEOUT = "ok", "crashed", "timeout"


@dataclass
class Outcome:
    status: str                 # ok | crashed | timeout
    value: Any = None           # fn's result when ok
    signal: str | None = None   # crashed: the signal's name (SIGSEGV), or None for a plain exit
    exitcode: int | None = None
    seconds: float = 0.0

    @property
    def detail(self) -> str:
        if self.status == CRASHED:
            how = f"died of {self.signal}" if self.signal else f"exited with code {self.exitcode}"
            return f"the extracting process {how} on this file"
        if self.status == TIMEOUT:
            return f"no result after {self.seconds:.0f} s; the extracting process was killed"
        return ""


def _signal_name(exitcode: int | None) -> str | None:
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def _serve(conn, fn: Callable, initializer: Callable | None) -> None:
    """The child's loop: one call per message, until None or the pipe closes."""
    if initializer is not None:
        initializer()
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        if args is None:
            return
        conn.send(fn(*args))


class Isolated:
    def __init__(self, fn: Callable, timeout_s: float, initializer: Callable | None = None):
        """`initializer` runs once in each child before its first call (state that a fork does not carry
        over, such as OpenBLAS's thread count, which falls back to its default in a forked child)."""
        self.fn, self.timeout_s, self.initializer = fn, float(timeout_s), initializer
        self._ctx = multiprocessing.get_context("fork")
        self._proc = None
        self._conn = None
        self.forks = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_serve, args=(child, self.fn, self.initializer), name="musicrec-extract", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self.forks += 1

    def _reap(self, kill: bool) -> int | None:
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return None
        if kill and proc.is_alive():
            proc.kill()
        proc.join(5)
        return proc.exitcode

    def call(self, *args) -> Outcome:
        if self._proc is None or not self._proc.is_alive():
            self._reap(kill=True)
            self._start()
        started = time.perf_counter()
        try:
            self._conn.send(args)
            if self._conn.poll(self.timeout_s):
                value = self._conn.recv()   # EOFError when the child died before answering
                return Outcome(OK, value, seconds=time.perf_counter() - started)
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            code = self._reap(kill=True)
            return Outcome(CRASHED, signal=_signal_name(code), exitcode=code,
                           seconds=time.perf_counter() - started)
        code = self._reap(kill=True)
        return Outcome(TIMEOUT, exitcode=code, seconds=time.perf_counter() - started)

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
        self._reap(kill=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
