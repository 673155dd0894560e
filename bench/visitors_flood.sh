#!/usr/bin/env bash
# The worst case for unique visitors: every hit a new visitor of one counter
# (a new User-Agent per request), so every batch merges new hashes into the
# counter's sketch. Alternates binaries in one window, like bench/ab.py:
#
#   bash bench/visitors_flood.sh [ROUNDS] NAME=BINARY NAME=BINARY ...
#
# PostgreSQL 15 in a temporary directory on 127.0.0.1, one app per run (one
# tokio worker, RATE_LIMIT=0, no Redis), wrk -c64 for 2 s of warm-up and 5 s
# measured against /hit/bench.example/key; prints hits/s, p99 and the day's
# history (hits and the visitors estimate). As root. Everything stops at exit.
set -euo pipefail
ROUNDS=2
if [[ ${1:-} =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
[ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
BIN=$(pg_config --bindir)
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d /tmp/hitcounter-visitors-flood.XXXXXX)
chown postgres "$D"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
APP=
cleanup() {
    [ -n "$APP" ] && kill "$APP" 2>/dev/null || true
    runuser -u postgres -- "$BIN/pg_ctl" -D "$D/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$D"
}
trap cleanup EXIT
runuser -u postgres -- "$BIN/initdb" -D "$D/pg" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
printf "listen_addresses = '127.0.0.1'\nport = '%s'\nunix_socket_directories = '%s'\n" "$PORT" "$D" >> "$D/pg/postgresql.auto.conf"
runuser -u postgres -- "$BIN/pg_ctl" -D "$D/pg" -l "$D/pg.log" -w start >/dev/null
for round in $(seq "$ROUNDS"); do
    for setting in "$@"; do
        name=${setting%%=*} binary=${setting#*=}
        db="b_${name//[^a-z0-9]/_}"
        runuser -u postgres -- psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres \
            -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" postgres
        APORT=$(free_port)
        env -i TOKIO_WORKER_THREADS=1 RATE_LIMIT=0 LISTEN_ADDR="127.0.0.1:$APORT" \
            DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$db" \
            "$binary" serve >"$D/app-$name-$round.log" 2>&1 &
        APP=$!
        for _ in $(seq 150); do curl -sf "127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.2; done
        wrk -t2 -c64 -d2s -s "$HERE/new_visitors.lua" "http://127.0.0.1:$APORT" >/dev/null
        result=$(wrk -t2 -c64 -d5s --latency -s "$HERE/new_visitors.lua" "http://127.0.0.1:$APORT" |
            grep -E "Requests/sec|99%" | tr -s ' ' | tr '\n' ' ')
        history=$(curl -s "127.0.0.1:$APORT/history/bench.example/key?days=1")
        echo "$name round $round: $result $history"
        kill "$APP"; wait "$APP" 2>/dev/null || true; APP=
    done
done
