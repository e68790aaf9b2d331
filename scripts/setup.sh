#!/usr/bin/env bash
# Installs everything musicrec needs into the project's ignored folders; safe to run again (each step
# is skipped when its output is current). Debian/Ubuntu: apt packages need root (or sudo).
#   .venv/               Python virtual environment from requirements.txt
#   .cache/jars/spark    Spark connectors (Kafka source, MongoDB) for spark-submit --jars
#   .cache/jars/kafka    Apache Kafka 4.x broker (KRaft) and its log4j2 backend
#   .cache/bin/          musicrec-ferretdb (FerretDB v1.24 embedded, SQLite backend)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }
mkdir -p .cache/bin .cache/jars

# 1. system packages: Java 17+ (Spark 4, Kafka 4), Maven, Go 1.24+ (FerretDB), ffmpeg (demo corpus)
need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v go >/dev/null || need_apt+=(golang-go)
if [ "${MUSICREC_BROWSER_TESTS:-1}" = 1 ] && ! command -v chromium >/dev/null; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')
[ "${java_major%%.*}" -ge 17 ] || die "Java 17+ is needed, found $java_major"

# 2. Python virtual environment
if [ ! -x .venv/bin/python ]; then say "creating .venv"; python3 -m venv .venv; fi
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$(stamp requirements.txt)" ]; then
  say "pip install -r requirements.txt"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  stamp requirements.txt > .venv/.stamp
fi

# 3. JVM jars from Maven Central (cached in ~/.m2 and .cache/jars)
if [ "$(cat .cache/jars/.stamp 2>/dev/null)" != "$(stamp jvm/pom.xml)" ]; then
  say "resolving Spark connectors and the Kafka broker with mvn"
  rm -rf .cache/jars/spark .cache/jars/kafka
  mvn -B -q -f jvm/pom.xml -Pspark dependency:copy-dependencies -DoutputDirectory="$ROOT/.cache/jars/spark"
  mvn -B -q -f jvm/pom.xml -P'!spark,kafka' dependency:copy-dependencies -DoutputDirectory="$ROOT/.cache/jars/kafka"
  stamp jvm/pom.xml > .cache/jars/.stamp
fi

# 4. FerretDB, embedded in our own tiny Go module (see stack/ferretdb/main.go)
if [ "$(cat .cache/bin/.stamp 2>/dev/null)" != "$(stamp stack/ferretdb/*.go stack/ferretdb/go.*)" ]; then
  go_minor=$(go env GOVERSION | sed -E 's/go1\.([0-9]+).*/\1/')
  [ "$go_minor" -ge 24 ] || die "Go 1.24+ is needed for FerretDB v1.24, found $(go env GOVERSION)"
  say "building FerretDB v1.24 (first time: a few minutes)"
  (cd stack/ferretdb && GOPATH="$ROOT/.cache/go" GOMODCACHE="$ROOT/.cache/go/mod" GOFLAGS=-modcacherw \
     go build -o "$ROOT/.cache/bin/musicrec-ferretdb" .)
  stamp stack/ferretdb/*.go stack/ferretdb/go.* > .cache/bin/.stamp
fi
say "done: $(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'), $(ls .cache/jars/spark | wc -l) connector jars, $(ls .cache/jars/kafka | wc -l) Kafka jars, FerretDB built"
