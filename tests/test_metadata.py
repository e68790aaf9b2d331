"""FMA metadata: the real genres.csv, tracks.csv in the real three-header layout, raw_tracks.csv, odd
text, and clear errors for files that are not FMA-shaped."""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from feature_extraction import fma_csv, metadata
from feature_extraction.metadata import MetadataError
from tests import paths

SHARED = paths.SHARED_FMA


def layout_columns() -> list[tuple[str, str]]:
    """tracks.csv's 52 columns, read from the layout notes in ../shared/data/fma/tracks_csv_columns.txt."""
    cols = []
    for line in (SHARED / "tracks_csv_columns.txt").read_text().splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        group, _, fields = line.partition(":")
        cols += [(group.strip(), f.strip()) for f in fields.split(",")]
    return cols


def write_real_layout(path: Path, rows: dict[str, dict[tuple[str, str], str]]) -> None:
    """A tracks.csv written line by line as FMA's is: group names, field names, `track_id,,,`."""
    cols = layout_columns()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([""] + [g for g, _ in cols])
        w.writerow([""] + [n for _, n in cols])
        w.writerow(["track_id"] + [""] * len(cols))
        for tid, cells in rows.items():
            w.writerow([tid] + [cells.get(c, "") for c in cols])


TRACK_2 = {  # the example row of tracks_csv_columns.txt, plus fields FMA fills the same way
    ("album", "title"): "AWOL - A Way Of Life", ("album", "type"): "Album", ("artist", "name"): "AWOL",
    ("track", "title"): "Food", ("track", "genre_top"): "Hip-Hop", ("track", "genres"): "[21]",
    ("track", "genres_all"): "[21]", ("track", "duration"): "168", ("track", "bit_rate"): "256000",
    ("set", "subset"): "small", ("set", "split"): "training", ("track", "tags"): "[]",
    ("track", "listens"): "1293", ("track", "date_created"): "2008-11-26 01:48:12",
    ("track", "license"): "Attribution-NonCommercial-ShareAlike 3.0 International",
    ("track", "information"): "<p></p>", ("album", "tags"): "[]", ("artist", "tags"): "['awol']",
}
ODD = {  # odd text, missing values, unreadable list cells
    ("track", "title"): "Caf\u00e9 &amp; \"Bar\"\nlive\t(take 2)\x07", ("artist", "name"): "  \u00c6ther  ",
    ("track", "genres"): "[76, 'x', 102]", ("track", "tags"): "not a list", ("track", "listens"): "",
    ("track", "duration"): "n/a", ("track", "date_created"): "yesterday",
    ("track", "information"): "<p>musicrec-recording: hedgewars-data/Rock.ogg; clip 2 of 3</p>",
}


@pytest.fixture(scope="module")
def genres():
    return metadata.load_genres(SHARED / "genres.csv")


def test_real_genres_csv(genres):
    assert len(genres) == 163
    assert (genres["parent"] == 0).sum() == 16
    assert genres.at[21, "title"] == "Hip-Hop" and genres.at[21, "top_level"] == 21
    assert genres.at[240, "title"] == "Chiptune" and genres.at[240, "parent"] == 297
    assert genres.at[240, "top_level"] == 15
    assert metadata.genre_top([240, 42], genres) == "Electronic"  # one root
    assert metadata.genre_top([21, 12], genres) is None           # two roots: FMA leaves it empty


def test_raw_genres_layout_gets_its_top_levels_computed(tmp_path):
    (tmp_path / "raw_genres.csv").write_text(
        "genre_id,genre_color,genre_handle,genre_parent_id,genre_title\n"
        "15,#000,Electronic,,Electronic\n297,#000,Chip-Music,15,Chip Music\n240,#000,Chiptune,297,Chiptune\n")
    g = metadata.load_genres(tmp_path / "raw_genres.csv")
    assert g.at[240, "top_level"] == 15 and g.at[15, "parent"] == 0 and g.at[297, "title"] == "Chip Music"


def test_tracks_csv_in_the_real_layout(tmp_path, genres):
    assert len(layout_columns()) == 52
    write_real_layout(tmp_path / "tracks.csv", {"2": TRACK_2, "3": ODD, "oops": {("track", "title"): "x"}})
    # FMA's own reader reads it as FMA documents it
    raw = pd.read_csv(tmp_path / "tracks.csv", index_col=0, header=[0, 1])
    assert raw.shape == (3, 52)
    df = metadata.load_tracks_csv(tmp_path / "tracks.csv", genres)
    assert list(df.index) == [2, 3] and df.attrs["dropped"] == 1
    t2 = metadata.record(df, 2)
    assert t2 == {
        "title": "Food", "artist": "AWOL", "album": "AWOL - A Way Of Life", "album_type": "Album",
        "genre_top": "Hip-Hop", "genre_ids": [21], "genres": ["Hip-Hop"], "tags": [], "listens": 1293,
        "date_created": "2008-11-26T01:48:12", "duration": 168.0,
        "license": "Attribution-NonCommercial-ShareAlike 3.0 International", "recording": None}
    odd = metadata.record(df, 3)
    assert odd["title"] == "Caf\u00e9 & \"Bar\" live (take 2)"
    assert odd["artist"] == "\u00c6ther"
    assert odd["genre_ids"] == [76, 102] and odd["genres"] == ["Experimental Pop", "Middle East"]
    assert odd["genre_top"] is None and odd["tags"] == [] and odd["listens"] is None
    assert odd["duration"] is None and odd["date_created"] is None and odd["album"] is None
    assert odd["recording"] == "hedgewars-data/Rock.ogg"
    assert metadata.record(df, 999) == metadata.empty_record()


def test_our_writer_produces_the_same_layout(tmp_path, genres):
    write_real_layout(tmp_path / "by_hand.csv", {"2": TRACK_2})
    cells = {col: (eval(v) if col in fma_csv.LIST_COLUMNS else v) for col, v in TRACK_2.items()}
    fma_csv.write_tracks_csv({2: cells}, tmp_path / "tracks.csv")
    ours = (tmp_path / "tracks.csv").read_text().splitlines()
    theirs = (tmp_path / "by_hand.csv").read_text().splitlines()
    assert ours[:3] == theirs[:3]
    assert list(fma_csv.TRACKS_COLUMNS) == layout_columns()
    a = metadata.load_tracks_csv(tmp_path / "tracks.csv", genres)
    b = metadata.load_tracks_csv(tmp_path / "by_hand.csv", genres)
    assert metadata.record(a, 2) == metadata.record(b, 2)


def test_raw_tracks_csv(tmp_path, genres):
    header = (SHARED / "raw_tracks_columns.txt").read_text().splitlines()[1].split(",")
    row = dict.fromkeys(header, "")
    row.update(track_id="2", track_title="Food", artist_name="AWOL", album_title="AWOL - A Way Of Life",
               album_id="1",
               track_genres="[{'genre_id': '21', 'genre_title': 'Hip-Hop', "
                            "'genre_url': 'http://freemusicarchive.org/genre/Hip-Hop/'}]",
               tags="['awol']", track_listens="1293", track_duration="02:48",
               track_date_created="11/26/2008 01:48:12 AM",
               license_title="Attribution-NonCommercial-ShareAlike 3.0 International")
    with open(tmp_path / "raw_tracks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerow(row)
    (tmp_path / "raw_albums.csv").write_text("album_id,album_title,album_type\n1,AWOL - A Way Of Life,Album\n")
    (tmp_path / "genres.csv").write_text((SHARED / "genres.csv").read_text())
    df = metadata.load_metadata(tmp_path)
    assert df.attrs["source"].endswith("raw_tracks.csv")
    rec = metadata.record(df, 2)
    assert rec["title"] == "Food" and rec["artist"] == "AWOL" and rec["album_type"] == "Album"
    assert rec["genre_ids"] == [21] and rec["genres"] == ["Hip-Hop"] and rec["genre_top"] == "Hip-Hop"
    assert rec["tags"] == ["awol"] and rec["listens"] == 1293 and rec["duration"] == 168.0
    assert rec["date_created"] == "2008-11-26T01:48:12"


def test_tracks_csv_is_preferred_and_genres_are_optional(tmp_path):
    write_real_layout(tmp_path / "tracks.csv", {"2": TRACK_2})
    (tmp_path / "raw_tracks.csv").write_text("track_id,track_title\n2,Other\n")
    df = metadata.load_metadata(tmp_path)
    assert df.attrs["source"].endswith("tracks.csv") and df.attrs["genres_source"] is None
    rec = metadata.record(df, 2)
    assert rec["title"] == "Food" and rec["genre_ids"] == [21] and rec["genres"] == []


def test_files_that_are_not_fma_shaped(tmp_path):
    with pytest.raises(MetadataError, match="metadata folder not found"):
        metadata.load_metadata(tmp_path / "absent")
    with pytest.raises(MetadataError, match="no tracks.csv or raw_tracks.csv"):
        metadata.load_metadata(tmp_path)
    (tmp_path / "tracks.csv").write_text("id,name,plays\n1,a,3\n2,b,4\n")
    with pytest.raises(MetadataError, match="not an FMA tracks.csv"):
        metadata.load_metadata(tmp_path)
    (tmp_path / "tracks.csv").write_bytes(bytes(range(256)) * 10)
    with pytest.raises(MetadataError, match="tracks.csv"):
        metadata.load_metadata(tmp_path)
    (tmp_path / "tracks.csv").unlink()
    (tmp_path / "raw_tracks.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MetadataError, match="not an FMA raw_tracks.csv"):
        metadata.load_metadata(tmp_path)
    (tmp_path / "genres.csv").write_text("x,y\n1,2\n")
    with pytest.raises(MetadataError, match="not an FMA genres file"):
        metadata.load_genres(tmp_path / "genres.csv")


@pytest.mark.parametrize("value, seconds", [("168", 168.0), (168, 168.0), ("02:48", 168.0), ("1:02:48", 3768.0),
                                            ("", None), (None, None), ("x:y", None), ("-5", None)])
def test_parse_duration(value, seconds):
    assert metadata.parse_duration(value) == seconds


@pytest.mark.parametrize("value, out", [("[21, 17]", [21, 17]), ("[]", []), ("", []), (None, []),
                                        ("[1, 'a', 2.0]", [1, 2]), ("[{'genre_id': '21'}]", [21]),
                                        ("__import__('os')", []), ("21", [21])])
def test_parse_int_list(value, out):
    assert metadata.parse_int_list(value) == out


def test_broken_quoting_costs_one_line_not_the_rows_after_it(tmp_path, genres):
    write_real_layout(tmp_path / "tracks.csv", {"2": TRACK_2, "3": ODD, "4": {("track", "title"): "after"}})
    lines = (tmp_path / "tracks.csv").read_bytes().split(b"\n")   # ODD's title spans two lines (5 and 6)
    lines.insert(4, b'7,"a stray quote, never closed')               # line 5
    lines[7] = lines[7].replace(b"after", b"aft\xe9r")               # line 8: Latin-1, not UTF-8
    lines[-1] = b'9,"cut off mid-quote'                               # line 9, the last: a truncated file
    (tmp_path / "tracks.csv").write_bytes(b"\n".join(lines))
    # pandas alone (without the truncated last line, which stops it): the stray quote closes at ODD's
    # first quote, and the rows between vanish into one cell
    (tmp_path / "untruncated.csv").write_bytes(b"\n".join(lines[:-1]) + b"\n")
    alone = pd.read_csv(tmp_path / "untruncated.csv", index_col=0, header=[0, 1], encoding="latin-1")
    assert "3" not in alone.index
    df = metadata.load_tracks_csv(tmp_path / "tracks.csv", genres)
    assert sorted(df.index) == [2, 3, 4]
    assert metadata.record(df, 3)["title"] == "Caf\u00e9 & \"Bar\" live (take 2)"
    assert metadata.record(df, 4)["title"] == "aft\ufffdr"
    bad = df.attrs["bad_rows"]
    assert [b.split(":")[0] for b in bad] == ["line 8", "line 5", "line 9"], bad
    assert "not UTF-8" in bad[0] and "broken quoting" in bad[1] and "end of data" in bad[2]


def test_rows_too_long_are_numbered_by_their_first_line(tmp_path):
    lines = [b"a,b,c", b'1,"two', b'lines",3', b"2,too,many,fields", b"3,ok,5"]
    (tmp_path / "x.csv").write_bytes(b"\n".join(lines) + b"\n")
    df = metadata._read_csv(tmp_path / "x.csv")
    assert list(df["a"]) == ["1", "3"] and df.attrs["bad_rows"] == ["line 4: expected 3 fields, saw 4"]


def test_a_file_of_broken_quotes_is_not_csv():
    with pytest.raises(MetadataError, match="more than 3 rows with broken quoting"):
        metadata.drop_broken_quotes([f'{i},"x\n' for i in range(5)], limit=3)


def test_cells_are_text_and_only_empty_cells_are_missing(tmp_path, genres):
    rows = {"2": {("track", "title"): "1984", ("artist", "name"): "None", ("album", "title"): "NA"},
            "3": {("track", "title"): "2001", ("artist", "name"): "null", ("album", "title"): "nan",
                  ("track", "listens"): "1,293"},
            "4": {("track", "title"): "007", ("artist", "name"): "N/A", ("track", "listens"): ""}}
    write_real_layout(tmp_path / "tracks.csv", rows)
    df = metadata.load_tracks_csv(tmp_path / "tracks.csv", genres)
    got = {i: (r["title"], r["artist"], r["album"], r["listens"]) for i in (2, 3, 4) for r in [metadata.record(df, i)]}
    assert got == {2: ("1984", "None", "NA", None), 3: ("2001", "null", "nan", 1293), 4: ("007", "N/A", None, None)}
