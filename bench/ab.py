#!/usr/bin/env python3
"""A/B: alternates settings or binaries, run after run, in one window.

    bench/ab.py --rounds 3 "old=--binary /tmp/hitcounter-old" "new="
    bench/ab.py "linger1ms=--app-env BATCH_LINGER=1ms" "default="
    bench/ab.py --path /badge/bench/badge-ab.svg "old=--binary /tmp/hitcounter-old" "new=--binary /tmp/hitcounter-new"

Each NAME=ARGS runs bench.py once per round (targets 2 and 3, fresh stack),
in turn: old, new, old, new, ... The machine's speed drifts by +-20% over
minutes (other work on the host, its disk), so only settings measured
alternately in the same window can be compared, and a single run proves
little: compare the spread over rounds. One line per run; the results go to
bench/results/ab-NAME-ROUND.json. Build the binaries first (bench.py is
called with --no-build; ARGS may name one with --binary).

--path PATH puts PATH in place of `/` as target 3's request (e.g. a badge,
/badge/NAMESPACE/KEY.svg); for a counting badge path the record is checked
against that counter, as it is against the seed's for `/`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# Runs bench.py's main() with target 3 sent to another path: argv[1] the
# path, argv[2] the SQL of its counter ("" for none), the rest bench.py's.
WITH_PATH = """
import sys
sys.path.insert(0, sys.argv[1])
import bench
path, record = sys.argv[2], sys.argv[3]
bench.TARGETS[3] = dict(bench.TARGETS[3], name=f"nginx->app {path}", path=path, record=record or None)
sys.argv = [str(bench.__file__)] + sys.argv[4:]
sys.exit(bench.main())
"""


def record_sql(path: str) -> str:
    """The SQL of the counter a counting badge path counts into, else ""."""
    m = re.fullmatch(r"/badge/(?:([A-Za-z0-9_.-]+)/)?([A-Za-z0-9_.-]+)\.svg(\?.*)?", path)
    if not m or re.search(r"[?&]hit=(0|false|no|off)(&|$)", m.group(3) or "", re.I):
        return ""
    namespace, key = m.group(1) or "default", m.group(2)
    return f"SELECT coalesce(sum(value), 0) FROM counters WHERE namespace = '{namespace}' AND key = '{key}'"


def line(name: str, data: dict) -> str:
    by = {(s["concurrency"], s["target"]): s for s in data["summary"]}
    parts = []
    for conc in sorted({c for c, _ in by}):
        if (conc, 2) not in by or (conc, 3) not in by:
            continue
        ceiling, hit = by[(conc, 2)], by[(conc, 3)]
        ratio = 100 * hit["ok_rps"] / ceiling["ok_rps"] if ceiling["ok_rps"] else 0
        parts.append(f"c={conc}: (3) {hit['ok_rps']:.0f} / (2) {ceiling['ok_rps']:.0f} = {ratio:.1f}%"
                     f"  p50 {hit['p50_ms']:.2f}  p99 {hit['p99_ms']:.2f} ms"
                     f"  idle {hit['cpu_cores'].get('idle', 0):.2f}")
    return f"{name:12s} " + " | ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="+", help="NAME=ARGS (ARGS for bench.py, may be empty)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--duration", default="6")
    ap.add_argument("--path", help="target 3 requests this path instead of / (e.g. /badge/bench/badge-ab.svg)")
    args = ap.parse_args()

    settings = []
    for spec in args.settings:
        name, sep, rest = spec.partition("=")
        if not sep or not name:
            ap.error(f"expected NAME=ARGS, got {spec!r}")
        settings.append((name, shlex.split(rest)))

    failed = 0
    for rnd in range(1, args.rounds + 1):
        for name, extra in settings:
            out = f"ab-{name}-{rnd}"
            runner = [str(BENCH / "bench.py")] if not args.path else \
                ["-c", WITH_PATH, str(BENCH), args.path, record_sql(args.path)]
            cmd = [sys.executable, *runner, "--no-build", "--targets", "2,3", "--reps", "1",
                   "--warmup", "1", "--concurrency", args.concurrency, "--duration", args.duration,
                   "--name", out, *extra]
            # bench.py exits 1 when a target is missed; only a missing result is a failure here.
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            path = BENCH / "results" / f"{out}.json"
            try:
                print(line(name, json.loads(path.read_text())), flush=True)
            except (OSError, ValueError, KeyError) as error:
                print(f"{name:12s} no result ({error}); run: {shlex.join(cmd)}", flush=True)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
