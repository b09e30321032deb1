"""What one request of each kind costs the engines behind one filmvault instance, counted
rather than estimated (bench/cluster.sh runs it against configuration (b)):

* PostgreSQL statements per request, by statement, from pg_stat_statements (reset before each
  kind; `track = all`, so statements run by triggers show as nested);
* transactions per request, from pg_stat_database's xact_commit + xact_rollback;
* WAL bytes per request, from pg_current_wal_lsn(), with autovacuum off and a CHECKPOINT
  before each kind: the first change to each page after a checkpoint writes the whole page,
  so this is the cost right after a checkpoint, the most it gets;
* Redis commands per request, by command, from INFO commandstats (reset before each kind).
  The commands a script runs (TIME, GET, SET, ...) are counted there too; round trips are the
  commands the service sends itself, which `src/cluster/store.rs` limits to ROUND_TRIPS, and
  Redis's own time is theirs (a script's time includes the commands it runs).

Each kind sends COUNT requests one after another on one keep-alive connection, as a fresh
user (so every like is a first vote), then waits FLUSH_WAIT: a PostgreSQL 15 backend reports
its transaction counts within 10 s of going idle. A window with no request at all measures
the background (the revocation channel's PINGs), which is subtracted in
proportion to each window's length (except the WAL, which autovacuum or a checkpoint make
too lumpy to subtract). The revocation resync (`src/auth/revocation.rs`: two queries at start,
after a reconnection and every 60 s) may land in any window; its statements are reported
apart, not as a cost of the kind. Prints TSV rows `cost KIND COUNT METRIC PER_REQUEST`.
"""

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.parse

FLUSH_WAIT = 11.0
OWN_REDIS_COMMANDS = {"info", "config", "auth", "hello", "client"}
# Revocations::resync, on a timer: never a cost of the request it happens to coincide with.
RESYNC = ("SELECT id, token_version FROM users WHERE token_version >",
          "SELECT family_id, max(revoked_at) FROM refresh_tokens")
# Everything RedisStore sends (src/cluster/store.rs); the rest runs inside scripts.
ROUND_TRIPS = {"evalsha", "eval", "script", "publish", "del", "ping"}

STATEMENTS = r"""
SELECT coalesce(json_agg(json_build_object(
         'top', s.toplevel, 'calls', s.calls,
         'query', left(regexp_replace(s.query, '\s+', ' ', 'g'), 160))), '[]')
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
JOIN pg_roles r ON r.oid = s.userid
WHERE d.datname = 'filmvault' AND r.rolname = 'filmvault';
"""
COUNTERS = """
SELECT json_build_object(
  'xacts', (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'filmvault'),
  'wal', pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'));
"""


class Engines:
    def __init__(self, psql, redis):
        self.psql_command = psql
        self.redis_command = shlex.split(redis)

    def sql(self, text):
        out = subprocess.run(self.psql_command, shell=True, executable="/bin/bash", input=text,
                             text=True, capture_output=True, check=True).stdout
        return out.strip().splitlines()[-1] if out.strip() else ""

    def redis(self, *args):
        return subprocess.run(self.redis_command + list(args), text=True, capture_output=True,
                              check=True).stdout

    def reset(self):
        self.sql("CHECKPOINT;")
        self.sql("SELECT pg_stat_statements_reset();")
        self.redis("CONFIG", "RESETSTAT")
        return json.loads(self.sql(COUNTERS))

    def read(self, since):
        now = json.loads(self.sql(COUNTERS))
        statements = {}
        for row in json.loads(self.sql(STATEMENTS)):
            key = ("" if row["top"] else "(nested) ") + row["query"]
            statements[key] = statements.get(key, 0) + row["calls"]
        commands = {}
        for line in self.redis("INFO", "commandstats").splitlines():
            if not line.startswith("cmdstat_"):
                continue
            name, fields = line[len("cmdstat_"):].split(":", 1)
            if name.split("|")[0] in OWN_REDIS_COMMANDS:
                continue
            values = dict(field.split("=") for field in fields.split(","))
            commands[name] = (int(values["calls"]), float(values["usec"]))
        return {
            "xacts": now["xacts"] - since["xacts"],
            "wal": now["wal"] - since["wal"],
            "statements": statements,
            "commands": commands,
        }


class Client:
    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.token = None

    def call(self, method, path, body=None, expect=200):
        headers = {"Origin": "http://localhost:3000"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != expect:
            sys.exit(f"request_cost: {method} {path} answered {response.status}, not {expect}")
        return json.loads(data) if data else None


def kinds(user, password):
    login = {"username": user, "password": password}
    return {
        "idle": (0, lambda client, i: None),
        "read": (1000, lambda client, i: client.call("GET", f"/api/v1/films/{i % 1000 + 1}")),
        "like": (1000, lambda client, i: client.call("GET", f"/?like={i % 1000 + 1}")),
        "like again": (1000, lambda client, i: client.call("GET", f"/?like={i % 1000 + 1}")),
        "add": (1000, lambda client, i: client.call(
            "POST", "/add_film", {"name": f"Cost film {i}", "studio": "Cost studio"}, expect=201)),
        "login": (50, lambda client, i: client.call("POST", "/api/v1/auth/login", login)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--psql", required=True, help="shell command: psql on the database")
    parser.add_argument("--redis", required=True, help="redis-cli command (REDISCLI_AUTH)")
    args = parser.parse_args()
    password = os.environ["BENCH_PASSWORD"]  # the new user's, never on a command line
    engines = Engines(args.psql, args.redis)
    engines.sql("ALTER SYSTEM SET autovacuum = off; SELECT pg_reload_conf();")
    client = Client(args.url)
    user = f"cost{int(time.time())}"
    client.call("POST", "/api/v1/auth/register",
                {"username": user, "email": f"{user}@example.com", "password": password},
                expect=202)
    client.token = client.call("POST", "/api/v1/auth/login",
                               {"username": user, "password": password})["access_token"]
    time.sleep(FLUSH_WAIT)  # the registration's transactions are reported
    background = None
    for kind, (count, send) in kinds(user, password).items():
        client.connection.close()  # idle through the wait: reopened by the next request
        since = engines.reset()
        started = time.monotonic()
        for i in range(count):
            send(client, i)
        time.sleep(FLUSH_WAIT)
        window = time.monotonic() - started
        seen = engines.read(since)
        if kind == "idle":
            background = {"window": window, **seen}
            continue
        report(kind, count, window, seen, background)


def report(kind, count, window, seen, background):
    scale = window / background["window"]

    def net(value, idle):
        return (value - idle * scale) / count

    def row(metric, value, least=0.05):
        if abs(value) >= least:
            print(f"cost\t{kind}\t{count}\t{metric}\t{value:.2f}")

    def requests_own(table):
        return {q: c for q, c in table.items() if not q.startswith(RESYNC)}

    def resync(table):  # one implicit transaction per statement
        return sum(table.values()) - sum(requests_own(table).values())

    statements = requests_own(seen["statements"])
    idle_statements = requests_own(background["statements"])
    row("pg transactions", net(seen["xacts"] - resync(seen["statements"]),
                               background["xacts"] - resync(background["statements"])), 0.005)
    top = sum(calls for query, calls in statements.items() if not query.startswith("(nested)"))
    idle_top = sum(calls for query, calls in idle_statements.items() if not query.startswith("(nested)"))
    row("pg statements", net(top, idle_top), 0.005)
    for query, calls in sorted(statements.items(), key=lambda item: -item[1]):
        row(f"pg: {query}", net(calls, idle_statements.get(query, 0)))
    row("pg WAL bytes", seen["wal"] / count, 0.005)
    commands, idle_commands = seen["commands"], background["commands"]

    def total(table, index, names=None):
        return sum(v[index] for name, v in table.items() if names is None or name in names)

    row("redis round trips", net(total(commands, 0, ROUND_TRIPS), total(idle_commands, 0, ROUND_TRIPS)), 0.005)
    row("redis commands", net(total(commands, 0), total(idle_commands, 0)), 0.005)
    row("redis usec", net(total(commands, 1, ROUND_TRIPS), total(idle_commands, 1, ROUND_TRIPS)), 0.005)
    for name, (c, _) in sorted(commands.items(), key=lambda item: -item[1][0]):
        row(f"redis: {name}", net(c, idle_commands.get(name, (0, 0.0))[0]))


if __name__ == "__main__":
    main()
