"""librosa's numba kernels compiled and cached safely when several processes start at once.

Why (issue 13): numba 0.68.1 names each compiled function `<qualname>$<n>` with `n` taken from one
counter per process, so the name depends on how many functions that process compiled before. A
`@guvectorize(cache=True)` kernel is cached as two files, the kernel (`pitch._pi_wrapper-430...nbc`)
and its ufunc loop (`guf-pitch._pi_wrapper-430...nbc`), and the loop calls the kernel by name. When two
Python workers compile into one cache at the same time (two Spark tasks, two test runs, two users of
one virtual environment), each can write one of the two files; the next process loads a loop and a
kernel whose names differ, gets a null function pointer and dies of SIGSEGV in every later run, on
any call of `librosa.estimate_tuning`, `piptrack`, `beat_track`... (numba issue #10128, librosa issue
#1998; reproduced here, see tests/test_numba_kernels.py). `NUMBA_CPU_NAME=generic` only seemed to fix
it because the CPU name is part of the cache key, so it bypassed the damaged entries.

What `install()` does, once per process, before librosa compiles anything (feature_extraction's
`__init__` calls it, so every extraction worker, test and benchmark has it):
- the counter becomes one per function (`numba` PR #10545, not in a release yet): a function gets the
  same name in every process, so a kernel and a loop written by different processes still match;
- the cache lives in `settings.numba_cache_dir` (default `.cache/numba`), written only by processes
  that name functions this way (the old cache beside librosa's sources, in a virtual environment
  that several checkouts may share, is left alone).
The JIT target stays the host CPU: with a consistent cache the kernels run correctly here (AMD EPYC,
znver5, AVX-512), and the generic target costs time (README, "numba").
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import threading
from collections import defaultdict

_STATE = {"installed": False, "cache_dir": None}
_LOCK = threading.Lock()
_COUNTS: dict[tuple[str, str], int] = defaultdict(int)


def _needs_patch(identity_cls) -> bool:
    """numba still numbers functions from one process-wide counter (true up to 0.68.1 at least)."""
    return isinstance(getattr(identity_cls, "_unique_ids", None), itertools.count)


def install(cache_dir: str | os.PathLike | None = None) -> None:
    """Per-function numbering of compiled functions and the project's numba cache folder. Idempotent."""
    with _LOCK:
        if _STATE["installed"]:
            return
        if cache_dir is None:
            from conf import get_settings

            cache_dir = get_settings().numba_cache_dir
        import numba
        from numba.core import bytecode

        cls = bytecode.FunctionIdentity
        if _needs_patch(cls):
            original = cls.from_function.__func__

            def from_function(klass, pyfunc):
                ident = original(klass, pyfunc)
                key = (ident.modname, ident.func_qualname)
                with _LOCK:
                    _COUNTS[key] += 1
                    uid = _COUNTS[key]
                ident.unique_name = f"{ident.func_qualname}${uid}"
                ident.unique_id = uid
                return ident

            cls.from_function = classmethod(from_function)
        # one folder per process: CI still found the shared cache damaged (a kernel and its loop from
        # different processes, SIGSEGV on every later run) with the numbering above, so no two processes
        # write one cache; a process compiles librosa's kernels once (Spark reuses its Python workers) and
        # its folder goes when it exits
        cache_dir = os.path.join(os.fspath(cache_dir), f"pid-{os.getpid()}")
        os.makedirs(cache_dir, exist_ok=True)
        atexit.register(_remove, cache_dir, os.getpid())
        os.environ["NUMBA_CACHE_DIR"] = os.fspath(cache_dir)  # kept by a config reload and by children
        numba.config.CACHE_DIR = os.fspath(cache_dir)
        _STATE.update(installed=True, cache_dir=os.fspath(cache_dir))


def _remove(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # not from a forked child that exits normally
        shutil.rmtree(folder, ignore_errors=True)


def cache_dir() -> str | None:
    return _STATE["cache_dir"]
