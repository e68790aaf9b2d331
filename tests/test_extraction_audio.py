"""Decoding: the same samples as librosa.load, every format route, and a reason for each unusable file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from feature_extraction import audio
from feature_extraction.features import ExtractorConfig, feature_names
from feature_extraction.worker import extract_file
from tests import paths

FMA_CLIP = paths.FMA_CLIP
SR = 22050


def test_decode_equals_librosa_load_on_the_fma_clip():
    import librosa

    ours = audio.decode(FMA_CLIP, SR, 30.0)
    theirs, _ = librosa.load(FMA_CLIP, sr=SR, mono=True, duration=30.0)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert len(ours) / SR == pytest.approx(29.98, abs=0.05)


def test_stereo_44k_wav_is_mixed_resampled_and_cut(tmp_path):
    t = np.arange(44100 * 40) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    sf.write(tmp_path / "a.wav", np.stack([left, right], axis=1) * 0.8, 44100)
    y = audio.decode(tmp_path / "a.wav", SR, 30.0)
    assert len(y) == 30 * SR
    assert np.abs(y).max() == pytest.approx(0.4, rel=0.02)  # mono = mean of the channels


def test_ogg_and_flac_decode(tmp_path):
    y = (0.3 * np.sin(2 * np.pi * 330 * np.arange(3 * SR) / SR)).astype(np.float32)
    for name in ("a.ogg", "a.flac"):
        sf.write(tmp_path / name, y, SR)
        out = audio.decode(tmp_path / name, SR, 30.0)
        assert abs(len(out) - len(y)) <= 1
        assert np.corrcoef(out[:len(y) - 1000], y[:len(y) - 1000])[0, 1] > 0.99


def test_m4a_goes_through_the_audioread_fallback(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, (0.3 * np.sin(2 * np.pi * 330 * np.arange(3 * SR) / SR)).astype(np.float32), SR)
    dst = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-c:a", "aac", str(dst)],
                   check=True)
    with pytest.raises(Exception):
        sf.info(str(dst))  # libsndfile cannot read it ...
    y = audio.decode(dst, SR, 30.0)  # ... librosa/audioread (ffmpeg) can
    assert len(y) / SR == pytest.approx(3.0, abs=0.1)


def test_truncated_mp3_keeps_what_decodes_or_is_too_short(tmp_path):
    data = FMA_CLIP.read_bytes()
    (tmp_path / "half.mp3").write_bytes(data[: len(data) // 2])
    (tmp_path / "head.mp3").write_bytes(data[:3000])
    y = audio.load(tmp_path / "half.mp3", SR, 30.0, 1.0)
    assert len(y) / SR == pytest.approx(15.0, abs=0.5)
    with pytest.raises(audio.AudioError) as err:
        audio.load(tmp_path / "head.mp3", SR, 30.0, 1.0)
    assert err.value.code == audio.TOO_SHORT and "at least 1 s" in err.value.reason


@pytest.mark.parametrize("content, code", [
    (b"this is a text file, not an mp3\n" * 20, audio.NOT_AUDIO),
    (bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8)), audio.NOT_AUDIO),
    (b"", audio.EMPTY),
])
def test_unusable_files_raise_with_a_reason(tmp_path, content, code):
    path = tmp_path / "000123.mp3"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError) as err:
        audio.load(path, SR, 30.0, 1.0)
    assert err.value.code == code
    assert err.value.reason.startswith(code + ": ")


def test_missing_file(tmp_path):
    with pytest.raises(audio.AudioError) as err:
        audio.decode(tmp_path / "nope.mp3", SR)
    assert err.value.code == audio.MISSING


def test_non_finite_samples_are_rejected(tmp_path):
    y = np.zeros(2 * SR, dtype=np.float32)
    y[100] = np.nan
    sf.write(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    with pytest.raises(audio.AudioError) as err:
        audio.load(tmp_path / "nan.wav", SR, 30.0, 1.0)
    assert err.value.code == audio.INVALID


def test_extract_file_gives_features_or_a_reason(tmp_path):
    cfg = ExtractorConfig()
    ok = extract_file(str(FMA_CLIP), cfg, 1.0)
    assert ok["error"] is None and len(ok["features"]) == len(feature_names())
    assert ok["audio_seconds"] == pytest.approx(29.98, abs=0.05) and ok["decode_s"] > 0 and ok["extract_s"] > 0
    shutil.copy(FMA_CLIP, tmp_path / "x.mp3")
    (tmp_path / "x.mp3").write_text("nope")
    bad = extract_file(str(tmp_path / "x.mp3"), cfg, 1.0)
    assert bad["features"] is None and bad["error"].startswith("not_audio: ")
