"""What one request of each kind costs the engines behind one filmvault instance, counted
rather than estimated (bench/cluster.sh runs it against configuration (b)):

* PostgreSQL statements per request, by statement, from pg_stat_statements (reset before each
  kind; `track = all`, so statements run by triggers show as nested);
* transactions per request, from pg_stat_database's xact_commit + xact_rollback;
* WAL bytes per request, from pg_current_wal_lsn();
* Redis commands per request, by command, from INFO commandstats (reset before each kind):
  EVALSHA is one round trip, the commands its script runs (TIME, GET, SET) are counted too.

Each kind sends COUNT requests one after another on one keep-alive connection, as a fresh
user (so every like is a first vote), then waits FLUSH_WAIT: a PostgreSQL 15 backend reports
its transaction counts within 10 s of going idle. A window with no request at all measures
the background (the revocation channel's PINGs, its periodic resync), which is subtracted in
proportion to each window's length. Prints TSV rows `cost KIND COUNT METRIC PER_REQUEST`.
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
        "login": (20, lambda client, i: client.call("POST", "/api/v1/auth/login", login)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--psql", required=True, help="shell command: psql on the database")
    parser.add_argument("--redis", required=True, help="redis-cli command (REDISCLI_AUTH)")
    args = parser.parse_args()
    password = os.environ["BENCH_PASSWORD"]  # the new user's, never on a command line
    engines = Engines(args.psql, args.redis)
    client = Client(args.url)
    user = f"cost{int(time.time())}"
    client.call("POST", "/api/v1/auth/register",
                {"username": user, "email": f"{user}@example.com", "password": password},
                expect=201)
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

    def row(metric, value):
        if abs(value) >= 0.005:
            print(f"cost\t{kind}\t{count}\t{metric}\t{value:.2f}")

    statements = seen["statements"]
    idle_statements = background["statements"]
    row("pg transactions", net(seen["xacts"], background["xacts"]))
    top = sum(calls for query, calls in statements.items() if not query.startswith("(nested)"))
    idle_top = sum(calls for query, calls in idle_statements.items() if not query.startswith("(nested)"))
    row("pg statements", net(top, idle_top))
    for query, calls in sorted(statements.items(), key=lambda item: -item[1]):
        row(f"pg: {query}", net(calls, idle_statements.get(query, 0)))
    row("pg WAL bytes", net(seen["wal"], background["wal"]))
    commands, idle_commands = seen["commands"], background["commands"]
    calls = sum(c for c, _ in commands.values())
    idle_calls = sum(c for c, _ in idle_commands.values())
    row("redis commands", net(calls, idle_calls))
    for name, (c, usec) in sorted(commands.items(), key=lambda item: -item[1][0]):
        idle_c, idle_usec = idle_commands.get(name, (0, 0.0))
        row(f"redis: {name}", net(c, idle_c))
        row(f"redis usec: {name}", net(usec, idle_usec))


if __name__ == "__main__":
    main()
