"""The Spark extraction job against the real store: a small FMA-style folder with the real FMA clip,
demo-corpus clips and broken files. Resumability, idempotent upserts, version changes, errors."""
from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from common.contracts import TRACK_SCHEMA
from conf import Settings
from feature_extraction import corpus, job, layout
from feature_extraction.features import FEATURE_VERSION, feature_names
from tests import paths

FMA_CLIP = paths.FMA_CLIP
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """fma_small-like folder: the FMA clip, 4 corpus clips, a silent WAV (no metadata) and 4 bad files."""
    tmp = tmp_path_factory.mktemp("fma")
    demo = Settings(audio_dir=tmp / "corpus" / "audio", metadata_dir=tmp / "corpus" / "meta")
    corpus.build(demo, packages=("supertux-data",), max_recordings=2, max_clips=2, progress=False)
    audio_root, meta_dir = tmp / "fma_small", tmp / "fma_metadata"
    shutil.copytree(demo.audio_dir, audio_root)
    target = layout.audio_path(audio_root, 2)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FMA_CLIP, target)
    sf.write(layout.audio_path(audio_root, 8, ".wav"), np.zeros(3 * 22050, dtype=np.float32), 22050)
    layout.audio_path(audio_root, 5).write_text("this is not audio\n")
    layout.audio_path(audio_root, 6).write_bytes(b"")
    layout.audio_path(audio_root, 7).write_bytes(FMA_CLIP.read_bytes()[:3000])
    (target.parent / "cover.mp3").write_text("x")
    # the corpus's tracks.csv plus FMA's track 2, in the real layout
    tracks = pd.read_csv(demo.metadata_dir / "tracks.csv", index_col=0, header=[0, 1])
    for col, value in {("track", "title"): "Food", ("artist", "name"): "AWOL", ("track", "genres"): "[21]",
                       ("track", "genre_top"): "Hip-Hop", ("album", "title"): "AWOL - A Way Of Life",
                       ("track", "listens"): 1293, ("track", "duration"): 168, ("track", "tags"): "[]"}.items():
        tracks.loc[2, col] = value
    meta_dir.mkdir()
    tracks.sort_index().to_csv(meta_dir / "tracks.csv")
    shutil.copy(demo.metadata_dir / "genres.csv", meta_dir / "genres.csv")
    corpus_ids = sorted(f.track_id for f in layout.list_audio_files(demo.audio_dir))
    return audio_root, meta_dir, corpus_ids


@pytest.fixture(scope="module")
def job_settings(settings):
    return settings.model_copy(update={"coll_tracks": "fe_test_tracks", "coll_errors": "fe_test_errors"})


@pytest.fixture(scope="module")
def first(spark, mongo, job_settings, folder):
    audio_root, meta_dir, _ = folder
    return job.run(spark, job_settings, audio_root, meta_dir, progress=False)


def docs(mongo, job_settings, collection="coll_tracks"):
    return {d["_id"]: d for d in mongo[getattr(job_settings, collection)].find()}


def test_first_run_extracts_every_audio_file_and_records_failures(first, folder):
    _, _, corpus_ids = folder
    assert first["files"] == 10
    assert first["extracted"] == 2 + len(corpus_ids)  # FMA clip, silence, corpus clips
    assert first["skipped_current"] == 0 and first["without_metadata"] == 1
    assert first["failed"] == 4
    assert first["failure_reasons"] == {"not_audio": 1, "empty": 1, "too_short": 1, "bad_name": 1}
    assert first["feature_version"] == FEATURE_VERSION
    # librosa warmed up at most once per Python worker (one per core) in this run; Spark reuses its Python
    # workers across the session's jobs, so a worker an earlier test warmed for this config is not warmed again
    assert first["python_workers"] <= 2
    assert first["warmups_this_run"] <= first["python_workers"] <= first["warmups"]
    assert first["warmups_this_run"] == 0 or first["warmup_s_mean"] > 0
    assert 0 < first["decode_s_mean"] and 0 < first["extract_s_mean"]


def test_track_documents_follow_the_contract(first, mongo, job_settings, folder):
    _, _, corpus_ids = folder
    tracks = docs(mongo, job_settings)
    assert set(tracks) == {2, 8, *corpus_ids}
    fields = [f.name for f in TRACK_SCHEMA.fields]
    for doc in tracks.values():
        assert list(doc) == fields
        assert len(doc["features"]) == len(feature_names()) and np.isfinite(doc["features"]).all()
        assert doc["feature_version"] == FEATURE_VERSION and isinstance(doc["extracted_at"], datetime)
    food = tracks[2]
    assert (food["title"], food["artist"], food["album"], food["genre_top"]) == (
        "Food", "AWOL", "AWOL - A Way Of Life", "Hip-Hop")
    assert food["genre_ids"] == [21] and food["genres"] == ["Hip-Hop"] and food["listens"] == 1293
    assert food["path"] == "000/000002.mp3" and food["recording"] is None and food["duration"] == 168.0
    assert tracks[8]["title"] is None and tracks[8]["genres"] == [] and tracks[8]["path"] == "000/000008.wav"
    for tid in corpus_ids:
        assert tracks[tid]["recording"].startswith("supertux-data/") and tracks[tid]["genres"]
        assert tracks[tid]["path"] == layout.audio_path("", tid).as_posix()


def test_failures_are_in_the_errors_collection(first, mongo, job_settings):
    errors = docs(mongo, job_settings, "coll_errors")
    assert set(errors) == {"000/000005.mp3", "000/000006.mp3", "000/000007.mp3", "000/cover.mp3"}
    assert errors["000/000005.mp3"]["reason"].startswith("not_audio: ")
    assert errors["000/000006.mp3"]["reason"].startswith("empty: ")
    assert errors["000/000007.mp3"]["reason"].startswith("too_short: ")
    assert errors["000/cover.mp3"]["track_id"] is None
    assert all(e["feature_version"] == FEATURE_VERSION and e["track_id"] in (5, 6, 7, None)
               for e in errors.values())


def test_second_run_extracts_nothing(first, spark, job_settings, folder):
    audio_root, meta_dir, _ = folder
    second = job.run(spark, job_settings, audio_root, meta_dir, progress=False)
    assert second["extracted"] == 0
    assert second["skipped_current"] == first["extracted"]
    assert second["failed"] == 4  # failures are retried: a fixed file gets picked up (see below)
    assert second["warmups_this_run"] == 0  # the same Python workers, still warm


def test_forced_rerun_upserts_the_same_documents(first, spark, mongo, job_settings, folder):
    audio_root, meta_dir, _ = folder
    before = docs(mongo, job_settings)
    again = job.run(spark, job_settings, audio_root, meta_dir, force=True, progress=False)
    after = docs(mongo, job_settings)
    assert again["extracted"] == first["extracted"] and set(after) == set(before)
    for tid, doc in after.items():
        assert doc["extracted_at"] >= before[tid]["extracted_at"]
        assert {k: v for k, v in doc.items() if k != "extracted_at"} == \
               {k: v for k, v in before[tid].items() if k != "extracted_at"}
    assert mongo[job_settings.coll_errors].count_documents({}) == 4


def test_older_version_is_redone_and_a_fixed_file_heals(first, spark, mongo, job_settings, folder):
    audio_root, meta_dir, corpus_ids = folder
    coll = mongo[job_settings.coll_tracks]
    coll.update_one({"_id": corpus_ids[0]}, {"$set": {"feature_version": "0ld", "features": [0.0]}})
    shutil.copy(FMA_CLIP, layout.audio_path(audio_root, 5))  # the text file becomes audio
    out = job.run(spark, job_settings, audio_root, meta_dir, progress=False)
    assert out["extracted"] == 2 and out["skipped_current"] == first["extracted"] - 1
    assert out["failed"] == 3 and out["without_metadata"] == 1
    redone = coll.find_one({"_id": corpus_ids[0]})
    assert redone["feature_version"] == FEATURE_VERSION and len(redone["features"]) == len(feature_names())
    assert coll.find_one({"_id": 5})["features"] == coll.find_one({"_id": 2})["features"]
    assert mongo[job_settings.coll_errors].find_one({"_id": "000/000005.mp3"}) is None


def test_limit(spark, job_settings, folder, first):
    audio_root, meta_dir, _ = folder
    out = job.run(spark, job_settings, audio_root, meta_dir, limit=3, force=True, progress=False)
    assert out["files"] == 3 and out["extracted"] + out["failed"] == 3


def test_bad_inputs_are_one_line_errors(job_settings, folder, tmp_path):
    audio_root, meta_dir, _ = folder
    with pytest.raises(job.JobError, match="audio folder not found"):
        job.run(None, job_settings, tmp_path / "absent", meta_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(job.JobError, match="no audio files under"):
        job.run(None, job_settings, tmp_path / "empty", meta_dir)
    with pytest.raises(job.JobError, match="metadata folder not found"):
        job.run(None, job_settings, audio_root, tmp_path / "absent")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "tracks.csv").write_text("id,name\n1,x\n")
    with pytest.raises(job.JobError, match="not an FMA tracks.csv"):
        job.run(None, job_settings, audio_root, tmp_path / "meta")
    down = job_settings.model_copy(update={"mongo_uri": "mongodb://127.0.0.1:1/"})
    with pytest.raises(job.JobError, match="MongoDB not reachable.*make up"):
        job.run(None, down, audio_root, meta_dir)


def test_spark_submit_runs_the_job(first, job_settings, folder):
    """The command of the README, on the same folder and store: everything is current already."""
    audio_root, meta_dir, _ = folder
    env = dict(os.environ, MUSICREC_MONGO_DB=job_settings.mongo_db, MUSICREC_COLL_TRACKS=job_settings.coll_tracks,
               MUSICREC_COLL_ERRORS=job_settings.coll_errors, MUSICREC_SPARK_MASTER="local[2]")
    proc = subprocess.run([str(ROOT / "spark-submit.sh"), "feature_extraction/job.py", "--audio-dir",
                           str(audio_root), "--metadata-dir", str(meta_dir), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("extracted 0, skipped ") and "failed 3 (" in last, proc.stdout
