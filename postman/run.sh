#!/usr/bin/env bash
# Runs the Postman collection with newman against a freshly started server (its own temporary
# database, an administrator made with create-admin), twice in a row with the development rate
# limits: a second run on the used database within the same minute must pass too. Used by CI.
# Builds nothing: `cargo build` first. Installs newman (npm ci) when it is missing or stale.
#   postman/run.sh [path/to/filmvault]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-${CARGO_TARGET_DIR:-$here/../target}/debug/filmvault}
[ -x "$binary" ] || { echo "no filmvault binary at $binary: run cargo build first" >&2; exit 1; }
binary=$(realpath "$binary")
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin_password="postman-keeper-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# One run of the collection stays within development's auth limit (30/min, what a Postman
# user meets); the two runs back to back here need twice that.
export DATABASE_URL="sqlite://$work/filmvault.db" APP_PORT=$port SEED_DEMO_DATA=true \
       DATA_ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64 -w0)" \
       RATE_LIMIT_AUTH=60/min RUST_LOG=warn

cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# npm ci wipes and reinstalls node_modules: only when the lock file changed since the last one.
newman="$here/node_modules/.bin/newman"
if [ ! -x "$newman" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

ADMIN_PASSWORD=$admin_password "$binary" create-admin --username admin --email admin@example.com
"$binary" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health/live" > /dev/null && break
  sleep 0.1
done

for run in 1 2; do
  echo "== newman run $run"
  "$newman" run "$here/collection.json" \
    --environment "$here/environment.json" \
    --env-var "base_url=http://127.0.0.1:$port" \
    --env-var "admin_password=$admin_password" \
    --bail --color off
done
