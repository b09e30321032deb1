# shellcheck shell=bash disable=SC2034,SC2153,SC2154 # run.sh's variables; it reads CLUSTER_STATUS
# The cluster mode of bench/run.sh (`bench/run.sh --cluster`), sourced by it after the build;
# it uses run.sh's servers, wrk runner and settings. One run, three configurations:
#
#   sqlite    (a) one instance on SQLite, security state in memory (run.sh's own server)
#   postgres  (b) one instance on PostgreSQL + Redis, with the same settings as (a)
#   durable   (b) again for the writes, with PostgreSQL's synchronous_commit=on (below)
#   cluster   (c) 3 instances on that PostgreSQL + Redis behind HAProxy, TLS at the proxy, as
#                 deploy/cluster.sh starts them (production settings; the bench's limits and
#                 log settings in the cluster folder's .env)
#   flask     the seed's Flask API, for the write workloads only
#
# Every configuration gets one core for all of its server-side processes (instances, engines,
# proxy: CPU 1) and wrk the other (CPU 0): on two cores this measures what the PostgreSQL,
# Redis and proxy layers cost, not how instances scale (docs/scaling.md plans that). The
# engines are private (their own folder and ports under $SCRATCH/cluster, started from the
# distribution's packages by deploy/lib/engines.sh); a system-wide PostgreSQL or Redis is never
# touched. PostgreSQL runs with pg_stat_statements.
#
# Workloads read, like, add (workloads.lua), workload-major so the VM's drift hits every
# configuration alike. During each measured run the CPU time of each component (instances,
# PostgreSQL, Redis, HAProxy) and of CPU 1 as a whole is read from /proc.
# Then the cost of one request of each kind, on (b) with the cluster's proxy and instances
# stopped (bench/request_cost.py): statements, transactions, WAL and Redis commands.
#
# Output: bench/results/cluster-latest.md (bench/cluster_report.py). The run fails (status 1)
# when an instance or HAProxy logged a 5xx response.

CLUSTER_RESULTS=$SCRATCH/cluster.tsv
CLUSTER_STATUS=0
: > "$CLUSTER_RESULTS"

# shellcheck source=deploy/lib/engines.sh
. "$ROOT/deploy/lib/engines.sh"
CLUSTER_DIR=$(engines_dir "$SCRATCH/cluster")

PORT[postgres]=19083
pg_port=$(free_port 19432)
redis_port=$(free_port 19379)
app_port=19100 https_port=19443 http_port=19480
for port in "${PORT[postgres]}" $((app_port + 1)) $((app_port + 2)) $((app_port + 3)) "$https_port" "$http_port"; do
  port_in_use "$port" && { echo "bench: port $port is taken" >&2; exit 2; }
done
# The statement counts, and the durability of the SQLite mode: WAL with synchronous=NORMAL
# does not flush each commit to disk and may lose the last ones on a power loss; so does
# PostgreSQL with synchronous_commit=off. The `durable` rows flush every commit, as
# PostgreSQL does by default (docs/scaling.md).
PG_TUNING="shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
synchronous_commit = off"

cluster_sh() {  # start|stop
  CLUSTER_INSTANCES=3 CLUSTER_PG_PORT=$pg_port CLUSTER_REDIS_PORT=$redis_port \
    CLUSTER_APP_PORT=$app_port CLUSTER_HTTPS_PORT=$https_port CLUSTER_HTTP_PORT=$http_port \
    FILMVAULT_BIN=$FILMVAULT SEED_DEMO_DATA=false "${PIN[@]}" "$ROOT/deploy/cluster.sh" "$1" "$CLUSTER_DIR"
}

stop_cluster() {
  if [ -d "$CLUSTER_DIR/run" ]; then cluster_sh stop > /dev/null 2>&1 || true; fi
}
trap 'cleanup; stop_cluster; restore_autogroup' EXIT

secret() { grep "^$1=" "$CLUSTER_DIR/secrets.env" | cut -d= -f2-; }

bench_psql() {  # SQL on stdin, as the superuser on the database filmvault
  as_user postgres "$(pg_bin)/psql" -h "$CLUSTER_DIR/postgres/run" -p "$pg_port" -U postgres \
    -d filmvault -v ON_ERROR_STOP=1 -qAt
}

# PostgreSQL first (pinned, with the bench's settings); then deploy/cluster.sh provisions it and
# starts Redis, the instances and HAProxy, all inheriting the pinning.
start_cluster() {
  stop_cluster
  rm -rf "${CLUSTER_DIR:?}"/* "$CLUSTER_DIR/.env"
  mkdir -p "$CLUSTER_DIR/logs"
  chmod 0711 "$CLUSTER_DIR" "$CLUSTER_DIR/logs"
  # shellcheck disable=SC2016 # expanded by that shell
  "${PIN[@]}" bash -c 'set -euo pipefail; . "$1"; pg_start "$2/postgres" "$3" "$2/logs/postgres.log" scram-sha-256 "$4"' \
    _ "$ROOT/deploy/lib/engines.sh" "$CLUSTER_DIR" "$pg_port" "$PG_TUNING"
  cat > "$CLUSTER_DIR/.env" << EOF
# bench/cluster.sh: the settings of bench/run.sh's filmvault (limits far above the load)
LOG_FORMAT=json
RUST_LOG=info
RATE_LIMIT_GLOBAL=10000000/s
RATE_LIMIT_AUTH=10000000/s
RATE_LIMIT_WRITE=10000000/s
RATE_LIMIT_LOGIN_PER_USERNAME=10000000/s
MAX_IN_FLIGHT_REQUESTS=1024
CORS_ALLOWED_ORIGINS=http://localhost:3000
EOF
  cluster_sh start 2> "$SCRATCH/cluster-start.log" ||
    { cat "$SCRATCH/cluster-start.log" >&2; exit 1; }
  bench_psql <<< "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" > /dev/null
}

# (b): run.sh's filmvault settings, on the cluster's PostgreSQL and Redis, with the cluster's data
# key (the signing key and the sealed addresses in that database are sealed under it).
start_postgres_instance() {
  filmvault_env "${PORT[postgres]}" \
    DATABASE_URL="postgres://filmvault:$(secret POSTGRES_PASSWORD)@127.0.0.1:$pg_port/filmvault" \
    REDIS_URL="redis://:$(secret REDIS_PASSWORD)@127.0.0.1:$redis_port" \
    DATA_ENCRYPTION_KEY="$(secret DATA_ENCRYPTION_KEY)" INSTANCE_ID=bench-b \
    "${PIN[@]}" "$FILMVAULT" > "$SCRATCH/postgres-instance.log" 2>&1 &
  PIDS+=($!); POSTGRES_PID=$!
  local base=http://127.0.0.1:${PORT[postgres]}
  wait_for "$base/health/ready"
  BEARER[postgres]=$(bench_user_token "$base")
  PORT[durable]=${PORT[postgres]} BEARER[durable]=${BEARER[postgres]}
  bench_psql > /dev/null << 'SQL'
INSERT INTO films (name, studio, year)
SELECT 'Film ' || i, 'Studio ' || (i % 6), 2000 FROM generate_series(1, 1000) AS i;
SQL
  # Through the proxy, as its clients do: the token of the same user. The instances behind it
  # run in production, which refuses a login until the address is verified; no mail server
  # listens here, so the bench verifies it in the database.
  bench_psql <<< "UPDATE users SET email_verified_at = now() WHERE username = 'bench';" > /dev/null
  local proxy=https://localhost:$https_port
  URL[cluster]=https://127.0.0.1:$https_port
  BEARER[cluster]=$(bench_user_token "$proxy" --cacert "$CLUSTER_DIR/certs/dev-ca.crt" \
    --resolve "localhost:$https_port:127.0.0.1")
}

synchronous_commit() {  # on|off, for every connection from its next statement
  bench_psql <<< "ALTER SYSTEM SET synchronous_commit = $1; SELECT pg_reload_conf();" > /dev/null
}

# --- CPU accounting (clock ticks from /proc) ---------------------------------------------------

ticks_of() {  # PID...: user+system ticks of each process (threads included), of its children
  # that have exited, and of its live children
  local total=0 pid child
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13 + $14 + $15}')))
    for child in $(pgrep -P "$pid" || true); do
      total=$((total + $(sed 's/.*) //' "/proc/$child/stat" 2> /dev/null | awk '{print $12 + $13}' || echo 0)))
    done
  done
  echo "$total"
}

cpu1_ticks() {  # busy and total ticks of CPU 1
  awk '$1 == "cpu1" {busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6}' /proc/stat
}

pids_of() {  # COMPONENT CONFIGURATION
  case "$1:$2" in
    app:sqlite) echo "$FILMVAULT_PID" ;;
    app:postgres | app:durable) echo "$POSTGRES_PID" ;;
    app:cluster) cat "$CLUSTER_DIR"/run/instance-*.pid ;;
    proxy:cluster) cat "$CLUSTER_DIR/run/haproxy.pid" ;;
    *:flask | pg:sqlite | redis:sqlite | proxy:*) ;;
    pg:*) head -n1 "$CLUSTER_DIR/postgres/data/postmaster.pid" ;;
    redis:*) cat "$CLUSTER_DIR/redis/redis.pid" ;;
  esac
}

cpu_snapshot() {  # CONFIGURATION: "app pg redis proxy cpu1_busy cpu1_total" in ticks
  local component pids
  for component in app pg redis proxy; do
    pids=$(pids_of "$component" "$1")
    # shellcheck disable=SC2086 # one PID per word
    if [ -n "$pids" ]; then printf '%s ' "$(ticks_of $pids)"; else printf '0 '; fi
  done
  cpu1_ticks
}

# CONFIGURATION WORKLOAD: warm-up, then the measured run; one TSV row.
measure_configuration() {
  local config=$1 workload=$2 flavor=filmvault line cpu_before cpu_after
  [ "$config" = flask ] && flavor=reference
  [ "$WARMUP" -gt 0 ] && run_wrk "$config" "$workload" "$CONNS" "$WARMUP" "$flavor" > /dev/null
  read -ra cpu_before <<< "$(cpu_snapshot "$config")"
  line=$(run_wrk "$config" "$workload" "$CONNS" "$DURATION" "$flavor")
  read -ra cpu_after <<< "$(cpu_snapshot "$config")"
  local errors=$(($(field err_connect "$line") + $(field err_read "$line") + $(field err_timeout "$line") + $(field status_ge400 "$line")))
  local i cpu=()
  for i in 0 1 2 3 4 5; do cpu+=($((cpu_after[i] - cpu_before[i]))); done
  printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$workload" "$(field rps "$line")" \
    "$(field p50_us "$line")" "$(field p99_us "$line")" "$errors" "$(field requests "$line")" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$(IFS=,; echo "${cpu[*]}")" >> "$CLUSTER_RESULTS"
  printf '   %-8s %-4s %8s req/s  p50 %6s us  p99 %7s us  errors %s  load %s\n' "$config" "$workload" \
    "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" "$errors" \
    "$(cut -d' ' -f1 /proc/loadavg)"
}

# --- 5xx --------------------------------------------------------------------------------------

count_5xx() {  # every response with a 5xx status in the instances' and the proxy's logs
  local instances proxy
  instances=$(cat "$SCRATCH/filmvault.log" "$SCRATCH/postgres-instance.log" "$CLUSTER_DIR"/logs/instance-*.log |
    grep -c '"status":5[0-9][0-9]' || true)
  # HAProxy's log-format (deploy/haproxy.cfg): the status is the sixth field.
  proxy=$(awk '$6 ~ /^5[0-9][0-9]$/' "$CLUSTER_DIR/logs/haproxy.log" | wc -l)
  echo "$instances $proxy"
}

# --- the run ----------------------------------------------------------------------------------

echo "== cluster mode: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); ${CONNS} connections, ${DURATION}s per run"
printf 'machine\t%s\t%s\t%s\t%s\t%s\n' "$(nproc)" "$DURATION" "$CONNS" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)" >> "$CLUSTER_RESULTS"
echo "== starting: Flask, (a) SQLite, PostgreSQL + Redis + 3 instances + HAProxy, (b)"
start_flask
start_filmvault
URL[sqlite]=http://127.0.0.1:${PORT[filmvault]}
BEARER[sqlite]=${BEARER[filmvault]}
start_cluster
start_postgres_instance
echo "== workloads (read, like, add) on (a) sqlite, (b) postgres, (c) cluster; Flask for writes"
for workload in read like add; do
  [ "$workload" != read ] && measure_configuration flask "$workload"
  for config in sqlite postgres cluster; do measure_configuration "$config" "$workload"; done
  if [ "$workload" != read ]; then
    synchronous_commit on
    measure_configuration durable "$workload"
    synchronous_commit off
  fi
done
read -r instance_5xx proxy_5xx <<< "$(count_5xx)"
printf 'errors5xx\t%s\t%s\n' "$instance_5xx" "$proxy_5xx" >> "$CLUSTER_RESULTS"
echo "   5xx in the logs: $instance_5xx from instances, $proxy_5xx from HAProxy"

echo "== cost of one request of each kind on (b) (the cluster's proxy and instances stopped)"
stop_pids haproxy "$CLUSTER_DIR/run/haproxy.pid"
stop_pids filmvault "$CLUSTER_DIR"/run/instance-*.pid
psql_command=("$(pg_bin)/psql" -h "$CLUSTER_DIR/postgres/run" -p "$pg_port" -U postgres -d filmvault
  -v ON_ERROR_STOP=1 -qAt)
[ "$(id -u)" = 0 ] && psql_command=(runuser -u postgres -- "${psql_command[@]}")
REDISCLI_AUTH=$(secret REDIS_PASSWORD) BENCH_PASSWORD=$PASSWORD python3 "$HERE/request_cost.py" \
  --url "http://127.0.0.1:${PORT[postgres]}" \
  --psql "$(printf '%q ' "${psql_command[@]}")" --redis "redis-cli -h 127.0.0.1 -p $redis_port" \
  >> "$CLUSTER_RESULTS"

cleanup; PIDS=()
stop_cluster
python3 "$HERE/cluster_report.py" "$CLUSTER_RESULTS" | tee "$HERE/results/cluster-latest.md"
if [ "$instance_5xx" != 0 ] || [ "$proxy_5xx" != 0 ]; then
  echo "bench: FAILED, the servers answered 5xx (see their logs under $SCRATCH)" >&2
  CLUSTER_STATUS=1
fi
