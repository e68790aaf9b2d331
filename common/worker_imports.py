"""Python workers that do not re-read every zip archive on their path before each task.

pyspark 4.1's worker calls `importlib.invalidate_caches()` before every task (worker_util.setup_spark_files;
Spark's own fix, SPARK-54744, came after 4.1.1). Before Python 3.12, that call makes every `zipimporter`
re-read its archive's whole directory at once (cpython#103200). The worker's path holds pyspark.zip, the
py4j zip and the 15 MB spark-core jar, and every package imported from pyspark.zip has its own importer
on that archive: measured here, a Python task of a trivial job took about 210 ms from `collect()` to its
first line, against about 90 ms without the re-reads.

`lazy_zip_caches(True)` makes a zip importer re-read its archive only when the archive's size or
modification time changed since it last read it, which is when the re-read can find anything new. It
patches this process only (a reused Python worker keeps it for its later tasks); `False` restores Python's
own method. On Python 3.12 and later it does nothing: those re-read lazily themselves.
"""
from __future__ import annotations

import os
import sys
import zipimport

_ORIGINAL = zipimport.zipimporter.invalidate_caches
_SEEN: dict[tuple[str, str], tuple[int, int] | None] = {}   # (archive, prefix) -> (mtime ns, size) when read


def _stamp(archive: str) -> tuple[int, int] | None:
    try:
        st = os.stat(archive)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _lazy_invalidate(self) -> None:
    key, stamp = (self.archive, self.prefix), _stamp(self.archive)
    if stamp is not None and _SEEN.get(key) == stamp:
        return                                      # unchanged since this importer read it: nothing new
    _ORIGINAL(self)
    _SEEN[key] = stamp


def lazy_zip_caches(enabled: bool = True) -> bool:
    """Install (or with False remove) the lazy re-read in this process; whether it is now installed."""
    if sys.version_info >= (3, 12):
        return False
    zipimport.zipimporter.invalidate_caches = _lazy_invalidate if enabled else _ORIGINAL
    if not enabled:
        _SEEN.clear()
    return enabled
