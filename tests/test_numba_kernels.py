"""librosa's numba kernels in the project's environment (issue 13).

Each check runs in a child Python, so a kernel that crashes fails the test with its signal instead of
killing pytest. No services needed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

KERNELS = r"""
import json, sys
import feature_extraction   # installs the numba cache set-up, as every worker does
import librosa, numpy as np
sr = 22050
t = np.arange(sr * 4) / sr
a4 = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
sharp = np.sin(2 * np.pi * 440.0 * 2 ** (0.3 / 12) * t).astype(np.float32)
clicks = librosa.clicks(times=np.arange(0.5, 12, 0.5), sr=sr, length=sr * 12)   # 120 BPM
tempo, beats = librosa.beat.beat_track(y=clicks, sr=sr)
f0, voiced, _ = librosa.pyin(a4[: sr], fmin=100, fmax=1000, sr=sr)
print(json.dumps({
    "tuning_a4": float(librosa.estimate_tuning(y=a4, sr=sr)),
    "tuning_sharp": float(librosa.estimate_tuning(y=sharp, sr=sr)),
    "tempo": float(np.atleast_1d(tempo)[0]), "beats": int(len(beats)),
    "pyin_median": float(np.nanmedian(f0[voiced])),
    "cache_dir": feature_extraction.numba_cache.cache_dir(),
}))
"""


def _python(code: str, env_extra: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _describe(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}; stderr: {proc.stderr[-1500:]}"
    return f"exit {proc.returncode}; stderr: {proc.stderr[-1500:]}"


def test_librosa_tuning_beat_and_pitch_kernels_run_here(settings):
    """estimate_tuning -> piptrack -> the guvectorize parabolic interpolation, beat_track, pyin: the
    calls that died of SIGSEGV in issue 13, with the project's cache folder, and their answers right."""
    proc = _python(KERNELS)
    assert proc.returncode == 0, _describe(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(out["tuning_a4"]) <= 0.05
    assert 0.2 <= out["tuning_sharp"] <= 0.4
    assert abs(out["tempo"] - 120) < 3 and out["beats"] >= 18
    assert abs(out["pyin_median"] - 440) < 5
    assert Path(out["cache_dir"]).parent == Path(settings.numba_cache_dir)  # a folder of its own per process


def test_concurrent_processes_never_share_a_cache_folder(tmp_path):
    """The race of numba issue #10128: a kernel and its loop written into one cache by different processes
    leave a pair whose names differ, and every later run dies of SIGSEGV (CI found the shared cache damaged
    so even with per-function numbering). Each process now compiles into a folder of its own, removed when
    it exits: two processes started together both run, answer the same, and leave nothing to mix."""
    cache = tmp_path / "numba"
    env = {"MUSICREC_NUMBA_CACHE_DIR": str(cache)}
    call = ("import feature_extraction, librosa, numpy as np\n"
            "y = np.random.default_rng(0).standard_normal(44100).astype(np.float32)\n"
            "print(librosa.estimate_tuning(y=y, sr=22050))\n"
            "print(feature_extraction.numba_cache.cache_dir())\n")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: _python(call, env), range(2))
    assert first.returncode == 0, _describe(first)
    assert second.returncode == 0, _describe(second)
    (tuning_1, folder_1), (tuning_2, folder_2) = first.stdout.split(), second.stdout.split()
    assert tuning_1 == tuning_2
    assert folder_1 != folder_2 and Path(folder_1).parent == Path(folder_2).parent == cache
    assert not any(cache.iterdir())
