#!/usr/bin/env python3
"""Bounded HTTP load for the e2e checks, and the analysis of what it saw.

  load.py run --url http://127.0.0.1:PORT/ --out FILE [--clients 8]
              [--max-seconds 120] [--stop-file PATH] [--max-requests N]
              [--retry-reused]
      GETs the URL from several clients (each one keep-alive connection, one
      request at a time) until the stop file appears, the request budget is
      spent or the time is up. Every answer is written to FILE as one line:
      "<unix time> <client> <status> <number or -> <error or ->".
      --retry-reused: a GET on a kept-alive connection that the server
      closed before answering is retried once on a new connection, as real
      clients do; the error field then says "retried:<why>".

  load.py analyze FILE [--from T] [--to T]
      Prints a JSON summary: requests, ok, failed (non-200 or no answer),
      first errors, per-client regressions (a client seeing a number not
      above its previous one), duplicate numbers across clients, the
      highest number seen in the window, and the count of each status.

  load.py request --url URL [--method M] [--header "Name: value"]...
      One request; prints "<status> <body>" (for checks from a container).

  load.py slowloris --host H --port P --connections N --hold SECONDS
      Keeps N connections open for SECONDS, each sending a partial request
      head and then one more header line every second, never the blank line
      that ends the head; one the server closes is replaced. Prints a JSON
      summary: opened, most open at once, how many the server closed and
      their median age then.

Standard library only. Traffic goes only to the URL or host given: 127.0.0.1
from the host, or the stack's own nginx container from a client container on
the e2e's own Docker network.
"""

import argparse
import http.client
import json
import os
import re
import socket
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
                    conn.reused = False
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    # --retry-reused: a kept-alive connection the server
                    # closed before answering (nginx closes idle ones when
                    # it reloads) is retried once on a new one, as browsers,
                    # curl and Go do for a GET (RFC 9112, 9.3.1).
                    if not (args.retry_reused and conn.reused):
                        raise
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                    conn.reused = False
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    error = "retried:" + type(exc).__name__
                conn.reused = True
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
        "retried": sum(1 for r in rows if r[4].startswith("retried:")),
        "statuses": {str(s): sum(1 for r in rows if r[2] == s) for s in sorted({r[2] for r in rows})},
    }
    print(json.dumps(summary))


def request(args):
    url = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    headers = dict(h.split(":", 1) for h in args.header)
    conn.request(args.method, url.path or "/", headers={k.strip(): v.strip() for k, v in headers.items()})
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace").strip()
    print(resp.status, body)


def slowloris(args):
    """Keeps `connections` half-open requests for `hold` seconds: each second,
    every open one gets another header line, and one the server closed is
    replaced by a new one, as a slowloris tool does."""
    deadline = time.time() + args.hold
    opened_at = {}
    ages_at_close = []
    failed_connects = 0

    def open_one(i):
        nonlocal failed_connects
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((args.host, args.port))
            s.sendall(f"GET /?slow={i} HTTP/1.1\r\nHost: {args.host}\r\n".encode())
        except OSError:
            failed_connects += 1
            s.close()
            return
        s.setblocking(False)
        opened_at[s] = time.time()

    total = 0
    most_open = 0
    while time.time() < deadline:
        for s in list(opened_at):
            try:
                if s.recv(1024) == b"":
                    raise ConnectionResetError
                continue  # the server answered something: not ours to keep
            except BlockingIOError:
                try:
                    s.send(b"X-Slow: 1\r\n")
                    continue
                except BlockingIOError:
                    continue
                except OSError:
                    pass
            except OSError:
                pass
            ages_at_close.append(time.time() - opened_at.pop(s))
            s.close()
        while len(opened_at) < args.connections and time.time() < deadline:
            open_one(total)
            total += 1
        most_open = max(most_open, len(opened_at))
        time.sleep(1)
    for s in opened_at:
        s.close()
    ages_at_close.sort()
    print(json.dumps({
        "opened": total - failed_connects,
        "failed_connects": failed_connects,
        "most_open_at_once": most_open,
        "closed_by_server": len(ages_at_close),
        "median_age_at_close_s": round(ages_at_close[len(ages_at_close) // 2], 1) if ages_at_close else None,
    }))


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
    r.add_argument("--retry-reused", action="store_true")
    q = sub.add_parser("request")
    q.add_argument("--url", required=True)
    q.add_argument("--method", default="GET")
    q.add_argument("--header", action="append", default=[])
    w = sub.add_parser("slowloris")
    w.add_argument("--host", required=True)
    w.add_argument("--port", type=int, default=80)
    w.add_argument("--connections", type=int, default=100)
    w.add_argument("--hold", type=float, default=10)
    a = sub.add_parser("analyze")
    a.add_argument("file")
    a.add_argument("--from", dest="from_", type=float)
    a.add_argument("--to", type=float)
    args = p.parse_args()
    {"run": run, "analyze": analyze, "request": request, "slowloris": slowloris}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
