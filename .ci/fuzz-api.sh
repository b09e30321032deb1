#!/usr/bin/env bash
# Property-based fuzzing of the running service against its own /openapi.json with
# schemathesis (PyPI): a bounded number of examples per operation; fails on any 5xx and on any
# response that violates the document (status, content type, headers, body schema).
#   .ci/fuzz-api.sh path/to/filmvault path/to/schemathesis [max-examples]
set -euo pipefail
binary=$(realpath "$1")
schemathesis=$2
examples=${3:-50}
work=$(mktemp -d)
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password="schema-keeper-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# Limits high enough that the fuzzer explores behaviour rather than the limiter (a 429 would
# still be a documented answer).
export DATABASE_URL="sqlite://$work/filmvault.db" APP_PORT=$port SEED_DEMO_DATA=true \
       RUST_LOG=${FUZZ_RUST_LOG:-warn} RATE_LIMIT_GLOBAL=100000/s RATE_LIMIT_AUTH=100000/s \
       RATE_LIMIT_WRITE=100000/s RATE_LIMIT_LOGIN_PER_USERNAME=100000/s \
       SUSPICIOUS_LOGIN_IPS_PER_USERNAME=1000 SUSPICIOUS_LOGIN_USERNAMES_PER_IP=1000
ADMIN_PASSWORD=$password "$binary" create-admin --username fuzzadmin --email fuzz@example.com > /dev/null
"$binary" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health/live" > /dev/null && break
  sleep 0.1
done

key_for() {  # USERNAME PASSWORD -> a read+write API key of that account
  local token
  token=$(curl -sf -X POST "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -sf -X POST "http://127.0.0.1:$port/api/v1/users/me/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"fuzzer","scopes":["read","write"]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
curl -sf -X POST "http://127.0.0.1:$port/api/v1/auth/register" -H 'Content-Type: application/json' \
  -d "{\"username\":\"fuzzuser\",\"email\":\"fuzzuser@example.com\",\"password\":\"$password\"}" > /dev/null
# API keys, not access tokens: the fuzzer calling /auth/logout or changing the password cannot
# end a key's session (keys are refused there).
user_key=$(key_for fuzzuser "$password")
admin_key=$(key_for fuzzadmin "$password")

# Credentials go through the document's api_key scheme: a fixed header beside them would be sent
# together with the bearer tokens schemathesis generates, which the service refuses as ambiguous.
cat > "$work/schemathesis.toml" <<'TOML'
[auth.openapi.api_key]
api_key = "${FUZZ_API_KEY}"
TOML
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
run() {  # KEY [schemathesis filters...]
  FUZZ_API_KEY=$1 "$schemathesis" --config-file "$work/schemathesis.toml" \
    run "http://127.0.0.1:$port/openapi.json" --checks "$checks" \
    --max-examples "$examples" --seed 20261123 --no-color "${@:2}"
}
echo "== every operation, as a regular user"
run "$user_key"
# As an admin, the read-only operations: fuzzing PATCH /admin/users as an admin would promote a
# random account and then disable the fuzzer's own admin (a legitimate sequence, but it ends
# the run's authentication).
echo "== admin reads, as an administrator"
run "$admin_key" --include-path-regex '^/(api/v1/admin/(users|audit-events)|metrics)$' --include-method GET

# actix logs malformed requests (the fuzzer sends some) at ERROR from its HTTP parser; they were
# answered 400. Anything else at ERROR is ours and fails the run.
if grep ERROR "$work/server.log" | grep -v 'actix_http::h1::dispatcher' | grep -q .; then
  echo "the server logged errors during fuzzing:"
  grep ERROR "$work/server.log" | grep -v 'actix_http::h1::dispatcher' | head -20
  exit 1
fi
echo "fuzzing passed"
