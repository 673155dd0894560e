# hitcounter: the app image.
#
#   docker build -t hitcounter .
#
# Two stages: a Rust builder, then a `scratch` runtime holding only the binary
# and the few shared libraries it is linked against (the exact list `ldd`
# prints, copied from the builder, so they always match the glibc it was built
# with). glibc >= 2.34 carries the "files" and "dns" NSS modules inside
# libc.so.6, so resolving compose service names (postgres, redis) works with no
# other file than /etc/nsswitch.conf. No shell, no package manager. The
# builder's CA bundle (/etc/ssl/certs/ca-certificates.crt, about 0.2 MB) is
# copied: TLS to a managed Redis (rediss://) verifies the server against it
# (sqlx carries its own public roots; a private CA is given in the URLs or with
# SSL_CERT_FILE, see docs/operations.md, "TLS to the databases").
#
# Base images are build arguments whose defaults are the public images; a
# machine with no registry passes its own (see e2e/compose.override.yaml).
# Works with the classic builder and with BuildKit (no BuildKit-only syntax),
# so `docker-compose` 1.29 and `docker compose` v2 both build it.

ARG BUILDER_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=scratch

# ---------------------------------------------------------------- builder ---
FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only, against stub sources: this layer is reused as long as
#    Cargo.toml and Cargo.lock do not change, so editing src/ rebuilds in
#    seconds instead of recompiling every crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/.fingerprint/hitcounter-* \
           target/release/deps/hitcounter-* target/release/deps/libhitcounter-* \
           target/release/hitcounter

# 2. The service itself.
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && ./target/release/hitcounter --version

# 3. The runtime file tree: the binary, each shared library ldd lists (at the
#    path the dynamic loader looks for it), the CA bundle, and the few /etc
#    files a process expects. Fails the build if the binary needs a library
#    ldd cannot find, or if the builder has no CA bundle.
RUN set -eu; \
    bin=target/release/hitcounter; \
    mkdir -p /out/etc/ssl/certs; \
    cp "$bin" /out/hitcounter; \
    cp -L /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt; \
    if ldd "$bin" | grep -q 'not found'; then ldd "$bin"; exit 1; fi; \
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do \
        mkdir -p "/out$(dirname "$lib")"; \
        cp -L "$lib" "/out$lib"; \
    done; \
    printf 'root:x:0:0:root:/:/sbin/nologin\nhitcounter:x:10001:10001:hitcounter:/:/sbin/nologin\n' > /out/etc/passwd; \
    printf 'root:x:0:\nhitcounter:x:10001:\n' > /out/etc/group; \
    printf 'hosts: files dns\n' > /out/etc/nsswitch.conf; \
    echo "runtime tree:"; find /out -type f -exec ls -l {} +

# ---------------------------------------------------------------- runtime ---
FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/ /

# Numeric, so it holds even where /etc/passwd is not read.
USER 10001:10001
EXPOSE 8000
ENV LISTEN_ADDR=0.0.0.0:8000

# The binary handles SIGTERM and SIGINT itself (graceful drain, exit 0) and is
# fine as PID 1.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/hitcounter", "healthcheck"]

ENTRYPOINT ["/hitcounter"]
CMD ["serve"]
