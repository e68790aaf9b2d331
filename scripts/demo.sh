#!/usr/bin/env bash
# The demo: build the corpus, extract features, fit the model, then run the streaming recommender with
# the activity simulator and serve the dashboard. Called by `make demo` after `make up`; every stage is
# idempotent (a second run reuses the corpus, skips current features, and fits a new model version).
#   MUSICREC_DEMO_CORPUS="--small"   corpus options (default: the whole corpus, ~600 clips)
#   MUSICREC_DEMO_SECONDS=N          stop after N seconds instead of running until Ctrl-C
#   MUSICREC_DEMO_RATE=N             simulated events per second (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
step() { printf '\n\033[1m[demo] %s\033[0m\n' "$*"; }
LOGS=$($PY -c 'from conf import get_settings; print(get_settings().data_dir / "logs")'); mkdir -p "$LOGS"

step "1/5 demo corpus (Debian game soundtracks cut into 30 s clips, laid out like FMA)"
$PY -m feature_extraction.corpus ${MUSICREC_DEMO_CORPUS:-}

step "2/5 feature extraction (Spark batch job -> MongoDB tracks)"
./spark-submit.sh feature_extraction/job.py

step "3/5 model (scaling + PCA + banded BucketedRandomProjectionLSH, tuned, evaluated, neighbours)"
./spark-submit.sh jobs/fit_model.py

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

step "4/5 streaming recommender and activity simulator (logs in $LOGS)"
./spark-submit.sh jobs/recommend_stream.py > "$LOGS/stream.log" 2>&1 & pids+=($!)
$PY -m simulator --rate "${MUSICREC_DEMO_RATE:-20}" --duration "${MUSICREC_DEMO_SECONDS:-0}" \
  > "$LOGS/simulator.log" 2>&1 & pids+=($!)

step "5/5 dashboard: http://127.0.0.1:$($PY -c 'from conf import get_settings; print(get_settings().dashboard_port)')/"
bash scripts/dashboard.sh > "$LOGS/dashboard.log" 2>&1 & pids+=($!)
if [ -n "${MUSICREC_DEMO_SECONDS:-}" ]; then sleep "$MUSICREC_DEMO_SECONDS"; else wait; fi
