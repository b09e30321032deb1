#!/usr/bin/env bash
# TLS scan of the HTTPS listener with sslyze (PyPI): only TLS 1.2 and 1.3, forward-secret AEAD
# suites only, the configured certificate served, no compression or insecure renegotiation.
#   .ci/tls-scan.sh path/to/filmvault path/to/python-with-sslyze
set -euo pipefail
binary=$(realpath "$1")
python=$2
work=$(mktemp -d)
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
https_port=$(free_port)
"$binary" dev-cert --out-dir "$work/certs" > /dev/null
DATABASE_URL="sqlite://$work/filmvault.db" APP_PORT=$http_port HTTPS_PORT=$https_port \
  TLS_CERT_PATH="$work/certs/localhost.crt" TLS_KEY_PATH="$work/certs/localhost.key" \
  RUST_LOG=warn "$binary" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -sf --cacert "$work/certs/dev-ca.crt" "https://localhost:$https_port/health/live" > /dev/null && break
  sleep 0.1
done

"$python" -m sslyze --quiet --mozilla_config=disable \
  --certinfo --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 --compression --heartbleed --reneg \
  --json_out="$work/scan.json" "localhost:$https_port"
"$python" - "$work/scan.json" "$work/certs/localhost.crt" <<'PY'
import base64, hashlib, json, ssl, sys

scan = json.load(open(sys.argv[1]))["server_scan_results"][0]["scan_result"]
pem = open(sys.argv[2]).read()
first_cert = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
expected = base64.b64encode(hashlib.sha256(ssl.PEM_cert_to_DER_cert(first_cert)).digest()).decode()
failures = []

def accepted(version):
    return scan[f"{version}_cipher_suites"]["result"]["accepted_cipher_suites"]

for version in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"]:
    if accepted(version):
        failures.append(f"{version} is accepted")
for version in ["tls_1_2", "tls_1_3"]:
    if not accepted(version):
        failures.append(f"{version} is not supported")
for suite in accepted("tls_1_2"):
    name = suite["cipher_suite"]["name"]
    if not name.startswith("TLS_ECDHE_") or not suite.get("ephemeral_key"):
        failures.append(f"TLS 1.2 suite without forward secrecy: {name}")
    if "GCM" not in name and "CHACHA20_POLY1305" not in name:
        failures.append(f"TLS 1.2 suite that is not AEAD: {name}")
served = scan["certificate_info"]["result"]["certificate_deployments"][0]["received_certificate_chain"][0]
if served["fingerprint_sha256"] != expected:
    failures.append("the served certificate is not the configured one")
if scan["tls_compression"]["result"]["supports_compression"]:
    failures.append("TLS compression is enabled")
if scan["heartbleed"]["result"]["is_vulnerable_to_heartbleed"]:
    failures.append("vulnerable to heartbleed")
renegotiation = scan["session_renegotiation"]["result"]
if not renegotiation["supports_secure_renegotiation"] or renegotiation["is_vulnerable_to_client_renegotiation_dos"]:
    failures.append("insecure renegotiation")

suites = [s["cipher_suite"]["name"] for v in ["tls_1_2", "tls_1_3"] for s in accepted(v)]
print("accepted:", ", ".join(suites))
if failures:
    print("TLS SCAN FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("TLS scan passed: TLS 1.2/1.3 only, forward-secret AEAD suites, the configured certificate")
PY
