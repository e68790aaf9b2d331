"""Fast signal primitives that give the same numbers as their librosa counterparts.

librosa's feature functions each recompute what they need (an STFT, a filter bank, a tuning estimate),
and lay spectrograms out as (frequency, time), which makes many reductions strided. Here one magnitude
STFT is computed once in (time, frequency) layout, every filter bank and CQT basis is built once per
process (`functools.lru_cache`), and the cheap reductions (centroid, bandwidth, rolloff, RMS, ZCR, the
onset envelope and the tempogram) are a few vectorised numpy lines. tests/test_features_dsp.py checks
each one against the librosa function it replaces.

All arrays are float32 in (time, ...) layout unless stated otherwise. librosa is imported lazily so that
importing this module (and `feature_extraction.features`) costs nothing on the driver.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

TINY32 = np.finfo(np.float32).tiny


def frames(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred frames of `y` (zero padding of n_fft // 2 each side), shape (n_frames, n_fft), a view.
    n_frames = 1 + len(y) // hop, as librosa.stft(center=True)."""
    padded = np.pad(y, n_fft // 2)
    n_frames = 1 + len(y) // hop
    return sliding_window_view(padded, n_fft)[::hop][:n_frames]


@lru_cache(maxsize=8)
def hann(n: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hann", n, fftbins=True).astype(np.float32)


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| with a periodic Hann window, (n_frames, 1 + n_fft // 2) float32:
    librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant"), transposed."""
    windowed = frames(y, n_fft, hop) * hann(n_fft)
    return np.abs(scipy.fft.rfft(windowed, axis=1))


@lru_cache(maxsize=8)
def fft_frequencies(sr: float, n_fft: int) -> np.ndarray:
    return np.fft.rfftfreq(n_fft, 1.0 / sr)


@lru_cache(maxsize=8)
def mel_basis_t(sr: float, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel (Slaney), transposed: (1 + n_fft // 2, n_mels) float32."""
    import librosa

    return np.ascontiguousarray(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).T, dtype=np.float32)


@lru_cache(maxsize=8)
def chroma_basis_t(sr: float, n_fft: int, n_chroma: int) -> np.ndarray:
    """librosa.filters.chroma with tuning 0, transposed: (1 + n_fft // 2, n_chroma) float32."""
    import librosa

    fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, n_chroma=n_chroma)
    return np.ascontiguousarray(fb.T, dtype=np.float32)


def normalize_rows_inf(x: np.ndarray) -> np.ndarray:
    """Each row divided by its max |value| (rows below float32 tiny left as they are):
    librosa.util.normalize(x.T, norm=np.inf, axis=0).T."""
    norm = np.abs(x).max(axis=1, keepdims=True)
    norm[norm < TINY32] = 1.0
    return x / norm


def power_to_db(power: np.ndarray, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """librosa.power_to_db(power, ref=1.0, amin=amin, top_db=top_db)."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    return np.maximum(db, db.max() - top_db)


def chroma_stft(power: np.ndarray, sr: float, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """librosa.feature.chroma_stft(S=power.T, tuning=0.0).T: (time, 12)."""
    return normalize_rows_inf(power @ chroma_basis_t(sr, n_fft, n_chroma))


def melspectrogram(power: np.ndarray, sr: float, n_fft: int, n_mels: int = 128) -> np.ndarray:
    """librosa.feature.melspectrogram(S=power.T, sr=sr).T: (time, n_mels)."""
    return power @ mel_basis_t(sr, n_fft, n_mels)


def mfcc(log_mel: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """librosa.feature.mfcc(S=log_mel.T, n_mfcc=n_mfcc).T (DCT-II, orthonormal): (time, n_mfcc)."""
    return scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, :n_mfcc]


def rms(power: np.ndarray, n_fft: int) -> np.ndarray:
    """librosa.feature.rms(S=magnitude.T, frame_length=n_fft).T from the power spectrogram: (time, 1)."""
    total = power.sum(axis=1, dtype=np.float64) - 0.5 * power[:, 0]
    if n_fft % 2 == 0:
        total -= 0.5 * power[:, -1]
    return np.sqrt(np.maximum(2.0 * total / n_fft**2, 0.0))[:, None]


def centroid_bandwidth(mag: np.ndarray, sr: float, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.feature.spectral_centroid and spectral_bandwidth (p=2) of the magnitude: (time, 1) each.

    Both come from the first three spectral moments (one small float32 matrix product): the bandwidth
    is sqrt(E[f^2] - centroid^2) over the frame's normalised spectrum. Where that difference is small
    against centroid^2 (narrow-band frames, a sine) the subtraction would lose precision, so those
    frames are recomputed directly in float64."""
    freq = fft_frequencies(sr, n_fft)
    moments = mag @ np.stack([np.ones_like(freq), freq, freq * freq], axis=1).astype(np.float32)
    m0 = moments[:, 0].astype(np.float64)
    m0[m0 < TINY32] = 1.0
    centroid = moments[:, 1] / m0
    # second moment about the centroid, recomputed exactly for the frames where cancellation could bite
    spread = moments[:, 2] / m0 - centroid * centroid
    narrow = spread < 1e-3 * np.maximum(centroid * centroid, 1.0)
    if narrow.any():
        sub = mag[narrow].astype(np.float64)
        dev = (freq[None, :] - centroid[narrow, None]) ** 2
        spread[narrow] = (sub * dev).sum(axis=1) / m0[narrow]
    return centroid[:, None], np.sqrt(np.maximum(spread, 0.0))[:, None]


def rolloff(mag: np.ndarray, sr: float, n_fft: int, roll_percent: float = 0.85) -> np.ndarray:
    """librosa.feature.spectral_rolloff(S=mag.T, roll_percent=0.85).T: (time, 1)."""
    energy = np.cumsum(mag, axis=1)
    threshold = roll_percent * energy[:, -1:]
    first = np.argmax(energy >= threshold, axis=1)
    return fft_frequencies(sr, n_fft)[first][:, None]


@lru_cache(maxsize=8)
def _contrast_bands(sr: float, n_fft: int, n_bands: int, fmin: float, quantile: float):
    """The frequency slices and quantile counts of librosa.feature.spectral_contrast."""
    freq = fft_frequencies(sr, n_fft)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        current = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == n_bands:
            current[idx[-1] + 1:] = True
        sel = np.flatnonzero(current)
        count = int(np.maximum(np.rint(quantile * len(sel)), 1))
        lo, hi = sel[0], sel[-1] + 1
        if k < n_bands:
            hi -= 1
        bands.append((int(lo), int(hi), count))
    return tuple(bands)


def spectral_contrast(mag: np.ndarray, sr: float, n_fft: int, n_bands: int = 6, fmin: float = 200.0,
                      quantile: float = 0.02) -> np.ndarray:
    """librosa.feature.spectral_contrast(S=mag.T, n_bands=6).T: (time, n_bands + 1), in dB.

    Each band is sorted along contiguous rows (numpy's SIMD sort), which is faster than librosa's sort
    along the strided frequency axis."""
    valley = np.empty((mag.shape[0], n_bands + 1))
    peak = np.empty_like(valley)
    for k, (lo, hi, count) in enumerate(_contrast_bands(sr, n_fft, n_bands, fmin, quantile)):
        if count == 1:
            band = mag[:, lo:hi]
            valley[:, k] = band.min(axis=1)
            peak[:, k] = band.max(axis=1)
        else:
            ordered = np.sort(mag[:, lo:hi], axis=1)
            valley[:, k] = ordered[:, :count].mean(axis=1, dtype=np.float64)
            peak[:, k] = ordered[:, -count:].mean(axis=1, dtype=np.float64)
    # as librosa: power_to_db(peak) - power_to_db(valley), each clipped 80 dB under its own maximum
    return power_to_db(peak) - power_to_db(valley)


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """librosa.feature.zero_crossing_rate(y, frame_length, hop_length, center=True).T: (time, 1).

    librosa zeroes samples with |x| <= 1e-10 and counts sign-bit changes, so a sample is "negative"
    exactly when x < -1e-10. One pass over the signal: changes as a cumulative count, then one
    difference per frame."""
    negative = np.pad(y < -1e-10, frame_length // 2, mode="edge")
    changes = np.empty(len(negative), dtype=np.int32)
    changes[0] = 0
    np.cumsum(negative[1:] != negative[:-1], dtype=np.int32, out=changes[1:])
    n_frames = 1 + (len(negative) - frame_length) // hop
    starts = np.arange(n_frames) * hop
    # a frame [s, s + L) holds the L - 1 comparisons (s, s+1) ... (s+L-2, s+L-1)
    count = changes[starts + frame_length - 1] - changes[starts]
    return (count / frame_length)[:, None]


def onset_strength(log_mel: np.ndarray, n_fft: int, hop: int, lag: int = 1) -> np.ndarray:
    """librosa.onset.onset_strength(S=log_mel.T, n_fft=n_fft, hop_length=hop): (time,)."""
    flux = np.maximum(0.0, log_mel[lag:] - log_mel[:-lag]).mean(axis=1)
    pad = lag + n_fft // (2 * hop)
    return np.concatenate([np.zeros(pad, dtype=flux.dtype), flux])[: log_mel.shape[0]]


def tempogram(onset_env: np.ndarray, win_length: int) -> np.ndarray:
    """librosa.feature.tempogram(onset_envelope=onset_env, win_length=win_length), transposed:
    (time, win_length). Frames are contiguous rows, each autocorrelated with one float32 real FFT."""
    n = onset_env.shape[-1]
    padded = np.pad(onset_env.astype(np.float32), win_length // 2, mode="linear_ramp", end_values=(0, 0))
    framed = sliding_window_view(padded, win_length)[:n] * hann(win_length)
    n_pad = scipy.fft.next_fast_len(2 * win_length - 1, real=True)
    spec = scipy.fft.rfft(framed, n=n_pad, axis=1)
    power = spec.real * spec.real + spec.imag * spec.imag
    ac = scipy.fft.irfft(power, n=n_pad, axis=1)[:, :win_length]
    norm = np.abs(ac).max(axis=1, keepdims=True)
    norm[norm < TINY32] = 1.0
    return ac / norm


@lru_cache(maxsize=8)
def _tempo_prior(sr: float, hop: int, win_length: int, start_bpm: float = 120.0, std_bpm: float = 1.0,
                 max_tempo: float = 320.0):
    import librosa

    bpms = librosa.tempo_frequencies(win_length, hop_length=hop, sr=sr)
    with np.errstate(divide="ignore"):
        logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    logprior[: int(np.argmax(bpms < max_tempo))] = -np.inf
    return bpms, logprior


def tempo(onset_env: np.ndarray, sr: float, hop: int, ac_size: float = 8.0) -> float:
    """librosa.feature.tempo(onset_envelope=onset_env, sr=sr, hop_length=hop)[0], in BPM: the lag of
    the time-averaged tempogram that maximises log1p(1e6 * tg) plus a log-normal prior around 120."""
    win_length = int(np.floor(ac_size * sr / hop))  # librosa.time_to_frames(ac_size, sr, hop)
    bpms, logprior = _tempo_prior(float(sr), int(hop), win_length)
    mean_tg = tempogram(onset_env, win_length).mean(axis=0, dtype=np.float64)
    return float(bpms[np.argmax(np.log1p(1e6 * mean_tg) + logprior)])


# --- constant-Q transform ----------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _cqt_plan(sr: float, hop: int, fmin: float, n_bins: int, bins_per_octave: int, res_type: str):
    """Everything librosa.cqt rebuilds on each call, built once: per octave (top first) the dense
    transposed FFT basis, its FFT size and hop; the early downsampling; the scale of each bin."""
    import librosa
    from librosa import filters
    from librosa.core import constantq

    n_octaves = int(np.ceil(n_bins / bins_per_octave))
    n_filters = min(bins_per_octave, n_bins)
    freqs = librosa.interval_frequencies(n_bins=n_bins, fmin=fmin, intervals="equal",
                                         bins_per_octave=bins_per_octave, sort=True)
    alpha = filters._relative_bandwidth(freqs=freqs)
    lengths, cutoff = filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann", filter_scale=1,
                                              gamma=0.0, alpha=alpha)
    count = constantq.__early_downsample_count(sr / 2.0, cutoff, hop, n_octaves)
    early = 2 ** count if count > 0 else 1
    my_sr, my_hop = sr / early, hop // early
    base_sr = my_sr
    octaves = []
    filter_fft = getattr(constantq, "__vqt_filter_fft")
    for i in range(n_octaves):
        sl = slice(-n_filters * (i + 1), -n_filters * i if i else None)
        basis, n_fft, _ = filter_fft(my_sr, freqs[sl], 1, 1, 0.01, window="hann", gamma=0.0,
                                     dtype=np.complex64, alpha=alpha[sl])
        dense = (basis.toarray() * np.sqrt(base_sr / my_sr)).astype(np.complex64)
        octaves.append((np.ascontiguousarray(dense.T), int(n_fft), int(my_hop)))
        if my_hop % 2 == 0:
            my_hop //= 2
            my_sr /= 2.0
    scale = (1.0 / np.sqrt(lengths)).astype(np.float32)
    return early, tuple(octaves), scale


def cqt_magnitude(y: np.ndarray, sr: float, hop: int, fmin: float, n_bins: int = 84,
                  bins_per_octave: int = 12, res_type: str = "soxr_hq") -> np.ndarray:
    """|librosa.cqt(y, sr, hop_length, fmin, n_bins, bins_per_octave)|, transposed: (time, n_bins).

    The same multirate algorithm (one octave at a time, halving the rate between octaves), with the
    filter bases cached across calls and each octave's frames transformed as contiguous rows."""
    import librosa

    early, octaves, scale = _cqt_plan(float(sr), int(hop), float(fmin), int(n_bins),
                                      int(bins_per_octave), res_type)
    my_y = y
    if early > 1:
        my_y = librosa.resample(my_y, orig_sr=early, target_sr=1, res_type=res_type, scale=True)
    responses = []
    for i, (basis_t, n_fft, my_hop) in enumerate(octaves):
        spec = scipy.fft.rfft(frames(my_y, n_fft, my_hop), axis=1)
        responses.append(np.abs(spec.astype(np.complex64) @ basis_t))
        if i + 1 < len(octaves) and my_hop % 2 == 0:
            my_y = librosa.resample(my_y, orig_sr=2, target_sr=1, res_type=res_type, scale=True)
    n_time = min(r.shape[0] for r in responses)
    out = np.empty((n_time, n_bins), dtype=np.float32)
    end = n_bins
    for r in responses:  # top octave first; bins ascend within an octave
        width = r.shape[1]
        if end < width:
            out[:, :end] = r[:n_time, -end:]
        else:
            out[:, end - width:end] = r[:n_time]
        end -= width
    return out * scale
