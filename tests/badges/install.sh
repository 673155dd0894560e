#!/usr/bin/env bash
# Installs shields.io's own badge renderer (npm badge-maker) into
# tests/badges/.deps (git-ignored; nothing of it is committed), for
# tests/it/badge_maker.rs, which compares our SVGs with its SVGs byte for byte.
# Run by .ci/run before the tests; run it by hand once before
# `cargo nextest run --test it badge_maker::`. The test itself reaches no
# network at all (it runs node on the installed package), so the install is
# here and not in the test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deps="${BADGE_MAKER_DEPS:-$here/.deps}"
mkdir -p "$deps"
npm install --prefix "$deps/node" --no-audit --no-fund --no-save --silent 'badge-maker@6.0.0'
echo "badge-maker installed in $deps"
