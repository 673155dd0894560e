#!/usr/bin/env bash
# Builds local stand-ins for the public base images compose.yaml and the
# Dockerfiles name, for a machine with no image registry:
#
#   hitcounter-e2e/debian:bookworm          debootstrap rootfs -> docker import
#   hitcounter-e2e/rust:1.95-slim-bookworm  + gcc, this machine's Rust toolchain and CA bundle
#   hitcounter-e2e/postgres:15              + Debian's postgresql-15, official-image entrypoint conventions
#   hitcounter-e2e/redis:7                  + Debian's redis-server
#   hitcounter-e2e/nginx:1.22               + Debian's nginx-light, gettext-base (the
#                                             official image's templates/envsubst start)
#   hitcounter-e2e/client:bookworm          + python3: the e2e's distinct clients
#
# Each image is built once and reused while its inputs are unchanged (a hash
# of them is kept in the label hitcounter.e2e.inputs). Nothing is pulled.
# e2e/run.sh sources it for the image names and runs it to build them; it can
# also be run on its own: bash e2e/images.sh

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGES_DIR="$E2E_DIR/images"

BASE_IMAGE="hitcounter-e2e/debian:bookworm"
RUST_IMAGE="hitcounter-e2e/rust:1.95-slim-bookworm"
POSTGRES_IMAGE="hitcounter-e2e/postgres:15"
REDIS_IMAGE="hitcounter-e2e/redis:7"
NGINX_IMAGE="hitcounter-e2e/nginx:1.22"
CLIENT_IMAGE="hitcounter-e2e/client:bookworm"

log() { printf '[images] %s\n' "$*" >&2; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
debian_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -Eo '(https?://[^ ]*/debian)/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
    if image_exists "$BASE_IMAGE"; then
        log "$BASE_IMAGE: present, reused"
        return
    fi
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /var/tmp/hitcounter-rootfs.XXXXXX)
    log "$BASE_IMAGE: debootstrap bookworm from $mirror"
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2
        rm -rf "$rootfs" "$rootfs.log"
        return 1
    fi
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" \
        >"$rootfs/etc/apt/sources.list"
    # Keep images small: no documentation, no apt caches.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/01-norecommends"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV DEBIAN_FRONTEND=noninteractive' \
        -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    log "$BASE_IMAGE: imported"
}

# inputs_hash NAME EXTRA: what a stand-in is built from (base image, its
# directory under images/, anything else that matters).
inputs_hash() {
    { docker image inspect -f '{{.Id}}' "$BASE_IMAGE"
      (cd "$IMAGES_DIR/$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
      echo "${2:-}"; } | sha256sum | cut -c1-16
}

# docker_build IMAGE INPUTS CONTEXT: build quietly, show the log on failure.
docker_build() {
    local image=$1 inputs=$2 context=$3 started=$SECONDS blog
    blog=$(mktemp /var/tmp/hitcounter-build.XXXXXX)
    if ! docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --label "hitcounter.e2e.inputs=$inputs" -t "$image" "$context" >"$blog" 2>&1; then
        tail -n 40 "$blog" >&2
        rm -f "$blog"
        log "$image: build FAILED"
        return 1
    fi
    rm -f "$blog"
    log "$image: built in $((SECONDS - started))s"
}

# build_standin NAME IMAGE CONTEXT_DIR
build_standin() {
    local name=$1 image=$2 context=$3
    local inputs
    inputs=$(inputs_hash "$name")
    if [ "$(image_label "$image" hitcounter.e2e.inputs)" = "$inputs" ]; then
        log "$image: present, reused"
        return
    fi
    log "$image: building"
    docker_build "$image" "$inputs" "$context"
}

build_rust() {
    local sysroot version cabundle
    sysroot=$(rustc --print sysroot)
    version=$(rustc -vV; "$sysroot/bin/cargo" -V)
    cabundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    [ -f "$cabundle" ] || cabundle=/etc/ssl/certs/ca-certificates.crt
    local inputs
    inputs=$(inputs_hash rust "$version $(sha256sum <"$cabundle")")
    if [ "$(image_label "$RUST_IMAGE" hitcounter.e2e.inputs)" = "$inputs" ]; then
        log "$RUST_IMAGE: present, reused"
        return
    fi
    # Build context: the Dockerfile, the CA bundle and the toolchain (compiler,
    # cargo and the x86_64-unknown-linux-gnu standard library; no docs).
    local ctx
    ctx=$(mktemp -d /var/tmp/hitcounter-rust.XXXXXX)
    cp "$IMAGES_DIR/rust/Dockerfile" "$ctx/"
    cp -L "$cabundle" "$ctx/ca-certificates.crt"
    mkdir -p "$ctx/toolchain/bin"
    cp -L "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$ctx/toolchain/bin/"
    cp -a "$sysroot/lib" "$ctx/toolchain/lib"
    log "$RUST_IMAGE: building from $sysroot ($(rustc -V))"
    local rc=0
    docker_build "$RUST_IMAGE" "$inputs" "$ctx" || rc=$?
    rm -rf "$ctx"
    return "$rc"
}

build_all_standins() {
    build_base
    build_rust
    build_standin postgres "$POSTGRES_IMAGE" "$IMAGES_DIR/postgres"
    build_standin redis "$REDIS_IMAGE" "$IMAGES_DIR/redis"
    build_standin nginx "$NGINX_IMAGE" "$IMAGES_DIR/nginx"
    build_standin client "$CLIENT_IMAGE" "$IMAGES_DIR/client"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    build_all_standins
fi
