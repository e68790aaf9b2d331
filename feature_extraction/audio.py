"""Decode one audio file to a mono float32 signal at the target rate, or say why it cannot be used.

The fast path is soundfile (libsndfile reads MP3, OGG/Vorbis/Opus, FLAC, WAV...) plus soxr's
high-quality resampler: the same samples as `librosa.load(path, sr=sr, mono=True, duration=...)`, whose
own channel averaging is needlessly slow on interleaved stereo. Anything libsndfile refuses (AAC/M4A,
WMA, a damaged MP3 it gives up on) goes through librosa.load, which falls back to audioread (ffmpeg).

Every failure is an `AudioError` with a short `code` and a readable `detail`; the job stores
`"<code>: <detail>"` in the errors collection and moves on.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

# failure codes (stable: the errors collection and the job summary count them)
MISSING = "missing"
EMPTY = "empty"
NOT_AUDIO = "not_audio"
TOO_SHORT = "too_short"
INVALID = "invalid_samples"
BAD_NAME = "bad_name"
DUPLICATE = "duplicate"
EXTRACT_FAILED = "extract_failed"


class AudioError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


def _resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return y
    import soxr

    n_out = int(math.ceil(len(y) * target_sr / orig_sr))
    out = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    if len(out) > n_out:
        out = out[:n_out]
    elif len(out) < n_out:  # as librosa.util.fix_length
        out = np.pad(out, (0, n_out - len(out)))
    return np.asarray(out, dtype=np.float32)


def _decode_soundfile(path: str, sr: int, max_seconds: float | None) -> np.ndarray:
    import soundfile as sf

    with sf.SoundFile(path) as f:
        native = f.samplerate
        frames = -1 if max_seconds is None else int(max_seconds * native)
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    if data.shape[1] == 1:
        mono = data[:, 0]
    else:
        mono = data.sum(axis=1, dtype=np.float32) / np.float32(data.shape[1])
    return _resample(np.ascontiguousarray(mono), native, sr)


def _decode_librosa(path: str, sr: int, max_seconds: float | None) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread instead."
        y, _ = librosa.load(path, sr=sr, mono=True, duration=max_seconds)
    return np.asarray(y, dtype=np.float32)


def _soundfile_reason(exc: Exception) -> str:
    text = str(exc)
    if "not a regular file" in text or "Format not recognised" in text:
        return "unrecognised format"  # libsndfile says "does not exist" for files it cannot identify
    return text.split(": ", 1)[-1].strip() or type(exc).__name__


def decode(path: str | os.PathLike, sr: int, max_seconds: float | None = None) -> np.ndarray:
    """The first `max_seconds` of `path` as mono float32 at `sr` Hz. Raises AudioError."""
    path = os.fspath(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise AudioError(MISSING, "file not found") from None
    except OSError as exc:
        raise AudioError(MISSING, f"cannot read the file: {exc.strerror or exc}") from None
    if size == 0:
        raise AudioError(EMPTY, "the file is empty (0 bytes)")
    try:
        return _decode_soundfile(path, sr, max_seconds)
    except Exception as sf_exc:  # libsndfile refused it: try audioread/ffmpeg before giving up
        try:
            return _decode_librosa(path, sr, max_seconds)
        except Exception as exc:
            raise AudioError(NOT_AUDIO, f"no decoder could read it (soundfile: {_soundfile_reason(sf_exc)}; "
                                        f"audioread/ffmpeg: {f'{type(exc).__name__} {exc}'.strip()})") from None


def check_signal(y: np.ndarray, sr: int, min_seconds: float) -> None:
    """Raise AudioError when the decoded signal cannot give meaningful features."""
    if y.size == 0:
        raise AudioError(TOO_SHORT, "no audio samples decoded")
    if not np.isfinite(y).all():
        raise AudioError(INVALID, "decoded samples contain NaN or infinity")
    seconds = len(y) / sr
    if seconds < min_seconds:
        raise AudioError(TOO_SHORT, f"{seconds:.2f} s of audio, at least {min_seconds:g} s needed")


def load(path: str | os.PathLike, sr: int, max_seconds: float | None, min_seconds: float) -> np.ndarray:
    """decode() then check_signal(): a signal ready for feature extraction, or AudioError."""
    y = decode(path, sr, max_seconds)
    check_signal(y, sr, min_seconds)
    return y
