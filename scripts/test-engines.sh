#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis for the test suites, under target/test-engines/, on free
# loopback ports of their own (a running system PostgreSQL or Redis is never touched).
#
#   eval "$(scripts/test-engines.sh start)"   # starts both (or finds them running), prints
#                                              # export TEST_DATABASE_URL=… TEST_REDIS_URL=…
#   TEST_DATABASE_URL=… TEST_REDIS_URL=… cargo test --test api
#   scripts/test-engines.sh env               # the exports again, if running
#   scripts/test-engines.sh stop              # stops both; `purge` also deletes their data
#
# The tests create a database of their own per test through TEST_DATABASE_URL (the superuser,
# `trust` on loopback: this server holds nothing but test data), and must not need Redis to
# persist anything. Made for speed, not durability: fsync is off.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=deploy/lib/engines.sh
. "$root/deploy/lib/engines.sh"

dir=$(engines_dir "${TEST_ENGINES_DIR:-${CARGO_TARGET_DIR:-$root/target}/test-engines}")
# One worktree's engines, started twice, are found again; two worktrees get different ports.
base_port=$((20000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 20000))

exports() {
  echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$(cat "$dir/postgres/port")/postgres"
  echo "export TEST_REDIS_URL=redis://127.0.0.1:$(cat "$dir/redis/port")"
}

start() {
  mkdir -p "$dir/logs"
  chmod 0711 "$dir/logs"
  local pg_port redis_port
  if pg_running "$dir/postgres"; then
    pg_port=$(cat "$dir/postgres/port")
  else
    pg_port=$(free_port "${TEST_PG_PORT:-$base_port}")
  fi
  # Many tests at once, each with its own database and pool.
  pg_start "$dir/postgres" "$pg_port" "$dir/logs/postgres.log" trust \
    "$(printf '%s\n' 'max_connections = 300' 'fsync = off' 'synchronous_commit = off' 'full_page_writes = off')"
  if redis_running "$dir/redis"; then
    redis_port=$(cat "$dir/redis/port")
  else
    redis_port=$(free_port "${TEST_REDIS_PORT:-$((base_port + 1))}")
  fi
  redis_start "$dir/redis" "$redis_port" "$dir/logs/redis.log"
  exports
}

stop() {
  redis_stop "$dir/redis"
  pg_stop "$dir/postgres"
}

running() {
  pg_running "$dir/postgres" && redis_running "$dir/redis"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  purge)
    stop
    rm -rf "$dir"
    ;;
  env)
    running || die "the test engines are not running: scripts/test-engines.sh start"
    exports
    ;;
  status)
    if pg_running "$dir/postgres"; then say "PostgreSQL: running on port $(cat "$dir/postgres/port")"; else say "PostgreSQL: stopped"; fi
    if redis_running "$dir/redis"; then say "Redis: running on port $(cat "$dir/redis/port")"; else say "Redis: stopped"; fi
    running || exit 1
    ;;
  *) die "usage: $0 start|env|status|stop|purge" ;;
esac
