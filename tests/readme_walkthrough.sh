#!/usr/bin/env bash
# Runs the README's curl walkthrough as a user would paste it: the ```sh blocks between the
# walkthrough markers, in one shell with `set -euo pipefail`, every curl failing on an HTTP
# error. Twice against one development server on a fresh database (the second run on the used
# database, within the development rate limits), then once more over HTTPS, set up as the
# README's HTTPS section says. Used by CI; needs curl, jq, python3 and `cargo build` first.
#   tests/readme_walkthrough.sh [path/to/filmvault]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/filmvault}
[ -x "$binary" ] || { echo "no filmvault binary at $binary: run cargo build first" >&2; exit 1; }
binary=$(realpath "$binary")
for tool in curl jq python3; do
  command -v "$tool" > /dev/null || { echo "the walkthrough needs $tool" >&2; exit 1; }
done

walkthrough=$(awk '
  /<!-- walkthrough:start/ { inside = 1; next }
  /<!-- walkthrough:end/   { inside = 0 }
  inside && /^```sh$/      { block = 1; next }
  inside && /^```$/        { block = 0; next }
  inside && block          { print }
' "$root/README.md")
[ "$(printf '%s\n' "$walkthrough" | grep -c '^curl')" -ge 20 ] \
  || { echo "README.md: no walkthrough between the walkthrough:start and :end markers" >&2; exit 1; }

work=$(mktemp -d)
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The server as `cargo run` starts it: development defaults (rate limits included), its own
# working directory (so no .env is read) and database.
start_server() {  # [VAR=value...]
  [ -n "${server:-}" ] && { kill "$server"; wait "$server" 2>/dev/null || true; }
  env -i PATH="$PATH" HOME="$work" DATABASE_URL="sqlite://$work/filmvault.db" APP_PORT="$http_port" \
    MAIL_OUTBOX_DIR="$work/mail-outbox" \
    "$@" "$binary" >> "$work/server.log" 2>&1 &
  server=$!
}
wait_until_up() {  # URL
  for _ in $(seq 100); do
    curl -sf "$1/health/live" > /dev/null && return
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1
}

run_walkthrough() {  # NAME API
  # The walkthrough's curls answer 4xx/5xx without failing; here every one of them fails the
  # run on any HTTP error, and none may hang.
  local prelude='set -euo pipefail
curl() { command curl --fail-with-body --show-error --max-time 30 "$@"; }
'
  if API=$2 ADMIN_PASSWORD=$admin_password MAIL_OUTBOX_DIR=$work/mail-outbox bash -c "$prelude$walkthrough" > "$work/$1.log" 2>&1; then
    echo "walkthrough $1: passed"
  else
    echo "WALKTHROUGH $1 FAILED; its output:" >&2
    cat "$work/$1.log" >&2
    echo "--- server log (tail)" >&2
    tail -20 "$work/server.log" >&2
    exit 1
  fi
}

http_port=$(free_port)
admin_password="walkthrough-keeper-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
env -i PATH="$PATH" DATABASE_URL="sqlite://$work/filmvault.db" RUST_LOG=warn \
  ADMIN_PASSWORD="$admin_password" \
  "$binary" create-admin --username admin --email admin@example.com > /dev/null

start_server
wait_until_up "http://127.0.0.1:$http_port"
run_walkthrough "1 (fresh database)" "http://127.0.0.1:$http_port"
sleep 1  # the walkthrough names its account after the current second
run_walkthrough "2 (used database, same minute)" "http://127.0.0.1:$http_port"

# HTTPS, as the README says: dev-cert, the two TLS variables, API and CURL_CA_BUNDLE.
https_port=$(free_port)
"$binary" dev-cert --out-dir "$work/certs" > /dev/null
start_server TLS_CERT_PATH="$work/certs/localhost.crt" TLS_KEY_PATH="$work/certs/localhost.key" \
  HTTPS_PORT="$https_port"
export CURL_CA_BUNDLE="$work/certs/dev-ca.crt"
wait_until_up "https://localhost:$https_port"
sleep 1
run_walkthrough "3 (HTTPS, used database)" "https://localhost:$https_port"
