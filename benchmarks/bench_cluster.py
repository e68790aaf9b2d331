"""Extraction throughput on the local 2-worker standalone cluster against local[2], same files, one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cluster.py [--audio-dir DIR] [--limit N] [--repeats 1]

Both through `./spark-submit.sh feature_extraction/job.py --force` into throwaway databases, in alternating
order (local[2], cluster, local[2], cluster, ...): the baseline is measured in the same run, so machine noise
hits both alike. The cluster is `python -m stack.cluster` (started here if it is not running, then stopped
again): two workers of one core, executors in separate JVMs running the packed environment, which each
application ships and unpacks again (that cost is in "wall s", not in "job s"). Figures per run:
  wall s     the spark-submit process, start to exit (JVM, executors, env unpack, warm-up, extraction)
  job s      what the job reports: listing, skip check, extraction and writes (its summary line)
  tracks/s   tracks / job s
The table's last line is the ratio cluster / local[2] of the medians. `uptime` is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conf import get_settings  # noqa: E402
from stack import cluster as cl  # noqa: E402

SUMMARY = re.compile(r"extracted (\d+), .*?; ([\d.]+) s, ([\d.]+) tracks/s")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one_run(master: str, db: str, audio_dir: str, metadata_dir: str, limit: int | None) -> dict:
    env = {k: v for k, v in os.environ.items()} | {"MUSICREC_MONGO_DB": db}
    cmd = [str(ROOT / "spark-submit.sh"), "--master", master, "feature_extraction/job.py", "--force",
           "--no-progress", "--audio-dir", audio_dir, "--metadata-dir", metadata_dir]
    if limit:
        cmd += ["--limit", str(limit)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or not m:
        raise SystemExit(f"bench_cluster: {master} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"tracks": int(m.group(1)), "job_s": float(m.group(2)), "tracks_per_s": float(m.group(3)), "wall_s": wall}


def main() -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio-dir", default=str(settings.audio_dir))
    parser.add_argument("--metadata-dir", default=str(settings.metadata_dir))
    parser.add_argument("--limit", type=int, help="only the first N files")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (local[2], cluster)")
    args = parser.parse_args()
    if not Path(args.audio_dir).is_dir():
        print(f"bench_cluster: no audio folder {args.audio_dir}; build it with `python -m feature_extraction.corpus`",
              file=sys.stderr)
        return 2

    was_up = all(p.pid() is not None and p.healthy() for p in cl.processes(settings))
    for line in cl.up(settings):
        print(line)
    subprocess.run([sys.executable, "-m", "deploy"], cwd=ROOT, check=True)   # built before any timing
    master = cl.master_url(settings)
    run_id = uuid.uuid4().hex[:6]
    results: dict[str, list[dict]] = {"local[2]": [], master: []}
    from common.store import client

    print(f"before: {uptime()}", flush=True)
    try:
        for i in range(args.repeats):
            for m in results:
                db = f"bench_cluster_{run_id}_{'local' if m.startswith('local') else 'cluster'}"
                results[m].append(one_run(m, db, args.audio_dir, args.metadata_dir, args.limit))
                r = results[m][-1]
                print(f"  run {i + 1} {m}: {r['tracks']} tracks, wall {r['wall_s']:.1f} s, job {r['job_s']:.1f} s, "
                      f"{r['tracks_per_s']:.2f} tracks/s", flush=True)
    finally:
        c = client(settings, 5000)
        for name in c.list_database_names():
            if name.startswith(f"bench_cluster_{run_id}_"):
                c.drop_database(name)
        if not was_up:
            cl.down(settings)
    print(f"after:  {uptime()}")

    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "job_s", "tracks_per_s")}
           for m, rs in results.items()}
    tracks = results["local[2]"][0]["tracks"]
    print(f"\nExtraction of {tracks} files of {args.audio_dir}, medians of {args.repeats} run(s) each")
    print(f"{'master':28s} {'wall s':>8s} {'job s':>8s} {'tracks/s':>9s}")
    for m, v in med.items():
        label = m if m.startswith("local") else f"{m} (2 x 1 core)"
        print(f"{label:28s} {v['wall_s']:8.1f} {v['job_s']:8.1f} {v['tracks_per_s']:9.2f}")
    local, remote = med["local[2]"], med[master]
    print(f"cluster / local[2]: throughput {remote['tracks_per_s'] / local['tracks_per_s']:.2f}x, "
          f"wall time {remote['wall_s'] / local['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
