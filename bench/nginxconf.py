"""Derive the bench's nginx configuration from the project's nginx/nginx.conf.

The derivation is mechanical: the file is parsed into directives and blocks,
and only what ties it to Docker or to the system is changed:

- every `server` of every `upstream` becomes the app processes' 127.0.0.1
  ports (per-server parameters such as max_fails are kept, `resolve` and
  `service=` are dropped);
- the proxied `server` block listens on 127.0.0.1:<port> (its other `listen`
  lines are dropped), other `server` blocks are dropped;
- `user`, `pid`, `daemon`, `resolver`, `resolver_timeout` are dropped; pid,
  error and access logs and the *_temp_path directories go to the bench's
  temporary prefix;
- `include` of a file that exists on this machine is kept, of a project file
  (nginx/<name>) is inlined, of a file the image renders from a template
  (nginx/templates/<name>.template, the official image's envsubst start) is
  rendered with `template_env` and inlined, otherwise dropped;
- one location is added, `location = /__bench_static { return 200 "ok"; }`:
  nginx answering by itself, the ceiling of the proxy.

The bench renders the per-client limits with BENCH_LIMITS: the same
directives as deployed (their cost stays in the measurement) with values no
benchmark reaches, so it measures the hot path, not the limits.

Everything else (keepalive to the upstream, proxy_http_version, buffers,
timeouts, retries, log format, worker_processes, worker_connections) is the
project's own. `overrides` lets the bench try other values of a few
directives on purpose (tuning runs); each is reported.
"""

from __future__ import annotations

import glob
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


@dataclass
class Node:
    name: str
    args: list[str]
    block: list["Node"] | None = None
    comment: str | None = None  # a whole-line comment kept for readability


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            tokens.append(c)
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            tokens.append(text[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                if text[j] in "\"'":  # quote inside a word, e.g. a="b c"
                    q = text[j]
                    j += 1
                    while j < n and text[j] != q:
                        j += 1
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def parse(text: str) -> list[Node]:
    tokens = tokenize(text)
    pos = 0

    def block() -> list[Node]:
        nonlocal pos
        nodes: list[Node] = []
        words: list[str] = []
        while pos < len(tokens):
            t = tokens[pos]
            pos += 1
            if t == ";":
                nodes.append(Node(words[0], words[1:]))
                words = []
            elif t == "{":
                nodes.append(Node(words[0], words[1:], block()))
                words = []
            elif t == "}":
                if words:
                    raise ValueError(f"nginx config: directive without ';' before '}}': {words}")
                return nodes
            else:
                words.append(t)
        if words:
            raise ValueError(f"nginx config: unterminated directive {words}")
        return nodes

    return block()


def render(nodes: list[Node], indent: int = 0) -> str:
    out = []
    pad = "    " * indent
    for node in nodes:
        if node.comment is not None:
            out.append(f"{pad}# {node.comment}")
        if not node.name:
            continue
        head = " ".join([node.name, *node.args])
        if node.block is None:
            out.append(f"{pad}{head};")
        else:
            out.append(f"{pad}{head} {{")
            out.append(render(node.block, indent + 1))
            out.append(f"{pad}}}")
    return "\n".join(x for x in out if x != "")


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _walk(nodes: list[Node]):
    for node in nodes:
        yield node
        if node.block is not None:
            yield from _walk(node.block)


def envsubst(text: str, env: dict[str, str]) -> str:
    """${NAME} -> env[NAME], as envsubst does with a list of names; a ${NAME}
    the bench has no value for is an error (nginx would fail on it)."""

    def sub(m: re.Match) -> str:
        if m.group(1) not in env:
            raise ValueError(f"nginx template needs {m.group(1)}: add it to nginxconf.BENCH_LIMITS")
        return env[m.group(1)]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, text)


@dataclass
class Derived:
    text: str
    notes: list[str] = field(default_factory=list)


def derive(
    source: str,
    source_dir: str,
    app_ports: list[int],
    listen_port: int,
    prefix: str,
    access_log: str = "project",  # project | off | buffered
    overrides: dict[str, str] | None = None,
    template_env: dict[str, str] | None = None,
) -> Derived:
    """Returns the bench configuration and notes on what was changed."""
    overrides = dict(overrides or {})
    notes: list[str] = []
    tree = parse(source)

    def fix_includes(nodes: list[Node]) -> list[Node]:
        result = []
        for node in nodes:
            if node.name == "include":
                path = _unquote(node.args[0])
                local = os.path.join(source_dir, os.path.basename(path))
                if glob.glob(path) and not path.startswith(os.path.join(source_dir, "")):
                    result.append(node)
                elif os.path.isfile(local):
                    with open(local) as f:
                        result.extend(fix_includes(parse(f.read())))
                    notes.append(f"inlined include {path} from nginx/{os.path.basename(path)}")
                elif os.path.isfile(template := os.path.join(source_dir, "templates", os.path.basename(path) + ".template")):
                    with open(template) as f:
                        text = envsubst(f.read(), template_env or {})
                    result.extend(fix_includes(parse(text)))
                    used = sorted(k for k in (template_env or {}) if "${" + k + "}" in open(template).read())
                    notes.append(f"rendered include {path} from nginx/templates/{os.path.basename(template)} with "
                                 + ", ".join(f"{k}={template_env[k]}" for k in used))
                else:
                    notes.append(f"dropped include {path} (not on this machine)")
                continue
            if node.block is not None:
                node.block = fix_includes(node.block)
            result.append(node)
        return result

    tree = fix_includes(tree)

    # Main context.
    main: list[Node] = []
    error_level = "warn"
    for node in tree:
        if node.name in ("user", "pid", "daemon"):
            notes.append(f"dropped `{render([node])}`")
            continue
        if node.name == "error_log":
            if len(node.args) > 1:
                error_level = node.args[1]
            continue
        if node.name == "load_module" and not os.path.exists(_unquote(node.args[0])):
            notes.append(f"dropped `{render([node])}` (module not on this machine)")
            continue
        main.append(node)
    main.insert(0, Node("pid", [f"{prefix}/nginx.pid"]))
    main.insert(1, Node("error_log", [f"{prefix}/error.log", error_level]))
    if "worker_processes" in overrides:
        value = overrides.pop("worker_processes")
        main = [n for n in main if n.name != "worker_processes"]
        main.insert(0, Node("worker_processes", [value], comment=f"bench override: worker_processes {value}"))
        notes.append(f"override: worker_processes {value}")

    http = next((n for n in main if n.name == "http"), None)
    if http is None or http.block is None:
        raise ValueError("nginx config has no http block")

    # Upstreams: the app processes.
    upstreams = [n for n in http.block if n.name == "upstream"]
    if not upstreams:
        raise ValueError("nginx config has no upstream block to point at the app processes")
    for up in upstreams:
        servers = [n for n in up.block if n.name == "server"]
        params = [a for a in (servers[0].args[1:] if servers else []) if a != "resolve" and not a.startswith("service=")]
        original = ", ".join(render([s]) for s in servers)
        rest = [n for n in up.block if n.name != "server"]
        new_servers = [Node("server", [f"127.0.0.1:{p}", *params]) for p in app_ports]
        if "upstream_keepalive" in overrides:
            value = overrides["upstream_keepalive"]
            rest = [n for n in rest if n.name != "keepalive"]
            rest.insert(0, Node("keepalive", [value], comment=f"bench override: keepalive {value}"))
            notes.append(f"override: upstream keepalive {value}")
        up.block = new_servers + rest
        notes.append(f"upstream {up.args[0]}: `{original}` -> {len(app_ports)} servers 127.0.0.1:{','.join(map(str, app_ports))}")
    overrides.pop("upstream_keepalive", None)

    # http context: Docker-only bits out, paths to the prefix.
    kept = []
    for node in http.block:
        if node.name in ("resolver", "resolver_timeout"):
            notes.append(f"dropped `{render([node])}` (Docker DNS)")
            continue
        if node.name.endswith("_temp_path"):
            continue
        kept.append(node)
    http.block = kept
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        http.block.insert(0, Node(f"{name}_temp_path", [f"{prefix}/{name}_temp"]))

    # Logs (anywhere in http) to the prefix.
    for node in _walk(http.block):
        if node.name == "error_log":
            node.args[0] = f"{prefix}/error.log"
        elif node.name == "access_log" and node.args and node.args[0] != "off":
            node.args[0] = f"{prefix}/access.log"
            if access_log == "off":
                node.args[:] = ["off"]
            elif access_log == "buffered" and not any(a.startswith("buffer=") for a in node.args):
                if len(node.args) == 1:
                    node.args.append("combined")
                node.args += ["buffer=64k", "flush=1s"]
    if access_log != "project":
        notes.append(f"override: access_log {access_log}")

    # Server blocks: keep the one that proxies, listening on 127.0.0.1.
    servers = [n for n in http.block if n.name == "server"]

    def proxies(server: Node) -> bool:
        return any(n.name == "proxy_pass" for n in _walk(server.block))

    main_server = next((s for s in servers if proxies(s)), servers[0] if servers else None)
    if main_server is None:
        raise ValueError("nginx config has no server block")
    for s in servers:
        if s is not main_server:
            http.block.remove(s)
            notes.append("dropped a second server block (not the proxy)")
    listens = [n for n in main_server.block if n.name == "listen"]
    first = listens[0] if listens else Node("listen", ["80"])
    params = [a for a in first.args[1:] if a not in ("ssl", "http2", "ipv6only=on")]
    new_listen = Node("listen", [f"127.0.0.1:{listen_port}", *params])
    notes.append(f"listen {' '.join(first.args)} -> {' '.join(new_listen.args)}")
    body = [n for n in main_server.block if n.name != "listen"]
    static = Node(
        "location",
        ["=", STATIC_PATH],
        [Node("return", ["200", '"ok"'])],
        comment="bench: nginx answers by itself (the proxy's ceiling)",
    )
    main_server.block = [new_listen, *body, static]

    for key, value in overrides.items():
        # Any other override is an http-level directive, replaced or added.
        http.block = [n for n in http.block if n.name != key]
        http.block.insert(0, Node(key, value.split(), comment=f"bench override: {key} {value}"))
        notes.append(f"override: {key} {value}")

    header = "# Derived by bench/nginxconf.py from nginx/nginx.conf; see the notes in bench/results.\n"
    return Derived(header + render(main) + "\n", notes)


# The stand-in used while the project has no nginx/nginx.conf: the usual
# reverse-proxy settings written as a Docker deployment would, so that it goes
# through the same derivation.
FALLBACK = r"""
user nginx;
worker_processes auto;
error_log /dev/stderr warn;
events { worker_connections 1024; }
http {
    default_type text/plain;
    access_log /dev/stdout;
    keepalive_timeout 65s;
    resolver 127.0.0.11 valid=10s;
    upstream app {
        server app:8000;
        keepalive 32;
    }
    server {
        listen 80 default_server;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
"""


if __name__ == "__main__":  # print the derived config, for a look
    import sys

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "nginx", "nginx.conf")
    with open(path) as f:
        d = derive(f.read(), os.path.dirname(os.path.abspath(path)), [8001, 8002], 8080, "/tmp/bench-nginx",
                   template_env=BENCH_LIMITS)
    print(d.text)
    for note in d.notes:
        print("#", note, file=sys.stderr)
