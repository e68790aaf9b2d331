#!/usr/bin/env bash
# Runs a musicrec job with spark-submit, locally or on a cluster.
#
#   ./spark-submit.sh [--master URL] [--dry-run] [other spark-submit options] JOB.py [job arguments]
#
#   ./spark-submit.sh jobs/fit_model.py                          # local[*] (MUSICREC_SPARK_MASTER)
#   ./spark-submit.sh --master spark://host:7077 jobs/fit_model.py
#   ./spark-submit.sh --master yarn --deploy-mode cluster jobs/recommend_stream.py
#   ./spark-submit.sh --master k8s://https://api:6443 --conf spark.kubernetes.container.image=IMG ...
#
# It adds the connector jars (.cache/jars/spark, from jvm/pom.xml; or --packages with
# MUSICREC_USE_PACKAGES=1 on a cluster with internet), the project's Python packages as --py-files
# (.cache/musicrec.zip, rebuilt on each call), and forwards every MUSICREC_* setting to the driver
# and executors. --dry-run prints the resolved command and exits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "spark-submit.sh: error: no .venv; run \`make setup\` first" >&2; exit 1; }
SPARK_SUBMIT="$ROOT/.venv/bin/spark-submit"

dry_run=0; master=""; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --master) master="$2"; shift 2 ;;
    --master=*) master="${1#--master=}"; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -gt 0 ] || { echo "usage: ./spark-submit.sh [--master URL] [--dry-run] [spark options] JOB.py [args]" >&2; exit 2; }

# settings come from conf/ (environment MUSICREC_*, .env): ask it rather than parse anything here
eval "$(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" - <<'PYEOF'
import shlex
from conf import get_settings
s = get_settings()
print(f"cfg_master={shlex.quote(s.spark_master)}")
print(f"cfg_jars_dir={shlex.quote(str(s.jars_dir))}")
print(f"cfg_cache={shlex.quote(str(s.cache_dir))}")
PYEOF
)"
master="${master:-$cfg_master}"

# the project's packages, zipped for the executors (and the driver in cluster mode)
zip_path="$cfg_cache/musicrec.zip"
mkdir -p "$cfg_cache"
(cd "$ROOT" && "$PY" - "$zip_path" <<'PYEOF'
import sys, zipfile, pathlib
out = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for pkg in ("conf", "common", "jobs", "feature_extraction", "simulator"):
        for f in sorted(pathlib.Path(pkg).rglob("*.py")):
            z.write(f)
PYEOF
)

cmd=("$SPARK_SUBMIT" --master "$master" --py-files "$zip_path"
     --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/stack/spark/log4j2.properties")
if [ "${MUSICREC_USE_PACKAGES:-0}" = 1 ]; then
  pkgs=$(sed -n 's:.*<spark.version>\(.*\)</spark.version>.*:org.apache.spark\:spark-sql-kafka-0-10_2.13\:\1:p;
                s:.*<mongo.connector.version>\(.*\)</mongo.connector.version>.*:org.mongodb.spark\:mongo-spark-connector_2.13\:\1:p' \
           "$ROOT/jvm/pom.xml" | paste -sd, -)
  cmd+=(--packages "$pkgs")
else
  jars=$(ls "$cfg_jars_dir"/*.jar 2>/dev/null | paste -sd, -)
  [ -n "$jars" ] || { echo "spark-submit.sh: error: no connector jars in $cfg_jars_dir; run \`make setup\`" >&2; exit 1; }
  cmd+=(--jars "$jars")
fi
# forward MUSICREC_* settings to the driver (cluster mode) and the executors
while IFS='=' read -r name value; do
  cmd+=(--conf "spark.executorEnv.$name=$value" --conf "spark.yarn.appMasterEnv.$name=$value"
        --conf "spark.kubernetes.driverEnv.$name=$value")
done < <(env | grep '^MUSICREC_' | grep -v '^MUSICREC_MONGO_PASSWORD=' || true)
case "$master" in local*) export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY" ;; esac
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MUSICREC_ROOT="${MUSICREC_ROOT:-$ROOT}"
cmd+=("${args[@]}")

if [ "$dry_run" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
# Ctrl-C and SIGTERM are for the Python driver. The JVM starts with both ignored (otherwise its shutdown
# hooks stop the SparkContext under a running job); this script forwards them to the driver as SIGTERM
# (the streaming job then stops between micro-batches and exits 0; common/spark.py gives other drivers
# the default handling back). Without a local Python driver (cluster deploy mode) the JVM is stopped.
trap '' INT TERM
"${cmd[@]}" &
jvm=$!
forward() {
  local sent=0 p
  for p in $(ps -o pid= --ppid "$jvm" 2>/dev/null); do
    case "$(ps -o args= -p "$p" 2>/dev/null)" in
      *pyspark.daemon*|*pyspark.worker*|"") ;;
      *) kill -TERM "$p" 2>/dev/null && sent=1 ;;
    esac
  done
  [ "$sent" = 1 ] || kill -KILL "$jvm" 2>/dev/null || true
}
trap forward INT TERM
set +e
while :; do wait "$jvm"; rc=$?; kill -0 "$jvm" 2>/dev/null || break; done   # a trapped signal ends a wait early
wait "$jvm" 2>/dev/null; last=$?; [ "$last" = 127 ] || rc=$last
exit "$rc"
