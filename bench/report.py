"""Turns bench/run.sh's TSV into the markdown of bench/RESULTS.md, targets included."""
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
cpus, duration, connections = sys.argv[2], sys.argv[3], sys.argv[4]
runs = {}
for r in rows:
    if r[0] in ("flask", "ceiling", "filmvault"):
        runs[(r[0], r[1])] = dict(rps=float(r[2] or 0), p50=int(r[3] or 0) / 1000,
                                  p99=int(r[4] or 0) / 1000, errors=int(r[5] or 0),
                                  rss=int(r[6] or 0) / 1024)
log = next((r for r in rows if r[0] == "log"), None)
storm = next((r for r in rows if r[0] == "storm"), None)
rest = next((r for r in rows if r[0] == "rest"), None)
limiter = [r for r in rows if r[0] == "limiter"]

def ratio(a, b):
    return f"{a / b:.2f}×" if b else "–"

out = [f"Machine: {cpus} CPUs (wrk pinned to CPU 0, each server to CPU 1), {connections} "
       f"connections, {duration} s per measured run after a 2 s warm-up, loopback.", ""]
out += ["| workload | server | req/s | p50 ms | p99 ms | errors | peak RSS MiB | vs Flask | vs ceiling |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
# A revalidation (304) is compared with the references' plain read: they have no ETag.
reference_of = {"read": "read", "revalidate": "read", "list": "list", "like": "like", "add": "add"}
for workload in ["read", "revalidate", "list", "like", "add", "login"]:
    for server in ["flask", "ceiling", "filmvault"]:
        run = runs.get((server, workload))
        if not run:
            continue
        flask = runs.get(("flask", reference_of.get(workload, "")))
        ceiling = runs.get(("ceiling", reference_of.get(workload, "")))
        versus_flask = ratio(run["rps"], flask["rps"]) if server == "filmvault" and flask else ""
        versus_ceiling = ratio(run["rps"], ceiling["rps"]) if server == "filmvault" and ceiling else ""
        out.append(f"| {workload} | {server} | {run['rps']:.0f} | {run['p50']:.2f} | {run['p99']:.2f} "
                   f"| {run['errors']} | {run['rss']:.1f} | {versus_flask} | {versus_ceiling} |")
out.append("")

fv = lambda w: runs.get(("filmvault", w), {})
targets = []
ceiling_read = max(runs.get(("ceiling", "read"), {}).get("rps", 1), 1)
# Issue 18, item 7: against the ceiling's read (its only list-like route) and Flask's writes.
for workload, name, least in [("read", "authenticated read", 1.0),
                              ("revalidate", "304 revalidation", 1.2),
                              ("list", "list page", 0.5)]:
    if not fv(workload):
        targets.append((f"{name} ≥ {least}× the ceiling's read", "not measured", False))
        continue
    share = fv(workload)["rps"] / ceiling_read
    targets.append((f"{name} ≥ {least}× the ceiling's read", f"{share:.2f}×", share >= least))
for w, least in [("like", 20), ("add", 15)]:
    times = fv(w).get("rps", 0) / max(runs.get(("flask", w), {}).get("rps", 1), 1)
    clean = fv(w).get("errors", 1) == 0
    targets.append((f"{w} (write) ≥ {least}× Flask, zero errors", f"{times:.1f}×, {fv(w).get('errors')} errors", times >= least and clean))
if log:
    targets.append(("no SQLITE_BUSY and no 5xx in the whole run", f"{log[2]} busy, {log[3]} 5xx", log[2] == "0" and log[3] == "0"))
if storm:
    p99 = int(storm[4] or 0) / 1000
    read_errors = int(storm[7] or 0) if len(storm) > 7 else 0
    refused = storm[8] if len(storm) > 8 else "?"
    targets.append(("read p99 during a 300-connection login storm ≤ 25 ms, zero read errors",
                    f"{p99:.1f} ms, {read_errors} read errors ({float(storm[5] or 0):.0f} logins/s, "
                    f"{refused} refused with 503)", p99 <= 25 and read_errors == 0))
peak = max([run["rss"] for (server, _), run in runs.items() if server == "filmvault"] +
           [int(storm[6]) / 1024 if storm else 0])
targets.append(("peak RSS under load < 64 MiB", f"{peak:.1f} MiB", peak < 64))
if len(limiter) == 2:
    before = int(limiter[0][2]) / 1024
    full = [int(r[4]) / 1024 for r in limiter]
    purged_keys = [int(float(r[5] or 0)) for r in limiter]
    flat = full[1] <= full[0] * 1.1 and all(k < 1000 for k in purged_keys)
    targets.append(("limiter memory flat with 100 000 client keys",
                    f"RSS {before:.1f} → {full[0]:.1f} MiB (round 1) → {full[1]:.1f} MiB (round 2); "
                    f"keys after purge {purged_keys}", flat))
out += ["| target | measured | met |", "| --- | --- | --- |"]
out += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets]
if rest:
    out += ["", f"RSS at rest, 8 s after the last workload: {int(rest[1]) / 1024:.1f} MiB."]
print("\n".join(out))
