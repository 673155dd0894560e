#!/usr/bin/env bash
# hitcounter bench: the whole stack (PostgreSQL 15, Redis, N app processes,
# nginx with the project's configuration) on 127.0.0.1, driven by wrk.
#
#   bench/run.sh                 # default: 2 apps; c=16,64,256; 8 s x 2 reps; all targets
#   bench/run.sh --help          # every option (tuning: --app-env, --nginx-set, ...)
#
# Needs root (PostgreSQL runs as the postgres user via runuser). Installs
# nginx-light, wrk and redis-server with apt-get when they are missing.
# Results: bench/results/latest.{txt,json,svg}. Exit 0 when every target holds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v pg_config >/dev/null || missing+=(postgresql-15 libpq-dev)
if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || { echo "bench: run as root (PostgreSQL is started via runuser -u postgres)" >&2; exit 2; }

# bench.py stops everything it started; this trap is the last resort if it
# dies without doing so (SIGKILL, crash): each line of the file is a process
# it started, "PID SIGNAL COMM", and only a live process whose name still
# matches is signalled.
BENCH_PIDFILE="$(mktemp /tmp/hitcounter-bench-pids.XXXXXX)"
export BENCH_PIDFILE
cleanup() {
    local pid sig comm
    if [[ -s $BENCH_PIDFILE ]]; then
        while read -r pid sig comm; do
            if [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]]; then
                kill "-$sig" "$pid" 2>/dev/null || true
            fi
        done <"$BENCH_PIDFILE"
        sleep 2
        while read -r pid sig comm; do
            if [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$BENCH_PIDFILE"
    fi
    rm -f "$BENCH_PIDFILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench.py" "$@"
