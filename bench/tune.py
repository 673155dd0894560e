#!/usr/bin/env python3
"""Tuning series: runs bench.py once per setting (targets 2, 3, 4 at the
given concurrencies) and tabulates what each setting changes on the hit path.

    bench/tune.py                      # the standard series, c=64 and 256
    bench/tune.py --only baseline,apps1
    bench/tune.py --concurrency 64 --reps 3

Each setting is a separate stack (fresh PostgreSQL, Redis, apps, nginx); the
baseline is run first and again last, so drift of the shared machine shows.
Results: bench/results/tune-<name>.json per setting, bench/results/tuning.txt.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SERIES = [
    ("baseline", "project settings, 2 apps", []),
    ("apps1", "1 app process", ["--apps", "1"]),
    ("apps3", "3 app processes", ["--apps", "3"]),
    ("apps4", "4 app processes", ["--apps", "4"]),
    ("keepalive32", "nginx upstream keepalive 32 (project: 256)", ["--nginx-set", "upstream_keepalive=32"]),
    ("accesslog-buffered", "nginx access_log buffer=64k flush=1s", ["--nginx-access-log", "buffered"]),
    ("accesslog-off", "nginx access_log off", ["--nginx-access-log", "off"]),
    ("nginx-workers2", "nginx worker_processes 2 (project: 1)", ["--nginx-set", "worker_processes=2"]),
    ("tokio2", "apps: TOKIO_WORKER_THREADS=2, one per core (bench default 1, as compose's cpus: 1.0 gives)",
     ["--app-env", "TOKIO_WORKER_THREADS=2"]),
    ("pool2", "apps: DB_POOL_SIZE=2 (default 8)", ["--app-env", "DB_POOL_SIZE=2"]),
    ("linger0", "apps: BATCH_LINGER=0 (commit as soon as the previous one is done)", ["--app-env", "BATCH_LINGER=0s"]),
    ("linger1ms", "apps: BATCH_LINGER=1ms (default 3ms)", ["--app-env", "BATCH_LINGER=1ms"]),
    ("linger6ms", "apps: BATCH_LINGER=6ms (default 3ms)", ["--app-env", "BATCH_LINGER=6ms"]),
    ("apps1-keepalive32", "1 app process, nginx upstream keepalive 32",
     ["--apps", "1", "--nginx-set", "upstream_keepalive=32"]),
    ("maxbatch64", "apps: MAX_BATCH=64 (default 4096)", ["--app-env", "MAX_BATCH=64"]),
    ("sync-commit-off", "PostgreSQL synchronous_commit=off (NOT durable: measures the fsync's share)",
     ["--pg-set", "synchronous_commit=off"]),
    ("baseline-again", "project settings again (drift check)", []),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated names from the series")
    ap.add_argument("--concurrency", default="64,256")
    ap.add_argument("--reps", default="2")
    ap.add_argument("--duration", default="6")
    ap.add_argument("--bench-arg", action="append", default=[],
                    help="passed on to bench.py, e.g. --bench-arg=--binary=/tmp/hitcounter (repeatable)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--extra", action="append", default=[], help="NAME:DESCRIPTION:ARG ARG ... (one more setting)")
    args = ap.parse_args()
    series = list(SERIES)
    for item in args.extra:
        name, desc, rest = item.split(":", 2)
        series.insert(-1, (name, desc, rest.split()))
    if args.only:
        wanted = args.only.split(",")
        series = [s for s in series if s[0] in wanted]

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=BENCH.parent, check=True)
    rows = []
    for name, desc, extra in series:
        print(f"== {name}: {desc}", file=sys.stderr, flush=True)
        cmd = [sys.executable, str(BENCH / "bench.py"), "--no-build", "--targets", "2,3,4", "--warmup", "1",
               "--concurrency", args.concurrency, "--reps", args.reps, "--duration", args.duration,
               "--name", f"tune-{name}", *args.bench_arg, *extra]
        subprocess.run(cmd, stdout=subprocess.DEVNULL)
        path = BENCH / "results" / f"tune-{name}.json"
        data = json.loads(path.read_text())
        by = {(s["concurrency"], s["target"]): s for s in data["summary"]}
        for conc in [int(c) for c in args.concurrency.split(",")]:
            two, three, four = by[(conc, 2)], by[(conc, 3)], by[(conc, 4)]
            rows.append(dict(
                name=name, desc=desc, c=conc, healthz=two["rps"], hit=three["rps"], direct=four["rps"],
                ratio=three["rps"] / two["rps"], p99=three["p99_ms"], p999=three["p999_ms"],
                direct_p99=four["p99_ms"], hpc=three.get("hits_per_commit", 0),
                errors=three["non_2xx"] + three["socket_errors"],
                rss=max(v for v in data["meta"]["app_peak_rss_kb"].values()) / 1024,
                noisy=two["noisy_reps"] + three["noisy_reps"] + four["noisy_reps"],
                exact=all(r.get("record_exact", True) for r in data["runs"]),
            ))
        write(rows)
    write(rows, final=True)


def write(rows, final=False):
    head = (f"{'setting':<20} {'c':>4} {'(2) rps':>8} {'(3) rps':>8} {'(3)/(2)':>8} {'(3) p99':>8} {'p99.9':>7} "
            f"{'(4) rps':>8} {'(4) p99':>8} {'hits/commit':>11} {'err':>4} {'RSS MB':>6} {'exact':>5} {'noisy':>5}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['name']:<20} {r['c']:>4} {r['healthz']:>8.0f} {r['hit']:>8.0f} {r['ratio'] * 100:>7.1f}% "
                     f"{r['p99']:>8.2f} {r['p999']:>7.2f} {r['direct']:>8.0f} {r['direct_p99']:>8.2f} "
                     f"{r['hpc']:>11.1f} {r['errors']:>4} {r['rss']:>6.1f} {'yes' if r['exact'] else 'NO':>5} "
                     f"{r['noisy']:>5}")
    lines.append("")
    for name, desc in dict((r["name"], r["desc"]) for r in rows).items():
        lines.append(f"  {name:<20} {desc}")
    text = "\n".join(lines) + "\n"
    (BENCH / "results" / "tuning.txt").write_text(text)
    if final:
        print(text)


if __name__ == "__main__":
    main()
