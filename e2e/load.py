#!/usr/bin/env python3
"""Bounded HTTP load for the e2e checks, and the analysis of what it saw.

  load.py run --url http://127.0.0.1:PORT/ --out FILE [--clients 8]
              [--max-seconds 120] [--stop-file PATH] [--max-requests N]
      GETs the URL from several clients (each one keep-alive connection, one
      request at a time) until the stop file appears, the request budget is
      spent or the time is up. Every answer is written to FILE as one line:
      "<unix time> <client> <status> <number or -> <error or ->".

  load.py analyze FILE [--from T] [--to T]
      Prints a JSON summary: requests, ok, failed (non-200 or no answer),
      first errors, per-client regressions (a client seeing a number not
      above its previous one), duplicate numbers across clients, and the
      highest number seen in the window.

Standard library only. Traffic goes only to the URL given (127.0.0.1).
"""

import argparse
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse

NUMBER = re.compile(rb"viewed (\d+) time")


def run(args):
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    path = url.path or "/"
    deadline = time.time() + args.max_seconds
    lock = threading.Lock()
    budget = [args.max_requests]
    out = open(args.out, "w", buffering=1)

    def stopping():
        if time.time() > deadline:
            return True
        if args.stop_file and os.path.exists(args.stop_file):
            return True
        with lock:
            if budget[0] is not None:
                if budget[0] <= 0:
                    return True
                budget[0] -= 1
        return False

    def client(cid):
        conn = None
        while not stopping():
            status, number, error = 0, "-", "-"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                m = NUMBER.search(body)
                if m:
                    number = m.group(1).decode()
                if status != 200:
                    error = body[:80].decode("utf-8", "replace").replace(" ", "_").replace("\n", "")
                    error = error or "-"
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # noqa: BLE001 - every failure is a data point
                error = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                out.write(f"{time.time():.3f} {cid} {status} {number} {error}\n")
            if args.pause:
                time.sleep(args.pause)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


def analyze(args):
    rows = []
    with open(args.file) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            t, cid, status, number, error = parts
            t = float(t)
            if args.from_ is not None and t < args.from_:
                continue
            if args.to is not None and t > args.to:
                continue
            rows.append((t, int(cid), int(status), None if number == "-" else int(number), error))
    ok = sum(1 for r in rows if r[2] == 200)
    failed = [r for r in rows if r[2] != 200]
    last = {}
    regressions = 0
    seen = {}
    for t, cid, status, number, _ in rows:
        if status != 200 or number is None:
            continue
        if cid in last and number <= last[cid]:
            regressions += 1
        last[cid] = number
        seen[number] = seen.get(number, 0) + 1
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    numbers = [r[3] for r in rows if r[2] == 200 and r[3] is not None]
    summary = {
        "requests": len(rows),
        "ok": ok,
        "failed": len(failed),
        "errors": [f"{r[2]} {r[4]}" for r in failed[:5]],
        "regressions": regressions,
        "duplicates": duplicates,
        "min": min(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
        "seconds": round(rows[-1][0] - rows[0][0], 1) if rows else 0,
    }
    print(json.dumps(summary))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--clients", type=int, default=8)
    r.add_argument("--max-seconds", type=float, default=120)
    r.add_argument("--max-requests", type=int, default=None)
    r.add_argument("--stop-file")
    r.add_argument("--pause", type=float, default=0.0)
    a = sub.add_parser("analyze")
    a.add_argument("file")
    a.add_argument("--from", dest="from_", type=float)
    a.add_argument("--to", type=float)
    args = p.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        analyze(args)


if __name__ == "__main__":
    sys.exit(main())
