#!/usr/bin/env bash
# Smoke test of deploy/cluster.sh: three instances behind HAProxy on a fresh folder, checked
# through the proxy over HTTPS with the generated CA, one instance killed (kill -9) and the
# proxy routing around it; then .ci/cluster-checks.py across the processes: a shared rate
# limit, exact votes, and acknowledged writes kept while an instance is killed mid-stream;
# then everything stopped.
#
#   .ci/cluster-smoke.sh BINARY     (CLUSTER_DB=postgres or sqlite, as for cluster.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib/engines.sh
. deploy/lib/engines.sh

export FILMVAULT_BIN=$1 CLUSTER_INSTANCES=3 SEED_DEMO_DATA=true
dir=$(engines_dir "${CARGO_TARGET_DIR:-target}/ci-cluster")
# A fresh folder: whatever an interrupted run left is stopped, then deleted.
deploy/cluster.sh stop "$dir" 2> /dev/null
find "$dir" -mindepth 1 -delete
export CLUSTER_HTTPS_PORT CLUSTER_HTTP_PORT CLUSTER_APP_PORT CLUSTER_PG_PORT CLUSTER_REDIS_PORT
CLUSTER_HTTPS_PORT=$(free_port 28443)
CLUSTER_HTTP_PORT=$(free_port 28080)
CLUSTER_APP_PORT=$(free_port 28100)
CLUSTER_PG_PORT=$(free_port 28432)
CLUSTER_REDIS_PORT=$(free_port 28379)
trap 'deploy/cluster.sh stop "$dir"' EXIT
# The writers of cluster-checks.py send hundreds of requests a second from 127.0.0.1; the
# limits they would trip are not what they test (the auth limit keeps production's 5/min).
# Its users cannot open a verification mail, and verification is not what it tests either.
printf '%s\n' RATE_LIMIT_GLOBAL=100000/min RATE_LIMIT_WRITE=100000/min \
  REQUIRE_EMAIL_VERIFICATION=false > "$dir/.env"

deploy/cluster.sh start "$dir"
api=https://localhost:$CLUSTER_HTTPS_PORT
ca=$dir/certs/dev-ca.crt

fail() {
  echo "FAIL: $*" >&2
  tail -n 30 "$dir/logs/haproxy.log" >&2 || true
  exit 1
}

# status_of URL [curl options…]: the HTTP status, through the proxy with the cluster's CA.
status_of() {
  local url=$1
  shift
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$ca" "$@" "$url"
}

expect_all_ok() {
  local what=$1 n=$2 code
  for _ in $(seq "$n"); do
    code=$(status_of "$api/api/v1/films?limit=5")
    [ "$code" = 200 ] || fail "$what: a film list answered $code"
  done
  echo "ok: $what ($n film lists, every one 200)"
}

code=$(status_of "$api/health/ready")
[ "$code" = 200 ] || fail "/health/ready through the proxy answered $code"
echo "ok: /health/ready through the proxy over HTTPS"

# Round robin: consecutive requests reach every instance, and all see the same catalogue.
totals=$(for _ in 1 2 3; do
  curl -sS --max-time 10 --cacert "$ca" "$api/api/v1/films?limit=1" | grep -o '"total":[0-9]*'
done | sort -u)
if [ "$(echo "$totals" | wc -l)" != 1 ] || [ "$totals" = '"total":0' ]; then
  fail "the instances do not serve one catalogue: $totals"
fi
served_by=$(grep -c 'https_in~ filmvault/app' "$dir/logs/haproxy.log" || true)
for i in 1 2 3; do
  grep -q "https_in~ filmvault/app$i " "$dir/logs/haproxy.log" || fail "no request reached instance $i"
done
echo "ok: one catalogue ($totals) served by all three instances ($served_by requests)"

# A client's X-Forwarded-For is replaced by the proxy: the instance logs the real peer.
request_id=$(curl -sS -D - -o /dev/null --max-time 10 --cacert "$ca" \
  -H 'X-Forwarded-For: 203.0.113.66' "$api/api/v1/films/1" |
  tr -d '\r' | awk -F': ' 'tolower($1) == "x-request-id" { print $2 }')
[ -n "$request_id" ] || fail "no X-Request-Id in the answer"
sleep 0.2
logged=$(grep -h "$request_id" "$dir"/logs/instance-*.log | grep -o '"client_ip":"[^"]*"' | head -n1)
[ "$logged" = '"client_ip":"127.0.0.1"' ] ||
  fail "a forged X-Forwarded-For reached the instance: it logged ${logged:-nothing} for $request_id"
echo "ok: a forged X-Forwarded-For is replaced (the instance logged $logged)"

# Plain HTTP: pages redirect to the public URL, the API is refused.
location=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 10 \
  "http://127.0.0.1:$CLUSTER_HTTP_PORT/static/index.html")
[ "$location" = "301 $api/static/index.html" ] || fail "plain-HTTP page: $location"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$CLUSTER_HTTP_PORT/api/v1/films")
[ "$code" = 403 ] || fail "the API over plain HTTP answered $code"
echo "ok: plain HTTP redirects pages to $api and refuses the API"

# One instance dies without warning: the proxy retries the refused connection elsewhere at
# once, and takes the instance out after its health checks fail.
kill -KILL "$(cat "$dir/run/instance-2.pid")"
expect_all_ok "instance 2 killed, before the health checks notice" 9
for _ in $(seq 50); do
  grep -q 'filmvault/app2 is DOWN' "$dir/logs/haproxy.log" && break
  sleep 0.1
done
grep -q 'filmvault/app2 is DOWN' "$dir/logs/haproxy.log" || fail "HAProxy did not mark instance 2 down within 5 s"
expect_all_ok "instance 2 marked down" 9
if deploy/cluster.sh status "$dir" > /dev/null; then fail "status reports a healthy cluster with instance 2 dead"; fi

# `start` again brings back only what is missing.
deploy/cluster.sh start "$dir"
for _ in $(seq 50); do
  grep -q 'filmvault/app2 is UP' "$dir/logs/haproxy.log" && break
  sleep 0.1
done
grep -q 'filmvault/app2 is UP' "$dir/logs/haproxy.log" || fail "instance 2 did not come back within 5 s"
deploy/cluster.sh status "$dir"
expect_all_ok "instance 2 back" 6

.ci/cluster-checks.py "$dir" "$CLUSTER_APP_PORT" "$api" "$ca" || fail "the cluster checks failed"
echo "cluster smoke test passed (CLUSTER_DB=${CLUSTER_DB:-postgres})"
