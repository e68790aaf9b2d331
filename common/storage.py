"""Paths of shared storage as URIs: a local path, `file://`, `hdfs://`, `s3a://` (or `s3://`, `gs://`).

Models and checkpoints live where the driver and every executor can reach them. Spark takes these URIs as
they are (`spark_uri`); Python code on the driver reads and writes them through `pyarrow.fs` (`open_input`,
`open_output`, `exists`), which speaks the same schemes (HDFS through libhdfs, S3 natively; `s3a://` is
Hadoop's name for `s3://`). A bare path means the local disk of whoever reads it, for Spark as for Python
(it becomes `file://`, never the cluster's default file system), so on a cluster it must be a shared mount.
"""
from __future__ import annotations

import io
import os
import posixpath
from urllib.parse import urlsplit

LOCAL_SCHEMES = ("", "file")


def scheme(uri: str) -> str:
    """The URI's scheme, "" for a bare path (a Windows drive letter is no scheme)."""
    s = urlsplit(str(uri)).scheme
    return "" if len(s) <= 1 else s.lower()


def is_local(uri: str) -> bool:
    return scheme(uri) in LOCAL_SCHEMES


def local_path(uri: str) -> str:
    """The local file system path of a bare path or a file:// URI."""
    uri = str(uri)
    if scheme(uri) == "file":
        return urlsplit(uri).path
    if scheme(uri):
        raise ValueError(f"not a local path: {uri}")
    return os.path.abspath(uri)


def join(base: str, *parts: str) -> str:
    """`base` / part / ...: a path for a bare path, a URI for a URI."""
    base = str(base)
    if not scheme(base):
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/") + "/", *parts)


def spark_uri(uri: str) -> str:
    """What to give Spark: URIs as they are, a bare path as an absolute file:// URI."""
    uri = str(uri)
    return uri if scheme(uri) else "file://" + os.path.abspath(uri)


def _filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a path or URI."""
    from pyarrow import fs

    if is_local(uri):
        return fs.LocalFileSystem(), local_path(uri)
    uri = str(uri)
    if scheme(uri) == "s3a":
        uri = "s3" + uri[3:]
    return fs.FileSystem.from_uri(uri)


def exists(uri: str) -> bool:
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    return filesystem.get_file_info(path).type != fs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    filesystem, path = _filesystem(uri)
    with filesystem.open_input_file(path) as fh:
        return fh.read()


def open_input(uri: str) -> io.BytesIO:
    """The whole file as a seekable buffer (numpy's loaders need one; the files here are small)."""
    return io.BytesIO(read_bytes(uri))


def write_bytes(uri: str, data: bytes) -> None:
    """Write a file whole: to a temporary name first and renamed where the store can rename (local, HDFS),
    so that a reader never sees half a file; object stores publish a put whole anyway."""
    filesystem, path = _filesystem(uri)
    parent = posixpath.dirname(path)
    if parent:
        filesystem.create_dir(parent, recursive=True)
    if scheme(uri) in ("s3", "s3a", "gs", "gcs"):
        with filesystem.open_output_stream(path) as out:
            out.write(data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with filesystem.open_output_stream(tmp) as out:
        out.write(data)
    filesystem.move(tmp, path)
