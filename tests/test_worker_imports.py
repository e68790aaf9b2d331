"""common.worker_imports: zip archives on the path are re-read only when they changed, and what changed
is still found."""
from __future__ import annotations

import importlib
import os
import sys
import zipfile
import zipimport

import pytest

from common import worker_imports

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12+ re-reads zips lazily itself")


@pytest.fixture()
def zipped_package(tmp_path, monkeypatch):
    """A zip archive on sys.path holding package `wizpkg` (module `one`); the count of directory reads."""
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("wizpkg/__init__.py", "")
        z.writestr("wizpkg/one.py", "VALUE = 1\n")
    monkeypatch.syspath_prepend(str(archive))
    reads = []
    original = zipimport._read_directory

    def counting(path):
        reads.append(path)
        return original(path)

    monkeypatch.setattr(zipimport, "_read_directory", counting)
    importlib.import_module("wizpkg.one")
    yield archive, reads
    worker_imports.lazy_zip_caches(False)
    for name in [m for m in sys.modules if m == "wizpkg" or m.startswith("wizpkg.")]:
        del sys.modules[name]
    for key in [k for k in sys.path_importer_cache if k.startswith(str(archive))]:
        del sys.path_importer_cache[key]


def test_stock_python_re_reads_every_archive_at_every_invalidation(zipped_package):
    archive, reads = zipped_package
    reads.clear()
    importlib.invalidate_caches()
    importlib.invalidate_caches()
    # the archive's importer and the package's importer each read the whole directory, twice
    assert reads.count(str(archive)) >= 4


def test_lazy_caches_skip_unchanged_archives_and_still_see_new_modules(zipped_package):
    archive, reads = zipped_package
    assert worker_imports.lazy_zip_caches(True)
    importlib.invalidate_caches()           # first time after installing: read once per importer
    reads.clear()
    for _ in range(5):
        importlib.invalidate_caches()
    assert reads == []

    with zipfile.ZipFile(archive, "a") as z:                  # the archive changes: a new module appears
        z.writestr("wizpkg/two.py", "VALUE = 2\n")
    st = os.stat(archive)
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    importlib.invalidate_caches()
    assert reads.count(str(archive)) >= 2                     # both importers of the archive re-read it
    assert importlib.import_module("wizpkg.two").VALUE == 2

    worker_imports.lazy_zip_caches(False)                     # back to Python's own method
    reads.clear()
    importlib.invalidate_caches()
    assert reads.count(str(archive)) >= 2
