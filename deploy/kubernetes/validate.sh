#!/usr/bin/env bash
# Validate the Kubernetes manifests offline (no cluster needed): render them
# with `kubectl kustomize`, check every object against the Kubernetes schemas
# (kubernetes-validate, strict), the CloudNativePG Cluster against its CRD
# schema, and the stack's own invariants (validate.py says which), then check
# that a set of broken copies is refused. Exit 1 on any error.
#
#   bash deploy/kubernetes/validate.sh
#
# Installs what is missing: kubectl (Debian's kubernetes-client, as root) and
# kubernetes-validate from PyPI in a venv under deploy/kubernetes/.tools/
# (git-ignored, reused by later runs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/.tools"

# The oldest Kubernetes the manifests need (lifecycle.preStop.sleep is on by
# default from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS=(1.30 1.37)
KUBERNETES_VALIDATE=1.37.0

if ! command -v kubectl >/dev/null; then
    echo "installing kubernetes-client (kubectl) from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq kubernetes-client >/dev/null
fi

venv="$tools/venv"
if ! "$venv/bin/python" -c "import kubernetes_validate.version as v, sys; sys.exit(v.__version__ != '$KUBERNETES_VALIDATE')" 2>/dev/null; then
    echo "installing kubernetes-validate $KUBERNETES_VALIDATE in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"
fi

rendered="$tools/rendered.yaml"
kubectl kustomize "$here" > "$rendered"
args=()
for v in "${KUBERNETES_VERSIONS[@]}"; do args+=(-k "$v"); done
"$venv/bin/python" "$here/validate.py" "$rendered" "${args[@]}" --self-test "$@"
