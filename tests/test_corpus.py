"""The demo corpus builder: planning (pure) and a real small build from the Debian packages, whose clips
then carry their own ground truth (clips of one recording are each other's nearest neighbours)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conf import Settings
from feature_extraction import audio, corpus, features, layout, metadata
from feature_extraction.corpus import PACKAGES, Recording
from tests import paths

PACKAGES_UNDER_TEST = ("hedgewars-data", "supertux-data")


def rec(package: str, rel: str, index: int, seconds: float) -> Recording:
    spec = PACKAGES[package]
    return Recording(package, rel, None, index, seconds, 1.6e9, spec.artist, corpus.genres_for(spec, rel))


# --- pure planning ---------------------------------------------------------------------------------------

def test_plan_ids_are_stable_across_selections():
    recs = [rec("supertux-data", f"forest/t{i}.ogg", i, 95.0) for i in range(6)]
    recs.append(rec("supertux-data", "misc/jingle.ogg", 6, 12.0))  # shorter than one clip: never used
    full = corpus.plan_clips(recs, None, None)
    assert len(full) == 6 * 3
    assert [c.track_id for c in full[:4]] == [120000, 120001, 120002, 120100]
    small = corpus.plan_clips(recs, 2, 1)
    assert [c.track_id for c in small] == [120000, 120500]  # spread over the list, first clip of each
    assert {c.track_id for c in small} <= {c.track_id for c in full}
    assert all(c.start == 30.0 * c.number for c in full)


def test_genres_follow_package_and_folder_rules():
    st, hw, wn = PACKAGES["supertux-data"], PACKAGES["hedgewars-data"], PACKAGES["wesnoth-1.16-music"]
    assert corpus.genres_for(st, "retro/classic.ogg") == (240,)
    assert corpus.genres_for(st, "antarctic/chipdisko.ogg") == (240,)
    assert corpus.genres_for(st, "forest/forest.ogg") == (17,)
    assert corpus.genres_for(hw, "Rock.ogg") == (12,)
    assert corpus.genres_for(hw, "main_theme.ogg") == hw.default_genres
    assert corpus.genres_for(wn, "battle-epic.ogg") == (18,)
    genres = metadata.load_genres(paths.FMA_GENRES)
    used = {g for spec in PACKAGES.values() for g in spec.default_genres + sum((r[1] for r in spec.rules), ())}
    assert used <= set(genres.index)
    fallback = pd.read_csv(__import__("io").StringIO(corpus.FALLBACK_GENRES), index_col=0)
    assert used <= set(fallback.index)
    pd.testing.assert_frame_equal(fallback, pd.read_csv(paths.FMA_GENRES, index_col=0)
                                  .loc[fallback.index])


def test_credits_listens_and_splits():
    credits = corpus.parse_credits("City.ogg=HSR <http://x>\nsdmusic.ogg=Kevin MacLeod - \"Hitman\"\nnoise\n")
    assert credits == {"city.ogg": "HSR", "sdmusic.ogg": 'Kevin MacLeod - "Hitman'}
    listens = corpus.zipf_listens(100, seed=1)
    assert sorted(listens, reverse=True)[:4] == [20000, 10000, 6666, 5000]
    np.testing.assert_array_equal(listens, corpus.zipf_listens(100, seed=1))
    splits = [corpus.split_of(t) for t in range(110000, 111000)]
    assert 0.7 < splits.count("training") / len(splits) < 0.9 and corpus.split_of(5) == corpus.split_of(5)


# --- a real build ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    settings = Settings(audio_dir=tmp / "fma_demo", metadata_dir=tmp / "fma_metadata")
    result = corpus.build(settings, packages=PACKAGES_UNDER_TEST, max_recordings=3, max_clips=3,
                          progress=False)
    return settings, result


def test_build_lays_clips_out_like_fma(built):
    settings, result = built
    assert result.recordings == 6 and 12 <= result.clips <= 18 and result.cut + result.reused == result.clips
    files = layout.list_audio_files(settings.audio_dir)
    assert len(files) == result.clips and all(f.track_id is not None for f in files)
    for f in files:
        assert f.path == layout.audio_path("", f.track_id).as_posix()
    info = sf.info(str(settings.audio_dir / files[0].path))
    assert info.samplerate == 44100 and info.channels == 2 and info.format == "MP3"
    assert info.duration == pytest.approx(30.0, abs=0.1)


def test_build_writes_real_layout_metadata_with_recordings(built):
    settings, result = built
    raw = pd.read_csv(settings.metadata_dir / "tracks.csv", index_col=0, header=[0, 1])
    assert raw.shape == (result.clips, 52)
    df = metadata.load_metadata(settings.metadata_dir)
    ids = {f.track_id for f in layout.list_audio_files(settings.audio_dir)}
    assert set(df.index) == ids
    assert df["recording"].str.match(r"^(hedgewars-data|supertux-data)/.+\.ogg$").all()
    sizes = df.groupby("recording").size()
    assert len(sizes) == 6 and sizes.max() == 3 and sizes.min() >= 1
    assert df["genres"].map(len).min() == 1 and df["genre_top"].notna().all()
    assert df["listens"].map(lambda v: isinstance(v, int) and v > 0).all()
    assert (df["duration"] == 30.0).all() and df["license"].str.startswith("GNU General Public License").all()
    text = (settings.metadata_dir / "ATTRIBUTION.md").read_text()
    assert "hedgewars-data" in text and "supertux-data" in text and "simulated" in text
    assert (settings.metadata_dir / "licenses" / "supertux-data.copyright").is_file()
    assert len(pd.read_csv(settings.metadata_dir / "genres.csv")) == 163


def test_rebuild_reuses_clips_and_a_smaller_selection_prunes(built, tmp_path):
    settings, result = built
    again = corpus.build(settings, packages=PACKAGES_UNDER_TEST, max_recordings=3, max_clips=3, progress=False)
    assert (again.cut, again.reused, again.removed) == (0, result.clips, 0)
    other = Settings(audio_dir=tmp_path / "a", metadata_dir=tmp_path / "m")
    first = corpus.build(other, packages=("supertux-data",), max_recordings=2, max_clips=2, progress=False)
    smaller = corpus.build(other, packages=("supertux-data",), max_recordings=2, max_clips=1, progress=False)
    assert (first.clips, smaller.clips, smaller.cut, smaller.removed) == (4, 2, 0, 2)
    assert len(layout.list_audio_files(other.audio_dir)) == 2
    assert len(metadata.load_metadata(other.metadata_dir)) == 2
    # another package replaces these clips: the old ones go, as tracks.csv no longer lists them
    swapped = corpus.build(other, packages=("hedgewars-data",), max_recordings=1, max_clips=1, progress=False)
    assert (swapped.clips, swapped.removed) == (1, 2)
    assert [f.track_id for f in layout.list_audio_files(other.audio_dir)] == list(
        metadata.load_metadata(other.metadata_dir).index)


def test_builder_never_touches_files_it_did_not_make(tmp_path):
    settings = Settings(audio_dir=tmp_path / "fma_small", metadata_dir=tmp_path / "m")
    theirs = layout.audio_path(settings.audio_dir, 120000)  # a "real FMA" track at a planned path
    other = layout.audio_path(settings.audio_dir, 120007)   # and one in the package's id range
    for path in (theirs, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"real FMA audio")
    with pytest.raises(corpus.CorpusError, match="taken by files this builder did not make"):
        corpus.build(settings, packages=("supertux-data",), max_recordings=1, max_clips=1, progress=False)
    theirs.unlink()
    corpus.build(settings, packages=("supertux-data",), max_recordings=1, max_clips=1, progress=False)
    assert other.read_bytes() == b"real FMA audio"


def test_clips_of_one_recording_are_nearest_neighbours(built):
    """Ground truth without labels: standardised feature vectors of real clips."""
    settings, _ = built
    df = metadata.load_metadata(settings.metadata_dir)
    files = layout.list_audio_files(settings.audio_dir)
    X = np.stack([features.extract(audio.load(settings.audio_dir / f.path, 22050, 30.0, 1.0)) for f in files])
    recording = np.array([df.at[f.track_id, "recording"] for f in files])
    package = np.array([r.split("/")[0] for r in recording])
    Z = (X - X.mean(0)) / (X.std(0) + 1e-9)
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    nearest = D.argmin(1)
    # chance would be about 2/16 for the recording and 1/2 for the package
    assert (recording[nearest] == recording).mean() >= 0.6
    assert (package[nearest] == package).mean() >= 0.8


def test_cli_help_and_unknown_package(capsys):
    with pytest.raises(SystemExit) as exit_:
        corpus.main(["--help"])
    assert exit_.value.code == 0 and "--max-recordings" in capsys.readouterr().out
    assert corpus.main(["--packages", "no-such-package"]) == 2
    assert "unknown package(s) no-such-package" in capsys.readouterr().err
