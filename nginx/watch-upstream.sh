#!/bin/sh
# Re-resolves the app replicas for nginx: every INTERVAL seconds it looks up
# NAME (default `app`) and, when the set of addresses changes, sends SIGHUP
# to nginx, which re-reads its configuration (resolving `app` again) and
# replaces its workers gracefully: requests in flight finish on the old
# workers, no connection is refused.
#
# Why: nginx 1.22 (Debian's, the e2e's) resolves `server app:8000` only when
# it reads its configuration, and cannot re-resolve an upstream that keeps
# connections alive (`resolve` on upstream servers is in open-source nginx
# only from 1.27.3). Recreating the replicas (`docker compose up -d` after
# editing .env, or a scale) gives them new addresses, and nginx would keep
# sending to the old ones (502) until a reload. A `resolver` with a variable
# in proxy_pass would re-resolve, but without upstream keep-alive.
#
# Two ways to run it, both with nginx's master as PID 1 of the process
# namespace:
#
#   watch-upstream NAME INTERVAL
#       alone, in a container sharing nginx's process namespace: compose's
#       nginx-watch service (`pid: service:nginx`);
#   watch-upstream NAME INTERVAL -- ENTRYPOINT CMD...
#       in nginx's own container, as its entrypoint: starts the loop in the
#       background, then execs nginx's entrypoint (which execs nginx), so
#       nginx becomes PID 1. Docker Swarm (deploy/swarm.yaml) has no shared
#       process namespaces.
set -u
name=${1:-app}
interval=${2:-1}
if [ "${3:-}" = "--" ]; then
    shift 3
    "$0" "$name" "$interval" &
    exec "$@"
fi
previous=""
echo "watch-upstream: watching $name every ${interval}s for nginx (pid 1)"
while :; do
    sleep "$interval"
    # Until nginx is PID 1 (and between its restarts) there is nothing to
    # tell: SIGHUP would end a shell still starting it.
    [ "$(cat /proc/1/comm 2>/dev/null)" = nginx ] || continue
    # Every address, from Docker's DNS like nginx's own lookup: glibc's
    # getent (Debian) has ahostsv4; musl's (Alpine, the official image) may
    # not, hence the fallback to `hosts`.
    current=$({ getent ahostsv4 "$name" 2>/dev/null || getent hosts "$name" 2>/dev/null; } \
        | awk '{print $1}' | sort -u | tr '\n' ' ')
    # Nothing resolved (no replica right now, e.g. all recreated at once):
    # nginx keeps what it has (a reload would fail: "host not found"), but
    # the replicas' return is a change even at the same addresses: by then
    # nginx has marked every one failed (max_fails) and would answer 502
    # for up to fail_timeout; the reload starts it afresh.
    if [ -z "$current" ]; then
        previous=""
        continue
    fi
    if [ "$current" != "$previous" ]; then
        # Also at the first lookup: replicas may have changed between
        # nginx's start and this one.
        if kill -HUP 1 2>/dev/null; then
            echo "watch-upstream: $name is now ${current% }: nginx reloaded"
            previous=$current
        else
            echo "watch-upstream: cannot signal nginx (pid 1)" >&2
        fi
    fi
done
