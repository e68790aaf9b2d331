"""Feature extraction benchmark: per-clip cost against the decode floor, and Spark scaling.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_features.py [--clips 24] [--repeats 3] [--spark-files 96]
        [--boundary-files 60]

Part 1, one process, warm, one BLAS thread (as in a Spark worker), on real 30 s MP3 clips of the demo
corpus (settings.audio_dir; build it with `python -m feature_extraction.corpus`). For each clip, in
interleaved order so machine noise hits all of them alike, the best of `--repeats` runs of:
  - decode floor: read + mix to mono + resample to 22050 Hz (feature_extraction.audio.decode, the
    decoder the job uses; librosa.load is shown for reference),
  - full: the floor plus the whole feature vector (518 FMA values + tempo),
  - FMA's features.py with plain librosa calls (tuning estimated for chroma_stft, as FMA did), for scale,
  - the crash boundary: the job's per-file call (worker.extract_file: decode + features) made directly
    and through isolation.Isolated (a forked child, one pipe round trip per file), as the job does.
The table reports medians over clips, the ratio full / floor (target <= 2.5), the per-stage costs and
the crash boundary's overhead per file.

Part 2, the Spark job end to end (list, skip check, extract, join, upsert) on `--spark-files` clips into
a throwaway database, with local[1] then local[2]; each session first runs a small warm-up job so the
timed run measures warm Python workers. Target: 2 cores >= 1.8 x 1 core. With `--boundary-files`, the
same job on local[2] with the crash boundary off and on (settings.extract_isolation), interleaved. The machine has 2 cores
shared with other work, so figures move between runs; the table says what it measured.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from conf import get_settings  # noqa: E402
from feature_extraction import audio, features, layout  # noqa: E402


def fma_plain_librosa(y: np.ndarray, sr: int) -> np.ndarray:
    """FMA's features.py (mdeff/fma), librosa defaults: each feature computes what it needs itself."""
    import librosa
    import scipy.stats

    def stats(v):
        return np.concatenate([scipy.stats.kurtosis(v, axis=1), v.max(1), v.mean(1), np.median(v, 1), v.min(1),
                               scipy.stats.skew(v, axis=1), v.std(1)])

    parts = [stats(librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512))]
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=512, bins_per_octave=12, n_bins=84))
    parts.append(stats(librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)))
    cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    parts += [stats(cens), stats(librosa.feature.tonnetz(chroma=cens))]
    stft = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    parts.append(stats(librosa.feature.chroma_stft(S=stft**2, n_chroma=12)))
    parts.append(stats(librosa.feature.rms(S=stft)))
    parts.append(stats(librosa.feature.spectral_centroid(S=stft)))
    parts.append(stats(librosa.feature.spectral_bandwidth(S=stft)))
    parts.append(stats(librosa.feature.spectral_contrast(S=stft, n_bands=6)))
    parts.append(stats(librosa.feature.spectral_rolloff(S=stft)))
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    parts.append(stats(librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)))
    parts.append(librosa.feature.tempo(y=y, sr=sr))
    return np.concatenate(parts)


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_clip(paths: list[Path], repeats: int, cfg: features.ExtractorConfig, with_plain: bool) -> dict:
    import librosa
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    features.warm_up(cfg)
    fma_plain_librosa(audio.decode(paths[0], cfg.sample_rate, cfg.clip_seconds), cfg.sample_rate)  # warm
    threadpool_limits(1)  # again, now that every library with a thread pool is loaded (as worker.ensure_warm)
    from feature_extraction.isolation import Isolated
    from feature_extraction.worker import extract_file, one_thread

    isolated = Isolated(extract_file, timeout_s=600, initializer=one_thread)  # forked now, warm, as in a Spark task
    isolated.call(str(paths[0]), cfg, 0.0)
    rows = {"floor": [], "librosa_load": [], "full": [], "features": [], "plain": [], "direct": [],
            "isolated": []}
    stages: dict[str, list[float]] = {}
    for path in paths:
        sr, secs = cfg.sample_rate, cfg.clip_seconds
        rows["floor"].append(best_of(lambda: audio.decode(path, sr, secs), repeats))
        rows["librosa_load"].append(best_of(lambda: librosa.load(path, sr=sr, mono=True, duration=secs),
                                            repeats))
        rows["full"].append(best_of(lambda: features.extract(audio.decode(path, sr, secs), cfg), repeats))
        y = audio.decode(path, sr, secs)
        rows["features"].append(best_of(lambda: features.extract(y, cfg), repeats))
        best_stage: dict[str, float] = {}
        for _ in range(repeats):
            timings: dict[str, float] = {}
            features.extract(y, cfg, timings)
            for k, v in timings.items():
                best_stage[k] = min(best_stage.get(k, float("inf")), v)
        for k, v in best_stage.items():
            stages.setdefault(k, []).append(v)
        if with_plain:
            rows["plain"].append(best_of(lambda: fma_plain_librosa(y, sr), 1))
        rows["direct"].append(best_of(lambda: extract_file(str(path), cfg, 0.0), repeats))
        rows["isolated"].append(best_of(lambda: isolated.call(str(path), cfg, 0.0), repeats))
    isolated.close()
    return {"rows": rows, "stages": stages, "round_trip": boundary_round_trip(extract_file(str(paths[0]), cfg, 0.0))}


def _canned(result):
    return lambda path, cfg, min_seconds: result


def boundary_round_trip(result: dict, calls: int = 2000) -> float:
    """Seconds per call of the crash boundary alone: a child that returns a real per-file result (the
    519 features and timings) at once, so only the pipe round trip and the pickling are timed."""
    from feature_extraction.isolation import Isolated

    with Isolated(_canned(result), timeout_s=60) as iso:
        iso.call("x", None, 0.0)
        started = time.perf_counter()
        for _ in range(calls):
            iso.call("x", None, 0.0)
        return (time.perf_counter() - started) / calls


def spark_scaling(settings, files: int, cores: list[int], warm_files: int = 4) -> list[dict]:
    from pymongo import MongoClient

    from common.spark import build_session
    from feature_extraction import job

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    db = f"musicrec_bench_{uuid.uuid4().hex[:8]}"
    results = []
    try:
        for n in cores:
            s = settings.model_copy(update={"spark_master": f"local[{n}]", "mongo_db": db})
            spark = build_session(s, f"bench-features-{n}")
            try:
                job.run(spark, s, limit=warm_files, force=True, progress=False)  # warm the workers
                out = job.run(spark, s, limit=files, force=True, progress=False)
            finally:
                spark.stop()
            results.append({"cores": n, "files": out["extracted"], "seconds": out["seconds"],
                            "tracks_per_s": out["tracks_per_s"], "tasks": out["tasks"],
                            "spark_s": out["spark_s"], "warmups": out["warmups_this_run"],
                            "per_file_ms": 1000 * (out["decode_s_mean"] + out["extract_s_mean"])})
    finally:
        MongoClient(settings.mongo_uri_with_secret, serverSelectionTimeoutMS=3000).drop_database(db)
    return results


def boundary_in_spark(settings, files: int, rounds: int = 2, warm_files: int = 4) -> dict:
    """The Spark job on local[2] with the crash boundary off and on, interleaved (off, on, off, on...):
    the best Spark-stage seconds of each."""
    from pymongo import MongoClient

    from common.spark import build_session
    from feature_extraction import job

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    db = f"musicrec_bench_{uuid.uuid4().hex[:8]}"
    best = {False: float("inf"), True: float("inf")}
    per_file: list[float] = []
    s = settings.model_copy(update={"spark_master": "local[2]", "mongo_db": db})
    spark = build_session(s, "bench-features-boundary")
    try:
        job.run(spark, s, limit=warm_files, force=True, progress=False)
        for _ in range(rounds):
            for isolation in (False, True):
                out = job.run(spark, s.model_copy(update={"extract_isolation": isolation}), limit=files,
                              force=True, progress=False)
                best[isolation] = min(best[isolation], out["spark_s"])
                if isolation:
                    per_file.append(out["boundary_ms_median"])
    finally:
        spark.stop()
        MongoClient(settings.mongo_uri_with_secret, serverSelectionTimeoutMS=3000).drop_database(db)
    return {"files": files, "off_s": best[False], "on_s": best[True], "per_file_ms": per_file}


def _pool_work(args):
    paths, sr, secs = args
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    features.warm_up()
    started = time.perf_counter()
    for path in paths:
        features.extract(audio.decode(path, sr, secs))
    return time.perf_counter() - started


def raw_parallel_capacity(paths: list[Path], cfg) -> float:
    """Speed-up of 2 plain processes over 1 on the same per-clip work, no Spark: what the machine
    gives right now (other work on the shared cores lowers it)."""
    import multiprocessing as mp

    job = (paths, cfg.sample_rate, cfg.clip_seconds)
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_pool_work, [(paths[:1], cfg.sample_rate, cfg.clip_seconds)] * 2)  # warm both
        one = pool.map(_pool_work, [job])[0]
        started = time.perf_counter()
        pool.map(_pool_work, [job, job])
        two = time.perf_counter() - started
    return 2 * one / two


def ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-dir", help="FMA-style folder of 30 s clips (default: settings audio_dir)")
    parser.add_argument("--clips", type=int, default=24, help="clips for the per-clip table")
    parser.add_argument("--repeats", type=int, default=3, help="best of N per clip and measurement")
    parser.add_argument("--spark-files", type=int, default=160, help="files for the Spark scaling (0: skip)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-librosa FMA reference")
    parser.add_argument("--boundary-files", type=int, default=0,
                        help="files for the Spark job with the crash boundary off and on (0: skip)")
    args = parser.parse_args(argv)

    settings = get_settings()
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    audio_dir = Path(args.audio_dir or settings.audio_dir)
    if not audio_dir.is_dir() or not layout.list_audio_files(audio_dir):
        print(f"bench_features: no clips in {audio_dir}; build them with "
              f"`python -m feature_extraction.corpus` (or --small)", file=sys.stderr)
        return 2
    files = [f for f in layout.list_audio_files(audio_dir) if f.track_id is not None]
    picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(args.clips, len(files)))]
    cfg = features.ExtractorConfig.from_settings(settings)

    res = per_clip([audio_dir / f.path for f in picks], args.repeats, cfg, not args.no_plain)
    r = res["rows"]
    floor, full = ms(r["floor"]), ms(r["full"])
    ratios = [b / a for a, b in zip(r["floor"], r["full"])]
    print(f"\nPer 30 s clip: {len(picks)} clips of {audio_dir}, best of {args.repeats}, median over clips, "
          f"1 thread, warm")
    print(f"{'measurement':<48}{'ms/clip':>10}{'x floor':>10}")
    print(f"{'decode floor (read, mono, resample to 22050 Hz)':<48}{floor:>10.1f}{1.0:>10.2f}")
    print(f"{'  librosa.load, same samples (reference)':<48}{ms(r['librosa_load']):>10.1f}"
          f"{ms(r['librosa_load']) / floor:>10.2f}")
    print(f"{'full feature set (decode + 518 FMA + tempo)':<48}{full:>10.1f}{full / floor:>10.2f}")
    print(f"{'  features only':<48}{ms(r['features']):>10.1f}{ms(r['features']) / floor:>10.2f}")
    if r["plain"]:
        plain = ms(r["plain"]) + floor
        print(f"{'FMA features.py, plain librosa (+ decode)':<48}{plain:>10.1f}{plain / floor:>10.2f}")
    print(f"ratio full / floor per clip: median {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
          f"(target <= 2.5)")
    overhead = [b - a for a, b in zip(r["direct"], r["isolated"])]
    print(f"crash boundary (worker.extract_file per file): direct {ms(r['direct']):.1f} ms, through a forked "
          f"child {ms(r['isolated']):.1f} ms: +{ms(overhead):.2f} ms per file (median over clips), "
          f"{statistics.median(b / a for a, b in zip(r['direct'], r['isolated'])):.3f} x")
    print(f"crash boundary alone (pipe round trip of a real result, 2,000 calls): "
          f"{res['round_trip'] * 1000:.3f} ms per file")
    print(f"\n{'stage of the feature set':<36}{'ms/clip':>10}{'share':>8}")
    total = sum(ms(v) for v in res["stages"].values())
    for name, values in sorted(res["stages"].items(), key=lambda kv: -ms(kv[1])):
        print(f"{name:<36}{ms(values):>10.2f}{ms(values) / total:>8.0%}")

    if args.spark_files:
        n = min(args.spark_files, len(files))
        capacity = raw_parallel_capacity([audio_dir / f.path for f in picks[:12]], cfg)
        out = spark_scaling(settings, n, [1, 2])
        print(f"\nSpark job end to end ({n} clips, warm workers, writes into a throwaway database)")
        print(f"{'master':<10}{'tracks':>7}{'total s':>9}{'tracks/s':>10}{'Spark s':>9}{'tracks/s':>10}"
              f"{'ms/file':>9}{'tasks':>7}{'warm-ups':>10}")
        for row in out:
            print(f"{'local[' + str(row['cores']) + ']':<10}{row['files']:>7}{row['seconds']:>9.1f}"
                  f"{row['tracks_per_s']:>10.2f}{row['spark_s']:>9.1f}{row['files'] / row['spark_s']:>10.2f}"
                  f"{row['per_file_ms']:>9.0f}{row['tasks']:>7}{row['warmups']:>10}")
        end_to_end = out[1]["tracks_per_s"] / out[0]["tracks_per_s"]
        stage = out[0]["spark_s"] / out[1]["spark_s"]
        print(f"speed-up local[2] / local[1]: end to end {end_to_end:.2f}, Spark stage {stage:.2f} "
              f"(target >= 1.8)")
        print(f"same work in 2 plain processes vs 1, no Spark, measured now: {capacity:.2f} "
              f"(the ceiling this shared {os.cpu_count()}-core machine allows at the moment)")
    if args.boundary_files:
        b = boundary_in_spark(settings, min(args.boundary_files, len(files)))
        print(f"\nSpark job on local[2], {b['files']} clips, best of 2 interleaved runs: crash boundary off "
              f"{b['off_s']:.1f} s, on {b['on_s']:.1f} s ({b['on_s'] / b['off_s']:.3f} x; "
              f"{1000 * (b['on_s'] - b['off_s']) / b['files']:+.1f} ms per file of Spark stage)")
        print(f"  measured inside the job, per file (call's wall time minus the child's own decode + features "
              f"time), median per run: {', '.join(f'{v:.2f}' for v in b['per_file_ms'])} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
