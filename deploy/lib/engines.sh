# shellcheck shell=bash
# Private PostgreSQL and Redis servers from the distribution's packages, each in its own
# folder on its own loopback port. Sourced by deploy/cluster.sh and scripts/test-engines.sh
# (bash, set -euo pipefail); nothing here touches a system-wide server.
#
# Started as root, each engine runs as its package's system user (PostgreSQL refuses root;
# Redis should not have it), which must be able to reach the folder.

die() {
  echo "error: $*" >&2
  exit 1
}

say() {
  echo "$*" >&2
}

# Runs a command as `user` when we are root, as ourselves otherwise.
as_user() {
  local user=$1
  shift
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

# Gives `dir` to `user` when we are root, and checks that the user can reach it.
own_dir() {
  local user=$1 dir=$2
  mkdir -p "$dir"
  chmod 0700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown "$user:" "$dir"
    as_user "$user" test -w "$dir" ||
      die "the $user user cannot write to $dir (a parent folder is closed to it): use a folder outside /root"
  fi
}

# Prints DIR (created, 0711), or, when we are root and the engines' users cannot pass through
# one of its parents (as under /root), a folder named after it under /tmp.
engines_dir() {
  local dir=$1
  mkdir -p "$dir"
  chmod 0711 "$dir"
  # Absolute: a relative path would be checked from our working folder, which the engine's
  # user may reach through our open descriptor but never by name.
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir" 2> /dev/null; then
    dir=/tmp/filmvault-$(basename "$dir")-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
    mkdir -p "$dir"
    chmod 0711 "$dir"
  fi
  (cd "$dir" && pwd)
}

# A file the engine's user may append its log to, in a folder it may not own.
own_log() {
  local user=$1 file=$2
  touch "$file"
  chmod 0600 "$file"
  if [ "$(id -u)" = 0 ]; then chown "$user:" "$file"; fi
}

port_in_use() {
  (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

# The first port from `start` on that nothing listens on.
free_port() {
  local port=$1
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "$port"
}

random_hex() {
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# True if `pid_file` names a live process whose command line contains `name`: a stale pid
# file must never make us signal someone else's process.
pid_alive() {
  local pid_file=$1 name=$2 pid
  [ -s "$pid_file" ] || return 1
  pid=$(head -n1 "$pid_file")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$name"
}

# stop_pids NAME PID_FILE...: TERM to each live process they name, up to 10 s of grace
# for all of them together, then KILL; only the processes the pid files name.
stop_pids() {
  local name=$1 pid_file pid pids=()
  shift
  for pid_file in "$@"; do
    if pid_alive "$pid_file" "$name"; then
      pid=$(head -n1 "$pid_file")
      kill -TERM "$pid"
      pids+=("$pid")
    fi
    rm -f "$pid_file"
  done
  for _ in $(seq 100); do
    any_alive "${pids[@]}" || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid"; fi
  done
}

any_alive() {
  local pid
  for pid in "$@"; do
    if [ -d "/proc/$pid" ]; then return 0; fi
  done
  return 1
}

# --- PostgreSQL ------------------------------------------------------------------------------

pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    echo "$PG_BIN"
    return
  fi
  local newest
  newest=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2> /dev/null | sort -V | tail -n1)
  if [ -z "$newest" ] || [ ! -x "$newest/initdb" ]; then
    die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: apt-get install postgresql (or set PG_BIN)"
  fi
  echo "$newest"
}

# pg_start DIR PORT LOG HOST_AUTH [TUNING]: initializes DIR/data on first use, then starts it
# on 127.0.0.1:PORT. The Unix socket lives in DIR/run (0700): the superuser `postgres`
# connects there without a password, and only the folder's owner (and root) can reach it.
# Over TCP, HOST_AUTH applies (`scram-sha-256`, or `trust` for a throwaway test server).
# TUNING: extra postgresql.conf lines, written at initialization.
pg_start() {
  local dir=$1 port=$2 log=$3 host_auth=$4 tuning=${5:-}
  local bin
  bin=$(pg_bin)
  own_dir postgres "$dir"
  own_log postgres "$log"
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    say "initializing PostgreSQL in $dir/data"
    as_user postgres "$bin/initdb" -D "$dir/data" -U postgres --encoding=UTF8 --no-locale \
      --auth-local=trust --auth-host="$host_auth" > "$dir/initdb.log"
    as_user postgres tee "$dir/data/pg_hba.conf" > /dev/null << EOF
# Written by deploy/lib/engines.sh. The socket folder is closed to everyone but its owner;
# TCP is loopback only.
local all all                trust
host  all all 127.0.0.1/32   $host_auth
host  all all ::1/128        $host_auth
EOF
    as_user postgres tee -a "$dir/data/postgresql.conf" > /dev/null << EOF

# --- deploy/lib/engines.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
unix_socket_permissions = 0700
$tuning
EOF
  fi
  if pg_running "$dir"; then
    say "PostgreSQL already runs on $dir/data"
    return
  fi
  port_in_use "$port" && die "port $port (PostgreSQL) is taken"
  as_user postgres mkdir -p -m 0700 "$dir/run"
  as_user postgres "$bin/pg_ctl" -D "$dir/data" -l "$log" -o "-p $port" -w -t 60 start > /dev/null ||
    die "PostgreSQL did not start: see $log"
  echo "$port" > "$dir/port"
}

pg_running() {
  local dir=$1
  [ -s "$dir/data/PG_VERSION" ] && as_user postgres "$(pg_bin)/pg_ctl" -D "$dir/data" status > /dev/null 2>&1
}

pg_stop() {
  local dir=$1
  if pg_running "$dir"; then
    as_user postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop > /dev/null
  fi
}

# pg_psql DIR: psql as the superuser through the socket, SQL on standard input (so that a
# password in it never shows in a process list).
pg_psql() {
  local dir=$1
  as_user postgres "$(pg_bin)/psql" -h "$dir/run" -p "$(cat "$dir/port")" -U postgres \
    -d postgres -v ON_ERROR_STOP=1 -qAt
}

# --- Redis -----------------------------------------------------------------------------------

# redis_start DIR PORT LOG [PASSWORD]: a Redis on 127.0.0.1:PORT with no persistence (see the
# README: limiter and lockout counters are short-lived, the database is the source of truth
# for revocation) and no eviction (a full Redis refuses writes, and the service fails closed,
# rather than silently forgetting counters).
redis_start() {
  local dir=$1 port=$2 log=$3 password=${4:-}
  command -v redis-server > /dev/null || die "redis-server is missing: apt-get install redis-server"
  own_dir redis "$dir"
  own_log redis "$log"
  if pid_alive "$dir/redis.pid" redis-server; then
    say "Redis already runs from $dir"
    return
  fi
  port_in_use "$port" && die "port $port (Redis) is taken"
  as_user redis tee "$dir/redis.conf" > /dev/null << EOF
# Written by deploy/lib/engines.sh.
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $log
dir $dir
save ""
appendonly no
maxmemory 256mb
maxmemory-policy noeviction
${password:+requirepass $password}
EOF
  as_user redis chmod 0600 "$dir/redis.conf"
  as_user redis redis-server "$dir/redis.conf"
  for _ in $(seq 50); do
    if REDISCLI_AUTH=$password redis-cli -h 127.0.0.1 -p "$port" ping 2> /dev/null | grep -q PONG; then
      echo "$port" > "$dir/port"
      return
    fi
    sleep 0.1
  done
  die "Redis did not start: see $log"
}

redis_running() {
  pid_alive "$1/redis.pid" redis-server
}

redis_stop() {
  stop_pids redis-server "$1/redis.pid"
}
