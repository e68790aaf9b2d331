#!/usr/bin/env bash
# Runs a musicrec job with spark-submit, locally or on a cluster.
#
#   ./spark-submit.sh [--master URL] [--deploy-mode client|cluster] [--dry-run] [spark options] JOB.py [args]
#
#   ./spark-submit.sh jobs/fit_model.py                          # local[*] (MUSICREC_SPARK_MASTER)
#   ./spark-submit.sh --master spark://host:7077 jobs/fit_model.py
#   ./spark-submit.sh --master yarn --deploy-mode cluster jobs/fit_model.py
#   ./spark-submit.sh --master k8s://https://api:6443 --deploy-mode cluster --conf spark.kubernetes.container.image=IMG ...
#
# Always: SPARK_HOME is the venv's pyspark, the connector jars (.cache/jars/spark, from jvm/pom.xml; or
# --packages with MUSICREC_USE_PACKAGES=1 where the cluster reaches Maven Central), the project's code zip as
# --py-files, and every MUSICREC_* setting (environment and .env, never the password) for the driver and
# executors. On a master that is not local[...], also the packed environment (`python -m deploy` builds it
# once, then reuses it) as --archives ...#env, whose ./env/bin/python the executors run (and the driver, in
# cluster mode). --dry-run prints the resolved command and exits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
PY="$ROOT/.venv/bin/python"
die() { echo "spark-submit.sh: error: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no .venv; run \`make setup\` first"

dry_run=0; master=""; deploy_mode=client; spark_opts=(); job=""; job_args=()
while [ $# -gt 0 ]; do
  if [ -n "$job" ]; then job_args+=("$1"); shift; continue; fi
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --master) master="$2"; shift 2 ;;
    --master=*) master="${1#--master=}"; shift ;;
    --deploy-mode) deploy_mode="$2"; shift 2 ;;
    --deploy-mode=*) deploy_mode="${1#--deploy-mode=}"; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --verbose|-v|--supervise|--*=*) spark_opts+=("$1"); shift ;;
    -*) [ $# -ge 2 ] || die "$1 needs a value"; spark_opts+=("$1" "$2"); shift 2 ;;
    *) job="$1"; shift ;;
  esac
done
[ -n "$job" ] || { echo "usage: ./spark-submit.sh [--master URL] [--deploy-mode M] [--dry-run] [spark options] JOB.py [args]" >&2; exit 2; }

# settings come from conf/ (environment MUSICREC_*, .env): ask it rather than parse anything here; the .env
# file's MUSICREC_* values that the environment does not override are exported, so that they are forwarded
eval "$(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" - <<'PYEOF'
import os, shlex
from dotenv import dotenv_values
from conf import get_settings
from conf.settings import ROOT, SECRETS
s = get_settings()
print(f"cfg_secrets={shlex.quote('|'.join('MUSICREC_' + n.upper() for n in SECRETS))}")
print(f"cfg_bind={shlex.quote(s.spark_bind_address)}")
print(f"cfg_master={shlex.quote(s.spark_master)}")
print(f"cfg_jars_dir={shlex.quote(str(s.jars_dir))}")
for name, value in dotenv_values(ROOT / ".env").items():
    if name.startswith("MUSICREC_") and name not in os.environ and value is not None and \
            name[len("MUSICREC_"):].lower() not in SECRETS:   # secrets come from the environment only
        print(f"export {name}={shlex.quote(value)}")
PYEOF
)"
master="${master:-$cfg_master}"
case "$master" in local*) local_master=1 ;; *) local_master=0 ;; esac
if [ "$deploy_mode" = cluster ]; then
  case "$master" in
    local*) die "--deploy-mode cluster needs a cluster master, not $master" ;;
    spark://*) die "Spark's standalone master runs no Python application in cluster deploy mode (spark-submit \
rejects it: 'Cluster deploy mode is currently not supported for python applications on standalone clusters'); \
use --deploy-mode client there, or YARN / Kubernetes for cluster mode" ;;
  esac
fi

# the artefacts: built by `python -m deploy` when their sources changed, else reused
export SPARK_HOME="${SPARK_HOME:-$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
deploy_args=(); [ "$local_master" = 1 ] && deploy_args=(--code-only)
eval "$(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" -m deploy --shell "${deploy_args[@]}")"

cmd=("$SPARK_HOME/bin/spark-submit" --master "$master" --deploy-mode "$deploy_mode" --py-files "$artefact_code"
     --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/stack/spark/log4j2.properties")
if [ "${MUSICREC_USE_PACKAGES:-0}" = 1 ]; then
  pkgs=$(sed -n 's:.*<spark.version>\(.*\)</spark.version>.*:org.apache.spark\:spark-sql-kafka-0-10_2.13\:\1:p;
                s:.*<mongo.connector.version>\(.*\)</mongo.connector.version>.*:org.mongodb.spark\:mongo-spark-connector_2.13\:\1:p' \
           "$ROOT/jvm/pom.xml" | paste -sd, -)
  cmd+=(--packages "$pkgs")
else
  [ -n "$artefact_jars" ] || die "no connector jars in $cfg_jars_dir; run \`make setup\`"
  cmd+=(--jars "$artefact_jars")
fi

# which Python runs where
if [ "$local_master" = 1 ]; then
  export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
else
  # executors: the packed environment, unpacked as ./env in each executor's folder
  cmd+=(--archives "$artefact_env#env" --conf "spark.pyspark.python=$artefact_python")
  if [ "$deploy_mode" = cluster ]; then
    cmd+=(--conf "spark.pyspark.driver.python=$artefact_python")
  else
    # the driver is this machine: the project's venv. Spark also runs a few Python helpers inside the
    # driver with the executors' interpreter path (the transformWithState set-up), so ./env/bin/python must
    # resolve in the driver's working folder too: it runs in .cache/driver, where env links to the venv
    driver_dir="$ROOT/.cache/driver"
    mkdir -p "$driver_dir" && ln -sfn "$ROOT/.venv" "$driver_dir/env"
    export PYSPARK_DRIVER_PYTHON="$PY"
  fi
fi

# a master on loopback (the local cluster of stack/cluster.py): the driver binds loopback too
case "$master" in spark://127.0.0.1:*|spark://localhost:*) export SPARK_LOCAL_IP=127.0.0.1 ;; esac

# forward MUSICREC_* settings to the driver (cluster mode) and the executors
while IFS='=' read -r name value; do
  cmd+=(--conf "spark.executorEnv.$name=$value" --conf "spark.yarn.appMasterEnv.$name=$value"
        --conf "spark.kubernetes.driverEnv.$name=$value")
done < <(env | grep '^MUSICREC_' | grep -v -E "^($cfg_secrets)=" || true)   # secrets: never on a command line
case "$master" in local*)
  if [ -n "$cfg_bind" ]; then   # driver, block manager and UI on loopback (MUSICREC_SPARK_BIND_ADDRESS)
    export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-$cfg_bind}"
    cmd+=(--conf "spark.driver.bindAddress=$cfg_bind" --conf "spark.driver.host=$cfg_bind")
  fi ;;
esac
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MUSICREC_ROOT="${MUSICREC_ROOT:-$ROOT}"

# the job script and the job's arguments that name existing files, as absolute paths (the driver may run
# in another folder)
abs() { if [ -e "$1" ] && [[ "$1" != /* ]]; then echo "$PWD/$1"; else echo "$1"; fi; }
cmd+=(${spark_opts[@]+"${spark_opts[@]}"} "$(abs "$job")")
for a in ${job_args[@]+"${job_args[@]}"}; do cmd+=("$(abs "$a")"); done

if [ "$dry_run" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
# Ctrl-C and SIGTERM are for the Python driver. The JVM starts with both ignored (otherwise its shutdown
# hooks stop the SparkContext under a running job); this script forwards them to the driver as SIGTERM
# (the streaming job then stops between micro-batches and exits 0; common/spark.py gives other drivers
# the default handling back). Without a local Python driver (cluster deploy mode) the JVM is stopped.
[ -n "${driver_dir:-}" ] && cd "$driver_dir"   # see "which Python runs where"
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
