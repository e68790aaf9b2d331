"""The extraction job against faults and hostile input, over the real store (issues 12 and 13).

- One partition holds every file; one file kills its extracting process with a real SIGSEGV and one
  hangs: the job finishes, both are recorded with their reasons, every other file is extracted, and the
  crashed file is skipped as known bad until --force.
- Hand-picked bad audio and metadata (corrupt, truncated, zero-length, mislabelled audio, other codecs,
  a 20-digit file name, over-long and broken metadata rows): each gets a recorded reason or is read.
- The job killed (SIGKILL of its whole process group) while it re-extracts, then run again: no track is
  missing at any time, and the result equals an uninterrupted reference run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from feature_extraction import fma_csv, job, layout
from feature_extraction.features import feature_version
from tests import paths

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration
SR = 22050
GOOD = {10: "wav", 11: "flac", 12: "ogg", 13: "mp3", 14: "m4a", 15: "wav", 16: "flac", 17: "ogg"}
CRASH, HANG = 30, 31
LONG_TITLE = "Ω" * 5000


def tone(i: int, seconds: float = 4.0) -> np.ndarray:
    """A clip of its own per id: a tone, its octave and some noise."""
    t = np.arange(int(seconds * SR)) / SR
    f = 110.0 * 2 ** (i / 7)
    rng = np.random.default_rng(i)
    y = 0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def write_clip(path: Path, y: np.ndarray, codec: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec in ("wav", "flac", "ogg"):
        sf.write(path, y, SR, format=codec.upper() if codec != "ogg" else "OGG")
        return path
    wav = path.with_suffix(".src.wav")
    sf.write(wav, y, SR)
    args = {"mp3": ["-codec:a", "libmp3lame", "-b:a", "128k"], "m4a": ["-c:a", "aac"]}[codec]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), *args, "-f",
                    "mp3" if codec == "mp3" else "ipod", str(path)], check=True)
    wav.unlink()
    return path


def metadata(meta_dir: Path, ids, long_title: int | None = None) -> None:
    rows = {i: {("track", "title"): f"clip {i}", ("artist", "name"): "musicrec tests", ("track", "genres"): [21]}
            for i in ids}
    if long_title is not None:
        rows[long_title][("track", "title")] = LONG_TITLE
    fma_csv.write_tracks_csv(rows, meta_dir / "tracks.csv")
    lines = (meta_dir / "tracks.csv").read_text().splitlines()   # 3 header lines, then ids in order
    lines.insert(4, "99," + ",".join(["x"] * 70))        # line 5: a row with 71 fields instead of 53
    lines.insert(5, '98,"a stray quote, never closed')   # line 6: pandas alone would swallow every row after it
    lines[10] = lines[10].replace(",clip 15", ",clip 15 caf\udce9")     # line 11: a Latin-1 byte in a title
    lines += ["not-an-id,broken", "12345678901234567890,too big", "-3,negative",
              '97,"a row cut off mid-quote']          # the last line, as in a truncated download
    (meta_dir / "tracks.csv").write_bytes(("\n".join(lines)).encode("utf-8", "surrogateescape"))
    shutil.copy(paths.FMA_GENRES, meta_dir / "genres.csv")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder with good clips in five codecs, the crashing and the hanging file, and bad audio."""
    tmp = tmp_path_factory.mktemp("hostile")
    root, meta_dir = tmp / "audio", tmp / "meta"
    for i, codec in GOOD.items():
        write_clip(layout.audio_path(root, i, "." + codec), tone(i), codec)
    write_clip(layout.audio_path(root, CRASH), tone(CRASH), "mp3")
    write_clip(layout.audio_path(root, HANG), tone(HANG), "mp3")
    fma = paths.FMA_CLIP.read_bytes()
    bad = {
        40: bytes(np.random.default_rng(40).integers(0, 256, 60_000, dtype=np.uint8)),   # corrupt
        41: fma[:3000],                                                                   # truncated: 0.1 s
        42: b"",                                                                          # zero-length
        44: b"ID3 this is a text file with an .mp3 name\n" * 50,                          # mislabelled text
    }
    for i, data in bad.items():
        layout.audio_path(root, i).write_bytes(data)
    (root / "000" / "000043.mp3").write_bytes(layout.audio_path(root, 12, ".ogg").read_bytes())  # Ogg as .mp3
    (root / "000" / "000045.mp3").write_bytes(fma[: len(fma) // 2])                  # truncated: 15 s left
    twenty = root / "123" / "12345678901234567890.mp3"                                 # 20-digit name
    twenty.parent.mkdir(parents=True)
    twenty.write_bytes(layout.audio_path(root, 13).read_bytes())
    metadata(meta_dir, [*GOOD, CRASH, HANG, 43, 45], long_title=10)
    return root, meta_dir


def crash_or_hang(path, cfg, min_seconds):
    """The per-file function with a test hook: a real SIGSEGV (a read of address 0) for one file, a hang
    for another, the real extraction for the rest."""
    import ctypes

    from feature_extraction.worker import extract_file

    name = os.path.basename(path)
    if name == f"{CRASH:06d}.mp3":
        ctypes.string_at(0)
    if name == f"{HANG:06d}.mp3":
        time.sleep(3600)
    return extract_file(path, cfg, min_seconds)


@pytest.fixture(scope="module")
def fault_settings(settings):
    return settings.model_copy(update={"coll_tracks": "faults_tracks", "coll_errors": "faults_errors",
                                       "extract_partitions": 1, "extract_timeout_s": 5.0})


@pytest.fixture(scope="module")
def faulted(spark, mongo, fault_settings, hostile):
    root, meta_dir = hostile
    return job.run(spark, fault_settings, root, meta_dir, progress=False, extract=crash_or_hang)


def by_id(mongo, coll):
    return {d["_id"]: d for d in mongo[coll].find()}


def test_a_crash_and_a_hang_cost_their_files_only(faulted, mongo, fault_settings):
    assert faulted["tasks"] == 1 and faulted["python_workers"] == 1   # every file in one partition
    errors = by_id(mongo, fault_settings.coll_errors)
    crashed, hung = errors[f"000/{CRASH:06d}.mp3"], errors[f"000/{HANG:06d}.mp3"]
    assert crashed["reason"].startswith("crashed: ") and "SIGSEGV" in crashed["reason"]
    assert crashed["signal"] == "SIGSEGV" and crashed["track_id"] == CRASH
    assert hung["reason"].startswith("timeout: no result after 5 s") and hung["signal"] is None
    tracks = by_id(mongo, fault_settings.coll_tracks)
    assert set(tracks) == {*GOOD, 43, 45}      # every other readable file, all codecs
    assert faulted["failure_reasons"]["crashed"] == 1 and faulted["failure_reasons"]["timeout"] == 1
    assert 0 <= faulted["boundary_ms_median"] < 250   # the boundary's own cost per file, measured in the job
    assert "crash boundary" in job.summary_line(faulted)


def test_bad_audio_and_metadata_each_get_a_reason(faulted, mongo, fault_settings):
    errors = {k: v["reason"].split(":", 1)[0] for k, v in by_id(mongo, fault_settings.coll_errors).items()}
    assert errors == {
        "000/000030.mp3": "crashed", "000/000031.mp3": "timeout",
        "000/000040.mp3": "not_audio", "000/000041.mp3": "too_short", "000/000042.mp3": "empty",
        "000/000044.mp3": "not_audio", "123/12345678901234567890.mp3": "bad_name",
        "tracks.csv: line 5": "bad_metadata", "tracks.csv: line 6": "bad_metadata",
        "tracks.csv: line 11": "bad_metadata", "tracks.csv: line 21": "bad_metadata",
        "tracks.csv: track_id 'not-an-id'": "bad_metadata",
        "tracks.csv: track_id '12345678901234567890'": "bad_metadata", "tracks.csv: track_id '-3'": "bad_metadata",
    }
    tracks = by_id(mongo, fault_settings.coll_tracks)
    assert tracks[43]["features"] == tracks[12]["features"]   # the Ogg file named .mp3 is read as Ogg
    assert tracks[45]["path"] == "000/000045.mp3"              # half an MP3: what decodes is used
    assert len(tracks[10]["title"]) == 1000 and tracks[10]["title"].startswith("ΩΩ")
    assert tracks[14]["path"].endswith(".m4a") and tracks[11]["title"] == "clip 11"
    assert tracks[15]["title"] == "clip 15 caf\ufffd"   # the row is kept, the byte replaced and recorded
    reasons = {k: v["reason"] for k, v in by_id(mongo, fault_settings.coll_errors).items()}
    assert "broken quoting" in reasons["tracks.csv: line 6"] and "end of data" in reasons["tracks.csv: line 21"]
    assert "not UTF-8" in reasons["tracks.csv: line 11"]
    assert faulted["failed"] == len(errors)


def test_a_file_that_crashed_is_skipped_until_force(faulted, spark, mongo, fault_settings, hostile):
    root, meta_dir = hostile
    again = job.run(spark, fault_settings, root, meta_dir, progress=False, extract=crash_or_hang)
    assert again["skipped_known_bad"] == 1 and again["known_bad"] == [f"000/{CRASH:06d}.mp3"]
    assert again["extracted"] == 0 and again["failure_reasons"]["timeout"] == 1   # a hang is retried
    assert "1 as known bad" in job.summary_line(again)
    forced = job.run(spark, fault_settings, root, meta_dir, progress=False, force=True)  # no hook now
    assert forced["skipped_known_bad"] == 0 and forced["extracted"] == len(GOOD) + 4
    assert CRASH in by_id(mongo, fault_settings.coll_tracks)
    assert mongo[fault_settings.coll_errors].find_one({"_id": f"000/{CRASH:06d}.mp3"}) is None


# --- killed halfway -------------------------------------------------------------------------------------

N_KILL = 24
SLOW_RUN = r"""
import json, sys, time
from conf import Settings
from common.spark import build_session
from feature_extraction import job
from feature_extraction.worker import extract_file

def slow(path, cfg, min_seconds):   # a slower extraction, so the kill lands while files are written
    time.sleep(0.25)
    return extract_file(path, cfg, min_seconds)

settings = Settings(**json.loads(sys.argv[1]))
spark = build_session(settings, "extract-killed")
print(job.summary_line(job.run(spark, settings, sys.argv[2], sys.argv[3], progress=False, extract=slow)))
"""


@pytest.fixture(scope="module")
def kill_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    root, meta_dir = tmp / "audio", tmp / "meta"
    for i in range(100, 100 + N_KILL):
        write_clip(layout.audio_path(root, i, ".wav"), tone(i, 2.0), "wav")
    metadata(meta_dir, range(100, 100 + N_KILL))
    return root, meta_dir


def comparable(docs: dict) -> dict:
    return {k: {f: v for f, v in d.items() if f not in ("extracted_at", "at")} for k, d in docs.items()}


def test_killed_while_re_extracting_then_run_again_equals_a_reference_run(spark, mongo, settings, kill_folder):
    root, meta_dir = kill_folder
    ref = settings.model_copy(update={"coll_tracks": "kill_ref_tracks", "coll_errors": "kill_ref_errors"})
    job.run(spark, ref, root, meta_dir, progress=False)
    s = settings.model_copy(update={"coll_tracks": "kill_tracks", "coll_errors": "kill_errors",
                                    "extract_files_per_task": 2})
    old = s.model_copy(update={"clip_seconds": 1.5})          # an older extractor version
    job.run(spark, old, root, meta_dir, progress=False)
    coll, new_version = mongo[s.coll_tracks], feature_version(s)
    assert coll.count_documents({}) == N_KILL and coll.count_documents({"feature_version": new_version}) == 0

    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in s.model_dump().items()
                 if k in ("spark_master", "mongo_uri", "mongo_db", "coll_tracks", "coll_errors",
                          "extract_files_per_task", "numba_cache_dir")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, json.dumps(overrides), str(root), str(meta_dir)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen_total, seen_new, killed_at = [], [], None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen_total.append(coll.count_documents({}))
            seen_new.append(coll.count_documents({"feature_version": new_version}))
            if seen_new[-1] >= 4:
                os.killpg(proc.pid, signal.SIGKILL)   # the driver, its JVM and the Python workers
                killed_at = seen_new[-1]
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate(timeout=30)[0]
    assert killed_at is not None, f"the job ended before it could be killed: {out[-2000:]}"
    time.sleep(1.0)
    written = coll.count_documents({"feature_version": new_version})
    assert 0 < written < N_KILL, f"{written} of {N_KILL} rewritten when killed"
    assert min(seen_total) == N_KILL and coll.count_documents({}) == N_KILL   # no track ever missing

    rerun = job.run(spark, s, root, meta_dir, progress=False)
    assert rerun["extracted"] == N_KILL - written and rerun["skipped_current"] == written
    got, want = by_id(mongo, s.coll_tracks), by_id(mongo, ref.coll_tracks)
    assert coll.count_documents({}) == len(got) == N_KILL                      # nothing duplicated
    assert set(got) == set(want)                                               # nothing lost
    for tid in want:
        np.testing.assert_allclose(got[tid]["features"], want[tid]["features"], rtol=1e-6, atol=1e-9)
    strip = lambda docs: {k: {f: v for f, v in d.items() if f != "features"} for k, d in comparable(docs).items()}
    assert strip(got) == strip(want)
    assert comparable(by_id(mongo, s.coll_errors)) == comparable(by_id(mongo, ref.coll_errors))
