"""The feature vector: fixed named order, version, FMA equivalence on a real clip, known answers on
synthesised signals."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from conf import Settings
from feature_extraction import audio, features
from feature_extraction.features import GROUPS, STATISTICS, ExtractorConfig, feature_names
from tests import paths

FMA_CLIP = str(paths.FMA_CLIP)
SR = 22050


def names_of(group: str) -> list[int]:
    return [i for i, n in enumerate(feature_names()) if n.startswith(group + ".")]


def stat(vec: np.ndarray, group: str, statistic: str, number: int = 1) -> float:
    return float(vec[feature_names().index(f"{group}.{statistic}.{number:02d}")])


def tone(freq: float, seconds: float = 5.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- names and version -------------------------------------------------------------------------------

def test_names_follow_fma_features_csv_order_and_count():
    names = feature_names()
    assert len(names) == 519 and features.N_FMA == 518 and names[-1] == "tempo"
    assert len(set(names)) == len(names)
    assert names[:3] == ("chroma_cens.kurtosis.01", "chroma_cens.kurtosis.02", "chroma_cens.kurtosis.03")
    assert names[517] == "zcr.std.01"
    # FMA's features.csv columns are the sorted (feature, statistic, number) tuples
    triples = [tuple(n.split(".")) for n in names[:518]]
    assert triples == sorted(triples)
    assert {g for g, _ in GROUPS} == {t[0] for t in triples}
    assert sum(size for _, size in GROUPS) * len(STATISTICS) == 518


def test_version_is_stable_and_follows_the_settings():
    assert features.FEATURE_VERSION == features.feature_version() == features.feature_version(Settings())
    assert len(features.FEATURE_VERSION) == 12
    assert features.feature_version(Settings(sample_rate=44100)) != features.FEATURE_VERSION
    assert features.feature_version(Settings(clip_seconds=10)) != features.FEATURE_VERSION
    # settings that do not change the numbers do not change the version
    assert features.feature_version(Settings(min_seconds=5, mongo_db="x")) == features.FEATURE_VERSION


def test_summarise_matches_scipy_and_numpy():
    x = np.random.default_rng(1).gamma(2.0, size=(500, 3))
    out = features.summarise(x)
    expected = [scipy.stats.kurtosis(x, axis=0), x.max(0), x.mean(0), np.median(x, 0), x.min(0),
                scipy.stats.skew(x, axis=0), x.std(0)]
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-10)


def test_summarise_of_a_constant_row_is_finite():
    out = features.summarise(np.full((100, 2), 3.0))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 0], [0.0, 3.0, 3.0, 3.0, 3.0, 0.0, 0.0])


# --- the FMA feature set on real audio ----------------------------------------------------------------

def fma_reference(y: np.ndarray) -> np.ndarray:
    """FMA's features.py (mdeff/fma) written with plain librosa calls, tuning fixed at 0, plus tempo."""
    import librosa

    def stats(values):
        return np.concatenate([scipy.stats.kurtosis(values, axis=1), values.max(1), values.mean(1),
                               np.median(values, 1), values.min(1), scipy.stats.skew(values, axis=1),
                               values.std(1)])

    out = {}
    out["zcr"] = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)
    cqt = np.abs(librosa.cqt(y, sr=SR, hop_length=512, bins_per_octave=12, n_bins=84))
    out["chroma_cqt"] = librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    out["chroma_cens"] = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    out["tonnetz"] = librosa.feature.tonnetz(chroma=out["chroma_cens"])
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    out["chroma_stft"] = librosa.feature.chroma_stft(S=stft**2, n_chroma=12, tuning=0.0)
    out["rmse"] = librosa.feature.rms(S=stft)
    out["spectral_centroid"] = librosa.feature.spectral_centroid(S=stft)
    out["spectral_bandwidth"] = librosa.feature.spectral_bandwidth(S=stft)
    out["spectral_contrast"] = librosa.feature.spectral_contrast(S=stft, n_bands=6)
    out["spectral_rolloff"] = librosa.feature.spectral_rolloff(S=stft)
    mel = librosa.feature.melspectrogram(sr=SR, S=stft**2)
    out["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    tempo = librosa.feature.tempo(onset_envelope=librosa.onset.onset_strength(y=y, sr=SR), sr=SR)
    return np.concatenate([stats(out[name]) for name, _ in GROUPS] + [tempo])


@pytest.fixture(scope="module")
def fma_clip():
    return audio.decode(FMA_CLIP, SR, 30.0)


def test_vector_equals_plain_librosa_fma_features_on_the_real_fma_clip(fma_clip):
    ours = features.extract(fma_clip)
    ref = fma_reference(fma_clip)
    assert ours.shape == ref.shape == (519,)
    assert np.isfinite(ours).all()
    scale = np.maximum(np.abs(ref), 1.0)
    rel = np.abs(ours - ref) / scale
    # float32 rounding moves near-silent spectral-contrast valleys by < 0.5 dB in a few frames
    contrast = names_of("spectral_contrast")
    others = np.setdiff1d(np.arange(519), contrast)
    assert rel[others].max() < 1e-3, feature_names()[others[np.argmax(rel[others])]]
    assert rel[contrast].max() < 2e-2
    assert ours[-1] == ref[-1]  # tempo: the same BPM bin


def test_extraction_is_deterministic(fma_clip):
    np.testing.assert_array_equal(features.extract(fma_clip), features.extract(fma_clip))


def test_config_from_settings():
    cfg = ExtractorConfig.from_settings(Settings(sample_rate=16000, clip_seconds=12))
    assert (cfg.sample_rate, cfg.clip_seconds, cfg.n_fft) == (16000, 12.0, 2048)
    assert ExtractorConfig.from_settings(cfg) is cfg


# --- synthesised signals with known answers ------------------------------------------------------------

@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0, 3000.0])
def test_sine_centroid_and_zcr(freq):
    vec = features.extract(tone(freq))
    assert stat(vec, "spectral_centroid", "median") == pytest.approx(freq, rel=0.01)
    assert stat(vec, "zcr", "median") == pytest.approx(2 * freq / SR, rel=0.02)
    assert stat(vec, "spectral_bandwidth", "median") < 0.05 * freq + 20
    assert freq <= stat(vec, "spectral_rolloff", "median") <= freq + 2 * SR / 2048
    # librosa's rms(S=...) sees the Hann-windowed frame: the sine's RMS times the window's, sqrt(3/8)
    assert stat(vec, "rmse", "median") == pytest.approx(0.5 / np.sqrt(2) * np.sqrt(3 / 8), rel=0.01)


@pytest.mark.parametrize("freq, pitch_class", [(440.0, 9), (261.63, 0), (392.0, 7)])
def test_sine_chroma_peaks_at_its_pitch_class(freq, pitch_class):
    vec = features.extract(tone(freq))
    for group in ("chroma_stft", "chroma_cqt", "chroma_cens"):
        means = [stat(vec, group, "mean", k + 1) for k in range(12)]
        assert int(np.argmax(means)) == pitch_class, group


def test_higher_tone_has_higher_centroid_and_zcr():
    low, high = features.extract(tone(300.0)), features.extract(tone(2400.0))
    assert stat(high, "spectral_centroid", "mean") > 4 * stat(low, "spectral_centroid", "mean")
    assert stat(high, "zcr", "mean") > 4 * stat(low, "zcr", "mean")


def test_white_noise_centroid_and_zcr():
    y = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)
    vec = features.extract(y)
    assert stat(vec, "spectral_centroid", "median") == pytest.approx(SR / 4, rel=0.03)
    assert stat(vec, "zcr", "median") == pytest.approx(0.5, abs=0.02)


def test_silence_gives_a_finite_vector_with_zero_energy():
    vec = features.extract(np.zeros(5 * SR, dtype=np.float32))
    assert np.isfinite(vec).all()
    for group in ("rmse", "zcr", "spectral_centroid", "spectral_bandwidth", "spectral_rolloff"):
        for s in STATISTICS:
            assert stat(vec, group, s) == 0.0, (group, s)


def test_click_track_tempo():
    y = np.zeros(20 * SR, dtype=np.float32)
    period = int(round(SR * 60 / 100))  # 100 BPM
    for start in range(0, len(y) - 200, period):
        y[start:start + 200] = np.hanning(200) * np.sin(np.arange(200) * 0.7)
    assert features.extract(y)[-1] == pytest.approx(100.0, rel=0.03)


def test_short_signal_still_has_the_full_vector():
    vec = features.extract(tone(440.0, seconds=1.0))
    assert vec.shape == (519,) and np.isfinite(vec).all()
