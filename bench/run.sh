#!/usr/bin/env bash
# Load benchmark of filmvault against the seed's Flask API (gunicorn, 2 workers) and a bare
# actix-web + sqlx server (the practical ceiling of this machine), all from one run.
#
#   bench/run.sh [--duration S] [--warmup S] [--connections N] [--no-build]
#   bench/run.sh --cluster [--duration S] [--no-build]   # SQLite vs PostgreSQL + Redis vs
#                                                        # 3 instances behind HAProxy (cluster.sh)
#
# The two reference servers come from the shared harness (../shared/bench, or BENCH_SHARED):
# flask_ref/app.py and actix_baseline. filmvault runs its release build with everything on:
# auth, CORS, rate limiting (limits high enough never to trigger), security headers, audit,
# metrics, JSON request logs at info level to a file.
#
# Workloads (wrk, 64 connections, wrk pinned to CPU 0, every server pinned to CPU 1):
#   read   authenticated GET /api/v1/films/{id}   (references: GET /films/{id})
#   revalidate  the same with If-None-Match: film 1's ETag, a 304 (references: their read);
#          run only when filmvault sends an ETag (issue 18, item 1), else said and skipped
#   list   anonymous GET /api/v1/films?limit=20   (references: GET /films/{id}, their nearest)
#   like   authenticated GET /?like={id}          (references: the same seed route)
#   add    authenticated POST /add_film           (references: the same seed route)
#   login  POST /api/v1/auth/login (argon2id)     (no reference has one)
# plus: reads during a login storm (300 connections logging in, on the default overload
# settings), and the rate limiter's memory with 100 000 client keys.
#
# Output: a table on stdout and in bench/results/latest.md (copy into bench/RESULTS.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${BENCH_SHARED:-$ROOT/../shared/bench}
SCRATCH=${BENCH_SCRATCH:-/tmp/filmvault-bench}
DURATION=10 WARMUP=2 CONNS=64 BUILD=1 CLUSTER=0
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --cluster) CLUSTER=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for tool in wrk taskset curl python3; do
  command -v $tool > /dev/null || { echo "bench: $tool is missing (apt-get install wrk util-linux curl)" >&2; exit 2; }
done
if [ ! -d "$SHARED/flask_ref" ] || { [ $CLUSTER = 0 ] && [ ! -d "$SHARED/actix_baseline" ]; }; then
  echo "bench: the reference servers are not at $SHARED (set BENCH_SHARED)" >&2; exit 2
fi

mkdir -p "$SCRATCH" "$HERE/results"
RESULTS=$SCRATCH/results.tsv
: > "$RESULTS"
LOAD=(taskset -c 0)
PIN=(taskset -c 1)
PASSWORD=violet-kettle-lantern-harbor
DATA_KEY=$(head -c 32 /dev/urandom | base64 -w0)
declare -A PORT=([flask]=19080 [ceiling]=19081 [filmvault]=19082)
# A server's base URL when it is not plain HTTP on PORT, and its bearer token if it needs one.
declare -A URL=() BEARER=()
PIDS=()
cleanup() {  # stop every server and wait until it has released its port
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
}

# Linux's autogroup scheduling (on in Debian's kernels) shares a core between sessions, not
# threads, and a session idle for a while comes back with almost no weight: the engines and
# instances, each a session of its own, waited up to a second behind a busy server pinned to
# the same core (measured while (a) ran its likes: Redis PING p99 816 ms, the idle instances'
# readiness probes 1-3 s and some 503s; with autogroup off, 0.6 ms and 12 ms). Off for the
# run when this user may change it, and restored at the end.
AUTOGROUP=/proc/sys/kernel/sched_autogroup_enabled
restore_autogroup() { :; }
if [ "$(cat "$AUTOGROUP" 2> /dev/null)" = 1 ]; then
  if (echo 0 > "$AUTOGROUP") 2> /dev/null; then
    restore_autogroup() { echo 1 > "$AUTOGROUP"; }
    echo "== autogroup scheduling off for the run (restored at the end)"
  else
    echo "== autogroup scheduling is on and cannot be turned off here: idle engines may starve"
  fi
fi
trap 'cleanup; restore_autogroup' EXIT
trap 'echo "bench: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

if [ $BUILD = 1 ]; then
  echo "== building (release)"
  (cd "$ROOT" && cargo build --release --locked --quiet)
  if [ $CLUSTER = 0 ]; then
    CARGO_TARGET_DIR=$SCRATCH/target cargo build --release --quiet \
      --manifest-path "$SHARED/actix_baseline/Cargo.toml"
  fi
fi
# Not a build: --no-build on a fresh machine needs the Flask reference's packages too.
if [ ! -x "$SCRATCH/venv/bin/gunicorn" ]; then
  python3 -m venv "$SCRATCH/venv"
  "$SCRATCH/venv/bin/pip" install -q -r "$SHARED/flask_ref/requirements.txt"
fi
FILMVAULT=${CARGO_TARGET_DIR:-$ROOT/target}/release/filmvault
CEILING=$SCRATCH/target/release/actix_baseline

wait_for() {  # URL
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "bench: $1 never answered" >&2; exit 1
}
hwm_kb() {  # PID: peak RSS of the process and its children, kB
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2> /dev/null || echo 0)))
  done
  echo $total
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

fresh_reference_db() {  # PATH
  rm -f "$1"*
  FLASK_REF_DB=$1 "$SCRATCH/venv/bin/python" "$SHARED/flask_ref/app.py" --init-db "$1" > /dev/null
}

start_flask() {
  fresh_reference_db "$SCRATCH/flask.db"
  (cd "$SHARED/flask_ref" && FLASK_REF_DB=$SCRATCH/flask.db FLASK_REF_LOG=1 exec "${PIN[@]}" \
    "$SCRATCH/venv/bin/gunicorn" -w 2 -b "127.0.0.1:${PORT[flask]}" --log-level warning app:api) \
    > "$SCRATCH/flask.log" 2>&1 &
  PIDS+=($!); FLASK_PID=$!
  wait_for "http://127.0.0.1:${PORT[flask]}/films/1"
}

start_ceiling() {
  fresh_reference_db "$SCRATCH/ceiling.db"
  "${PIN[@]}" "$CEILING" --mode sqlite --port "${PORT[ceiling]}" --db "$SCRATCH/ceiling.db" \
    --workers 2 --pool 4 > "$SCRATCH/ceiling.log" 2>&1 &
  PIDS+=($!); CEILING_PID=$!
  wait_for "http://127.0.0.1:${PORT[ceiling]}/films/1"
}

# filmvault with every layer on; limits far above what a run can reach.
filmvault_env() {  # runs in the background subshell, which it replaces (so $! is the server)
  exec env -i PATH="$PATH" APP_PORT="$1" DATABASE_URL="sqlite://$SCRATCH/filmvault.db" \
    DATA_ENCRYPTION_KEY=$DATA_KEY SEED_DEMO_DATA=false LOG_FORMAT=json RUST_LOG=info \
    RATE_LIMIT_GLOBAL=10000000/s RATE_LIMIT_AUTH=10000000/s RATE_LIMIT_WRITE=10000000/s \
    RATE_LIMIT_LOGIN_PER_USERNAME=10000000/s MAX_IN_FLIGHT_REQUESTS=1024 \
    CORS_ALLOWED_ORIGINS=http://localhost:3000 "${@:2}"
}

# Registers the bench user (once per database) and prints an access token of theirs.
bench_user_token() {  # BASE_URL [curl options...]
  local base=$1
  shift
  curl -s -o /dev/null "$@" -X POST "$base/api/v1/auth/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"bench\",\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}"
  curl -sf "$@" -X POST "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

start_filmvault() {  # [extra VAR=value...]
  rm -f "$SCRATCH/filmvault.db"*
  filmvault_env "${PORT[filmvault]}" "$@" "${PIN[@]}" "$FILMVAULT" > "$SCRATCH/filmvault.log" 2>&1 &
  PIDS+=($!); FILMVAULT_PID=$!
  local base=http://127.0.0.1:${PORT[filmvault]}
  wait_for "$base/health/ready"
  TOKEN=$(bench_user_token "$base")
  BEARER[filmvault]=$TOKEN
  # The same 1000 films the references start with, written straight into the file.
  python3 - "$SCRATCH/filmvault.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=10)
con.executemany("INSERT INTO films (name, studio, year) VALUES (?, ?, 2000)",
                [(f"Film {i}", f"Studio {i % 6}") for i in range(1, 1001)])
con.commit()
PY
}

# SERVER WORKLOAD CONNECTIONS SECONDS FLAVOR -> prints the BENCH line
run_wrk() {
  local url=${URL[$1]:-http://127.0.0.1:${PORT[$1]}} headers=""
  [ -n "${BEARER[$1]:-}" ] && headers="Authorization: Bearer ${BEARER[$1]}"
  BENCH_WORKLOAD=$2 BENCH_FLAVOR=$5 BENCH_HEADERS=$headers \
    BENCH_LOGIN="{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" BENCH_ETAG=${ETAG:-} \
    timeout $(($4 + 10)) "${LOAD[@]}" wrk -t1 -c "$3" -d "${4}s" --timeout 5s \
    -s "$HERE/workloads.lua" "$url" 2>&1 | grep '^BENCH' || echo "BENCH requests=0"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }

measure() {  # SERVER PID WORKLOAD [CONNECTIONS]
  local server=$1 pid=$2 workload=$3 conns=${4:-$CONNS} flavor=filmvault line
  [ "$server" != filmvault ] && flavor=reference
  [ "$WARMUP" -gt 0 ] && run_wrk "$server" "$workload" "$conns" "$WARMUP" "$flavor" > /dev/null
  line=$(run_wrk "$server" "$workload" "$conns" "$DURATION" "$flavor")
  local errors=$(( $(field err_connect "$line") + $(field err_read "$line") + $(field err_timeout "$line") + $(field status_ge400 "$line") ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$workload" "$(field rps "$line")" \
    "$(field p50_us "$line")" "$(field p99_us "$line")" "$errors" "$(hwm_kb "$pid")" >> "$RESULTS"
  printf '   %-9s %-6s %9s req/s  p50 %6s us  p99 %7s us  errors %s  peak RSS %s kB\n' \
    "$server" "$workload" "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
    "$errors" "$(hwm_kb "$pid")"
}

if [ $CLUSTER = 1 ]; then
  # shellcheck source=bench/cluster.sh
  . "$HERE/cluster.sh"
  exit "$CLUSTER_STATUS"
fi

echo "== $(nproc) CPUs, $(uname -r), $(wrk -v 2>&1 | head -1 | cut -c1-20); ${CONNS} connections, ${DURATION}s per run"
echo "== workloads against the three servers"
start_flask
start_ceiling
start_filmvault
ETAG=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:${PORT[filmvault]}/api/v1/films/1" | sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p')
workloads="read revalidate list like add"
if [ -z "$ETAG" ]; then
  echo "   no ETag on a film: the 304 revalidation is not measured (issue 18, item 1)"
  workloads="read list like add"
fi
for workload in $workloads; do
  measure flask "$FLASK_PID" "$workload"
  measure ceiling "$CEILING_PID" "$workload"
  measure filmvault "$FILMVAULT_PID" "$workload"
done
measure filmvault "$FILMVAULT_PID" login 16
# What the process keeps once the load is over (argon2's block goes back after 1 s idle, the
# heap's free pages within 5 s).
sleep 8
echo "   filmvault at rest 8 s later: RSS $(rss_kb "$FILMVAULT_PID") kB"
printf 'rest\t%s\n' "$(rss_kb "$FILMVAULT_PID")" >> "$RESULTS"
busy=$(grep -c 'SQLITE_BUSY\|database is locked' "$SCRATCH/filmvault.log" || true)
server_errors=$(grep -c '"status":5[0-9][0-9]' "$SCRATCH/filmvault.log" || true)
echo "   filmvault log: $busy SQLITE_BUSY/locked, $server_errors responses with 5xx"
printf 'log\tbusy\t%s\t%s\n' "$busy" "$server_errors" >> "$RESULTS"

cleanup; PIDS=()

# The default in-flight and hash-queue limits: 300 logins are more than the 256 in-flight
# slots, so logins that kept their slot while waiting for argon2 would shed the reads. wrk
# ignores Retry-After: the refused logins come straight back.
STORM=300
echo "== reads during a login storm ($STORM connections logging in, $CONNS reading)"
start_filmvault MAX_IN_FLIGHT_REQUESTS=256 PASSWORD_HASH_QUEUE=64
BENCH_WORKLOAD=login BENCH_LOGIN="{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" \
  timeout $((DURATION + 15)) "${LOAD[@]}" wrk -t1 -c $STORM -d "$((DURATION + 4))s" --timeout 5s \
  -s "$HERE/workloads.lua" "http://127.0.0.1:${PORT[filmvault]}" > "$SCRATCH/storm-login.txt" 2>&1 &
storm=$!
sleep 2
line=$(run_wrk filmvault read "$CONNS" "$DURATION" filmvault)
wait $storm || true
logins=$(grep '^BENCH' "$SCRATCH/storm-login.txt" || true)
read_errors=$(( $(field err_connect "$line") + $(field err_read "$line") + $(field err_timeout "$line") + $(field status_ge400 "$line") ))
# The bench user's password is right: every login answered ≥ 400 was refused (503).
refused=$(field status_ge400 "$logins")
printf 'storm\tread\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(field rps "$line")" "$(field p50_us "$line")" \
  "$(field p99_us "$line")" "$(field rps "$logins")" "$(hwm_kb "$FILMVAULT_PID")" "$read_errors" \
  "${refused:-0}" >> "$RESULTS"
echo "   reads $(field rps "$line") req/s, p99 $(field p99_us "$line") us, $read_errors errors;" \
  "logins $(field rps "$logins")/s, ${refused:-0} refused"
cleanup; PIDS=()

echo "== rate limiter memory with 100 000 distinct client keys (two rounds, purge between)"
metrics_port=19089
start_filmvault TRUSTED_PROXIES=127.0.0.1 METRICS_ADDR=127.0.0.1:$metrics_port
keys() { curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^rate_limiter_keys /{print $2}'; }
before=$(rss_kb "$FILMVAULT_PID")
for round in 1 2; do
  BENCH_WORKLOAD=spread timeout 60 "${LOAD[@]}" wrk -t1 -c "$CONNS" -d 30s --timeout 5s \
    -s "$HERE/workloads.lua" "http://127.0.0.1:${PORT[filmvault]}" > "$SCRATCH/spread-$round.txt" 2>&1 &
  spread=$!
  # Stop once 100 000 distinct clients have been seen.
  for _ in $(seq 120); do [ "$(keys)" -ge 100000 ] 2> /dev/null && break; sleep 0.5; done
  kill $spread 2> /dev/null || true; wait $spread 2> /dev/null || true
  full_keys=$(keys); full_rss=$(rss_kb "$FILMVAULT_PID")
  echo "   round $round: $full_keys keys, RSS $full_rss kB (before: $before kB); waiting for the purge"
  sleep 62
  purged_keys=$(keys); purged_rss=$(rss_kb "$FILMVAULT_PID")
  echo "   round $round after the purge: $purged_keys keys, RSS $purged_rss kB"
  printf 'limiter\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$before" "$full_keys" "$full_rss" \
    "$purged_keys" "$purged_rss" >> "$RESULTS"
done
cleanup; PIDS=()

python3 "$HERE/report.py" "$RESULTS" "$(nproc)" "$DURATION" "$CONNS" | tee "$HERE/results/latest.md"
