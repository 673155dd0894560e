#!/usr/bin/env bash
# End-to-end test of the container stack, for a machine with no image registry.
#
#   bash e2e/run.sh            (as root; .ci/run calls it with CI=true)
#
# 1. Installs docker.io, docker-compose, debootstrap (and curl, python3, openssl) if
#    missing, and starts dockerd if none is running (and stops it at the end).
# 2. Builds local stand-ins for the public base images once (e2e/images.sh)
#    and reuses them afterwards.
# 3. Builds the app image from the project's own Dockerfile and the nginx
#    image from nginx/, and starts the project's own compose.yaml with
#    e2e/compose.override.yaml (image names, build args, the `edge` network)
#    and compose.tls.yaml (HTTPS with a self-signed certificate made here with
#    openssl), published on 127.0.0.1:<free ports>, under a unique compose
#    project name.
# 4. Runs the checks, each printing PASS/FAIL and its figure, and ends with
#    "N passed, M failed" (exit 1 if any failed).
#
# Limits: the load phases (seed to ephemeral) drive the stack from the host,
# where every client reaches nginx from one address (the bridge gateway), so
# they run with nginx limits that never trigger (NGINX_LIMIT_RATE=100000r/s,
# burst 100000, 10000 requests at once) and the app's RATE_LIMIT=0. The edge
# checks at the end recreate nginx with the limits of .env (the shipped
# defaults) and drive it from containers of the run's own on the `edge`
# network, each with an address of its own (e2e/compose.override.yaml).
# Everything of its compose project (containers, networks, volume) is removed
# on exit, even on failure; the stand-in and app images stay as a cache.
#
# Environment: COMPOSE (default docker-compose, else "docker compose"),
# E2E_KEEP=1 keeps the stack running at the end (for debugging),
# E2E_CLIENTS (load clients, default 4).
set -uo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/.." && pwd)"
E2E_STARTED=$(date +%s.%N)
CLIENTS=${E2E_CLIENTS:-4}

PASSED=0
FAILED=0
DOCKERD_PID=""
PROJECT=""
TMP=""
LOAD_PIDS=()
CLIENT_CONTAINERS=()

say() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
# float comparison: lt A B  (A < B)
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

# check NAME OK(0|1) FIGURE
check() {
    local name=$1 ok=$2 figure=$3
    if [ "$ok" = 1 ]; then
        PASSED=$((PASSED + 1))
        printf 'PASS  %-34s %s\n' "$name" "$figure"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL  %-34s %s\n' "$name" "$figure"
    fi
}
# is COMMAND...: 1 if the command succeeds, else 0 (for check's OK). For
# several conditions: is all "[ a ]" "[ b ]".
is() { if "$@"; then echo 1; else echo 0; fi; }
all() { local c; for c in "$@"; do eval "$c" || return 1; done; }

setup_failed() {
    say "SETUP FAILED: $*"
    FAILED=$((FAILED + 1))
    printf 'FAIL  %-34s %s\n' "setup" "$*"
    exit 1
}

# ------------------------------------------------------------ teardown ---
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
        FAILED=$((FAILED + 1))
        printf 'FAIL  %-34s %s\n' "run completed" "stopped early with exit code $rc"
    fi
    for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    # The edge clients first: their network cannot be removed while they run.
    for c in "${CLIENT_CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    if [ -n "$PROJECT" ]; then
        if [ "${E2E_KEEP:-}" = 1 ]; then
            say "E2E_KEEP=1: stack $PROJECT left running on $BASE"
        else
            say "tearing down compose project $PROJECT"
            dc down -v --remove-orphans -t 15 >>"$TMP/down.log" 2>&1 || cat "$TMP/down.log"
            local left
            left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"; \
                   docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"; \
                   docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
            [ -z "$left" ] || say "WARNING: left behind: $left"
            local vols
            vols=$(comm -13 <(sort "$TMP/volumes.before") <(docker volume ls -q --filter dangling=true | sort))
            [ -z "$vols" ] || say "WARNING: new dangling volumes: $vols"
        fi
    fi
    if [ -n "$DOCKERD_PID" ] && [ "${E2E_KEEP:-}" != 1 ]; then
        say "stopping the dockerd this run started (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    if [ -n "$TMP" ]; then
        if [ "$FAILED" -eq 0 ]; then rm -rf "$TMP"; else say "logs kept in $TMP"; fi
    fi
    say "total e2e time: $(since "$E2E_STARTED")s"
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ]; then exit 1; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- setup ---
[ "$(id -u)" = 0 ] || setup_failed "run as root (it installs packages and starts dockerd)"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || setup_failed "apt-get install ${missing[*]}"
fi
command -v rustc >/dev/null || setup_failed "no rustc: the builder stand-in copies this machine's Rust toolchain"

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: /var/log/hitcounter-e2e-dockerd.log)"
    setsid dockerd >/var/log/hitcounter-e2e-dockerd.log 2>&1 </dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || setup_failed "dockerd did not start: $(tail -n 5 /var/log/hitcounter-e2e-dockerd.log)"
fi

if [ -n "${COMPOSE:-}" ]; then
    read -r -a COMPOSE_CMD <<<"$COMPOSE"
elif command -v docker-compose >/dev/null; then
    COMPOSE_CMD=(docker-compose)
else
    COMPOSE_CMD=(docker compose)
fi

TMP=$(mktemp -d /tmp/hitcounter-e2e.XXXXXX)
PROJECT="hce2e$(date +%s)$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export HTTP_PORT="127.0.0.1:$PORT"
TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HTTPS_PORT="127.0.0.1:$TLS_PORT"
FRONT_NET="${PROJECT}_front"
EDGE_NET="${PROJECT}_edge"

# HTTPS: a self-signed certificate for 127.0.0.1, mounted by compose.tls.yaml.
mkdir -p "$TMP/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" >"$TMP/openssl.log" 2>&1 \
    || { cat "$TMP/openssl.log"; setup_failed "openssl: self-signed certificate"; }
export TLS_CERT="$TMP/tls/cert.pem" TLS_KEY="$TMP/tls/key.pem"

# Limits for the load phases (see the top); the edge checks unset these.
export NGINX_LIMIT_RATE=100000r/s NGINX_LIMIT_BURST=100000 NGINX_LIMIT_CONN=10000 RATE_LIMIT=0

docker volume ls -q >"$TMP/volumes.before"
dc() { "${COMPOSE_CMD[@]}" -p "$PROJECT" -f "$ROOT/compose.yaml" -f "$E2E_DIR/compose.override.yaml" -f "$ROOT/compose.tls.yaml" "$@"; }

say "compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || true)); project $PROJECT; published on $HTTP_PORT"

# The stand-ins' names (sourcing defines them, builds nothing), then the build.
# shellcheck source=e2e/images.sh
source "$E2E_DIR/images.sh"
say "stand-in base images"
bash "$E2E_DIR/images.sh" || setup_failed "stand-in images"

say "building the stack's images (app from ./Dockerfile, nginx from ./nginx)"
t=$(now)
dc build >"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log"; setup_failed "docker build of the stack"; }
say "images built in $(since "$t")s ($(grep -c 'Using cache' "$TMP/build.log") build steps from cache)"

# ------------------------------------------------------------- helpers ---
# wait_ready SECONDS: until nginx answers 200 on /readyz (an app replica can count).
wait_ready() {
    local deadline=$(( $(date +%s) + $1 )) code
    while [ "$(date +%s)" -le "$deadline" ]; do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$BASE/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
body() { curl -sS -m 10 "$BASE$1" 2>&1; }
number_of() { grep -Eo 'viewed [0-9]+ time' <<<"$1" | grep -Eo '[0-9]+'; }
app_containers() { dc ps -q app; }
container_of() { dc ps -q "$1" | sed -n 1p; }
front_ip() { docker inspect -f "{{ (index .NetworkSettings.Networks \"$FRONT_NET\").IPAddress }}" "$1" 2>/dev/null; }
cname() { docker inspect -f '{{.Name}}' "$1" | sed 's#^/##'; }
# wait_healthy CONTAINER SECONDS
wait_healthy() {
    local deadline=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -le "$deadline" ]; do
        [ "$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null)" = running/healthy ] && return 0
        sleep 0.1
    done
    return 1
}
# load_start NAME: bounded load on / through nginx until load_stop NAME (or 90s).
# nginx-watch reloads nginx when a replica's address comes or goes, and a
# reloading nginx closes its idle client connections: a GET sent on one at
# that moment is retried once on a new connection, as browsers, curl and Go's
# client do (load.py --retry-reused; counted as "retried", not failed).
load_start() {
    rm -f "$TMP/$1.stop"
    python3 "$E2E_DIR/load.py" run --url "$BASE/" --out "$TMP/$1.load" --clients "$CLIENTS" \
        --max-seconds 90 --max-requests 200000 --stop-file "$TMP/$1.stop" --retry-reused &
    LOAD_PIDS+=($!)
    LOAD_PID=$!
}
load_stop() { touch "$TMP/$1.stop"; wait "$LOAD_PID"; }
# edge_client NAME IP LOAD.PY-ARGS...: e2e/load.py in a container of the run's
# own on the `edge` network, at address IP; its files go to $TMP (/out).
edge_client() {
    local name="${PROJECT}-client-$1" ip=$2
    shift 2
    CLIENT_CONTAINERS+=("$name")
    docker run --rm --name "$name" --network "$EDGE_NET" --ip "$ip" \
        --ulimit nofile=8192:8192 -v "$E2E_DIR:/e2e:ro" -v "$TMP:/out" \
        "$CLIENT_IMAGE" python3 /e2e/load.py "$@"
}
# analyze NAME [--from T] [--to T] -> JSON; field JSON KEY
analyze() { local n=$1; shift; python3 "$E2E_DIR/load.py" analyze "$TMP/$n.load" "$@"; }
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print('' if v is None else v)" "$1" "$2"; }

# -------------------------------------------------------------- checks ---
say "starting the stack"
t=$(now)
dc up -d >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; setup_failed "compose up"; }
if wait_ready 120; then
    startup=$(since "$t")
    check "quick to start" "$(is lt "$startup" 30)" "${startup}s from 'up' (images built) to the first 200 through nginx (limit 30s)"
else
    check "quick to start" 0 "no 200 on /readyz through nginx within 120s"
    dc ps; dc logs --no-color --tail 30
    exit 1
fi

# Seed steps, word for word, on a fresh stack.
b=$(body /)
check "seed 1: first view" "$(is [ "$b" = "Hello Linode! This page has been viewed 1 time(s)." ])" "'$b'"
b=$(body /)
check "seed 2: second view" "$(is [ "$b" = "Hello Linode! This page has been viewed 2 time(s)." ])" "'$b'"
b=$(body /resetcounter)
check "seed 3: reset" "$(is [ "$b" = "Successfully deleted redis and postgres counters" ])" "'$b'"
found=0
for _ in $(seq 30); do
    dc logs --no-color app >"$TMP/app.log" 2>&1
    found=$(grep -c 'reset visitor count' "$TMP/app.log")
    [ "$found" -ge 1 ] && break
    sleep 0.1
done
line=$(grep -m1 'reset visitor count' "$TMP/app.log" | sed 's/  */ /g')
check "seed 4: 'reset visitor count' log" "$(is [ "$found" -ge 1 ])" "$found line(s) in 'compose logs app': ${line:-none}"
b=$(body /)
check "seed: count restarts after reset" "$(is [ "$b" = "Hello Linode! This page has been viewed 1 time(s)." ])" "'$b'"

# Lightweight: every image's size.
app_image=$(docker inspect -f '{{.Config.Image}}' "$(app_containers | sed -n 1p)")
sizes=""
for img in "$app_image" "$(docker inspect -f '{{.Config.Image}}' "$(container_of nginx)")" \
           "$REDIS_IMAGE" "$POSTGRES_IMAGE" "$NGINX_IMAGE" "$RUST_IMAGE" "$BASE_IMAGE"; do
    s=$(docker image inspect -f '{{.Size}}' "$img")
    sizes+="$img=$(python3 -c "print(f'{$s/1e6:.1f}')")MB "
    say "image size: $img $(python3 -c "print(f'{$s/1e6:.1f}')") MB"
done
app_size=$(docker image inspect -f '{{.Size}}' "$app_image")
check "lightweight: app image <= 20 MB" "$(is [ "$app_size" -le 20000000 ])" \
    "$(python3 -c "print(f'{$app_size/1e6:.2f}')") MB ($app_image); all: $sizes"

# Modular: one program per container (PID 1 is the service, no shell or supervisor).
# Docker execs each service's compose health check inside its container every
# few seconds; a sample can catch one running (pg_isready, redis-cli, wget,
# `hitcounter healthcheck`), which is not a second program of the service.
ok=1; fig=""
for svc in nginx app redis postgres; do
    for c in $(dc ps -q "$svc"); do
        docker top "$c" -o pid,comm,args >"$TMP/top" 2>&1
        comms=$(tail -n +2 "$TMP/top" \
            | grep -v -E ' (pg_isready|redis-cli|wget) | healthcheck$' \
            | awk '{print $2}' | sort -u | tr '\n' ' ')
        nprocs=$(tail -n +2 "$TMP/top" | wc -l)
        [ "$(wc -w <<<"$comms")" -eq 1 ] || ok=0
        fig+="$(cname "$c" | sed "s/^$PROJECT[_-]//")=${comms% }($nprocs) "
    done
done
check "modular: one program per container" "$ok" "$fig"

# Logging: every service's output in compose logs.
ok=1; fig=""
for svc in nginx app redis postgres; do
    dc logs --no-color "$svc" >"$TMP/$svc.log" 2>&1
    n=$(grep -c "|" "$TMP/$svc.log")
    [ "$n" -ge 1 ] || ok=0
    fig+="$svc=$n "
done
check "logging: every service in compose logs" "$ok" "lines: $fig"

# Quick to stop: SIGINT to one replica under load.
say "quick to stop: SIGINT to one app replica under load"
victim=$(app_containers | sed -n 1p)
load_start stop
sleep 2
docker wait "$victim" >"$TMP/wait.out" 2>&1 &
wait_pid=$!
sleep 0.3
t=$(now)
docker kill --signal=SIGINT "$victim" >/dev/null
wait "$wait_pid"
stop_s=$(since "$t")
code=$(tr -d '[:space:]' <"$TMP/wait.out")
sleep 3
load_stop stop
summary=$(analyze stop)
failed=$(field "$summary" failed)
drained=$(docker logs "$victim" 2>&1 | grep -c 'all in-flight requests answered')
check "quick to stop: exit code and time" "$(is all '[ "$code" = 0 ]' 'lt "$stop_s" 2')" \
    "exit code $code after ${stop_s}s (limit 2s); drain logged: $drained"
check "quick to stop: no failed request" "$(is all '[ "$failed" = 0 ]' '[ "$(field "$summary" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$summary" requests) during the stop"
state=$(docker inspect -f '{{.State.Status}}' "$victim")
[ "$state" = running ] || docker start "$victim" >/dev/null
wait_healthy "$victim" 60 || say "WARNING: $(cname "$victim") not healthy again"

# Disposable: a replica crashes (SIGKILL) under load; the restart policy brings it back.
say "disposable: SIGKILL one app replica under load"
victim=$(app_containers | sed -n 2p)
restarts=$(docker inspect -f '{{.RestartCount}}' "$victim")
ip_before=$(front_ip "$victim")
since_ts=$(date +%s)
load_start crash
sleep 2
# A crash, as the kernel's OOM killer would do it. (`docker kill` counts as a
# manual stop, and Docker never restarts a container stopped by hand.)
kill -KILL "$(docker inspect -f '{{.State.Pid}}' "$victim")"
t=$(now)
back=""
deadline=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -le "$deadline" ]; do
    s=$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$victim")
    if [ "$s" = "running $((restarts + 1))" ] && [ -z "$back" ]; then back=$(since "$t"); fi
    if [ -n "$back" ] && wait_healthy "$victim" 0; then break; fi
    sleep 0.1
done
healthy=$(since "$t")
sleep 3
load_stop crash
summary=$(analyze crash)
failed=$(field "$summary" failed)
check "disposable: no failed request" "$(is all '[ "$failed" = 0 ]' '[ "$(field "$summary" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$summary" requests) while a replica was killed and restarted"
check "disposable: restarted by policy" "$(is [ -n "$back" ])" \
    "restart count $restarts -> $(docker inspect -f '{{.RestartCount}}' "$victim"); running again after ${back:-never}s, healthy after ${healthy}s; address $ip_before -> $(front_ip "$victim")"
# All replicas get traffic (round robin over every address Docker's DNS gave).
nginx_c=$(container_of nginx)
per=$(docker logs --since "$since_ts" "$nginx_c" 2>/dev/null | grep -Eo 'upstream=[0-9.]+' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}' | sed 's/upstream=//g')
ok=1
for c in $(app_containers); do
    grep -q "$(front_ip "$c"):" <<<"$per" || ok=0
done
check "balanced: every replica gets traffic" "$ok" "requests per replica: $per"

# Resilient: Redis stops under load; counting goes on from PostgreSQL.
say "resilient: stop redis under load, then start it again"
load_start redis
sleep 3
t_stop=$(now)
dc stop -t 10 redis >>"$TMP/redis.log" 2>&1
sleep 1
ready_down=$(curl -s -m 5 "$BASE/readyz")
sleep 4
t_start=$(now)
dc start redis >>"$TMP/redis.log" 2>&1
wait_healthy "$(container_of redis)" 30 || say "WARNING: redis not healthy again"
sleep 4
load_stop redis
whole=$(analyze redis)
before=$(analyze redis --to "$t_stop")
down=$(analyze redis --from "$t_stop" --to "$t_start")
after=$(analyze redis --from "$t_start")
failed=$(field "$whole" failed)
check "resilient: no failed request" "$(is [ "$failed" = 0 ])" \
    "$failed failed of $(field "$whole" requests) (redis down: $(field "$down" requests) requests); /readyz with redis down: $ready_down"
check "resilient: counting continues" "$(is all '[ "$(field "$down" ok)" -gt 0 ]' '[ "$(field "$down" max)" -gt "$(field "$before" max)" ]' '[ "$(field "$after" max)" -gt "$(field "$down" max)" ]')" \
    "highest number before $(field "$before" max), redis down $(field "$down" max), after restart $(field "$after" max)"
check "resilient: never backwards, unique" "$(is all '[ "$(field "$whole" regressions)" = 0 ]' '[ "$(field "$whole" duplicates)" = 0 ]')" \
    "$(field "$whole" regressions) client saw a number not above its previous one; $(field "$whole" duplicates) duplicate numbers"

# Exact: every acknowledged hit since the reset is in the count. Acknowledged:
# the view after the reset plus every 200 of the three loads above; recorded:
# the count before this request. Recorded above acknowledged would be hits a
# killed replica had committed before nginx retried them on another one.
n=$(number_of "$(body /)")
acked=$(( 1 + $(field "$(analyze stop)" ok) + $(field "$(analyze crash)" ok) + $(field "$(analyze redis)" ok) ))
recorded=$(( n - 1 ))
check "exact: no acknowledged hit lost" "$(is [ "$recorded" -ge "$acked" ])" \
    "recorded $recorded, acknowledged $acked, counted twice $((recorded - acked))"

# Ephemeral and stateless: down/up keeps the count (named volume); down -v starts over.
say "ephemeral: down, up"
dc down -t 15 >>"$TMP/down.log" 2>&1
t=$(now)
dc up -d >>"$TMP/up.log" 2>&1
wait_ready 120; again=$(since "$t")
b=$(body /)
check "stateless: down/up keeps the count" "$(is [ "$(number_of "$b")" = "$((n + 1))" ])" \
    "$n before down, '$b' after up (first 200 after ${again}s)"
say "ephemeral: down -v, up"
dc down -v -t 15 >>"$TMP/down.log" 2>&1
t=$(now)
dc up -d >>"$TMP/up.log" 2>&1
wait_ready 120; again=$(since "$t")
b=$(body /)
check "ephemeral: down -v/up starts at 1" "$(is [ "$b" = "Hello Linode! This page has been viewed 1 time(s)." ])" \
    "'$b' (first 200 after ${again}s)"

# Re-resolved: nginx-watch re-resolves `app` and reloads nginx when the
# replicas' addresses change. The replicas are recreated under load (as
# `docker compose up -d` after editing .env does: all at once, so requests
# fail until new ones answer), then a fourth replica, at an address nginx
# never saw, must take traffic without any manual reload.
say "re-resolve: recreate the app replicas under load, then scale to 4"
watch_c=$(container_of nginx-watch)
nginx_c=$(container_of nginx)
reloads_before=$(docker logs "$watch_c" 2>&1 | grep -c 'nginx reloaded')
load_start recreate
sleep 2
t_recreate=$(now)
dc up -d --force-recreate --no-deps app >>"$TMP/recreate.log" 2>&1
for c in $(app_containers); do wait_healthy "$c" 90 || say "WARNING: $(cname "$c") not healthy"; done
t_healthy=$(now)
healthy_s=$(since "$t_recreate")
since_ts=$(date +%s)
dc up -d --no-deps --scale app=4 app >>"$TMP/recreate.log" 2>&1
fourth=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=app \
    --filter label=com.docker.compose.container-number=4 | head -n1)
wait_healthy "$fourth" 60 || say "WARNING: the fourth replica is not healthy"
sleep 5
load_stop recreate
fourth_ip=$(front_ip "$fourth")
per=$(docker logs --since "$since_ts" "$nginx_c" 2>/dev/null | grep -Eo 'upstream=[0-9.]+' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}' | sed 's/upstream=//g')
during=$(analyze recreate --from "$t_recreate" --to "$t_healthy")
after=$(analyze recreate --from "$t_healthy")
reloads=$(( $(docker logs "$watch_c" 2>&1 | grep -c 'nginx reloaded') - reloads_before ))
check "re-resolved: no failure once healthy" "$(is all '[ "$(field "$after" failed)" = 0 ]' '[ "$(field "$after" ok)" -gt 0 ]')" \
    "after healthy (and through the scale to 4): $(field "$after" failed) failed of $(field "$after" requests); while recreating (${healthy_s}s until all healthy): $(field "$during" failed) failed of $(field "$during" requests) $(field "$during" statuses); retried on a new connection: $(field "$(analyze recreate)" retried); nginx reloads by nginx-watch: $reloads"
check "re-resolved: a new replica takes traffic" "$(is all '[ -n "$fourth_ip" ]' 'grep -q "$fourth_ip:" <<<"$per"')" \
    "fourth replica at ${fourth_ip:-none}; requests per replica since the scale: $per"
dc up -d --no-deps --scale app=3 app >>"$TMP/recreate.log" 2>&1

# ------------------------------------------------------------ the edge ---
# nginx with the deployment's own limits (.env), clients with addresses of
# their own on the `edge` network (198.18.0.0/24: not a private range).
say "edge: nginx recreated with the limits of .env"
edge_started=$(now)
unset NGINX_LIMIT_RATE NGINX_LIMIT_BURST NGINX_LIMIT_CONN
dc up -d nginx >>"$TMP/up.log" 2>&1
wait_ready 60 || say "WARNING: no 200 through nginx after recreating it"
nginx_c=$(container_of nginx)
limits=$(docker exec "$nginx_c" sh -c 'grep -h "^limit_" /etc/nginx/conf.d/limits.conf' | tr '\n' ' ' | sed 's/  */ /g')
say "nginx limits: $limits"

# Redis is bounded below its container's memory limit and evicts.
redis_c=$(container_of redis)
policy=$(docker exec "$redis_c" redis-cli config get maxmemory-policy | tail -n 1)
maxmem=$(docker exec "$redis_c" redis-cli config get maxmemory | tail -n 1)
memlimit=$(docker inspect -f '{{.HostConfig.Memory}}' "$redis_c")
check "edge: redis bounded, evicting" "$(is all '[ "$policy" = allkeys-lru ]' '[ "$maxmem" -gt 0 ]' '[ "$maxmem" -lt "$memlimit" ]')" \
    "maxmemory $maxmem B (container limit $memlimit B), policy $policy"

# Unknown methods never reach the app.
code=$(curl -sS -m 5 -o "$TMP/405.body" -w '%{http_code}' -X FOO "$BASE/" || true)
check "edge: unknown method refused" "$(is all '[ "$code" = 405 ]' 'grep -q "\"error\"" "$TMP/405.body"')" \
    "FOO / -> $code $(head -c 100 "$TMP/405.body")"

# (a) A flood from one client gets 429s; another client's hits all succeed.
say "edge: flood from 198.18.0.10 while 198.18.0.11 counts at 5/s"
edge_client flood 198.18.0.10 run --url http://nginx/ --out /out/flood.load --clients 8 \
    --max-seconds 5 --max-requests 50000 >"$TMP/flood.out" 2>&1 &
LOAD_PIDS+=($!); flood_pid=$!
sleep 1
edge_client quiet 198.18.0.11 run --url http://nginx/ --out /out/quiet.load --clients 1 \
    --pause 0.2 --max-seconds 3 --max-requests 100 >"$TMP/quiet.out" 2>&1
wait "$flood_pid"
flood=$(analyze flood); quiet=$(analyze quiet)
rejected=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['statuses'].get('429', 0))" "$flood")
first_errors=$(field "$flood" errors)
check "edge: a flood gets 429s" "$(is all '[ "$rejected" -gt 0 ]' 'grep -q "429 {\"error\"" <<<"$first_errors"')" \
    "flood: $(field "$flood" requests) requests in $(field "$flood" seconds)s, $(field "$flood" ok) counted, $rejected refused with 429; first: ${first_errors:0:110}"
check "edge: another client unaffected" "$(is all '[ "$(field "$quiet" failed)" = 0 ]' '[ "$(field "$quiet" ok)" -ge 10 ]')" \
    "other client: $(field "$quiet" ok) of $(field "$quiet" requests) answered 200 during the flood"

# (b) A slowloris from one client does not stop another client's requests.
say "edge: 3000 half-open connections from 198.18.0.12 while 198.18.0.11 counts"
edge_client slow 198.18.0.12 slowloris --host nginx --port 80 --connections 3000 --hold 9 \
    >"$TMP/slow.json" 2>"$TMP/slow.err" &
LOAD_PIDS+=($!); slow_pid=$!
sleep 3
edge_client quiet2 198.18.0.11 run --url http://nginx/ --out /out/quiet2.load --clients 1 \
    --pause 0.2 --max-seconds 4 --max-requests 100 >"$TMP/quiet2.out" 2>&1
wait "$slow_pid"
slow=$(cat "$TMP/slow.json"); quiet=$(analyze quiet2)
check "edge: slowloris held" "$(is all '[ "$(field "$slow" most_open_at_once)" -ge 2000 ]' '[ "$(field "$slow" closed_by_server)" -gt 0 ]')" \
    "attacker: ${slow:-$(head -c 200 "$TMP/slow.err")} (nginx cuts a head after client_header_timeout 5s)"
check "edge: another client unaffected" "$(is all '[ "$(field "$quiet" failed)" = 0 ]' '[ "$(field "$quiet" ok)" -ge 10 ]')" \
    "other client: $(field "$quiet" ok) of $(field "$quiet" requests) answered 200 during the slowloris; errors $(field "$quiet" errors)"

# (c) /resetcounter from outside the private networks is refused, also with
# a forged X-Forwarded-For (nginx overwrites it).
n_before=$(number_of "$(body /)")
r1=$(edge_client out1 198.18.0.13 request --url http://nginx/resetcounter 2>&1)
r2=$(edge_client out2 198.18.0.13 request --url http://nginx/resetcounter \
    --header "X-Forwarded-For: 127.0.0.1" --header "X-Real-IP: 127.0.0.1" 2>&1)
n_after=$(number_of "$(body /)")
check "edge: reset from outside refused" "$(is all '[ "${r1%% *}" = 403 ]' '[ "${r2%% *}" = 403 ]' '[ "${n_after:-0}" -gt "${n_before:-0}" ]')" \
    "198.18.0.13: '${r1:0:110}'; with X-Forwarded-For: 127.0.0.1: '${r2%% *}'; count $n_before -> $n_after"

# (d) HTTPS on 443 with the certificate mounted from the host.
b=$(curl -sS -m 10 --cacert "$TMP/tls/cert.pem" "https://127.0.0.1:$TLS_PORT/" 2>&1)
unverified=$(curl -sS -m 10 -o /dev/null "https://127.0.0.1:$TLS_PORT/" 2>&1 | head -n 1)
check "edge: HTTPS with the mounted certificate" "$(is all 'grep -Eq "^Hello Linode! This page has been viewed [0-9]+ time\(s\)\.$" <<<"$b"' '[ -n "$unverified" ]')" \
    "curl --cacert https://127.0.0.1:$TLS_PORT/ -> '$b'; without the CA: '$unverified'"
say "edge checks took $(since "$edge_started")s"
