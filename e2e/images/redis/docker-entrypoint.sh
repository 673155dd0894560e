#!/bin/sh
# The parts of the official redis image's entrypoint compose.yaml relies on.
set -eu
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = 'redis-server' ]; then
    case "${2:-}" in
        *.conf) ;;
        # The official build defaults protected-mode to "no"; Debian's to "yes".
        *) shift; set -- redis-server "$@" --protected-mode no ;;
    esac
fi
exec "$@"
