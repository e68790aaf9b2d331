#!/usr/bin/env bash
# Prints every benchmark table of the README, one after another (about 45 min on 2 cores; the
# services must be up: `make bench` starts them). Each script also takes --help for smaller runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
run() { printf '\n\033[1m== %s\033[0m\n' "$*"; "$PY" "$@"; }
run benchmarks/bench_features.py
run benchmarks/bench_lsh.py
[ -f benchmarks/bench_stream.py ] && run benchmarks/bench_stream.py
run benchmarks/bench_dashboard.py --skip-cold
