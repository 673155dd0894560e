#!/usr/bin/env bash
# Installs the public CountAPI client libraries that tests/it/countapi_clients.rs
# runs, from PyPI and npm, into tests/countapi/.deps (git-ignored; nothing of
# them is committed). Run by .ci/run before the tests; run it by hand once
# before `cargo nextest run --test it countapi_clients::`. Tests themselves reach
# no address but 127.0.0.1, so the install is here and not in the test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deps="${COUNTAPI_DEPS:-$here/.deps}"
mkdir -p "$deps"
if [ ! -x "$deps/venv/bin/python" ]; then
    python3 -m venv "$deps/venv"
fi
# countapi 1.0 imports requests without declaring it.
"$deps/venv/bin/pip" install --disable-pip-version-check -q 'countapi==1.0' 'requests>=2,<3'
npm install --prefix "$deps/node" --no-audit --no-fund --no-save --silent 'countapi-js@1.0.2'
echo "CountAPI clients installed in $deps"
