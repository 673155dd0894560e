#!/usr/bin/env bash
# PostgreSQL failover under load, without losing an acknowledged hit (#14).
#
#   bash e2e/ha.sh             (as root; .ci/run calls it)
#
# Real servers on 127.0.0.1, no Docker, everything in one temporary directory
# on free ports picked at start:
#
#   load.py (2 x E2E_HA_CLIENTS clients) -> app A, app B (hitcounter serve)
#        app -> HAProxy -> the Patroni leader's PostgreSQL 15   (the record)
#        app -> Redis                                            (the cache)
#   Patroni x E2E_HA_NODES (default 3) on one etcd member, ttl 10,
#   synchronous_mode: true; HAProxy sends connections only to the node whose
#   Patroni REST API answers 200 on /primary.
#
# Under load it SIGKILLs the leader's Patroni and PostgreSQL (the whole node
# dies), waits for Patroni to promote the synchronous standby, then starts the
# old node's Patroni again, which rejoins as a replica (pg_rewind if needed).
# Then the load stops and the checks print PASS/FAIL with their figures:
# no request failed (the apps answer from Redis while the record is away),
# acknowledged <= record <= acknowledged + in flight on the new leader once
# both apps report unwritten: 0, no number handed out twice (as the apps go
# back from Redis to the record included), nothing failing
# in the apps once back on the record, HAProxy routing to the new leader
# alone, the old node's copy equal to the record, and the seconds from the
# kill to the new leader, to durable commits again (the record grows through
# HAProxy) and to the old node streaming again. Ends with "N passed,
# M failed", exit 1 if any failed. About 45 s (plus a release build).
#
# Environment: HITCOUNTER_BIN (default: cargo build --release),
# E2E_HA_NODES (2 or 3), E2E_HA_CLIENTS (per app, default 8),
# E2E_HA_SYNCHRONOUS=false (asynchronous standbys: the record check fails
# when the promoted standby missed acknowledged commits; seen once in 4 runs,
# 79 hits),
# E2E_HA_KILL=postgres (SIGKILL the leader's PostgreSQL alone: its Patroni
# restarts it or hands over; default node: Patroni and PostgreSQL),
# E2E_KEEP=1 keeps the temporary directory (logs) even when all passed.
set -uo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/.." && pwd)"
STARTED=$(date +%s.%N)
NODES=${E2E_HA_NODES:-3}
CLIENTS=${E2E_HA_CLIENTS:-8}
KILL=${E2E_HA_KILL:-node}
SCOPE=hitcounter-ha

PASSED=0
FAILED=0
TMP=""
PIDS=()          # every process this run started, killed on exit
declare -A PATRONI_PID

say() { printf '[ha %s] %s\n' "$(date +%T)" "$*"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
check() {
    local name=$1 ok=$2 figure=$3
    if [ "$ok" = 1 ]; then PASSED=$((PASSED + 1)); printf 'PASS  %-34s %s\n' "$name" "$figure"
    else FAILED=$((FAILED + 1)); printf 'FAIL  %-34s %s\n' "$name" "$figure"; fi
}
is() { if "$@"; then echo 1; else echo 0; fi; }
# all 'COND' 'COND'...: 1 if every condition (shell text) holds, else 0.
all() { local c; for c in "$@"; do eval "$c" 2>/dev/null || { echo 0; return; }; done; echo 1; }
setup_failed() {
    say "SETUP FAILED: $*"
    FAILED=$((FAILED + 1))
    printf 'FAIL  %-34s %s\n' "setup" "$*"
    exit 1
}

# The postmaster of node N and its children, from its pid file (Patroni
# starts PostgreSQL detached, so it is not a child of this script).
postgres_pids() {
    local pidfile="$TMP/pg$1/data/postmaster.pid" pm
    [ -f "$pidfile" ] || return 0
    pm=$(head -n 1 "$pidfile")
    [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null || return 0
    echo "$pm" $(pgrep -P "$pm")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
        FAILED=$((FAILED + 1))
        printf 'FAIL  %-34s %s\n' "run completed" "stopped early with exit code $rc"
    fi
    [ -n "$TMP" ] && touch "$TMP/stop"
    local pid n pg=()
    if [ -n "$TMP" ]; then
        for n in $(seq "$NODES"); do pg+=($(postgres_pids "$n")); done
    fi
    for pid in "${PIDS[@]}" "${PATRONI_PID[@]}" "${pg[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$TMP" ]; then
        if [ "$FAILED" -eq 0 ] && [ "${E2E_KEEP:-}" != 1 ]; then rm -rf "$TMP"; else say "logs kept in $TMP"; fi
    fi
    say "total time: $(secs "$STARTED" "$(now)")s"
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then exit 1; fi
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- setup ---
case "$KILL" in node | postgres) ;; *) setup_failed "E2E_HA_KILL is node or postgres, not $KILL" ;; esac
[ "$(id -u)" = 0 ] || setup_failed "run as root (PostgreSQL runs as the postgres user)"
id postgres >/dev/null 2>&1 || setup_failed "no postgres user (install postgresql-15)"
for tool in patroni etcd haproxy redis-server redis-cli pg_config psql curl python3; do
    command -v "$tool" >/dev/null || setup_failed "$tool missing (.ci/run installs patroni etcd-server haproxy)"
done
PG_BIN=$(pg_config --bindir)
[ -x "$PG_BIN/postgres" ] || setup_failed "no $PG_BIN/postgres"

if [ -z "${HITCOUNTER_BIN:-}" ]; then
    say "building hitcounter (release)"
    (cd "$ROOT" && cargo build --release --locked --bin hitcounter -q) || setup_failed "cargo build"
    HITCOUNTER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/hitcounter"
fi
[ -x "$HITCOUNTER_BIN" ] || setup_failed "no binary at $HITCOUNTER_BIN"

TMP=$(mktemp -d /tmp/hitcounter-ha.XXXXXX)
chmod 755 "$TMP"
# Distinct free ports, all bound at once so that none is handed out twice.
read -r -a PORTS <<<"$(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' $((7 + 2 * NODES)))"
ETCD_PORT=${PORTS[0]} ETCD_PEER=${PORTS[1]} HAPROXY_PORT=${PORTS[2]} REDIS_PORT=${PORTS[3]} STATS_PORT=${PORTS[6 + 2 * NODES]}
APP_PORTS=("${PORTS[4]}" "${PORTS[5]}")
declare -A PG_PORT REST_PORT
for n in $(seq "$NODES"); do
    PG_PORT[$n]=${PORTS[$((6 + 2 * (n - 1)))]}
    REST_PORT[$n]=${PORTS[$((7 + 2 * (n - 1)))]}
done
say "temp dir $TMP; etcd :$ETCD_PORT, haproxy :$HAPROXY_PORT, redis :$REDIS_PORT, apps :${APP_PORTS[*]}"

wait_for() { # SECONDS COMMAND...: poll every 0.2 s until the command succeeds
    local limit=$1; shift
    local end=$(( $(date +%s) + limit ))
    while [ "$(date +%s)" -le "$end" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

# etcd: one member, the DCS.
etcd --name e1 --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "e1=http://127.0.0.1:$ETCD_PEER" --log-level warn >"$TMP/etcd.log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || setup_failed "etcd did not start: $(tail -n 3 "$TMP/etcd.log")"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)

# Patroni: loop_wait + 2 * retry_timeout <= ttl.
for n in $(seq "$NODES"); do
    mkdir -p "$TMP/pg$n"
    cat >"$TMP/pg$n/patroni.yml" <<EOF
scope: $SCOPE
name: pg$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:${REST_PORT[$n]}
  connect_address: 127.0.0.1:${REST_PORT[$n]}
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: ${E2E_HA_SYNCHRONOUS:-true}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_connections: 100
        shared_buffers: 32MB
        fsync: "on"
  initdb:
    - encoding: UTF8
    - auth: trust
postgresql:
  listen: 127.0.0.1:${PG_PORT[$n]}
  connect_address: 127.0.0.1:${PG_PORT[$n]}
  data_dir: $TMP/pg$n/data
  bin_dir: $PG_BIN
  pgpass: $TMP/pg$n/pgpass
  remove_data_directory_on_rewind_failure: true
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: postgres, password: postgres}
  parameters:
    unix_socket_directories: $TMP/pg$n
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
EOF
done
chown -R postgres: "$TMP"/pg*

start_patroni() {
    setpriv --reuid=postgres --regid=postgres --init-groups patroni "$TMP/pg$1/patroni.yml" >>"$TMP/pg$1/patroni.log" 2>&1 &
    PATRONI_PID[$1]=$!
    disown "$!"   # no "Killed" notice when it is SIGKILLed on purpose
}
rest() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${REST_PORT[$1]}/$2"; }
is_role() { [ "$(rest "$1" "$2")" = 200 ]; }
leader() { local n; for n in $(seq "$NODES"); do is_role "$n" primary && { echo "$n"; return 0; }; done; return 1; }
sync_standby() { local n; for n in $(seq "$NODES"); do is_role "$n" sync && { echo "$n"; return 0; }; done; return 1; }
all_streaming() { # every node but the leader streams from it
    local l n; l=$(leader) || return 1
    for n in $(seq "$NODES"); do [ "$n" = "$l" ] || is_role "$n" replica || return 1; done
}

say "starting $NODES Patroni nodes (the first bootstraps the cluster)"
start_patroni 1
wait_for 60 is_role 1 primary || setup_failed "pg1 did not become the leader: $(tail -n 5 "$TMP/pg1/patroni.log")"
for n in $(seq 2 "$NODES"); do start_patroni "$n"; done
wait_for 90 all_streaming || setup_failed "replicas did not start streaming: $(tail -n 3 "$TMP/pg2/patroni.log")"
SYNCHRONOUS=${E2E_HA_SYNCHRONOUS:-true}
[ "$SYNCHRONOUS" != true ] || wait_for 30 sync_standby || setup_failed "no synchronous standby"

{
    echo "global"
    echo "    maxconn 2000"
    echo "defaults"
    echo "    mode tcp"
    echo "    timeout connect 1s"
    echo "    timeout client 10m"
    echo "    timeout server 10m"
    echo "    timeout check 1s"
    echo "listen postgres"
    echo "    bind 127.0.0.1:$HAPROXY_PORT"
    echo "    option httpchk GET /primary"
    echo "    http-check expect status 200"
    # Connections to a node that stops being the leader are cut at once.
    echo "    default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions"
    for n in $(seq "$NODES"); do echo "    server pg$n 127.0.0.1:${PG_PORT[$n]} maxconn 100 check port ${REST_PORT[$n]}"; done
    echo "listen stats"
    echo "    mode http"
    echo "    bind 127.0.0.1:$STATS_PORT"
    echo "    stats enable"
    echo "    stats uri /"
} >"$TMP/haproxy.cfg"
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)

# The servers HAProxy sends connections to, e.g. "pg2". It counts every
# server up until its checks fail: the apps start only once the replicas are
# marked down, or their first connections (migrations) could reach a replica.
haproxy_up() {
    curl -s --max-time 1 "http://127.0.0.1:$STATS_PORT/;csv" |
        awk -F, '$1 == "postgres" && $2 ~ /^pg/ && $18 ~ /^UP/ { printf "%s%s", sep, $2; sep = " " }'
}
only_leader_up() { [ "$(haproxy_up)" = "pg$(leader)" ]; }
wait_for 20 only_leader_up || setup_failed "HAProxy does not route to the leader alone: $(haproxy_up)"

export PGCONNECT_TIMEOUT=1 PGUSER=postgres PGPASSWORD=postgres PGDATABASE=postgres
record_via() { # PORT: the seed page's count in the record reached through PORT
    psql -h 127.0.0.1 -p "$1" -tAqc "SELECT coalesce((SELECT value FROM counters WHERE namespace = 'default' AND key = 'linode-page'), 0)" 2>/dev/null
}
wait_for 20 psql -h 127.0.0.1 -p "$HAPROXY_PORT" -tAc 'SELECT 1' || setup_failed "no PostgreSQL through HAProxy"

for i in 0 1; do
    env DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$HAPROXY_PORT/postgres" \
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LISTEN_ADDR="127.0.0.1:${APP_PORTS[$i]}" \
        RATE_LIMIT=0 LOG_LEVEL=info "$HITCOUNTER_BIN" serve >"$TMP/app$i.log" 2>&1 &
    PIDS+=($!)
    # One at a time: the migrations of the first are done when the second starts.
    wait_for 30 curl -sf "http://127.0.0.1:${APP_PORTS[$i]}/readyz" || setup_failed "app $i not ready: $(tail -n 3 "$TMP/app$i.log")"
done
OLD=$(leader) || setup_failed "no leader"
SYNC=$(sync_standby) || { [ "$SYNCHRONOUS" = true ] && setup_failed "no synchronous standby"; SYNC=-; }
say "cluster up: leader pg$OLD, synchronous standby pg$SYNC, apps ready ($(secs "$STARTED" "$(now)") s)"
check "cluster up, synchronous standby" 1 "$NODES nodes, leader pg$OLD, sync standby pg$SYNC"

apps_ready() { # both apps commit before answering again
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${APP_PORTS[0]}/readyz" &&
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${APP_PORTS[1]}/readyz"
}

# ---------------------------------------------------------------- load ---
for i in 0 1; do
    python3 "$E2E_DIR/load.py" run --url "http://127.0.0.1:${APP_PORTS[$i]}/" --out "$TMP/load$i.txt" \
        --clients "$CLIENTS" --max-seconds 150 --max-requests 400000 --stop-file "$TMP/stop" &
    PIDS+=($!)
done
sleep 4
BEFORE=$(record_via "$HAPROXY_PORT")
if [ "$KILL" = node ]; then
    KILL_PIDS=(${PATRONI_PID[$OLD]} $(postgres_pids "$OLD"))
else
    KILL_PIDS=($(postgres_pids "$OLD"))
fi
T_KILL=$(now)
kill -KILL "${KILL_PIDS[@]}" 2>/dev/null   # a backend may have exited since it was listed
say "SIGKILL pg$OLD's $KILL (${KILL_PIDS[*]}); record was $BEFORE"

NEW=""
T_LEADER=""
T_DURABLE=""
T_READY=""
end=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -le "$end" ]; do
    if [ -z "$NEW" ] && [ "$KILL" = node ]; then
        for n in $(seq "$NODES"); do
            [ "$n" != "$OLD" ] && is_role "$n" primary && { NEW=$n; T_LEADER=$(now); }
        done
    fi
    if [ -z "$T_DURABLE" ]; then
        v=$(record_via "$HAPROXY_PORT")
        [ -n "$v" ] && [ "$v" -gt "$BEFORE" ] 2>/dev/null && T_DURABLE=$(now)
    fi
    [ -z "$T_READY" ] && [ -n "$T_DURABLE" ] && apps_ready && T_READY=$(now)
    { [ -n "$NEW" ] || [ "$KILL" = postgres ]; } && [ -n "$T_DURABLE" ] && [ -n "$T_READY" ] && break
    sleep 0.2
done
if [ "$KILL" = node ]; then
    check "standby promoted" "$(all '[ -n "$NEW" ]' '[ -n "$T_LEADER" ]')" \
        "pg${NEW:-?} leads $( [ -n "$T_LEADER" ] && secs "$T_KILL" "$T_LEADER" || echo '?') s after the kill (was the sync standby: pg$SYNC)"
else
    # Patroni, still holding the leader key, restarts PostgreSQL (crash
    # recovery) or lets a standby take over: either is fine.
    NEW=$(leader)
    check "a leader again" "$(is [ -n "$NEW" ])" "pg${NEW:-?} leads (pg$OLD's Patroni $( [ "$NEW" = "$OLD" ] && echo restarted its PostgreSQL || echo let the standby take over))"
fi
check "kill -> durable commits again" "$(is [ -n "$T_DURABLE" ])" \
    "$( [ -n "$T_DURABLE" ] && secs "$T_KILL" "$T_DURABLE" || echo 'never (60 s)') s (the record grows through HAProxy); both apps ready again at $( [ -n "$T_READY" ] && secs "$T_KILL" "$T_READY" || echo '?') s"

sleep 2
T_BACK=$(now)
if [ "$KILL" = node ]; then
    say "starting pg$OLD's Patroni again"
    start_patroni "$OLD"
fi
wait_for 90 all_streaming
REJOINED=$?
check "every other node streams again" "$(all '[ "$REJOINED" = 0 ]' '[ -n "$(leader)" ]')" \
    "$(for n in $(seq "$NODES"); do [ "$n" = "$(leader)" ] || printf 'pg%s ' "$n"; done)streaming from pg$(leader) $(secs "$T_BACK" "$(now)") s after $( [ "$KILL" = node ] && echo "pg$OLD's Patroni started again" || echo 'the leader was back')"
sleep 3
touch "$TMP/stop"
for pid in "${PIDS[@]: -2}"; do wait "$pid"; done

# -------------------------------------------------------------- checks ---
all_written() {
    local i
    for i in 0 1; do
        curl -s "http://127.0.0.1:${APP_PORTS[$i]}/readyz" | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["ready"] and r["unwritten"] == 0 else 1)' || return 1
    done
}
wait_for 30 all_written
WRITTEN=$?
LEADER_NOW=$(leader)
RECORD=$(record_via "${PG_PORT[${LEADER_NOW:-$NEW}]}")
read -r REQUESTS OK FAILED_REQ INFLIGHT DUPS DUPS_BACK OUTAGE_OK ERRORS <<<"$(python3 - "$TMP/load0.txt" "$TMP/load1.txt" "$T_KILL" "${T_DURABLE:-0}" "${T_READY:-0}" <<'EOF'
import sys
rows = []
for f in sys.argv[1:3]:
    for line in open(f):
        p = line.split()
        if len(p) == 5:
            rows.append((float(p[0]), int(p[2]), None if p[3] == "-" else int(p[3]), p[4]))
kill, durable, ready = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
ok = [r for r in rows if r[1] == 200]
failed = [r for r in rows if r[1] != 200]
inflight = sum(1 for r in rows if r[1] == 0)  # no answer: may or may not be counted
seen = {}
for r in ok:
    if r[2] is not None:
        seen.setdefault(r[2], []).append(r[0])
# A number answered twice with every answer between the kill and one second
# after both apps were ready again is a repeat of the return (see below).
back_end = (ready or durable or kill) + 1
back = lambda times: all(kill <= t <= back_end for t in times)
dups = sum(len(ts) - 1 for ts in seen.values() if len(ts) > 1 and not back(ts))
dups_back = sum(len(ts) - 1 for ts in seen.values() if len(ts) > 1 and back(ts))
outage = sum(1 for r in ok if kill <= r[0] <= (durable or kill))
errors = ",".join(sorted({f"{r[1]}:{r[3]}" for r in failed})[:3]) or "-"
print(len(rows), len(ok), len(failed), inflight, dups, dups_back, outage, errors)
EOF
)"
check "no request failed" "$(all '[ "$FAILED_REQ" = 0 ]' '[ "$OK" -gt 0 ]')" \
    "$FAILED_REQ of $REQUESTS failed ($ERRORS); $OUTAGE_OK answered between the kill and durable commits again"
check "every acknowledged hit recorded" "$(all '[ "$WRITTEN" = 0 ]' '[ "$OK" -le "$RECORD" ]' '[ "$RECORD" -le $((OK + INFLIGHT)) ]')" \
    "acknowledged $OK <= record $RECORD (pg${LEADER_NOW:-?}) <= acknowledged + in flight $((OK + INFLIGHT)); unwritten 0: $( [ "$WRITTEN" = 0 ] && echo yes || echo no)"
# docs/architecture.md ("Who numbers"): Redis numbers the hits while the
# record is away and the commits until the record has caught up with the
# increments the apps held, so no number is handed out twice, on the return
# included. The two are printed apart to show where a repeat would come from.
check "numbers never repeat (but on return)" "$(is [ "$DUPS" = 0 ])" "$DUPS numbers answered more than once outside the return"
check "numbers never repeat on return" "$(is [ "$DUPS_BACK" = 0 ])" "$DUPS_BACK numbers answered twice as the apps went back to the record"
same_on_old() { [ "$(record_via "${PG_PORT[$OLD]}")" = "$RECORD" ]; }
wait_for 10 same_on_old
# After its first "reachable again", an app fails nothing more on the record:
# no new outage, no operation on a pooled connection from before the kill
# (sqlx logs those as failing its test on release).
AFTER_RETURN=$(for i in 0 1; do
    awk '/PostgreSQL is reachable again/ { back = 1 } back && (/PostgreSQL failed/ || /on-release/)' "$TMP/app$i.log"
done | wc -l)
check "nothing fails after the return" "$(is [ "$AFTER_RETURN" = 0 ])" "$AFTER_RETURN store failures logged by the apps after they were back on the record"
check "HAProxy routes to the new leader alone" "$(is [ "$(haproxy_up)" = "pg$LEADER_NOW" ])" "up in HAProxy: $(haproxy_up)"
check "old leader's copy is the record" "$(is same_on_old)" "pg$OLD has $(record_via "${PG_PORT[$OLD]}"), the leader $RECORD"
# Numbering has passed back to the record: with every held increment written,
# the next commit finds the record level with Redis and clears Redis mode
# (`m`); from then on a hit's number is its place in the record.
LAST=$(curl -s --max-time 5 "http://127.0.0.1:${APP_PORTS[0]}/" | grep -Eo 'viewed [0-9]+' | grep -Eo '[0-9]+')
REDIS_STATE=$(redis-cli -p "$REDIS_PORT" --raw HMGET hitcounter:c:default:linode-page v m h | paste -sd' ')
check "numbering back on the record" "$(all '[ "$LAST" = "$((RECORD + 1))" ]' '[ "$(record_via "$HAPROXY_PORT")" = "$LAST" ]' '[ "$REDIS_STATE" = "$LAST  " ]')" \
    "next hit numbered ${LAST:-?}, the record $(record_via "$HAPROXY_PORT"); Redis v m h: '$REDIS_STATE' (no Redis mode left)"
