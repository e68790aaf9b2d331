"""The FMA folder layout: `<root>/NNN/NNNNNN.mp3`, track id -> `%06d`, folder = its first 3 digits.

Any audio extension librosa reads is accepted; the file name (without extension) must be the track id.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({
    ".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".aif", ".aiff", ".au", ".m4a", ".mp4", ".aac",
    ".wma", ".webm", ".caf",
})


def audio_path(root: str | Path, track_id: int, ext: str = ".mp3") -> Path:
    """Where FMA keeps a track: audio_path(root, 2) -> root/000/000002.mp3."""
    name = f"{int(track_id):06d}"
    return Path(root) / name[:3] / f"{name}{ext}"


MAX_TRACK_ID = 2**63 - 1  # a track id is a 64-bit integer (a Spark long, a BSON int64)


def track_id_from_name(name: str) -> int | None:
    """The track id of an FMA file name ('000002.mp3' -> 2), or None when the stem is not a number or
    does not fit in 64 bits (a name of 20 digits)."""
    stem = os.path.splitext(os.path.basename(name))[0]
    if not (stem.isascii() and stem.isdigit()):
        return None
    tid = int(stem)
    return tid if tid <= MAX_TRACK_ID else None


@dataclass(frozen=True)
class AudioFile:
    path: str             # relative to the audio root, with forward slashes
    track_id: int | None  # None: the name is not a track id
    duplicate_of: str | None = None  # another file already holds this track id


def list_audio_files(root: str | Path) -> list[AudioFile]:
    """Every file with an audio extension under `root`, sorted by path. Hidden files and folders are
    skipped. When two files carry the same track id, the first in path order wins and the other is
    marked `duplicate_of`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in AUDIO_EXTENSIONS:
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found.append(rel.replace(os.sep, "/"))
    files: list[AudioFile] = []
    owner: dict[int, str] = {}
    for rel in sorted(found):
        tid = track_id_from_name(rel)
        if tid is not None and tid in owner:
            files.append(AudioFile(rel, tid, duplicate_of=owner[tid]))
            continue
        if tid is not None:
            owner[tid] = rel
        files.append(AudioFile(rel, tid))
    return files
