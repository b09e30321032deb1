"""Turns bench/cluster.sh's TSV into markdown: throughput as ratios, the targets, where the
CPU went, and what each request costs the engines."""
import os
import sys

CONFIGS = {"sqlite": "(a) SQLite", "postgres": "(b) PostgreSQL + Redis",
           "durable": "(b) with synchronous_commit=on", "cluster": "(c) 3 instances + HAProxy",
           "flask": "Flask (seed)"}
ORDER = ["flask", "sqlite", "postgres", "durable", "cluster"]
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
machine = next(r for r in rows if r[0] == "machine")
runs = {}
for r in rows:
    if r[0] != "run":
        continue
    app, pg, redis, proxy, busy, total = (int(x) for x in r[9].split(","))
    runs[(r[1], r[2])] = dict(rps=float(r[3] or 0), p50=int(r[4] or 0) / 1000,
                              p99=int(r[5] or 0) / 1000, errors=int(r[6] or 0),
                              requests=int(r[7] or 0), load=r[8], app=app, pg=pg, redis=redis,
                              proxy=proxy, busy=busy, total=total)
errors_5xx = next((r for r in rows if r[0] == "errors5xx"), ["", "?", "?"])
costs = [r for r in rows if r[0] == "cost"]


def rps(config, workload):
    return runs.get((config, workload), {}).get("rps", 0)


def ratio(a, b, percent=False):
    if not b:
        return "–"
    return f"{a / b:.0%}" if percent else f"{a / b:.1f}×"


out = [f"Machine: {machine[1]} CPUs; all server-side processes of a configuration on CPU 1, wrk "
       f"on CPU 0; {machine[3]} connections, {machine[2]} s per measured run after a 2 s "
       f"warm-up; load average at the start {machine[4]}; commit `{machine[5]}`.", ""]

out += ["| workload | configuration | req/s | p50 ms | p99 ms | errors | vs (a) | vs Flask | load (1 min) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for workload in ["read", "like", "add"]:
    for config in ORDER:
        run = runs.get((config, workload))
        if not run:
            continue
        versus_a = ratio(run["rps"], rps("sqlite", workload), percent=True) if config not in ("flask", "sqlite") else ""
        versus_flask = ratio(run["rps"], rps("flask", workload)) if config != "flask" and rps("flask", workload) else ""
        out.append(f"| {workload} | {CONFIGS[config]} | {run['rps']:.0f} | {run['p50']:.2f} | "
                   f"{run['p99']:.2f} | {run['errors']} | {versus_a} | {versus_flask} | {run['load']} |")
out.append("")

targets = []
share = rps("postgres", "read") / max(rps("sqlite", "read"), 1)
targets.append(("(b) authenticated read ≥ 60 % of (a)", f"{share:.0%}", share >= 0.6))
for workload in ["like", "add"]:
    times = rps("postgres", workload) / max(rps("flask", workload), 1)
    targets.append((f"(b) {workload} ≥ 10× Flask", f"{times:.1f}×", times >= 10))
no_5xx = errors_5xx[1] == "0" and errors_5xx[2] == "0"
targets.append(("no 5xx (instances' and HAProxy's logs)",
                f"{errors_5xx[1]} from instances, {errors_5xx[2]} from HAProxy", no_5xx))
errors = sum(run["errors"] for (config, _), run in runs.items() if config != "flask")
targets.append(("no error of any kind in (a), (b), (c) (wrk: socket errors, status ≥ 400)",
                f"{errors}", errors == 0))
out += ["| target | measured | met |", "| --- | --- | --- |"]
out += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets]
out.append("")
out.append("For information, against Flask: "
           + ", ".join(f"{w} {ratio(rps(c, w), rps('flask', w))} for {CONFIGS[c]}"
                       for c in ["durable", "cluster"] for w in ["like", "add"])
           + "; (c) against (b): "
           + ", ".join(f"{w} {ratio(rps('cluster', w), rps('postgres', w), percent=True)}"
                       for w in ["read", "like", "add"]) + ".")
out.append("")

out += ["CPU time per request, µs, by component (all on CPU 1), and how busy CPU 1 was; "
        "*others* is CPU 1 time used by processes outside the configuration (the machine is "
        "shared) and by the kernel's network work not charged to a process.", "",
        "| workload | configuration | instances | PostgreSQL | Redis | HAProxy | total | CPU 1 busy | others |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for workload in ["read", "like", "add"]:
    for config in ORDER[1:]:
        run = runs.get((config, workload))
        if not run or not run["requests"]:
            continue
        per = lambda ticks: ticks * TICK_US / run["requests"]
        ours = run["app"] + run["pg"] + run["redis"] + run["proxy"]
        others = max(run["busy"] - ours, 0)
        cells = [f"{per(run[c]):.0f}" if run[c] else "–" for c in ("app", "pg", "redis", "proxy")]
        out.append(f"| {workload} | {CONFIGS[config]} | {' | '.join(cells)} | {per(ours):.0f} | "
                   f"{run['busy'] / max(run['total'], 1):.0%} | {others / max(run['total'], 1):.0%} |")
out.append("")

if costs:
    kinds = list(dict.fromkeys(r[1] for r in costs))
    value = {(r[1], r[3]): r[4] for r in costs}
    count = {r[1]: r[2] for r in costs}
    summary = ["pg transactions", "pg statements", "pg WAL bytes", "redis round trips",
               "redis commands", "redis usec"]
    out += ["What one request costs the engines, on (b), counted (bench/request_cost.py: "
            "pg_stat_statements, pg_stat_database, pg_current_wal_lsn, Redis INFO commandstats; "
            "idle background subtracted):", "",
            "| kind (requests) | PostgreSQL transactions | statements (round trips) | WAL bytes | "
            "Redis round trips | Redis commands (with those inside scripts) | Redis time µs |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind in kinds:
        cells = [value.get((kind, m), "0") for m in summary]
        out.append(f"| {kind} ({count[kind]}) | {' | '.join(cells)} |")
    out += ["", "Per statement (`(nested)`: run by a trigger or a foreign-key check) and per "
            "Redis command, calls per request:", ""]
    for kind in kinds:
        out.append(f"* **{kind}**")
        for r in costs:
            if r[1] == kind and r[3] not in summary:
                metric = r[3].replace("pg: ", "").replace("redis: ", "Redis ")
                out.append(f"  * {r[4]} × `{metric}`")
print("\n".join(out))
