#!/bin/sh
# The part of the official nginx image's entrypoint compose relies on
# (docker-entrypoint.d/20-envsubst-on-templates.sh): each
# /etc/nginx/templates/*.template is rendered with envsubst into
# /etc/nginx/conf.d/ (without the suffix), substituting only variables that are
# set in the environment, so nginx's own $variables are left alone.
set -eu
if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
    template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
    suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
    output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
    if [ -d "$template_dir" ]; then
        defined=$(printf '${%s} ' $(env | cut -d= -f1))
        for template in "$template_dir"/*"$suffix"; do
            [ -f "$template" ] || continue
            name=$(basename "$template" "$suffix")
            mkdir -p "$output_dir"
            echo "$0: running envsubst on $template to $output_dir/$name"
            envsubst "$defined" <"$template" >"$output_dir/$name"
        done
    fi
fi
exec "$@"
