"""The job's pure parts: listing the FMA layout, what to skip, how many tasks, the summary and the bar."""
from __future__ import annotations

import time

import pytest

from conf import Settings
from feature_extraction import job, layout
from feature_extraction.layout import AudioFile


def test_listing_follows_the_fma_layout(tmp_path):
    for rel in ("000/000002.mp3", "000/000005.OGG", "001/001234.flac", "001/notes.txt", "001/cover.mp3",
                ".hidden/000009.mp3", "000/.000010.mp3", "002/000002.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    files = layout.list_audio_files(tmp_path)
    assert [f.path for f in files] == ["000/000002.mp3", "000/000005.OGG", "001/001234.flac", "001/cover.mp3",
                                       "002/000002.wav"]
    assert [f.track_id for f in files] == [2, 5, 1234, None, 2]
    assert files[-1].duplicate_of == "000/000002.mp3" and files[0].duplicate_of is None
    assert layout.audio_path("/x", 2) == layout.audio_path("/x", "2")
    assert str(layout.audio_path("/x", 155066)) == "/x/155/155066.mp3"
    with pytest.raises(FileNotFoundError):
        layout.list_audio_files(tmp_path / "absent")


def test_select_skips_current_versions_only():
    files = [AudioFile("000/000001.mp3", 1), AudioFile("000/000002.mp3", 2), AudioFile("000/000003.mp3", 3),
             AudioFile("000/x.mp3", None), AudioFile("001/000001.wav", 1, duplicate_of="000/000001.mp3")]
    todo, current, unusable, bad = job.select(files, {1: "v2", 2: "v1"}, "v2")
    assert [f.track_id for f in todo] == [2, 3] and [f.track_id for f in current] == [1]
    assert [f.path for f in unusable] == ["000/x.mp3", "001/000001.wav"] and bad == []
    todo, current, _, _ = job.select(files, {1: "v2", 2: "v1"}, "v2", force=True)
    assert [f.track_id for f in todo] == [1, 2, 3] and current == []


def test_select_skips_files_that_crashed_before_until_force():
    files = [AudioFile("000/000001.mp3", 1), AudioFile("000/000002.mp3", 2), AudioFile("000/000003.mp3", 3)]
    crashed = {"000/000002.mp3"}
    todo, current, _, bad = job.select(files, {3: "v2"}, "v2", bad=crashed)
    assert [f.track_id for f in todo] == [1] and [f.path for f in bad] == ["000/000002.mp3"]
    assert [f.track_id for f in current] == [3]
    todo, _, _, bad = job.select(files, {3: "v2"}, "v2", force=True, bad=crashed)
    assert [f.track_id for f in todo] == [1, 2, 3] and bad == []


def test_a_track_id_must_fit_in_64_bits():
    assert layout.track_id_from_name("000/000002.mp3") == 2
    assert layout.track_id_from_name("9223372036854775807.mp3") == 2**63 - 1
    assert layout.track_id_from_name("12345678901234567890.mp3") is None  # 20 digits
    assert layout.track_id_from_name("00000000000000000002.mp3") == 2     # 20 digits, small value
    assert layout.track_id_from_name("٣.mp3") is None                     # a digit, not ASCII


@pytest.mark.parametrize("files, parallelism, fixed, expected", [
    (10, 2, 0, 4), (600, 2, 0, 38), (600, 8, 0, 38), (3, 2, 0, 3), (1000, 2, 7, 7), (5, 2, 50, 5), (0, 2, 0, 1)])
def test_partitions(files, parallelism, fixed, expected):
    settings = Settings(extract_partitions=fixed, extract_files_per_task=16)
    assert job.plan_partitions(files, parallelism, settings) == expected


def test_summary_counts_and_line():
    statuses = [
        {"path": "000/000002.mp3", "status": "extracted", "reason": None, "has_metadata": True,
         "decode_s": 0.05, "extract_s": 0.07, "warm_s": 2.0, "worker": "h:1", "warmups": 1},
        {"path": "000/000003.mp3", "status": "extracted", "reason": None, "has_metadata": False,
         "decode_s": 0.07, "extract_s": 0.09, "warm_s": 0.0, "worker": "h:2", "warmups": 1},
        {"path": "000/000004.mp3", "status": "failed", "reason": "too_short: 0.2 s", "has_metadata": True,
         "decode_s": 0.01, "extract_s": None, "warm_s": 0.0, "worker": "h:2", "warmups": 1},
    ]
    files = [AudioFile(s["path"], i) for i, s in enumerate(statuses)] + [AudioFile("000/000009.mp3", 9)]
    unusable = [AudioFile("000/x.mp3", None)]
    s = job.summarise(statuses, files + unusable, [files[-1]], unusable, "abc", 2.0, 2, "/a", "/m/tracks.csv")
    assert (s["extracted"], s["skipped_current"], s["failed"], s["without_metadata"]) == (2, 1, 2, 1)
    assert s["failure_reasons"] == {"too_short": 1, "bad_name": 1}
    assert s["python_workers"] == 2 and s["warmups"] == 2
    assert s["warmups_this_run"] == 1 and s["warmup_s_mean"] == 2.0
    assert s["decode_s_mean"] == pytest.approx(0.06) and s["tracks_per_s"] == pytest.approx(1.0)
    line = job.summary_line(s)
    assert line.startswith("extracted 2, skipped 1 as current, failed 2 (bad_name 1, too_short 1); "
                           "1 without metadata; 2.0 s, 1.00 tracks/s")
    assert line.endswith("feature version abc")


class FakeAccumulator:
    def __init__(self):
        self.value = 0


def test_progress_bar_shows_files_rate_and_eta(capsys):
    done, failed = FakeAccumulator(), FakeAccumulator()
    with job.Progress(10, done, failed, interval=0.05):
        for _ in range(4):
            time.sleep(0.1)
            done.value += 2
        failed.value = 1
        time.sleep(0.15)
    err = capsys.readouterr().err
    assert "8/10" in err and "file/s" in err and "<" in err  # count, rate, elapsed<eta
    assert "failed=1" in err
    with job.Progress(0, done, failed):  # nothing to do: no bar
        pass
    assert capsys.readouterr().err == ""
