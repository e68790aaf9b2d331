#!/usr/bin/env bash
# Serve the live dashboard on http://127.0.0.1:<dashboard_port>/ (conf: MUSICREC_DASHBOARD_PORT).
# Creates the indexes its queries use first (idempotent; collections that do not exist yet are skipped:
# run it again, or `python -m dashboard.indexes`, once the streaming job has created them).
# Extra arguments go to `streamlit run`, e.g. --server.address 0.0.0.0 to serve beyond this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "dashboard: no .venv here: run \`make setup\` first" >&2; exit 1; }
PORT=$($PY -c 'from conf import get_settings; print(get_settings().dashboard_port)')
$PY -m dashboard.indexes || echo "dashboard: indexes not checked (store down?); the dashboard starts anyway" >&2
exec $PY -m streamlit run dashboard/app.py --server.port "$PORT" --server.address 127.0.0.1 \
  --server.headless true --browser.gatherUsageStats false --client.toolbarMode viewer "$@"
