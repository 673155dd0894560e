"""The bench's nginx configuration: the project's nginx/nginx.conf, rendered
the way the image renders it, with the few lines that tie it to Docker
replaced.

Like the image's entrypoint, the limits template
(nginx/templates/limits.conf.template) is rendered with envsubst; here its
values are BENCH_LIMITS and the result is written in place of the line that
includes it. Then each line below is replaced (a regular expression for one
whole line, which must occur exactly once: when nginx/nginx.conf changes one
of them, the bench stops and says which, instead of measuring something
else):

- `user nginx;` is dropped (the machine has no such user; run as root, nginx's
  workers run as nobody), `error_log` goes to the bench's prefix, with `pid`;
- `server app:8000 ...` becomes one `server 127.0.0.1:<port> ...` per app
  process, with the same parameters;
- `listen 80 default_server;` becomes `listen 127.0.0.1:<port>`, followed by
  one location, `location = /__bench_static { return 200 "ok"; }`: nginx
  answering by itself, the ceiling of the proxy;
- the access log goes to the prefix (or off, or buffered: `access_log`);
- the TLS include (compose.tls.yaml's nginx/tls.conf) is dropped: no HTTPS.

Everything else (keepalive to the upstream, HTTP/1.1 to it, buffers,
timeouts, retries, log format, worker_processes, worker_connections) is the
project's own, comments included. `overrides` lets the bench try other values
of a few directives on purpose (tuning runs); each is reported.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

STATIC_PATH = "/__bench_static"

# nginx/templates/limits.conf.template's variables for the bench: limits that
# never trigger (wrk drives every connection from 127.0.0.1, one client).
BENCH_LIMITS = {
    "NGINX_LIMIT_RATE": "1000000r/s",
    "NGINX_LIMIT_BURST": "1000000",
    "NGINX_LIMIT_CONN": "60000",
}


def envsubst(text: str, env: dict[str, str]) -> str:
    """${NAME} -> env[NAME], as envsubst does with a list of names; a ${NAME}
    the bench has no value for is an error (nginx would fail on it)."""

    def sub(m: re.Match) -> str:
        if m.group(1) not in env:
            raise ValueError(f"nginx template needs {m.group(1)}: add it to nginxconf.BENCH_LIMITS")
        return env[m.group(1)]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, text)


@dataclass
class Rendered:
    text: str
    notes: list[str] = field(default_factory=list)


def render(
    source_dir: str,
    app_ports: list[int],
    listen_port: int,
    prefix: str,
    access_log: str = "project",  # project | off | buffered
    overrides: dict[str, str] | None = None,
) -> Rendered:
    """The bench configuration, and notes on what differs from the project's."""
    with open(os.path.join(source_dir, "nginx.conf")) as f:
        text = f.read()
    with open(os.path.join(source_dir, "templates", "limits.conf.template")) as f:
        limits = envsubst(f.read(), BENCH_LIMITS)
    notes: list[str] = []

    def replace(pattern: str, replacement, note: str) -> None:
        nonlocal text
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"nginx/nginx.conf: expected one line matching {pattern!r}, found {count} "
                             "(nginx.conf changed: update bench/nginxconf.py; or an override names a "
                             "directive set in more than one block)")
        notes.append(note)

    def indented(indent: str, lines: str) -> str:
        return "\n".join(indent + line if line else line for line in lines.splitlines())

    replace(r"^([ \t]*)include /etc/nginx/conf\.d/limits\.conf;$",
            lambda m: indented(m.group(1), f"# bench: templates/limits.conf.template, rendered\n{limits}"),
            "limits: templates/limits.conf.template rendered with "
            + ", ".join(f"{k}={v}" for k, v in BENCH_LIMITS.items()))
    replace(r"^([ \t]*)include /etc/nginx/server\.d/\*\.conf;$", "", "dropped the TLS include (server.d)")
    replace(r"^user \S+;\n", "", "dropped `user`")
    replace(r"^error_log \S+ (\w+);$", lambda m: f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log {m.group(1)};",
            "pid and error_log in the prefix")
    log = {"project": "main", "off": None, "buffered": "main buffer=64k flush=1s"}[access_log]
    replace(r"^([ \t]*)access_log /dev/stdout main;$",
            lambda m: m.group(1) + (f"access_log {prefix}/access.log {log};" if log else "access_log off;"),
            f"access_log to the prefix ({access_log})")
    replace(r"^([ \t]*)server app:8000 (.*);$",
            lambda m: "\n".join(f"{m.group(1)}server 127.0.0.1:{port} {m.group(2)};" for port in app_ports),
            f"upstream app: app:8000 -> 127.0.0.1:{','.join(map(str, app_ports))}")
    replace(r"^([ \t]*)listen 80 default_server;$",
            lambda m: (f"{m.group(1)}listen 127.0.0.1:{listen_port} default_server;\n"
                       f"{m.group(1)}# bench: nginx answers by itself (the proxy's ceiling)\n"
                       f"{m.group(1)}location = {STATIC_PATH} {{ return 200 \"ok\"; }}"),
            f"listen 80 -> 127.0.0.1:{listen_port}, plus location = {STATIC_PATH}")
    temp = "".join(f"    {name}_temp_path {prefix}/{name}_temp;\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    replace(r"^http \{\n", lambda m: m.group(0) + temp, "temp paths in the prefix")

    for key, value in (overrides or {}).items():
        note = f"override: {key} {value}"
        if key == "upstream_keepalive":
            replace(r"^([ \t]*)keepalive \d+;$", lambda m: f"{m.group(1)}keepalive {value};", note)
        elif re.search(rf"^[ \t]*{re.escape(key)}\s", text, flags=re.MULTILINE):
            replace(rf"^([ \t]*){re.escape(key)}\s[^;]*;$", lambda m: f"{m.group(1)}{key} {value};", note)
        else:  # a directive the project leaves at nginx's default: set it in http
            replace(r"^http \{\n", lambda m: f"{m.group(0)}    {key} {value};\n", note)

    header = "# Rendered by bench/nginxconf.py from nginx/nginx.conf; the notes say what differs.\n"
    return Rendered(header + text, notes)


if __name__ == "__main__":  # print the rendered config, for a look
    import sys

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nginx")
    r = render(here, [8001, 8002], 8080, "/tmp/bench-nginx")
    print(r.text)
    for note in r.notes:
        print("#", note, file=sys.stderr)
