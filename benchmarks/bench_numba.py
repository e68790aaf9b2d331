"""What the numba JIT target costs: the host CPU (the project's choice) against `NUMBA_CPU_NAME=generic`
(the work-around named in issue 13), on the project's own numba code and on the extraction.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_numba.py [--rounds 2] [--n 20000]

Each measurement runs in a fresh child Python per target, in interleaved rounds (host, generic, host,
generic...) so machine noise hits both alike; each target has its own empty numba cache folder, so the
first round also measures the compile time, later rounds load from the cache. Per round and target:
- `jobs/lsh.py`: item-to-item top-10 of `--n` clustered 32-d vectors (BandedIndex.neighbours, the
  parallel numba re-rank kernel) and 1,000 queries (BandedIndex.query), best of 3;
- extraction: features.extract of the real FMA clip (30 s), best of 3, one thread;
- librosa's own kernels: estimate_tuning (piptrack's guvectorize interpolation) and beat_track on it.
The table gives the best over rounds and generic / host.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FMA_CLIP = ROOT.parent / "shared" / "data" / "fma" / "000002.mp3"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import feature_extraction                                   # the project's numba set-up
import numpy as np, librosa
from threadpoolctl import threadpool_limits
from feature_extraction import audio, features
from jobs import lsh
from benchmarks.synthetic import clustered
n, clip = int(sys.argv[1]), sys.argv[2]

def best(fn, k=3):
    out = float("inf")
    for _ in range(k):
        s = time.perf_counter(); fn(); out = min(out, time.perf_counter() - s)
    return out

res = {}
x = clustered(n, dim=32, seed=1).features.astype(np.float32)
x = (x - x.mean(0)) / x.std(0)
proj = np.random.default_rng(2).standard_normal((8 * 24, 32))
proj /= np.linalg.norm(proj, axis=1, keepdims=True)
index = lsh.BandedIndex.build(x, np.arange(n), proj, 4.0, 8)
s = time.perf_counter(); index.neighbours(10); res["lsh_first_s"] = time.perf_counter() - s
res["lsh_neighbours_s"] = best(lambda: index.neighbours(10))
q = x[:1000] + 0.05
res["lsh_query_s"] = best(lambda: index.query(q, 10))
threadpool_limits(1)
y = audio.decode(clip, 22050, 30.0)
s = time.perf_counter(); features.warm_up(); res["extract_first_s"] = time.perf_counter() - s
res["extract_s"] = best(lambda: features.extract(y))
s = time.perf_counter(); librosa.estimate_tuning(y=y, sr=22050); librosa.beat.beat_track(y=y, sr=22050)
res["librosa_first_s"] = time.perf_counter() - s
res["tuning_s"] = best(lambda: librosa.estimate_tuning(y=y, sr=22050))
res["beat_s"] = best(lambda: librosa.beat.beat_track(y=y, sr=22050))
res["process_s"] = time.perf_counter() - t0
print(json.dumps(res))
"""

ROWS = [("lsh_neighbours_s", "lsh: item-to-item top-10 (numba, parallel)", 1000),
        ("lsh_query_s", "lsh: 1,000 queries", 1000),
        ("extract_s", "extraction: features of one 30 s clip", 1000),
        ("tuning_s", "librosa.estimate_tuning (guvectorize)", 1000),
        ("beat_s", "librosa.beat.beat_track", 1000)]
FIRST = [("lsh_first_s", "lsh: first call (compile or cache load)"),
         ("extract_first_s", "extraction: warm-up (compile or cache load)"),
         ("librosa_first_s", "tuning + beat: first call (compile or cache load)"),
         ("process_s", "whole child process")]


def run_child(target: str, cache: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUSICREC_NUMBA_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CPU_NAME", None)
    if target == "generic":
        env["NUMBA_CPU_NAME"] = "generic"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(FMA_CLIP)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"bench_numba: the {target} child failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n", type=int, default=20000, help="catalogue size for the LSH kernels")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results: dict[str, list[dict]] = {"host": [], "generic": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for target in ("host", "generic"):
                results[target].append(run_child(target, Path(tmp) / target, args.n))
                print(f"round {r + 1} {target}: done", file=sys.stderr)
    print(f"\nnumba JIT target, {args.rounds} rounds, best over rounds (load average at start "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(f"{'measurement':<52}{'host ms':>10}{'generic ms':>12}{'generic/host':>14}")
    for key, name, scale in ROWS:
        h = min(r[key] for r in results["host"]) * scale
        g = min(r[key] for r in results["generic"]) * scale
        print(f"{name:<52}{h:>10.1f}{g:>12.1f}{g / h:>14.2f}")
    print(f"\n{'first round (empty cache: compile) / later (cache)':<52}{'host s':>10}{'generic s':>12}")
    for key, name in FIRST:
        h = [r[key] for r in results["host"]]
        g = [r[key] for r in results["generic"]]
        later = lambda v: f"{min(v[1:]):.1f}" if len(v) > 1 else "-"
        print(f"{name:<52}{h[0]:>6.1f}/{later(h):<4}{g[0]:>8.1f}/{later(g):<4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
