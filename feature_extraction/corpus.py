"""Demo corpus builder: real music from Debian's game-soundtrack packages, laid out exactly like FMA.

    python -m feature_extraction.corpus [--packages P1,P2] [--max-recordings N] [--max-clips N] [--small]

For each package it downloads the .deb with `apt-get download` (no root needed) into
settings.cache_dir/debs unless it is already there, unpacks only the music (`dpkg-deb --fsys-tarfile`,
filtered) into settings.cache_dir/corpus_src, cuts each recording into consecutive 30 s MP3 clips with
ffmpeg (44.1 kHz stereo, 256 kbit/s, like FMA's clips) at `<audio_dir>/NNN/NNNNNN.mp3`, and writes
`<metadata_dir>/tracks.csv` in FMA's real three-header layout, FMA's `genres.csv` and ATTRIBUTION.md
(package, version, licence and composer of every recording; the Debian copyright files are copied to
`licenses/`).

Track ids are stable: package base id + 100 x (index of the recording in the package's sorted music
files) + clip index, so re-running with other options reuses every clip already cut, and clips no
longer selected are removed so the folder and tracks.csv always agree. The builder only ever removes
or reuses clips it made itself (listed in `<audio_dir>/.musicrec_corpus.json`); a planned path taken by
any other file is an error, so pointing it at a real FMA folder cannot damage it. Genres come from FMA's genre
table, chosen per package and folder/title (a judgement, not a label from the composers). `listens`
follow a Zipf law and are simulated. Each clip's source recording is written into the track's
`information` text (`musicrec-recording: <package>/<file>`), the ground truth the model's tests use:
clips cut from one recording should be each other's neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from conf import Settings, get_settings
from feature_extraction import fma_csv, layout
from feature_extraction.metadata import RECORDING_MARK

CLIP_SECONDS = 30
MUSIC_EXTENSIONS = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3")
MAX_CLIPS_PER_RECORDING = 99  # the id scheme leaves 100 per recording


@dataclass(frozen=True)
class PackageSpec:
    name: str
    music_dir: str                      # inside the package
    album: str
    artist: str                         # when no credits name the composer
    license: str
    source: str
    base_id: int
    default_genres: tuple[int, ...]
    rules: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (regex on 'folder/file' lowercased, genres)
    credits: str | None = None          # 'file.ogg=Composer' lines, inside the package


PACKAGES: dict[str, PackageSpec] = {spec.name: spec for spec in (
    PackageSpec(
        name="wesnoth-1.16-music", music_dir="usr/share/games/wesnoth/1.16/data/core/music",
        album="Battle for Wesnoth 1.16 (soundtrack)", artist="Battle for Wesnoth composers",
        license="GNU General Public License v2.0 or later", source="https://www.wesnoth.org/",
        base_id=100000, default_genres=(322,),  # Composed Music (Classical)
        rules=((r"battle|frantic|casualties|siege|vengeful|dangerous|revenge|city_falls|suspense|heroes",
                (18,)),)),                     # Soundtrack (Instrumental)
    PackageSpec(
        name="hedgewars-data", music_dir="usr/share/games/hedgewars/Data/Music",
        album="Hedgewars (soundtrack)", artist="Hedgewars composers",
        license="GNU General Public License v2.0", source="https://hedgewars.org/",
        base_id=110000, default_genres=(18,),
        rules=((r"rock", (12,)), (r"oriental", (172,)), (r"pirate", (177,)), (r"halloween|hell", (763,)),
               (r"city|freeway|compost|brick", (15,)), (r"snow|underwater|nature|earthrise", (107,)),
               (r"jungle|beach|fruit|desert", (46,))),
        credits="usr/share/games/hedgewars/Data/Music/credits.txt"),
    PackageSpec(
        name="supertux-data", music_dir="usr/share/games/supertux2/music",
        album="SuperTux 0.6 (soundtrack)", artist="SuperTux composers",
        license="GNU General Public License v2.0 or later", source="https://www.supertux.org/",
        base_id=120000, default_genres=(18,),
        rules=((r"^retro/|chip", (240,)), (r"^antarctic/", (42,)), (r"^forest/", (17,)),
               (r"^tropical/", (46,)), (r"christmas", (1193,)), (r"halloween", (763,)),
               (r"^castle/", (18,)))),
)}
DEFAULT_PACKAGES = ("wesnoth-1.16-music", "hedgewars-data", "supertux-data")

# FMA genres.csv rows used by the rules above and their ancestors (fallback when the real file is absent)
FALLBACK_GENRES = """genre_id,#tracks,parent,title,top_level
2,5271,0,International,2
5,4106,0,Classical,5
6,914,38,Novelty,38
12,32923,0,Rock,12
15,34413,0,Electronic,15
16,304,6,Sound Effects,38
17,12706,0,Folk,17
18,5913,1235,Soundtrack,1235
38,38154,0,Experimental,38
42,5723,15,Ambient Electronic,15
46,573,2,Latin America,2
107,7206,1235,Ambient,1235
172,118,2,Asia-Far East,2
177,72,2,Celtic,2
240,1231,297,Chiptune,15
297,2208,15,Chip Music,15
322,630,5,Composed Music,5
763,268,16,Holiday,38
1193,72,763,Christmas,38
1235,14938,0,Instrumental,1235
"""


class CorpusError(RuntimeError):
    """A missing tool, package or file: one line for the user."""


@dataclass
class Recording:
    package: str
    rel: str               # path under the package's music dir, forward slashes
    src: Path
    index: int             # in the package's sorted music files: part of the track ids
    seconds: float
    mtime: float
    composer: str
    genres: tuple[int, ...]

    @property
    def recording_id(self) -> str:
        return f"{self.package}/{self.rel}"

    @property
    def title(self) -> str:
        stem = Path(self.rel).stem
        return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", stem)).strip().title()


@dataclass
class Clip:
    track_id: int
    recording: Recording
    number: int            # 0-based clip index within the recording
    of: int                # clips cut from this recording (in this selection)
    start: float
    extra: dict = field(default_factory=dict)


# --- pure planning ------------------------------------------------------------------------------------

def genres_for(spec: PackageSpec, rel: str) -> tuple[int, ...]:
    key = rel.lower()
    for pattern, genres in spec.rules:
        if re.search(pattern, key):
            return genres
    return spec.default_genres


def parse_credits(text: str) -> dict[str, str]:
    """'File.ogg=Composer <url>' lines -> {'file.ogg': 'Composer'}."""
    out = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        name, _, who = line.partition("=")
        who = re.sub(r"<[^>]*>", "", who).strip().strip('"').strip()
        if name.strip() and who:
            out[name.strip().lower()] = who
    return out


def spread(items: list, n: int | None) -> list:
    """n items spread evenly over the list (all of them when n is None, 0 or >= len)."""
    if not n or n >= len(items):
        return list(items)
    idx = sorted({int(round(i)) for i in np.linspace(0, len(items) - 1, n)})
    return [items[i] for i in idx]


def plan_clips(recordings: list[Recording], max_recordings: int | None, max_clips: int | None,
               clip_seconds: int = CLIP_SECONDS) -> list[Clip]:
    """Which clips to cut: per package, `max_recordings` recordings spread over the sorted list (those
    of at least one full clip), and from each its first `max_clips` consecutive full clips."""
    by_pkg: dict[str, list[Recording]] = {}
    for rec in recordings:
        if rec.seconds >= clip_seconds:
            by_pkg.setdefault(rec.package, []).append(rec)
    clips = []
    for pkg, recs in by_pkg.items():
        base = PACKAGES[pkg].base_id if pkg in PACKAGES else 900000
        for rec in spread(sorted(recs, key=lambda r: r.index), max_recordings):
            n = min(int(rec.seconds // clip_seconds), MAX_CLIPS_PER_RECORDING)
            if max_clips:
                n = min(n, max_clips)
            for k in range(n):
                clips.append(Clip(base + 100 * rec.index + k, rec, k, n, float(k * clip_seconds)))
    return sorted(clips, key=lambda c: c.track_id)


def zipf_listens(n: int, seed: int, top: int = 20000, exponent: float = 1.0) -> np.ndarray:
    """Simulated play counts: a random popularity rank per track, listens = top / rank^exponent."""
    ranks = np.random.default_rng(seed).permutation(n) + 1
    return np.maximum(1, np.floor(top / ranks.astype(float) ** exponent)).astype(int)


def genre_ancestors(ids: tuple[int, ...], genres: pd.DataFrame) -> list[int]:
    out = []
    for gid in ids:
        seen = 0
        while gid in genres.index and gid not in out and seen < 10:
            out.append(int(gid))
            gid = int(genres.at[gid, "parent"])
            seen += 1
    return sorted(out)


def split_of(track_id: int) -> str:
    h = zlib.crc32(str(track_id).encode()) % 10
    return "test" if h == 0 else "validation" if h == 1 else "training"


def tracks_rows(clips: list[Clip], genres: pd.DataFrame, seed: int) -> dict[int, dict]:
    """The tracks.csv cells of every clip, in FMA's (group, field) names."""
    listens = zipf_listens(len(clips), seed)
    packages = sorted({c.recording.package for c in clips})
    composers = sorted({c.recording.composer for c in clips})
    per_album = {p: sum(1 for c in clips if c.recording.package == p) for p in packages}
    rows = {}
    for clip, plays in zip(clips, listens):
        rec, spec = clip.recording, PACKAGES.get(clip.recording.package)
        ids = list(rec.genres)
        roots = {int(genres.at[g, "top_level"]) for g in ids if g in genres.index}
        top = genres.at[roots.pop(), "title"] if len(roots) == 1 else None
        created = datetime.fromtimestamp(rec.mtime + clip.number, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        folder = Path(rec.rel).parent.name
        rows[clip.track_id] = {
            ("album", "comments"): 0, ("album", "favorites"): 0, ("album", "listens"): 0,
            ("album", "id"): packages.index(rec.package) + 1,
            ("album", "title"): spec.album if spec else rec.package,
            ("album", "tracks"): per_album[rec.package], ("album", "type"): "Album",
            ("album", "information"): f"<p>Music of the Debian package {rec.package}.</p>",
            ("album", "tags"): [],
            ("artist", "id"): composers.index(rec.composer) + 1, ("artist", "name"): rec.composer,
            ("artist", "comments"): 0, ("artist", "favorites"): 0, ("artist", "tags"): [],
            ("artist", "website"): spec.source if spec else None,
            ("set", "split"): split_of(clip.track_id), ("set", "subset"): "small",
            ("track", "bit_rate"): 256000, ("track", "comments"): 0, ("track", "composer"): rec.composer,
            ("track", "date_created"): created, ("track", "duration"): CLIP_SECONDS,
            ("track", "favorites"): 0, ("track", "genre_top"): top, ("track", "genres"): ids,
            ("track", "genres_all"): genre_ancestors(rec.genres, genres),
            ("track", "information"): (
                f"<p>{RECORDING_MARK} {rec.recording_id}; clip {clip.number + 1} of {clip.of} "
                f"({clip.start:.0f}-{clip.start + CLIP_SECONDS:.0f} s); listens are simulated</p>"),
            ("track", "interest"): int(plays * 3), ("track", "language_code"): None,
            ("track", "license"): spec.license if spec else None, ("track", "listens"): int(plays),
            ("track", "number"): clip.number + 1,
            ("track", "tags"): [t for t in (rec.package.split("-")[0], folder if folder else None) if t],
            ("track", "title"): f"{rec.title} (part {clip.number + 1})",
        }
    return rows


# --- edges: apt-get, dpkg-deb, ffmpeg, files ----------------------------------------------------------

def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise CorpusError(f"{tool} not found; {hint}")
    return path


def ensure_deb(package: str, debs_dir: Path) -> Path:
    """The package's .deb in debs_dir, downloaded with `apt-get download` when missing."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(debs_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    _require("apt-get", f"put {package}_*.deb into {debs_dir} by hand")
    proc = subprocess.run(["apt-get", "download", package], cwd=debs_dir, capture_output=True, text=True)
    found = sorted(debs_dir.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise CorpusError(f"`apt-get download {package}` failed ({detail[-1] if detail else proc.returncode}); "
                          f"run `apt-get update` first or put {package}_*.deb into {debs_dir}")
    return found[-1]


# tarfile's "data" filter (Python 3.12, 3.11.4+) refuses links, devices and paths outside the target;
# Debian 12's Python 3.11.2 lacks it, and there the checks in unpack_music (regular files only, inside
# the target) are what remains
SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def unpack_music(deb: Path, spec: PackageSpec, src_root: Path) -> Path:
    """The package's music (and copyright/credits files) unpacked under src_root/<deb stem>, once."""
    target = src_root / deb.stem
    marker = target / ".complete"
    if marker.is_file():
        return target
    _require("dpkg-deb", "install dpkg (Debian/Ubuntu)")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    wanted_dir = "./" + spec.music_dir.strip("/") + "/"
    keep = {"./" + spec.credits} if spec.credits else set()
    keep.add(f"./usr/share/doc/{spec.name}/copyright")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                name = member.name if member.name.startswith("./") else "./" + member.name
                if not member.isfile():
                    continue
                music = name.startswith(wanted_dir) and name.lower().endswith(MUSIC_EXTENSIONS)
                if (music or name in keep) and (target / name).resolve().is_relative_to(target.resolve()):
                    tar.extract(member, target, **SAFE_EXTRACT)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise CorpusError(f"dpkg-deb could not unpack {deb}: {err.strip()[:200]}")
    marker.write_text(deb.name + "\n")
    return target


def recordings_of(spec: PackageSpec, unpacked: Path) -> list[Recording]:
    import soundfile as sf

    music_root = unpacked / spec.music_dir
    credits = {}
    if spec.credits and (unpacked / spec.credits).is_file():
        credits = parse_credits((unpacked / spec.credits).read_text(errors="replace"))
    files = sorted(p for p in music_root.rglob("*") if p.is_file() and p.suffix.lower() in MUSIC_EXTENSIONS)
    out = []
    for index, src in enumerate(files):
        rel = src.relative_to(music_root).as_posix()
        try:
            seconds = float(sf.info(str(src)).duration)
        except Exception:
            seconds = 0.0  # unreadable: never selected
        out.append(Recording(spec.name, rel, src, index, seconds, src.stat().st_mtime,
                             credits.get(src.name.lower(), spec.artist), genres_for(spec, rel)))
    return out


def cut_clip(clip: Clip, dest: Path) -> bool:
    """Cut one clip with ffmpeg (atomic: written to a temporary name, then renamed). False if it was
    already there."""
    if dest.is_file() and dest.stat().st_size > 0:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    rec = clip.recording
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-ss", f"{clip.start:.3f}", "-t", str(CLIP_SECONDS), "-i", str(rec.src),
           "-vn", "-map_metadata", "-1", "-ac", "2", "-ar", "44100", "-codec:a", "libmp3lame", "-b:a", "256k",
           "-metadata", f"title={rec.title} (part {clip.number + 1})", "-metadata", f"artist={rec.composer}",
           "-metadata", f"album={PACKAGES[rec.package].album if rec.package in PACKAGES else rec.package}",
           "-f", "mp3", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"ffmpeg failed on {rec.src} at {clip.start:.0f} s: {proc.stderr.strip()[:200]}")
    tmp.replace(dest)
    return True


MANIFEST = ".musicrec_corpus.json"  # in the audio folder: the track ids this builder owns there


def read_manifest(audio_dir: Path) -> set[int]:
    path = audio_dir / MANIFEST
    if not path.is_file():
        return set()
    return {int(t) for t in json.loads(path.read_text()).get("track_ids", [])}


def write_manifest(audio_dir: Path, track_ids: set[int]) -> None:
    audio_dir.mkdir(parents=True, exist_ok=True)
    tmp = audio_dir / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"track_ids": sorted(track_ids)}))
    tmp.replace(audio_dir / MANIFEST)


def prune(audio_dir: Path, keep: set[int], owned: set[int]) -> int:
    """Remove the clips this builder made earlier (`owned`) that are not in `keep`; never anything else."""
    removed = 0
    for tid in sorted(owned - keep):
        path = layout.audio_path(audio_dir, tid)
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def load_fma_genres(path: Path | None) -> tuple[pd.DataFrame, str]:
    from io import StringIO

    if path is not None and path.is_file():
        text, origin = path.read_text(), str(path)
    else:
        text, origin = FALLBACK_GENRES, "embedded subset of FMA's genres.csv"
    df = pd.read_csv(StringIO(text), index_col=0)
    return df, origin


def attribution(clips: list[Clip], debs: dict[str, Path], genres_origin: str, seed: int) -> str:
    lines = ["# Demo corpus: attribution and licences", "",
             "Built by `python -m feature_extraction.corpus` from Debian packages. Each clip is a 30 s cut "
             "(MP3, 44.1 kHz, 256 kbit/s) of the recording named in `tracks.csv` "
             f"(`information`: `{RECORDING_MARK} <package>/<file>`).", "",
             "- Genres: chosen per package and folder/title from FMA's genre table (FMA metadata, CC BY 4.0; "
             f"source: {genres_origin}); a judgement, not the composers' labels.",
             f"- Listens: simulated (Zipf law, seed {seed}); not real play counts.",
             "- Licences: as stated by each package's Debian copyright file, copied to `licenses/`.", ""]
    by_pkg: dict[str, dict[str, list[int]]] = {}
    composers: dict[str, str] = {}
    for c in clips:
        by_pkg.setdefault(c.recording.package, {}).setdefault(c.recording.rel, []).append(c.track_id)
        composers[c.recording.recording_id] = c.recording.composer
    for pkg, recs in by_pkg.items():
        spec = PACKAGES.get(pkg)
        lines += [f"## {pkg} ({debs[pkg].name if pkg in debs else '?'})", "",
                  f"{spec.album if spec else pkg}; licence: {spec.license if spec else '?'}; upstream: "
                  f"{spec.source if spec else '?'}; Debian copyright: `licenses/{pkg}.copyright`.", "",
                  "| recording | composer | track ids |", "|---|---|---|"]
        for rel, ids in sorted(recs.items()):
            lines.append(f"| {rel} | {composers[f'{pkg}/{rel}']} | {ids[0]}-{ids[-1]} |")
        lines.append("")
    return "\n".join(lines)


@dataclass
class BuildResult:
    clips: int
    cut: int
    reused: int
    removed: int
    recordings: int
    seconds: float
    audio_dir: Path
    metadata_dir: Path


def build(settings: Settings, audio_dir=None, metadata_dir=None, packages=DEFAULT_PACKAGES,
          max_recordings: int | None = None, max_clips: int | None = None, seed: int = 42,
          workers: int | None = None, debs_dir=None, fma_genres=None, progress: bool = True) -> BuildResult:
    """Build (or update) the corpus; idempotent."""
    started = time.perf_counter()
    audio_dir = Path(audio_dir or settings.audio_dir)
    metadata_dir = Path(metadata_dir or settings.metadata_dir)
    debs_dir = Path(debs_dir or settings.cache_dir / "debs")
    src_root = settings.cache_dir / "corpus_src"
    if fma_genres is None:
        fma_genres = settings.root.parent / "shared" / "data" / "fma" / "genres.csv"
    unknown = [p for p in packages if p not in PACKAGES]
    if unknown:
        raise CorpusError(f"unknown package(s) {', '.join(unknown)}; known: {', '.join(PACKAGES)}")
    _require("ffmpeg", "install ffmpeg (apt-get install ffmpeg)")

    debs, recordings = {}, []
    for name in packages:
        spec = PACKAGES[name]
        debs[name] = ensure_deb(name, debs_dir)
        recordings += recordings_of(spec, unpack_music(debs[name], spec, src_root))
    clips = plan_clips(recordings, max_recordings, max_clips)
    if not clips:
        raise CorpusError("no recording of at least 30 s in the selected packages")

    dests = {c.track_id: layout.audio_path(audio_dir, c.track_id) for c in clips}
    owned = read_manifest(audio_dir)
    foreign = [str(p) for tid, p in dests.items() if tid not in owned and p.exists()]
    if foreign:
        raise CorpusError(f"{len(foreign)} clip path(s) are taken by files this builder did not make "
                          f"(e.g. {foreign[0]}); use an empty --audio-dir")
    write_manifest(audio_dir, owned | set(dests))  # claimed before cutting: an interrupted run resumes
    removed = prune(audio_dir, set(dests), owned)
    todo = [c for c in clips if not (dests[c.track_id].is_file() and dests[c.track_id].stat().st_size > 0)]
    if todo:
        from common.progress import bar as progress_bar

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool, \
                progress_bar(total=len(todo), unit="clip", desc="cut clips", disable=not progress) as bar:
            for _ in pool.map(lambda c: cut_clip(c, dests[c.track_id]), todo):
                bar.update(1)

    write_manifest(audio_dir, set(dests))
    genres, genres_origin = load_fma_genres(Path(fma_genres) if fma_genres else None)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    fma_csv.write_tracks_csv(tracks_rows(clips, genres, seed), metadata_dir / "tracks.csv")
    fma_csv.write_genres_csv(genres, metadata_dir / "genres.csv")
    (metadata_dir / "licenses").mkdir(exist_ok=True)
    for name in packages:
        copyright_file = src_root / debs[name].stem / "usr" / "share" / "doc" / name / "copyright"
        if copyright_file.is_file():
            shutil.copyfile(copyright_file, metadata_dir / "licenses" / f"{name}.copyright")
    (metadata_dir / "ATTRIBUTION.md").write_text(attribution(clips, debs, genres_origin, seed))
    return BuildResult(len(clips), len(todo), len(clips) - len(todo), removed,
                       len({c.recording.recording_id for c in clips}), time.perf_counter() - started,
                       audio_dir, metadata_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feature_extraction.corpus",
        description="Build the FMA-style demo corpus from Debian game-soundtrack packages.")
    parser.add_argument("--audio-dir", help="clips go to AUDIO_DIR/NNN/NNNNNN.mp3 (default: settings audio_dir)")
    parser.add_argument("--metadata-dir", help="tracks.csv, genres.csv, ATTRIBUTION.md (default: settings "
                                               "metadata_dir)")
    parser.add_argument("--packages", default=",".join(DEFAULT_PACKAGES),
                        help=f"comma-separated Debian packages (known: {', '.join(PACKAGES)})")
    parser.add_argument("--max-recordings", type=int, default=0,
                        help="recordings per package, spread over the list (0: all)")
    parser.add_argument("--max-clips", type=int, default=0, help="30 s clips per recording (0: all)")
    parser.add_argument("--small", action="store_true",
                        help="CI-sized corpus: --max-recordings 8 --max-clips 3 (about 70 clips)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the simulated listens")
    parser.add_argument("--workers", type=int, default=0, help="parallel ffmpeg processes (0: CPU count)")
    parser.add_argument("--debs-dir", help="where .deb files are kept (default: settings cache_dir/debs)")
    parser.add_argument("--fma-genres", help="FMA genres.csv to copy (default: ../shared/data/fma/genres.csv; "
                                             "an embedded subset when absent)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.small:
        args.max_recordings = args.max_recordings or 8
        args.max_clips = args.max_clips or 3
    packages = tuple(p.strip() for p in args.packages.split(",") if p.strip())
    try:
        result = build(get_settings(), args.audio_dir, args.metadata_dir, packages, args.max_recordings or None,
                       args.max_clips or None, args.seed, args.workers or None, args.debs_dir, args.fma_genres,
                       progress=not args.no_progress)
    except CorpusError as exc:
        print(f"corpus: error: {exc}", file=sys.stderr)
        return 2
    print(f"corpus: {result.clips} clips from {result.recordings} recordings ({result.cut} cut, "
          f"{result.reused} reused, {result.removed} removed) in {result.seconds:.1f} s -> {result.audio_dir}, "
          f"metadata in {result.metadata_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
