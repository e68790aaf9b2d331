"""The audio feature vector of one clip: the FMA feature set (518 values) plus tempo, as pure functions.

Feature groups and sizes are those of FMA's features.py (`fma_metadata/features.csv`): chroma_stft,
chroma_cqt, chroma_cens (12 each), tonnetz (6), mfcc (20), rmse, zcr, spectral centroid, bandwidth and
rolloff (1 each) and spectral contrast (7), each summarised over time by kurtosis, max, mean, median,
min, skew and std. The order is FMA's sorted column order (feature, statistic, number), so the first
518 values line up with the columns of FMA's features.csv; tempo (BPM) comes last.

How the work is shared (see dsp.py for the primitives, each checked against librosa):
- one decode (audio.py), then one magnitude STFT (n_fft 2048, hop 512) feeds chroma_stft, RMS,
  centroid, bandwidth, rolloff, contrast and the mel spectrogram; the log-mel feeds MFCC and the onset
  envelope, which feeds tempo;
- one CQT (84 bins from C1) feeds chroma_cqt and chroma_cens; tonnetz comes from chroma_cens, as in FMA;
- ZCR reads the samples directly.
Tuning is fixed at 0 for chroma_stft and the CQT (librosa's CQT default; FMA estimated it for
chroma_stft, which alone costs more than a whole decode).

`feature_names()` is the fixed order of the vector; `feature_version(settings)` a short hash of the
settings that change the numbers, the names and the librosa version: the `feature_version` stored with
each track. Bump `REVISION` when the computation changes.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import metadata

import numpy as np

from feature_extraction import dsp

REVISION = 1  # bump when the computation of any value changes

STATISTICS = ("kurtosis", "max", "mean", "median", "min", "skew", "std")  # FMA's sorted order
GROUPS = (  # (name, size) in FMA's sorted order
    ("chroma_cens", 12), ("chroma_cqt", 12), ("chroma_stft", 12), ("mfcc", 20), ("rmse", 1),
    ("spectral_bandwidth", 1), ("spectral_centroid", 1), ("spectral_contrast", 7),
    ("spectral_rolloff", 1), ("tonnetz", 6), ("zcr", 1),
)
EXTRA = ("tempo",)
N_FMA = sum(size for _, size in GROUPS) * len(STATISTICS)  # 518


@dataclass(frozen=True)
class ExtractorConfig:
    """The settings that determine the feature values."""
    sample_rate: int = 22050
    clip_seconds: float = 30.0
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_mfcc: int = 20
    cqt_bins: int = 84
    bins_per_octave: int = 12
    contrast_bands: int = 6

    @classmethod
    def from_settings(cls, settings) -> "ExtractorConfig":
        if isinstance(settings, cls):
            return settings
        return cls(sample_rate=int(settings.sample_rate), clip_seconds=float(settings.clip_seconds))


@lru_cache(maxsize=1)
def feature_names() -> tuple[str, ...]:
    """The names of the vector's values in order: `<group>.<statistic>.<NN>`, then `tempo`."""
    names = [f"{group}.{stat}.{i + 1:02d}" for group, size in GROUPS for stat in STATISTICS
             for i in range(size)]
    return tuple(names) + EXTRA


def _librosa_version() -> str:
    try:
        return metadata.version("librosa")
    except metadata.PackageNotFoundError:  # pragma: no cover - librosa is a pinned requirement
        return "none"


def feature_version(settings=None) -> str:
    """Short hash of the extractor settings, the feature list, the librosa version and REVISION."""
    cfg = ExtractorConfig() if settings is None else ExtractorConfig.from_settings(settings)
    payload = json.dumps({"config": asdict(cfg), "names": feature_names(), "revision": REVISION,
                          "librosa": _librosa_version()}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


FEATURE_VERSION = feature_version()


def summarise(x: np.ndarray) -> np.ndarray:
    """The 7 statistics over time of a (time, dims) array, as (7, dims) float64 in STATISTICS order.

    Skew and kurtosis are scipy.stats' biased estimates (kurtosis in excess of 3); for a constant row,
    where scipy gives NaN, they are 0 here, so silence still yields a finite vector."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    dev = x - mean
    d2 = dev * dev
    m2 = d2.mean(axis=0)
    m3 = (d2 * dev).mean(axis=0)
    m4 = (d2 * d2).mean(axis=0)
    flat = m2 <= (np.finfo(np.float64).resolution * np.abs(mean)) ** 2
    safe = np.where(flat, 1.0, m2)
    skew = np.where(flat, 0.0, m3 / safe**1.5)
    kurt = np.where(flat, 0.0, m4 / safe**2 - 3.0)
    return np.stack([kurt, x.max(axis=0), mean, np.median(x, axis=0), x.min(axis=0), skew,
                     np.sqrt(m2)])


class _Clock:
    """Adds the time since the previous call to timings[name] (a no-op without a timings dict)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.last = time.perf_counter() if timings is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def compute_groups(y: np.ndarray, cfg: ExtractorConfig = ExtractorConfig(),
                   timings: dict | None = None) -> dict[str, np.ndarray]:
    """Every frame-level feature of a mono float32 signal at cfg.sample_rate: name -> (time, dims).
    Also `tempo` -> (1, 1). With a `timings` dict, the seconds spent per stage are added to it."""
    import librosa

    sr, n_fft, hop = cfg.sample_rate, cfg.n_fft, cfg.hop_length
    y = np.ascontiguousarray(y, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    clock = _Clock(timings)

    mag = dsp.stft_magnitude(y, n_fft, hop)  # (time, 1 + n_fft // 2)
    power = mag * mag
    clock("stft")
    out["chroma_stft"] = dsp.chroma_stft(power, sr, n_fft)
    clock("chroma_stft")
    out["rmse"] = dsp.rms(power, n_fft)
    out["spectral_centroid"], out["spectral_bandwidth"] = dsp.centroid_bandwidth(mag, sr, n_fft)
    clock("rms, centroid, bandwidth")
    out["spectral_rolloff"] = dsp.rolloff(mag, sr, n_fft)
    clock("rolloff")
    out["spectral_contrast"] = dsp.spectral_contrast(mag, sr, n_fft, n_bands=cfg.contrast_bands)
    clock("contrast")
    log_mel = dsp.power_to_db(dsp.melspectrogram(power, sr, n_fft, cfg.n_mels))
    del power
    out["mfcc"] = dsp.mfcc(log_mel, cfg.n_mfcc)
    clock("mel, mfcc")
    onset = dsp.onset_strength(log_mel, n_fft, hop)
    out["tempo"] = np.array([[dsp.tempo(onset, sr, hop)]])
    clock("onset, tempo")
    out["zcr"] = dsp.zero_crossing_rate(y, n_fft, hop)
    clock("zcr")

    fmin = librosa.note_to_hz("C1")
    cqt = dsp.cqt_magnitude(y, sr, hop, fmin, cfg.cqt_bins, cfg.bins_per_octave)
    clock("cqt")
    n_octaves = cfg.cqt_bins // cfg.bins_per_octave
    # fmin is left to librosa's default (C1, like the CQT): passing note_to_hz("C1") explicitly rolls
    # the pitch classes by one through a rounding in cq_to_chroma
    out["chroma_cqt"] = librosa.feature.chroma_cqt(C=cqt.T, n_chroma=12, n_octaves=n_octaves,
                                                   bins_per_octave=cfg.bins_per_octave).T
    cens = librosa.feature.chroma_cens(C=cqt.T, n_chroma=12, n_octaves=n_octaves,
                                       bins_per_octave=cfg.bins_per_octave)
    out["chroma_cens"] = cens.T
    out["tonnetz"] = librosa.feature.tonnetz(chroma=cens).T
    clock("chroma_cqt, cens, tonnetz")
    return out


def vector_from_groups(groups: dict[str, np.ndarray]) -> np.ndarray:
    parts = [summarise(groups[name]).ravel() for name, _ in GROUPS]
    parts.append(np.asarray(groups["tempo"], dtype=np.float64).ravel())
    return np.concatenate(parts)


def extract(y: np.ndarray, cfg: ExtractorConfig = ExtractorConfig(), timings: dict | None = None) -> np.ndarray:
    """The feature vector (float64, len(feature_names())) of a mono signal at cfg.sample_rate."""
    groups = compute_groups(y, cfg, timings)
    clock = _Clock(timings)
    vec = vector_from_groups(groups)
    clock("summary statistics")
    if vec.shape != (len(feature_names()),):  # pragma: no cover - guards the fixed order
        raise AssertionError(f"feature vector has {vec.shape} values, expected {len(feature_names())}")
    return vec


def warm_up(cfg: ExtractorConfig = ExtractorConfig()) -> None:
    """Import librosa, build the filter banks and CQT bases and compile librosa's numba kernels, so the
    first real file pays none of it. Called once per Python worker."""
    rng = np.random.default_rng(0)
    extract(rng.standard_normal(cfg.sample_rate * 2).astype(np.float32) * 0.1, cfg)
