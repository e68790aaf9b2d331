#!/usr/bin/env bash
# Serve the live dashboard on http://127.0.0.1:<dashboard_port>/ (conf: MUSICREC_DASHBOARD_PORT).
# Creates the indexes its queries use first (idempotent; collections that do not exist yet are skipped:
# run it again, or `python -m dashboard.indexes`, once the streaming job has created them).
# It listens on MUSICREC_DASHBOARD_ADDRESS (default 127.0.0.1: this machine only; 0.0.0.0 serves every
# interface). Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "dashboard: no .venv here: run \`make setup\` first" >&2; exit 1; }
read -r PORT ADDRESS < <($PY -c 'from conf import get_settings as g; s = g(); print(s.dashboard_port, s.dashboard_address)')
$PY -m dashboard.indexes || echo "dashboard: indexes not checked (store down?); the dashboard starts anyway" >&2
exec $PY -m streamlit run dashboard/app.py --server.port "$PORT" --server.address "$ADDRESS" \
  --server.headless true --browser.gatherUsageStats false --client.toolbarMode viewer "$@"
