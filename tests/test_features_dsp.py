"""Each fast primitive of feature_extraction.dsp gives librosa's numbers, on a real FMA clip."""
from __future__ import annotations

import numpy as np
import pytest

from feature_extraction import audio, dsp
from tests import paths

FMA_CLIP = str(paths.FMA_CLIP)
SR, N_FFT, HOP = 22050, 2048, 512


@pytest.fixture(scope="module")
def clip():
    return audio.decode(FMA_CLIP, SR, 30.0)


@pytest.fixture(scope="module")
def ref(clip):
    """librosa's own computations, as FMA's features.py calls them."""
    import librosa

    S = np.abs(librosa.stft(clip, n_fft=N_FFT, hop_length=HOP))
    mel = librosa.feature.melspectrogram(sr=SR, S=S**2)
    log_mel = librosa.power_to_db(mel)
    return {"S": S, "log_mel": log_mel,
            "C": np.abs(librosa.cqt(clip, sr=SR, hop_length=HOP, bins_per_octave=12, n_bins=84))}


@pytest.fixture(scope="module")
def mag(clip):
    return dsp.stft_magnitude(clip, N_FFT, HOP)


def test_stft_magnitude_matches_librosa(mag, ref):
    assert mag.shape == ref["S"].T.shape
    np.testing.assert_allclose(mag, ref["S"].T, atol=1e-4 * ref["S"].max())


def test_cqt_matches_librosa(clip, ref):
    import librosa

    ours = dsp.cqt_magnitude(clip, SR, HOP, librosa.note_to_hz("C1"), 84, 12)
    assert ours.shape == ref["C"].T.shape
    np.testing.assert_allclose(ours, ref["C"].T, atol=1e-5 * ref["C"].max())


def test_chroma_rms_centroid_bandwidth_rolloff_match_librosa(ref):
    import librosa

    S = np.ascontiguousarray(ref["S"].T)
    P = S * S
    np.testing.assert_allclose(dsp.chroma_stft(P, SR, N_FFT).T,
                               librosa.feature.chroma_stft(S=ref["S"] ** 2, sr=SR, tuning=0.0), atol=1e-5)
    np.testing.assert_allclose(dsp.rms(P, N_FFT).T, librosa.feature.rms(S=ref["S"]), rtol=1e-5, atol=1e-7)
    centroid, bandwidth = dsp.centroid_bandwidth(S, SR, N_FFT)
    np.testing.assert_allclose(centroid.T, librosa.feature.spectral_centroid(S=ref["S"], sr=SR), rtol=1e-5)
    np.testing.assert_allclose(bandwidth.T, librosa.feature.spectral_bandwidth(S=ref["S"], sr=SR), rtol=1e-4)
    ours = dsp.rolloff(S, SR, N_FFT).T
    theirs = librosa.feature.spectral_rolloff(S=ref["S"], sr=SR)
    # float32 cumulative sums may put a frame exactly at the threshold one bin apart
    assert np.mean(ours == theirs) > 0.995
    assert np.abs(ours - theirs).max() <= SR / N_FFT + 1e-6


def test_contrast_matches_librosa(ref):
    import librosa

    S = np.ascontiguousarray(ref["S"].T)
    np.testing.assert_allclose(dsp.spectral_contrast(S, SR, N_FFT).T,
                               librosa.feature.spectral_contrast(S=ref["S"], sr=SR, n_bands=6), atol=1e-3)


def test_mel_mfcc_onset_match_librosa(ref):
    import librosa

    S = np.ascontiguousarray(ref["S"].T)
    log_mel = dsp.power_to_db(dsp.melspectrogram(S * S, SR, N_FFT))
    np.testing.assert_allclose(log_mel.T, ref["log_mel"], atol=1e-3)
    np.testing.assert_allclose(dsp.mfcc(log_mel, 20).T, librosa.feature.mfcc(S=ref["log_mel"], n_mfcc=20),
                               atol=2e-3)
    np.testing.assert_allclose(dsp.onset_strength(log_mel, N_FFT, HOP),
                               librosa.onset.onset_strength(S=ref["log_mel"], sr=SR), atol=1e-4)


def test_zero_crossing_rate_matches_librosa_exactly(clip):
    import librosa

    ours = dsp.zero_crossing_rate(clip, N_FFT, HOP).T
    np.testing.assert_array_equal(ours, librosa.feature.zero_crossing_rate(clip, frame_length=N_FFT,
                                                                            hop_length=HOP))


def test_tempogram_and_tempo_match_librosa(ref):
    import librosa

    onset = librosa.onset.onset_strength(S=ref["log_mel"], sr=SR)
    np.testing.assert_allclose(dsp.tempogram(onset, 344).T,
                               librosa.feature.tempogram(onset_envelope=onset, sr=SR, win_length=344), atol=1e-4)
    assert dsp.tempo(onset, SR, HOP) == pytest.approx(float(librosa.feature.tempo(onset_envelope=onset, sr=SR)[0]))


def test_frames_are_librosa_frames():
    import librosa

    y = np.arange(5000, dtype=np.float32)
    ours = dsp.frames(y, 256, 100)
    theirs = librosa.util.frame(np.pad(y, 128), frame_length=256, hop_length=100).T
    np.testing.assert_array_equal(ours, theirs[: ours.shape[0]])
    assert ours.shape[0] == 1 + len(y) // 100
