#!/usr/bin/env bash
# filmvault as a cluster on one machine, from the distribution's packages and without Docker:
# PostgreSQL, Redis, HAProxy (TLS) and N instances of the binary `cargo build` makes.
#
#   apt-get install postgresql redis-server haproxy     # the engines' packages (Debian)
#   deploy/cluster.sh start [DIR]     # DIR (default target/cluster) holds everything: data,
#   deploy/cluster.sh status [DIR]    # secrets, certificates, pid files and logs/
#   deploy/cluster.sh stop [DIR]      # stops every process it started; the data stays
#   curl --cacert DIR/certs/dev-ca.crt https://localhost:8443/api/v1/films
#
# `start` is idempotent: it starts whatever is not running (e.g. an instance that died).
# Settings (environment):
#   CLUSTER_INSTANCES=3        how many instances
#   CLUSTER_DB=postgres        or `sqlite`: one SQLite file shared by the instances (data is
#                              shared; the in-memory security state is not without Redis)
#   CLUSTER_HTTPS_PORT=8443    the proxy's HTTPS port; CLUSTER_HTTP_PORT=8080 its plain one
#   CLUSTER_APP_PORT=18080     instance i listens on 127.0.0.1:(CLUSTER_APP_PORT + i)
#   CLUSTER_PG_PORT=15432      CLUSTER_REDIS_PORT=16379
#   CLUSTER_PROXY_PEM          the proxy's certificate chain + key (default: a development
#                              CA and localhost certificate made by `filmvault dev-cert`)
#   FILMVAULT_BIN              the binary to run (default: `cargo build`, then target/debug)
#   SEED_DEMO_DATA=true        demo films in an empty catalogue
# Extra settings for every instance (RATE_LIMIT_*, RUST_LOG, …) go in DIR/.env; the ones this
# script sets win.
#
# Started as root, PostgreSQL and Redis run as their packages' users and HAProxy drops to
# `haproxy` after binding; the instances run as the caller. DIR must then be reachable by
# those users (not under /root).
set -euo pipefail
# Secrets, certificates, logs (client addresses) and data: the caller's alone.
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/lib/engines.sh
. "$root/deploy/lib/engines.sh"

command=${1:-}
dir=${2:-${CARGO_TARGET_DIR:-$root/target}/cluster}
if [ "$command" = start ]; then mkdir -p "$dir"; fi
[ -d "$dir" ] || die "$dir does not exist: no cluster there"
dir=$(cd "$dir" && pwd)
instances=${CLUSTER_INSTANCES:-3}
db=${CLUSTER_DB:-postgres}
https_port=${CLUSTER_HTTPS_PORT:-8443}
http_port=${CLUSTER_HTTP_PORT:-8080}
app_port=${CLUSTER_APP_PORT:-18080}
pg_port=${CLUSTER_PG_PORT:-15432}
redis_port=${CLUSTER_REDIS_PORT:-16379}
public_url=https://localhost:$https_port

[[ $instances =~ ^[1-9][0-9]?$ ]] || die "CLUSTER_INSTANCES must be 1 to 99"
case "$db" in postgres | sqlite) ;; *) die "CLUSTER_DB must be postgres or sqlite" ;; esac

filmvault_bin() {
  if [ -n "${FILMVAULT_BIN:-}" ]; then
    readlink -f "$FILMVAULT_BIN"
    return
  fi
  (cd "$root" && cargo build --locked --quiet >&2)
  echo "${CARGO_TARGET_DIR:-$root/target}/debug/filmvault"
}

# Made once per cluster folder, readable by its owner only; never printed.
make_secrets() {
  local file=$dir/secrets.env
  (
    umask 077
    [ -s "$file" ] || {
      echo "POSTGRES_PASSWORD=$(random_hex 24)"
      echo "REDIS_PASSWORD=$(random_hex 24)"
    } > "$file"
    # A folder made before the data key existed gets one on its next start.
    grep -q '^DATA_ENCRYPTION_KEY=' "$file" \
      || echo "DATA_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64 -w0)" >> "$file"
  )
}

secret() {
  grep "^$1=" "$dir/secrets.env" | cut -d= -f2-
}

database_url() {
  case "$db" in
    postgres) echo "postgres://filmvault:$(secret POSTGRES_PASSWORD)@127.0.0.1:$pg_port/filmvault" ;;
    sqlite) echo "sqlite://$dir/sqlite/filmvault.db" ;;
  esac
}

start_postgres() {
  pg_start "$dir/postgres" "$pg_port" "$dir/logs/postgres.log" scram-sha-256
  if [ ! -e "$dir/postgres/provisioned" ]; then
    pg_psql "$dir/postgres" << EOF
CREATE ROLE filmvault LOGIN PASSWORD '$(secret POSTGRES_PASSWORD)';
CREATE DATABASE filmvault OWNER filmvault;
EOF
    touch "$dir/postgres/provisioned"
  fi
}

proxy_pem() {
  if [ -n "${CLUSTER_PROXY_PEM:-}" ]; then
    echo "$CLUSTER_PROXY_PEM"
    return
  fi
  local certs=$dir/certs
  if [ ! -s "$certs/proxy.pem" ]; then
    "$1" dev-cert --out-dir "$certs" > /dev/null
    (umask 077 && cat "$certs/localhost.crt" "$certs/localhost.key" > "$certs/proxy.pem")
  fi
  echo "$certs/proxy.pem"
}

# deploy/haproxy.cfg with its server block replaced by one line per instance.
render_proxy_config() {
  local servers="" i
  for i in $(seq "$instances"); do
    servers+="    server app$i 127.0.0.1:$((app_port + i))"$'\n'
  done
  awk -v servers="$servers" '
    /# BEGIN servers/ { print; printf "%s", servers; skip = 1; next }
    /# END servers/ { skip = 0 }
    !skip' "$root/deploy/haproxy.cfg" > "$dir/haproxy.cfg"
}

start_proxy() {
  local pem=$1 haproxy
  if pid_alive "$dir/run/haproxy.pid" haproxy; then
    say "HAProxy already runs"
    return
  fi
  # /usr/sbin is not on a normal user's PATH on Debian.
  haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
  [ -x "$haproxy" ] || die "haproxy is missing: apt-get install haproxy"
  render_proxy_config
  local user=""
  if [ "$(id -u)" = 0 ]; then user=haproxy; fi
  export FILMVAULT_PROXY_PEM=$pem FILMVAULT_PROXY_HTTP=127.0.0.1:$http_port \
    FILMVAULT_PROXY_HTTPS=127.0.0.1:$https_port FILMVAULT_PUBLIC_BASE_URL=$public_url
  if [ -n "$user" ]; then export FILMVAULT_PROXY_USER=$user; fi
  local check
  check=$("$haproxy" -c -f "$dir/haproxy.cfg" 2>&1) || die "$dir/haproxy.cfg is not valid: $check"
  for port in "$http_port" "$https_port"; do
    port_in_use "$port" && die "port $port (HAProxy) is taken"
  done
  setsid "$haproxy" -f "$dir/haproxy.cfg" >> "$dir/logs/haproxy.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$dir/run/haproxy.pid"
  for _ in $(seq 100); do
    port_in_use "$https_port" && return
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  die "HAProxy did not start: see $dir/logs/haproxy.log"
}

# Instance i: production settings, behind the proxy at 127.0.0.1 (the only address whose
# X-Forwarded-For it believes). Mail goes to SMTP_URL, by default a relay on loopback (mails
# wait in the outbox, retried, while none listens). Its working folder is DIR, so DIR/.env is the .env it reads.
start_instance() {
  local bin=$1 i=$2
  local port=$((app_port + i)) pid_file=$dir/run/instance-$i.pid
  if pid_alive "$pid_file" "$bin"; then return; fi
  port_in_use "$port" && die "port $port (instance $i) is taken"
  (
    cd "$dir"
    APP_ENV=production APP_HOST=127.0.0.1 APP_PORT=$port INSTANCE_ID=node-$i \
      DATABASE_URL=$(database_url) \
      REDIS_URL=redis://:$(secret REDIS_PASSWORD)@127.0.0.1:$redis_port \
      DATA_ENCRYPTION_KEY=$(secret DATA_ENCRYPTION_KEY) \
      TRUSTED_PROXIES=127.0.0.1/32 TLS_TERMINATED_BY_PROXY=true PUBLIC_BASE_URL=$public_url \
      SEED_DEMO_DATA=${SEED_DEMO_DATA:-true} \
      SMTP_URL=${SMTP_URL:-smtp://127.0.0.1:1025} \
      setsid "$bin" serve >> "$dir/logs/instance-$i.log" 2>&1 < /dev/null &
    echo $! > "$pid_file"
  )
}

instance_ready() {
  APP_HOST=127.0.0.1 APP_PORT=$((app_port + $2)) "$1" healthcheck > /dev/null 2>&1
}

# Up to 30 s for migrations and the first connections; an instance that exits is reported at
# once. (Its pid file names our own child, just forked: it may not have exec'd the binary yet.)
wait_ready() {
  local bin=$1 i=$2 pid
  pid=$(cat "$dir/run/instance-$i.pid")
  for _ in $(seq 300); do
    instance_ready "$bin" "$i" && return
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  tail -n 20 "$dir/logs/instance-$i.log" >&2 || true
  die "instance $i did not become ready: see $dir/logs/instance-$i.log"
}

start() {
  local bin pem i
  bin=$(filmvault_bin)
  [ -x "$bin" ] || die "$bin is not an executable"
  mkdir -p "$dir/logs" "$dir/run"
  # The engines' users must pass through to their own folders and log files.
  chmod 0711 "$dir" "$dir/logs"
  make_secrets
  [ -e "$dir/.env" ] || echo "# Extra settings for every instance; deploy/cluster.sh's own win." > "$dir/.env"
  if [ "$db" = postgres ]; then start_postgres; else mkdir -p "$dir/sqlite"; fi
  redis_start "$dir/redis" "$redis_port" "$dir/logs/redis.log" "$(secret REDIS_PASSWORD)"
  pem=$(proxy_pem "$bin")
  # The first instance applies the migrations and seeds alone; the others start together.
  start_instance "$bin" 1
  wait_ready "$bin" 1
  for i in $(seq 2 "$instances"); do start_instance "$bin" "$i"; done
  for i in $(seq 2 "$instances"); do wait_ready "$bin" "$i"; done
  start_proxy "$pem"
  say "cluster up: $public_url (trust $(dirname "$pem")/dev-ca.crt), logs in $dir/logs"
}

stop() {
  stop_pids haproxy "$dir/run/haproxy.pid"
  stop_pids filmvault "$dir"/run/instance-*.pid
  redis_stop "$dir/redis"
  pg_stop "$dir/postgres"
  say "cluster stopped; data stays in $dir"
}

report() {
  printf '%-12s %s\n' "$1" "$2"
}

status() {
  local healthy=0 bin pid_file i
  bin=$(readlink -f "${FILMVAULT_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/filmvault}")
  if [ "$db" = postgres ]; then
    if pg_running "$dir/postgres"; then report postgres "running on 127.0.0.1:$pg_port"; else report postgres stopped; healthy=1; fi
  fi
  if redis_running "$dir/redis"; then report redis "running on 127.0.0.1:$redis_port"; else report redis stopped; healthy=1; fi
  if pid_alive "$dir/run/haproxy.pid" haproxy; then report haproxy "running on $public_url"; else report haproxy stopped; healthy=1; fi
  for i in $(seq "$instances"); do
    pid_file=$dir/run/instance-$i.pid
    if instance_ready "$bin" "$i"; then
      report "instance-$i" "ready on 127.0.0.1:$((app_port + i))"
    elif pid_alive "$pid_file" filmvault; then
      report "instance-$i" "running, not ready"
      healthy=1
    else
      report "instance-$i" stopped
      healthy=1
    fi
  done
  return "$healthy"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status [DIR]" ;;
esac
