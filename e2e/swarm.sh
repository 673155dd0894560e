#!/usr/bin/env bash
# End-to-end test of the Docker Swarm deployment (deploy/swarm.yaml) on a
# single-node swarm of its own, for a machine with no image registry.
#
#   bash e2e/swarm.sh            (as root)
#
# 1. Starts dockerd if none is running (and stops it at the end); refuses to
#    run on a node that is already in a swarm (it would leave it at the end).
# 2. Reuses the stand-in base images of e2e/images.sh; builds the app image
#    (tag 1), a second tag of it (2, for the rolling update), a broken one
#    (its health check fails), nginx from nginx/, and postgres with the
#    official image's POSTGRES_PASSWORD_FILE (which the stand-in lacks).
# 3. `docker swarm init --advertise-addr 127.0.0.1`, the two secrets, then
#    the stack: compose.yaml + deploy/swarm.yaml + an e2e override (the
#    stand-in images; an attachable `edge` network for the clients; `front`
#    attachable to read each task's metrics). Merged with `docker stack
#    config` (the loader `docker stack deploy` uses), minus nginx's published
#    port: Swarm would publish it on every address (it ignores 127.0.0.1), so
#    the clients are containers on `edge` and nothing is published.
# 4. Under bounded load (e2e/load.py from a container): the seed's steps;
#    scale 3 -> 6 -> 2; a rolling update to tag 2; the broken tag rolled back
#    automatically; a task's container killed and replaced. Each scenario
#    prints its failed requests (time, status, error) and its time.
# 5. Removes the stack, its volume and the secrets, leaves the swarm, and
#    ends with "N passed, M failed" (exit 1 if any failed).
#
# Environment: E2E_KEEP=1 keeps the swarm and the stack (for debugging).
set -uo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/.." && pwd)"
STARTED=$(date +%s.%N)
STACK=hcswarm
APP_SERVICE="${STACK}_app"
SECRETS=(hitcounter_postgres_password hitcounter_admin_token)
# Swarm tries to pull every task's image before it falls back to the local
# one; named after a registry on 127.0.0.1:9 (nothing listens there) the
# attempt is refused at once and never leaves the machine.
IMG=127.0.0.1:9/hitcounter-swarm

PASSED=0
FAILED=0
DOCKERD_PID=""
SWARM_MINE=""
TMP=""
CLIENTS=()

say() { printf '[swarm %s] %s\n' "$(date +%T)" "$*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
check() {
    if [ "$2" = 1 ]; then PASSED=$((PASSED + 1)); printf 'PASS  %-38s %s\n' "$1" "$3"
    else FAILED=$((FAILED + 1)); printf 'FAIL  %-38s %s\n' "$1" "$3"; fi
}
is() { if "$@"; then echo 1; else echo 0; fi; }
all() { local c; for c in "$@"; do eval "$c" || return 1; done; }
setup_failed() {
    say "SETUP FAILED: $*"
    FAILED=$((FAILED + 1))
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for c in "${CLIENTS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    if [ -n "$SWARM_MINE" ] && [ "${E2E_KEEP:-}" != 1 ]; then
        say "removing the stack, its volume and secrets; leaving the swarm"
        docker stack rm "$STACK" >/dev/null 2>&1
        for _ in $(seq 60); do
            [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] && break
            sleep 1
        done
        for _ in $(seq 20); do
            docker volume rm "${STACK}_pgdata" >/dev/null 2>&1 && break
            sleep 1
        done
        docker secret rm "${SECRETS[@]}" >/dev/null 2>&1
        docker swarm leave --force >/dev/null 2>&1
        local left
        left=$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK"; \
               docker network ls -q --filter "label=com.docker.stack.namespace=$STACK"; \
               docker volume ls -q --filter "name=${STACK}_")
        [ -z "$left" ] || say "WARNING: left behind: $left"
        say "swarm: $(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)"
    elif [ -n "$SWARM_MINE" ]; then
        say "E2E_KEEP=1: swarm and stack $STACK left running"
    fi
    if [ -n "$DOCKERD_PID" ] && [ "${E2E_KEEP:-}" != 1 ]; then
        say "stopping the dockerd this run started (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    if [ -n "$TMP" ]; then
        if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ]; then rm -rf "$TMP"; else say "logs kept in $TMP"; fi
    fi
    say "total swarm e2e time: $(since "$STARTED")s"
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -ne 0 ] || [ "$PASSED" -eq 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- setup ---
[ "$(id -u)" = 0 ] || setup_failed "run as root (it starts dockerd and a swarm)"
for cmd in dockerd python3 rustc; do
    command -v "$cmd" >/dev/null || setup_failed "$cmd missing (bash e2e/run.sh installs what the e2e needs)"
done
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: /var/log/hitcounter-e2e-dockerd.log)"
    setsid dockerd >/var/log/hitcounter-e2e-dockerd.log 2>&1 </dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || setup_failed "dockerd did not start"
fi
docker stack config --help >/dev/null 2>&1 \
    || setup_failed "this docker CLI has no 'docker stack config' (Docker 23 or later)"
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
[ "$state" = inactive ] || setup_failed "this node is already in a swarm ($state); the e2e needs one of its own"

TMP=$(mktemp -d /tmp/hitcounter-swarm.XXXXXX)

# shellcheck source=e2e/images.sh
source "$E2E_DIR/images.sh"
say "stand-in base images"
bash "$E2E_DIR/images.sh" || setup_failed "stand-in images"

say "building the images (app from ./Dockerfile, nginx from ./nginx)"
t=$(now)
docker build --build-arg "BUILDER_IMAGE=$RUST_IMAGE" -t "$IMG/app:1" "$ROOT" >"$TMP/build-app.log" 2>&1 \
    || { tail -n 30 "$TMP/build-app.log"; setup_failed "docker build of the app"; }
docker build --build-arg "NGINX_IMAGE=$NGINX_IMAGE" -t "$IMG/nginx:1" "$ROOT/nginx" >"$TMP/build-nginx.log" 2>&1 \
    || { tail -n 30 "$TMP/build-nginx.log"; setup_failed "docker build of nginx"; }
# Tag 2: the same program in another image (a rolling update replaces every task).
printf 'FROM %s\nLABEL hitcounter.e2e.tag=2\n' "$IMG/app:1" | docker build -q -t "$IMG/app:2" - >/dev/null 2>&1 \
    || setup_failed "build of app:2"
# Broken: serves, but its health check probes a port nobody listens on, so
# no task of it ever becomes healthy.
printf 'FROM %s\nENV HEALTHCHECK_URL=http://127.0.0.1:9/healthz\n' "$IMG/app:1" \
    | docker build -q -t "$IMG/app:broken" - >/dev/null 2>&1 || setup_failed "build of app:broken"
# The official postgres image reads POSTGRES_PASSWORD_FILE (its file_env);
# the stand-in does not, so this wrapper does it before the stand-in's entrypoint.
mkdir -p "$TMP/pg"
cat >"$TMP/pg/file-env.sh" <<'EOF'
#!/bin/bash
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD="$(<"$POSTGRES_PASSWORD_FILE")"
    export POSTGRES_PASSWORD
    unset POSTGRES_PASSWORD_FILE
fi
exec docker-entrypoint.sh "$@"
EOF
printf 'FROM %s\nCOPY file-env.sh /usr/local/bin/file-env.sh\nRUN chmod 755 /usr/local/bin/file-env.sh\nENTRYPOINT ["file-env.sh"]\nCMD ["postgres"]\n' \
    "$POSTGRES_IMAGE" >"$TMP/pg/Dockerfile"
docker build -q -t "$IMG/postgres:15" "$TMP/pg" >/dev/null 2>&1 || setup_failed "build of postgres with POSTGRES_PASSWORD_FILE"
docker tag "$REDIS_IMAGE" "$IMG/redis:7" || setup_failed "tag redis"
say "images built in $(since "$t")s"

say "docker swarm init --advertise-addr 127.0.0.1"
docker swarm init --advertise-addr 127.0.0.1 >"$TMP/init.log" 2>&1 || { cat "$TMP/init.log"; setup_failed "swarm init"; }
SWARM_MINE=1
ADMIN_TOKEN_VALUE=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
python3 -c 'import secrets; print(secrets.token_hex(24))' | docker secret create hitcounter_postgres_password - >/dev/null \
    || setup_failed "docker secret create"
# With a newline at the end, as `echo` or `openssl rand` write it.
echo "$ADMIN_TOKEN_VALUE" | docker secret create hitcounter_admin_token - >/dev/null || setup_failed "docker secret create"

# This VM's kernel has no IPVS, so no service virtual IP resolves: every
# service the e2e reaches by name resolves to its tasks instead (dnsrr). The
# app already does in deploy/swarm.yaml.
cat >"$TMP/e2e.yaml" <<EOF
# e2e/swarm.sh: stand-in images, the clients' network, nothing published.
services:
  nginx:
    image: $IMG/nginx:1
    networks: [front, edge]
    deploy: {endpoint_mode: dnsrr}
  nginx-watch:
    image: $IMG/nginx:1
  app:
    image: \${HITCOUNTER_APP_IMAGE}
  redis:
    image: $IMG/redis:7
    deploy: {endpoint_mode: dnsrr}
  postgres:
    image: $IMG/postgres:15
    deploy: {endpoint_mode: dnsrr}
networks:
  front:
    attachable: true
  edge:
    driver: overlay
    attachable: true
    internal: true
EOF
# Load phases: limits that never trigger (every load client is one address).
export NGINX_LIMIT_RATE=100000r/s NGINX_LIMIT_BURST=100000 NGINX_LIMIT_CONN=10000 RATE_LIMIT=0
export POSTGRES_PASSWORD=unused-under-swarm HTTP_PORT=127.0.0.1:8080

# deploy TAG: the stack with the app at TAG (what `docker stack deploy -c
# compose.yaml -c deploy/swarm.yaml` does, minus nginx's published port).
deploy() {
    HITCOUNTER_APP_IMAGE="$IMG/app:$1" docker stack config -c "$ROOT/compose.yaml" \
        -c "$ROOT/deploy/swarm.yaml" -c "$TMP/e2e.yaml" >"$TMP/stack.yaml" 2>"$TMP/config.err" \
        || { cat "$TMP/config.err"; return 1; }
    python3 - "$TMP/stack.yaml" <<'EOF' || return 1
import sys, yaml
path = sys.argv[1]
stack = yaml.safe_load(open(path))
stack["services"]["nginx"].pop("ports", None)
yaml.safe_dump(stack, open(path, "w"), sort_keys=False)
EOF
    docker stack deploy --resolve-image never --prune -c "$TMP/stack.yaml" "$STACK" >>"$TMP/deploy.log" 2>&1 \
        || { tail -n 20 "$TMP/deploy.log"; return 1; }
}

# client NAME LOAD.PY-ARGS...: e2e/load.py in a container on `edge`.
client() {
    local name="${STACK}-client-$1"
    shift
    CLIENTS+=("$name")
    docker run --rm --name "$name" --network "${STACK}_edge" -v "$E2E_DIR:/e2e:ro" -v "$TMP:/out" \
        "$CLIENT_IMAGE" python3 /e2e/load.py "$@"
}
request() { client "req$RANDOM" request "$@" 2>&1; }
# load_start NAME / load_stop NAME: bounded load on / (4 clients, 2 minutes
# or 60,000 requests at most). Every change of the app's tasks reloads nginx
# (nginx/watch-upstream.sh), and a reloading nginx closes its idle client
# connections: a GET sent on one at that moment is retried once on a new
# connection, as browsers, curl and Go's client do (counted as "retried").
load_start() {
    rm -f "$TMP/$1.stop"
    client "$1" run --url http://nginx/ --out "/out/$1.load" --clients 4 --pause 0.005 --retry-reused \
        --max-seconds 120 --max-requests 60000 --stop-file "/out/$1.stop" >"$TMP/$1.out" 2>&1 &
    LOAD_PID=$!
    # The client is running once its file has its first answers.
    for _ in $(seq 100); do [ -s "$TMP/$1.load" ] && break; sleep 0.1; done
}
load_stop() { touch "$TMP/$1.stop"; wait "$LOAD_PID"; }
analyze() { local n=$1; shift; python3 "$E2E_DIR/load.py" analyze "$TMP/$n.load" "$@"; }
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print('' if v is None else v)" "$1" "$2"; }
# failures NAME: every failed request of a load, with its time from the start.
failures() {
    python3 - "$TMP/$1.load" <<'EOF'
import sys
lines = [l.split(" ", 4) for l in open(sys.argv[1]) if l.strip()]
if lines:
    t0 = float(lines[0][0])
    bad = [l for l in lines if l[2] != "200"]
    for l in bad[:20]:
        print(f"    failed at +{float(l[0]) - t0:.2f}s: status {l[2]} {l[4].strip()[:120]}")
    if len(bad) > 20:
        print(f"    ... and {len(bad) - 20} more")
EOF
}
# running_tasks: container ids of the app's running tasks on this node.
running_tasks() { docker ps -q --filter "label=com.docker.swarm.service.name=$APP_SERVICE" --filter status=running; }
# replicas: "running/desired" of the app service.
replicas() { docker service ls --filter "name=$APP_SERVICE" --format '{{.Replicas}}' | head -n1; }
update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$APP_SERVICE"; }
task_images() {
    docker service ps --filter desired-state=running --format '{{.Image}}' "$APP_SERVICE" | sort | uniq -c \
        | awk '{printf "%s x%s ", $2, $1}'
}
# hits_per_task: "container=hits ..." from each running task's /metrics
# (hitcounter_hits_total), read over `front` from a client container.
hits_per_task() {
    local ips=() names=() c
    for c in $(running_tasks); do
        ips+=("$(docker inspect -f "{{ (index .NetworkSettings.Networks \"${STACK}_front\").IPAddress }}" "$c")")
        names+=("$(docker inspect -f '{{.Name}}' "$c" | sed 's#^/##; s#^'"$APP_SERVICE"'\.##' | cut -c1-14)")
    done
    CLIENTS+=("${STACK}-client-metrics")
    docker run --rm --name "${STACK}-client-metrics" --network "${STACK}_front" "$CLIENT_IMAGE" python3 -c '
import sys, urllib.request
names, ips = sys.argv[1].split(), sys.argv[2].split()
out = []
for name, ip in zip(names, ips):
    try:
        text = urllib.request.urlopen(f"http://{ip}:8000/metrics", timeout=5).read().decode()
        hits = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("hitcounter_hits_total"))
    except Exception as e:
        hits = -1
    out.append(f"{name}={int(hits)}")
print(" ".join(out))
' "${names[*]}" "${ips[*]}"
}
wait_ready() {
    local deadline=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -le "$deadline" ]; do
        [ "$(request --url http://nginx/readyz | cut -d' ' -f1)" = 200 ] && return 0
        sleep 1
    done
    return 1
}
# wait_replicas N SECONDS: until N tasks of the app run (healthy: Swarm
# counts a task with a health check as running once it is healthy).
wait_replicas() {
    local deadline=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -le "$deadline" ]; do
        [ "$(replicas)" = "$1/$1" ] && return 0
        sleep 0.5
    done
    return 1
}

# -------------------------------------------------------------- checks ---
say "docker stack deploy -c compose.yaml -c deploy/swarm.yaml (app tag 1)"
t=$(now)
# The command as users run it, checked by the same loader (without deploying).
HITCOUNTER_APP_IMAGE=x docker stack config -c "$ROOT/compose.yaml" -c "$ROOT/deploy/swarm.yaml" >"$TMP/user-stack.yaml" 2>"$TMP/user-stack.err"
check "stack file: compose.yaml + swarm.yaml" "$(is [ -s "$TMP/user-stack.yaml" ])" \
    "docker stack config accepts them ($(grep -c . "$TMP/user-stack.err") warnings: $(head -c 150 "$TMP/user-stack.err" | tr '\n' ' '))"
deploy 1 || setup_failed "stack deploy"
if wait_replicas 3 180 && wait_ready 60; then
    check "deployed" 1 "3/3 app tasks healthy and a 200 through nginx after $(since "$t")s"
else
    check "deployed" 0 "app replicas $(replicas) after 180s"
    docker service ls; docker service logs --no-task-ids --tail 20 "$APP_SERVICE" 2>&1 | tail -n 20
    exit 1
fi

# The seed's steps (the reset needs the admin token: it is set, from the secret).
b=$(request --url http://nginx/)
check "seed 1: first view" "$(is [ "$b" = "200 Hello Linode! This page has been viewed 1 time(s)." ])" "'$b'"
b=$(request --url http://nginx/)
check "seed 2: second view" "$(is [ "$b" = "200 Hello Linode! This page has been viewed 2 time(s)." ])" "'$b'"
refused=$(request --url http://nginx/resetcounter)
b=$(request --url http://nginx/resetcounter --header "Authorization: Bearer $ADMIN_TOKEN_VALUE")
check "seed 3: reset (token from the secret)" \
    "$(is all '[ "$b" = "200 Successfully deleted redis and postgres counters" ]' '[ "${refused%% *}" != 200 ]')" \
    "with the token: '$b'; without: '${refused:0:90}'"
found=0
for _ in $(seq 30); do
    found=$(docker service logs --raw "$APP_SERVICE" 2>&1 | grep -c 'reset visitor count')
    [ "$found" -ge 1 ] && break
    sleep 0.5
done
check "seed 4: 'reset visitor count' log" "$(is [ "$found" -ge 1 ])" "$found line(s) in 'docker service logs $APP_SERVICE'"
b=$(request --url http://nginx/)
check "seed: count restarts after reset" "$(is [ "$b" = "200 Hello Linode! This page has been viewed 1 time(s)." ])" "'$b'"
leaks=$(docker service inspect "$APP_SERVICE" "${STACK}_postgres" | grep -c "$ADMIN_TOKEN_VALUE")
pw_env=$(docker service inspect -f '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' "$APP_SERVICE" | grep -E '^(DATABASE_URL|ADMIN_TOKEN)=' | tr '\n' ' ')
check "secrets: files, not environment" "$(is all '[ "$leaks" = 0 ]' '! grep -q "hitcounter:[^@]*@" <<<"$pw_env"')" \
    "service specs hold no secret; app env: $pw_env"

# Scale 3 -> 6 -> 2 under load.
say "scale: 3 -> 6 -> 2 under load"
load_start scale
t=$(now)
docker service scale --detach=false "$APP_SERVICE=6" >"$TMP/scale6.log" 2>&1
up_s=$(since "$t")
up_replicas=$(replicas)
# Each pooled nginx connection is renewed after keepalive_time (10s), so the
# new tasks get their share of the connections within that.
sleep 12
per_task=$(hits_per_task)
t=$(now)
docker service scale --detach=false "$APP_SERVICE=2" >"$TMP/scale2.log" 2>&1
down_s=$(since "$t")
down_replicas=$(replicas)
sleep 3
load_stop scale
s=$(analyze scale)
failed=$(field "$s" failed)
check "scale: no failed request" "$(is all '[ "$failed" = 0 ]' '[ "$(field "$s" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$s" requests) ($(field "$s" retried) retried on a new connection); 3 -> 6 in ${up_s}s ($up_replicas), 6 -> 2 in ${down_s}s ($down_replicas)"
failures scale
ntasks=$(wc -w <<<"$per_task")
check "scale: every replica takes traffic" "$(is all '[ "$ntasks" = 6 ]' '! grep -Eq "=(0|-1)( |$)" <<<"$per_task"')" \
    "hits per task 12s after the scale to 6: $per_task"

# Rolling update to tag 2 under load.
say "rolling update: app tag 1 -> 2 under load"
load_start update
t=$(now)
deploy 2 || say "WARNING: deploy of tag 2 failed"
state=""
for _ in $(seq 360); do
    state=$(update_state)
    [ "$state" = completed ] || [ "$state" = paused ] || [ "$state" = rollback_completed ] && break
    sleep 0.5
done
update_s=$(since "$t")
sleep 2
load_stop update
s=$(analyze update)
failed=$(field "$s" failed)
images=$(task_images)
# The stack file's replicas (3): a deploy sets them again after the scale.
want=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "$APP_SERVICE")
check "update: completed, every task on tag 2" "$(is all '[ "$state" = completed ]' "grep -q '^$IMG/app:2 x$want \$' <<<\"$images\"")" \
    "state '$state' after ${update_s}s; tasks: $images"
check "update: no failed request" "$(is all '[ "$failed" = 0 ]' '[ "$(field "$s" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$s" requests) ($(field "$s" retried) retried on a new connection) during the update (${update_s}s)"
failures update

# A broken tag: its tasks never become healthy; the update fails and rolls back.
say "broken update: app tag broken (health check fails) under load"
load_start broken
t=$(now)
deploy broken || say "WARNING: deploy of the broken tag failed"
state=""
for _ in $(seq 480); do
    state=$(update_state)
    [ "$state" = rollback_completed ] || [ "$state" = completed ] || [ "$state" = rollback_paused ] && break
    sleep 0.5
done
rollback_s=$(since "$t")
wait_replicas "$want" 60
sleep 2
load_stop broken
s=$(analyze broken)
failed=$(field "$s" failed)
images=$(task_images)
message=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}' "$APP_SERVICE")
check "rollback: automatic, back on tag 2" "$(is all '[ "$state" = rollback_completed ]' "grep -q '^$IMG/app:2 x$want \$' <<<\"$images\"")" \
    "state '$state' after ${rollback_s}s ($message); tasks: $images"
check "rollback: no failed request" "$(is all '[ "$failed" = 0 ]' '[ "$(field "$s" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$s" requests) ($(field "$s" retried) retried on a new connection) during the failed update and its rollback (${rollback_s}s)"
failures broken

# A task's container killed (as a node-level failure would): Swarm replaces it.
say "kill: one app task's container under load"
load_start kill
before=$(running_tasks | sort)
victim=$(head -n1 <<<"$before")
t=$(now)
docker kill "$victim" >/dev/null
replaced=""
deadline=$(( $(date +%s) + 90 ))
while [ "$(date +%s)" -le "$deadline" ]; do
    # A new task's container, healthy (Swarm counts it running only then).
    new=$(comm -13 <(echo "$before") <(running_tasks | sort) | head -n1)
    if [ -n "$new" ] && [ "$(docker inspect -f '{{.State.Health.Status}}' "$new" 2>/dev/null)" = healthy ] \
        && [ "$(replicas)" = "$want/$want" ]; then
        replaced=$(since "$t"); break
    fi
    sleep 0.5
done
sleep 2
load_stop kill
s=$(analyze kill)
failed=$(field "$s" failed)
check "kill: task replaced" "$(is [ -n "$replaced" ])" \
    "container ${victim:0:12} killed; new task ${new:0:12} healthy, $want/$want, after ${replaced:-never}s; $(docker service ps --format '{{.CurrentState}} {{.Error}}' "$APP_SERVICE" | grep -m1 -i 'failed' || true)"
check "kill: failed requests" "$(is all '[ "$failed" -le 4 ]' '[ "$(field "$s" ok)" -gt 0 ]')" \
    "$failed failed of $(field "$s" requests) ($(field "$s" retried) retried on a new connection; at most one per load client in flight on the killed task: 4)"
failures kill

# Every acknowledged hit since the reset is in the count.
b=$(request --url http://nginx/)
n=$(grep -Eo 'viewed [0-9]+ time' <<<"$b" | grep -Eo '[0-9]+')
acked=1
for phase in scale update broken kill; do acked=$((acked + $(field "$(analyze "$phase")" ok))); done
check "exact: no acknowledged hit lost" "$(is [ "$((n - 1))" -ge "$acked" ])" \
    "recorded $((n - 1)), acknowledged $acked, counted twice $((n - 1 - acked))"
