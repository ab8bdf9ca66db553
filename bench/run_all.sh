#!/usr/bin/env bash
# Runs every benchmark in bench/ one after the other, with bounded defaults, and keeps what each printed:
#   bench/out/<name>.log   the whole output
#   bench/out/<name>.json  its last line (one JSON object), with the load average when it ended
#
#   bench/run_all.sh [--quick] [--data DIR] [--pg postgres://user@host:port]
#
# --quick  small sizes (minutes in all instead of about half an hour on a 2-core machine)
# --data   folder with mr_gpt35.csv (the dataset benchmarks need it; skipped without it)
# --pg     PostgreSQL server for the benchmarks that need one (default postgres://postgres@127.0.0.1:5432); each gets
#          a database of its own, ss_<name>_bench, created and migrated if missing. The benchmarks clean up the
#          projects they make; the databases stay for the next run.
# A benchmark that fails is reported and the others still run; the exit status is the number that failed.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PG=postgres://postgres@127.0.0.1:5432
DATA=""
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --data) DATA=$2; shift ;;
    --pg) PG=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=bench/out
mkdir -p "$OUT"
FAILED=0

if [ "$QUICK" = 1 ]; then
  LOAD_ARGS="--items 10000,100000 --seconds 20 --think 0,2 --requests 5"
  QUEUE_ARGS="--items 100000 --rounds 100"
  DASH_ARGS="--items 100000"
  IO_ARGS="--rows 100000"
  GEN_ARGS="--samples 500"
  SEL_ARGS="--items 20000"
  EFF_ARGS="--seeds 5 --limit 2000"
else
  LOAD_ARGS="--items 10000,100000,1000000 --seconds 60 --think 0,2 --requests 10"
  QUEUE_ARGS="--items 1000000 --rounds 200"
  DASH_ARGS="--items 1000000"
  IO_ARGS="--rows 1000000"
  GEN_ARGS="--samples 2000"
  SEL_ARGS="--items 100000"
  EFF_ARGS="--seeds 20"
fi

pg_database() {  # create and migrate ss_<name>_bench if needed; prints its URL
  local url="$PG/ss_$1_bench"
  "$PYTHON" - "$PG" "ss_$1_bench" <<'EOF' >&2 || return 1
import sys, psycopg
with psycopg.connect(sys.argv[1] + "/postgres", autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [sys.argv[2]]).fetchone():
        conn.execute(f'CREATE DATABASE "{sys.argv[2]}"')
EOF
  DATABASE_URL=$url "$PYTHON" manage.py migrate --verbosity 0 >&2 || return 1
  echo "$url"
}

run() {  # run NAME DATABASE_URL ARGS...; an empty DATABASE_URL lets the benchmark use its own throwaway SQLite
  local name=$1 url=$2; shift 2
  echo "== $name: $*"
  local started=$SECONDS
  if [ -n "$url" ]; then
    DATABASE_URL=$url timeout 3600 "$PYTHON" "bench/$name.py" "$@" > "$OUT/$name.log" 2>&1
  else
    env -u DATABASE_URL timeout 3600 "$PYTHON" "bench/$name.py" "$@" > "$OUT/$name.log" 2>&1
  fi
  local status=$?
  "$PYTHON" - "$OUT/$name.log" "$OUT/$name.json" "$status" "$((SECONDS - started))" <<'EOF'
import json, os, sys
log, out, status, took = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = [line for line in open(log, encoding="utf-8", errors="replace").read().splitlines() if line.strip()]
try:
    result = json.loads(lines[-1])
except (IndexError, ValueError):
    result = {"error": "no JSON on the last line", "tail": lines[-5:]}
result.update(exit_status=status, wall_s=took, loadavg_at_end=[round(x, 2) for x in os.getloadavg()])
json.dump(result, open(out, "w"))
print(f"   exit {status} after {took} s -> {out}")
EOF
  [ "$status" = 0 ] || FAILED=$((FAILED + 1))
}

pg_run() {  # pg_run NAME ARGS...
  local name=$1; shift
  local url
  if url=$(pg_database "$name"); then
    run "$name" "$url" "$@"
  else
    echo "== $name: skipped, PostgreSQL at $PG is not reachable"; FAILED=$((FAILED + 1))
  fi
}

pg_run load $LOAD_ARGS
pg_run review_queue $QUEUE_ARGS
pg_run dashboard $DASH_ARGS
pg_run io $IO_ARGS
run generation "" $GEN_ARGS
if [ -n "$DATA" ] && [ -f "$DATA/mr_gpt35.csv" ]; then
  pg_run selection_scale "$DATA/mr_gpt35.csv" $SEL_ARGS
  run annotation_efficiency "" "$DATA/mr_gpt35.csv" $EFF_ARGS
else
  echo "== selection_scale, annotation_efficiency: skipped (pass --data DIR with mr_gpt35.csv)"
fi
echo "$FAILED benchmark(s) failed; results in $OUT/"
exit "$FAILED"
