"""FMA metadata loaders: `tracks.csv` (three header lines) or `raw_tracks.csv`, plus `genres.csv`.

Both give one row per track id with the fields of the `tracks` documents (common/contracts.py):
title, artist, album, album_type, genre_top, genre_ids, genres (titles), tags, listens, date_created
(ISO text), duration (s), license, recording. They are tolerant of what real FMA files contain: missing
values, HTML entities and line breaks in titles, list columns written as Python literals, mm:ss
durations, US-style dates, titles that look like numbers or NA words ("1984", "007", "None": text,
only an empty cell is missing), rows with too many fields, a stray or unclosed quote (that line is skipped,
not every row up to the next quote), bytes that are not UTF-8 (replaced, the row kept), track ids that
are not integers of 64 bits (each listed in `df.attrs["bad_rows"]` with its line and reason), text
cells of any length (cut to MAX_TEXT characters). A file that is not FMA-shaped raises MetadataError with what was
expected and what was found.

`recording` is musicrec's own ground truth for the demo corpus (the source recording a clip was cut
from), carried in the track's `information` text as `musicrec-recording: <id>`; FMA tracks have None.
"""
from __future__ import annotations

import ast
import csv
import html
import io
import itertools
import math
import re
import warnings
from pathlib import Path

import pandas as pd

COLUMNS = ("title", "artist", "album", "album_type", "genre_top", "genre_ids", "genres", "tags",
           "listens", "date_created", "duration", "license", "recording")
RECORDING_MARK = "musicrec-recording:"
_RECORDING_RE = re.compile(re.escape(RECORDING_MARK) + r"\s*([^\s;<]+)")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")
_SKIPPED_RE = re.compile(r"Skipping line (\d+): (.*)")
MAX_TEXT = 1000  # characters kept of a text cell (title, artist, album...)
MAX_ID = 2**63   # track ids are 64-bit integers (below this)
MAX_CELL = 1 << 20  # characters of one CSV cell before its quoting is judged broken
MAX_BROKEN_QUOTES = 1000  # rows with broken quoting before the file is judged not CSV


class MetadataError(ValueError):
    """The metadata is missing or not in an FMA layout."""


# --- cell parsers (pure) ------------------------------------------------------------------------------

def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def clean_text(value) -> str | None:
    """Readable single-line text or None: HTML entities decoded, control characters dropped,
    whitespace (line breaks, tabs) collapsed."""
    if _missing(value):
        return None
    text = html.unescape(str(value))
    text = _CONTROL_RE.sub("", text)
    text = _SPACE_RE.sub(" ", text).strip()
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return text or None


def parse_list(value) -> list:
    """A list from a cell holding a Python literal ('[21, 17]', "['a', 'b']"); [] when unreadable."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if _missing(value):
        return []
    text = str(value).strip()
    if not text:
        return []
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if isinstance(parsed, (list, tuple)):
        return list(parsed)
    return [parsed] if isinstance(parsed, (int, str)) else []


def parse_int_list(value) -> list[int]:
    out = []
    for item in parse_list(value):
        if isinstance(item, dict):  # raw_tracks.csv track_genres: [{'genre_id': '21', ...}]
            item = item.get("genre_id")
        try:
            out.append(int(item))
        except (TypeError, ValueError):
            continue
    return out


def parse_tags(value) -> list[str]:
    tags = []
    for item in parse_list(value):
        text = clean_text(item)
        if text:
            tags.append(text)
    return tags


def parse_int(value) -> int | None:
    if _missing(value):
        return None
    try:
        number = float(str(value).replace(",", "").strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


def parse_duration(value) -> float | None:
    """Seconds from 168, '168', '02:48' or '1:02:48'."""
    if _missing(value):
        return None
    text = str(value).strip()
    if ":" in text:
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError:
            return None
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_dates(series: pd.Series) -> list[str | None]:
    """ISO-8601 text ('2008-11-26T01:48:12') from FMA's '2008-11-26 01:48:12' or raw '11/26/2008
    01:48:12 AM'; None when unreadable."""
    parsed = pd.to_datetime(series, errors="coerce", format="mixed")
    return [None if pd.isna(ts) else ts.strftime("%Y-%m-%dT%H:%M:%S") for ts in parsed]


def parse_recording(value) -> str | None:
    if _missing(value):
        return None
    match = _RECORDING_RE.search(str(value))
    return match.group(1) if match else None


# --- genres -------------------------------------------------------------------------------------------

def load_genres(path: str | Path) -> pd.DataFrame:
    """genres.csv (genre_id,#tracks,parent,title,top_level) or raw_genres.csv (genre_id, genre_title,
    genre_parent_id, ...): a frame indexed by genre_id with `title`, `parent` and `top_level`."""
    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except Exception as exc:
        raise MetadataError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from None
    cols = set(raw.columns)
    if {"genre_id", "title"} <= cols:
        title, parent = "title", "parent" if "parent" in cols else None
    elif {"genre_id", "genre_title"} <= cols:
        title, parent = "genre_title", "genre_parent_id" if "genre_parent_id" in cols else None
    else:
        raise MetadataError(f"{path}: not an FMA genres file: expected columns genre_id,#tracks,parent,"
                            f"title,top_level (or raw_genres.csv's genre_id,genre_title,...); found "
                            f"{','.join(map(str, raw.columns[:8]))}")
    ids = pd.to_numeric(raw["genre_id"], errors="coerce")
    out = pd.DataFrame({
        "title": [clean_text(t) for t in raw[title]],
        "parent": [parse_int(p) or 0 for p in raw[parent]] if parent else 0,
        "top_level": [parse_int(v) or 0 for v in raw["top_level"]] if "top_level" in cols else 0,
    }, index=pd.Index(ids, name="genre_id"))
    out = out[out.index.notna()]
    out.index = out.index.astype("int64")
    out = out[~out.index.duplicated()]
    if "top_level" not in cols:
        out["top_level"] = [_root(gid, out["parent"]) for gid in out.index]
    return out


def _root(genre_id: int, parents: pd.Series) -> int:
    seen = set()
    while genre_id in parents.index and parents[genre_id] not in (0, None) and genre_id not in seen:
        seen.add(genre_id)
        genre_id = int(parents[genre_id])
    return int(genre_id)


def genre_titles(ids: list[int], genres: pd.DataFrame | None) -> list[str]:
    if genres is None or genres.empty:
        return []
    return [genres.at[g, "title"] for g in ids if g in genres.index and genres.at[g, "title"]]


def genre_top(ids: list[int], genres: pd.DataFrame | None) -> str | None:
    """FMA's rule: the top-level genre when all of a track's genres share one root, else None."""
    if not ids or genres is None or genres.empty:
        return None
    roots = {int(genres.at[g, "top_level"]) for g in ids if g in genres.index}
    if len(roots) != 1:
        return None
    root = roots.pop()
    return genres.at[root, "title"] if root in genres.index else None


# --- tracks -------------------------------------------------------------------------------------------

def decode_lines(data: bytes) -> tuple[list[str], list[str]]:
    """The file's physical lines (each with its "\n"), as UTF-8; a line that is not UTF-8 keeps its row with
    U+FFFD for the bytes that are not, and is listed ("line N: ...") in the second value."""
    raw_lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    ends = ["\n"] * (len(raw_lines) - 1) + [""]
    lines, bad = [], []
    for n, (raw, end) in enumerate(zip(raw_lines, ends), start=1):
        try:
            lines.append(raw.decode("utf-8") + end)
        except UnicodeDecodeError as exc:
            lines.append(raw.decode("utf-8", errors="replace") + end)
            bad.append(f"line {n}: not UTF-8 ({exc.reason} at byte {exc.start} of the line); "
                       "the bytes are replaced, the row kept")
    return [line for line in lines if line], bad


def drop_broken_quotes(lines: list[str], limit: int = MAX_BROKEN_QUOTES) -> tuple[list[str], list[int], list[str]]:
    """A strict CSV pass over physical lines. pandas' parser closes a stray quote at the next quote of the
    file, silently merging every row between into one cell, and a quote never closed (a truncated file)
    stops it. Here each record whose quoting breaks (a quote followed by text, a quote still open at the
    end of the file, a cell over MAX_CELL characters) loses its first physical line, where the quote
    opened, and the pass goes on from there. Returns the lines kept, the original (1-based) number of the
    first line of each record, and "line N: reason" per line dropped."""
    lines, numbers, dropped, records = list(lines), list(range(1, len(lines) + 1)), [], []
    start = 0
    previous_limit = csv.field_size_limit(MAX_CELL)   # process-wide: put back on the way out
    try:
        while True:
            reader = csv.reader(itertools.islice(lines, start, None), strict=True)
            first = start  # index of the first line of the record being read
            try:
                for _ in reader:
                    records.append(numbers[first])
                    first = start + reader.line_num
                return lines, records, dropped
            except csv.Error as exc:
                if len(dropped) >= limit:
                    raise MetadataError(f"more than {limit} rows with broken quoting (the last at line "
                                        f"{numbers[first]}): is this a CSV file?") from None
                dropped.append(f"line {numbers[first]}: broken quoting ({exc}); the line is skipped")
                del lines[first], numbers[first]
                start = first
    finally:
        csv.field_size_limit(previous_limit)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """read_csv over the lines `decode_lines` and `drop_broken_quotes` keep; rows with too many fields are
    skipped by pandas. Each line left out or repaired is listed as "line N: reason" in attrs["bad_rows"]."""
    try:
        lines, bad = decode_lines(Path(path).read_bytes())
        lines, records, dropped = drop_broken_quotes(lines)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # every cell as text ("1984" stays a title, not 1984.0), and only an empty cell is missing:
            # pandas' default NA words would erase a track called "NA" or an artist called "None"
            df = pd.read_csv(io.StringIO("".join(lines)), dtype=str, keep_default_na=False, na_values=[""],
                             on_bad_lines="warn", **kwargs)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from None
    except Exception as exc:
        raise MetadataError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from None
    skipped = []
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            skipped += [(int(m.group(1)), m.group(2).strip()) for m in _SKIPPED_RE.finditer(str(w.message))]
    # pandas numbers records, not lines: "line N" is the N-th record's first line in the file
    df.attrs["bad_rows"] = bad + dropped + [f"line {records[n - 1] if n <= len(records) else n}: {why}"
                                            for n, why in skipped]
    return df


def _track_index(index: pd.Index) -> tuple[pd.Index, pd.Series]:
    ids = pd.to_numeric(pd.Series(index), errors="coerce")
    keep = ids.notna() & (ids >= 0) & (ids < MAX_ID) & (ids == ids.round())
    return ids, keep


def _bad_ids(values, keep: pd.Series) -> list[str]:
    return [f"track_id {str(v)[:40]!r}: not an integer of 64 bits" for v in pd.Series(values)[~keep.to_numpy()]]


def _frame(ids, fields: dict) -> pd.DataFrame:
    df = pd.DataFrame(fields, columns=list(COLUMNS))
    df.index = pd.Index(ids, name="track_id", dtype="int64")
    df = df[~df.index.duplicated(keep="first")]
    return df.astype(object).where(df.notna(), None) if len(df) else df


def load_tracks_csv(path: str | Path, genres: pd.DataFrame | None = None) -> pd.DataFrame:
    """FMA's tracks.csv: `read_csv(index_col=0, header=[0, 1])`, groups album/artist/set/track."""
    path = Path(path)
    raw = _read_csv(path, index_col=0, header=[0, 1])
    if not isinstance(raw.columns, pd.MultiIndex) or ("track", "title") not in raw.columns:
        found = sorted({str(c[0] if isinstance(c, tuple) else c) for c in raw.columns})[:8]
        raise MetadataError(
            f"{path}: not an FMA tracks.csv: expected three header lines (groups album/artist/set/track, "
            f"then field names such as track,title, then 'track_id,,,') and a ('track', 'title') column; "
            f"found top-level headers {found}")
    ids, keep = _track_index(raw.index)
    bad_rows = raw.attrs.get("bad_rows", []) + _bad_ids(raw.index, keep)
    raw = raw[keep.to_numpy()]
    ids = ids[keep].astype("int64").to_numpy()
    n = len(raw)

    def col(group: str, name: str) -> pd.Series:
        if (group, name) in raw.columns:
            return raw[(group, name)]
        return pd.Series([None] * n, index=raw.index, dtype=object)

    genre_ids = [parse_int_list(v) for v in col("track", "genres")]
    given_top = [clean_text(v) for v in col("track", "genre_top")]
    if ("track", "genre_top") not in raw.columns:
        given_top = [genre_top(g, genres) for g in genre_ids]
    df = _frame(ids, {
        "title": [clean_text(v) for v in col("track", "title")],
        "artist": [clean_text(v) for v in col("artist", "name")],
        "album": [clean_text(v) for v in col("album", "title")],
        "album_type": [clean_text(v) for v in col("album", "type")],
        "genre_top": given_top,
        "genre_ids": genre_ids,
        "genres": [genre_titles(g, genres) for g in genre_ids],
        "tags": [parse_tags(v) for v in col("track", "tags")],
        "listens": [parse_int(v) for v in col("track", "listens")],
        "date_created": parse_dates(col("track", "date_created")),
        "duration": [parse_duration(v) for v in col("track", "duration")],
        "license": [clean_text(v) for v in col("track", "license")],
        "recording": [parse_recording(v) for v in col("track", "information")],
    })
    df.attrs.update(source=str(path), dropped=int((~keep).sum()), bad_rows=bad_rows)
    return df


def load_raw_tracks_csv(path: str | Path, genres: pd.DataFrame | None = None,
                        albums: pd.DataFrame | None = None) -> pd.DataFrame:
    """FMA's raw_tracks.csv (one header line, track_id first, fields track_title, artist_name, ...)."""
    path = Path(path)
    raw = _read_csv(path)
    if "track_id" not in raw.columns or "track_title" not in raw.columns:
        raise MetadataError(f"{path}: not an FMA raw_tracks.csv: expected a header with track_id, "
                            f"track_title, artist_name, album_title, track_genres, ...; found "
                            f"{','.join(map(str, raw.columns[:8]))}")
    ids, keep = _track_index(raw["track_id"])
    bad_rows = raw.attrs.get("bad_rows", []) + _bad_ids(raw["track_id"], keep)
    raw = raw[keep.to_numpy()]
    ids = ids[keep].astype("int64").to_numpy()
    n = len(raw)

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([None] * n, index=raw.index, dtype=object)

    genre_ids = [parse_int_list(v) for v in col("track_genres")]
    titles = []
    for ids_, cell in zip(genre_ids, col("track_genres")):
        known = genre_titles(ids_, genres)
        if not known:  # no genres.csv: the titles written in the cell itself
            known = [clean_text(d.get("genre_title")) for d in parse_list(cell) if isinstance(d, dict)]
            known = [t for t in known if t]
        titles.append(known)
    album_type = [None] * n
    if albums is not None and "album_id" in raw.columns:
        types = albums["album_type"].to_dict()
        album_type = [types.get(parse_int(a)) for a in raw["album_id"]]
    df = _frame(ids, {
        "title": [clean_text(v) for v in col("track_title")],
        "artist": [clean_text(v) for v in col("artist_name")],
        "album": [clean_text(v) for v in col("album_title")],
        "album_type": album_type,
        "genre_top": [genre_top(g, genres) for g in genre_ids],
        "genre_ids": genre_ids,
        "genres": titles,
        "tags": [parse_tags(v) for v in col("tags")],
        "listens": [parse_int(v) for v in col("track_listens")],
        "date_created": parse_dates(col("track_date_created")),
        "duration": [parse_duration(v) for v in col("track_duration")],
        "license": [clean_text(v) for v in col("license_title")],
        "recording": [parse_recording(v) for v in col("track_information")],
    })
    df.attrs.update(source=str(path), dropped=int((~keep).sum()), bad_rows=bad_rows)
    return df


def _load_raw_albums(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    raw = _read_csv(path)
    if not {"album_id", "album_type"} <= set(raw.columns):
        return None
    ids = pd.to_numeric(raw["album_id"], errors="coerce")
    out = pd.DataFrame({"album_type": [clean_text(v) for v in raw["album_type"]]}, index=ids)
    return out[out.index.notna() & ~out.index.duplicated()]


def load_metadata(metadata_dir: str | Path) -> pd.DataFrame:
    """The track metadata of an FMA metadata folder, indexed by track_id, columns COLUMNS.

    Uses tracks.csv when present, else raw_tracks.csv; genre titles from genres.csv (or
    raw_genres.csv). `df.attrs` holds `source`, `genres_source` and `dropped` (rows whose track id is
    not an integer)."""
    root = Path(metadata_dir)
    if not root.is_dir():
        raise MetadataError(f"metadata folder not found: {root} (expected FMA's tracks.csv or "
                            f"raw_tracks.csv and genres.csv there)")
    genres, genres_source = None, None
    for name in ("genres.csv", "raw_genres.csv"):
        if (root / name).is_file():
            genres, genres_source = load_genres(root / name), str(root / name)
            break
    if (root / "tracks.csv").is_file():
        df = load_tracks_csv(root / "tracks.csv", genres)
    elif (root / "raw_tracks.csv").is_file():
        df = load_raw_tracks_csv(root / "raw_tracks.csv", genres, _load_raw_albums(root / "raw_albums.csv"))
    else:
        raise MetadataError(f"no tracks.csv or raw_tracks.csv in {root}")
    df.attrs["genres_source"] = genres_source
    return df


def record(df: pd.DataFrame, track_id: int) -> dict:
    """One track's metadata as a dict of COLUMNS (empty fields when the id is unknown)."""
    if track_id in df.index:
        row = df.loc[track_id]
        return {c: row[c] for c in COLUMNS}
    return empty_record()


def empty_record() -> dict:
    return {c: ([] if c in ("genre_ids", "genres", "tags") else None) for c in COLUMNS}
