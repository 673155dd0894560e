#!/usr/bin/env python3
"""hitcounter bench: the whole stack on one machine, without Docker.

Started by bench/run.sh (which adds a last-resort cleanup trap). Starts a
throwaway PostgreSQL 15, Redis, N app processes and nginx (configured from the
project's nginx/nginx.conf, rendered by nginxconf.py), all on 127.0.0.1 and free
ports, then drives wrk (bench/load.lua) at each concurrency against each
target in turn, repeated, and reports throughput, latency, errors, memory,
CPU per process, and whether the durable record equals the hits answered 2xx.

Only the Python standard library is used. Everything it starts is stopped on
exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nginxconf  # noqa: E402
import svgchart  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

SEED_SQL = "SELECT coalesce(sum(value), 0) FROM counters WHERE namespace = 'default' AND key = 'linode-page'"
KEYS_NAMESPACE = "bench"
KEYS_SQL = f"SELECT coalesce(sum(value), 0) FROM counters WHERE namespace = '{KEYS_NAMESPACE}'"

TARGETS = {
    1: dict(name="nginx static", short="1 nginx-static", via="nginx", path=nginxconf.STATIC_PATH, record=None),
    2: dict(name="nginx->app /healthz", short="2 nginx-healthz", via="nginx", path="/healthz", record=None),
    3: dict(name="nginx->app / (hit)", short="3 nginx-hit", via="nginx", path="/", record=SEED_SQL),
    4: dict(name="app / direct (hit)", short="4 app-hit", via="apps", path="/", record=SEED_SQL),
    5: dict(name="nginx->app /hit 1k keys", short="5 nginx-keys", via="nginx", path="/hit", record=KEYS_SQL, keys=1000),
}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_proc_status(pid: int, field: str) -> int | None:
    """A VmRSS/VmHWM-style field of /proc/PID/status, in kB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, utime+stime ticks, comm) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        fields = data[data.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), comm)
    return table


def time_wait_to(ports: set[int]) -> set[tuple[str, str]]:
    """TCP connections in TIME_WAIT whose peer is one of `ports` (loopback,
    IPv4): each is a connection to an app that was closed from this side
    (nginx dropping an upstream connection instead of keeping it alive)."""
    found = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "06" and int(parts[2].split(":")[1], 16) in ports:
                found.add((parts[1], parts[2]))
    return found


def nginx_errors(text: str) -> dict[str, int]:
    """error.log lines of one run, by message (addresses and ids stripped)."""
    import re

    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = re.search(r"\[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$", line)
        if not m:
            continue
        msg = f"[{m.group(1)}] " + re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", m.group(2))
        counts[msg] = counts.get(msg, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def cpu_busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, idle


def percentile(hist: list[tuple[int, int]], p: float) -> int:
    """Same rule as wrk's stats_percentile, over a merged histogram."""
    total = sum(c for _, c in hist)
    if total == 0:
        return 0
    rank = round((p / 100.0) * total + 0.5)
    seen = 0
    for value, count in hist:
        seen += count
        if seen >= rank:
            return value
    return hist[-1][0]


class Stack:
    """Every process the bench starts, and how to stop it."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hitcounter-bench-"))
        os.chmod(self.tmp, 0o755)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.pg_started = False
        self.pgdata = self.tmp / "pg"
        self.pidfile = os.environ.get("BENCH_PIDFILE")
        self.pg_bin = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        self.app_pids: list[int] = []
        self.nginx_pid: int | None = None
        self.redis_pid: int | None = None
        self.pg_pid: int | None = None

    def note_pid(self, pid: int, sig: str, name: str):
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(f"{pid} {sig} {name}\n")

    def spawn(self, name: str, argv: list[str], env=None, sig="TERM", comm=None) -> subprocess.Popen:
        out = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        self.procs.append((name, proc))
        self.note_pid(proc.pid, sig, comm or Path(argv[0]).name[:15])
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # PostgreSQL --------------------------------------------------------------
    def start_postgres(self):
        self.pg_port = free_port()
        self.pgdata.mkdir()
        (self.tmp / "pgsock").mkdir()
        shutil.chown(self.pgdata, "postgres", "postgres")
        shutil.chown(self.tmp / "pgsock", "postgres", "postgres")
        (self.tmp / "postgres.log").touch()
        shutil.chown(self.tmp / "postgres.log", "postgres", "postgres")
        run_as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            run_as_pg + [str(self.pg_bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL,
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.pg_port),
            "unix_socket_directories": str(self.tmp / "pgsock"),
            "track_wal_io_timing": "on",  # wal_sync_time: what one commit's fsync costs
            "max_connections": "200",
        }
        for item in self.args.pg_set:
            key, _, value = item.partition("=")
            settings[key] = value
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            for key, value in settings.items():
                f.write(f"{key} = '{value}'\n")
        self.pg_settings = settings
        self.pg_started = True  # from here on, cleanup tries pg_ctl stop
        subprocess.run(
            run_as_pg + [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.tmp / "postgres.log"),
                         "-w", "-t", "60", "start"],
            check=True, stdout=subprocess.DEVNULL,
        )
        self.pg_pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        self.note_pid(self.pg_pid, "INT", "postgres")
        self.database_url = f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres"
        log(f"postgres: 127.0.0.1:{self.pg_port} (pid {self.pg_pid}, data {self.pgdata})")

    def psql(self, sql: str) -> str:
        return subprocess.check_output(
            ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
             "-d", "postgres", "-c", sql],
            text=True,
        ).strip()

    def pg_counters(self) -> dict:
        # Batches: every writer numbers its group commits in writer_progress,
        # 1, 2, 3, ... before issue #9 and 65536, 131072, ... since (a batch
        # split after a data error numbers its parts in between), so the sum
        # of last_batch, in steps of the writer's stride, counts them. The
        # pg_stat_* figures reach the statistics up to a second late: only
        # their ratio (time per WAL sync) is used.
        row = self.psql(
            "SELECT (SELECT coalesce(sum(CASE WHEN last_batch >= 65536 AND last_batch % 65536 = 0 "
            "THEN last_batch / 65536 ELSE last_batch END), 0) FROM writer_progress), "
            "w.wal_sync, w.wal_sync_time FROM pg_stat_wal w"
        ).split("|")
        return dict(batches=int(row[0]), wal_sync=int(row[1]), wal_sync_time_ms=float(row[2]))

    # Redis -------------------------------------------------------------------
    def start_redis(self):
        self.redis_port = free_port()
        (self.tmp / "redis").mkdir()
        proc = self.spawn("redis", [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
            "--save", "", "--appendonly", "no", "--dir", str(self.tmp / "redis"),
            "--protected-mode", "yes", "--loglevel", "warning",
        ])
        self.redis_pid = proc.pid
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("redis did not start:\n" + self.log_tail("redis"))
        log(f"redis: 127.0.0.1:{self.redis_port} (pid {proc.pid})")

    # Apps --------------------------------------------------------------------
    def start_apps(self, binary: Path):
        self.app_ports = []
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DB_", "LISTEN_"))}
        for i in range(self.args.apps):
            port = free_port()
            env = dict(base_env)
            env.update(
                LISTEN_ADDR=f"127.0.0.1:{port}",
                DATABASE_URL=self.database_url,
                REDIS_URL=f"redis://127.0.0.1:{self.redis_port}",
                LOG_LEVEL="warn",
                # As deployed: compose.yaml gives each replica `cpus: 1.0`, and
                # tokio sizes its pool from the cgroup quota, so a replica runs
                # one worker thread. Unlimited here, it would start one per core.
                TOKIO_WORKER_THREADS="1",
                # wrk is one client (127.0.0.1): the app's per-client limit
                # off, so the bench measures the hot path, not the limit.
                RATE_LIMIT="0",
            )
            for item in self.args.app_env:
                key, _, value = item.partition("=")
                env[key] = value
            proc = self.spawn(f"app{i + 1}", [str(binary)], env=env, comm="hitcounter")
            self.app_ports.append(port)
            self.app_pids.append(proc.pid)
        for i, port in enumerate(self.app_ports):
            deadline = time.time() + 60
            while True:
                rc = subprocess.run(
                    [str(binary), "healthcheck", "--url", f"http://127.0.0.1:{port}/healthz"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ).returncode
                if rc == 0:
                    break
                proc = self.procs[[n for n, _ in self.procs].index(f"app{i + 1}")][1]
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"app{i + 1} did not become healthy:\n" + self.log_tail(f"app{i + 1}"))
                time.sleep(0.2)
        log(f"apps: {len(self.app_ports)} x hitcounter on 127.0.0.1:{','.join(map(str, self.app_ports))} "
            f"(pids {','.join(map(str, self.app_pids))})")

    # nginx -------------------------------------------------------------------
    def start_nginx(self):
        self.nginx_port = free_port()
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        overrides = {}
        for item in self.args.nginx_set:
            key, _, value = item.partition("=")
            overrides[key] = value
        rendered = nginxconf.render(
            str(ROOT / "nginx"), self.app_ports, self.nginx_port, str(prefix),
            access_log=self.args.nginx_access_log, overrides=overrides,
        )
        self.nginx_source = "nginx/nginx.conf (rendered)"
        self.nginx_conf_text = rendered.text
        self.nginx_notes = rendered.notes
        conf = prefix / "nginx.conf"
        conf.write_text(rendered.text)
        base = ["nginx", "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
        check = subprocess.run(base + ["-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"rendered nginx config rejected:\n{check.stderr}\n{rendered.text}")
        proc = self.spawn("nginx", base + ["-g", "daemon off;"], sig="TERM")
        self.nginx_pid = proc.pid
        deadline = time.time() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{self.nginx_port}{nginxconf.STATIC_PATH}", timeout=2).read()
                if body == b"ok":
                    break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("nginx did not start:\n" + self.log_tail("nginx") + "\n" +
                                   (prefix / "error.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        log(f"nginx: 127.0.0.1:{self.nginx_port} (pid {proc.pid}), config from {self.nginx_source}")
        for note in rendered.notes:
            log(f"  nginx conf: {note}")

    # Stopping ----------------------------------------------------------------
    def stop(self):
        # nginx first (no new traffic), then the apps (they drain and flush),
        # then Redis, PostgreSQL last.
        order = sorted(self.procs, key=lambda np: (0 if np[0] == "nginx" else 1 if np[0].startswith("app") else 2))
        for name, proc in order:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within 20s; killing it")
                proc.kill()
                proc.wait()
            if name.startswith("app") and proc.returncode not in (0, None, -signal.SIGTERM):
                log(f"{name} exited with {proc.returncode}:\n{self.log_tail(name, 10)}")
        if self.pg_started:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast",
                 "-w", "stop"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        if self.pidfile:
            open(self.pidfile, "w").close()
        if self.args.keep:
            log(f"kept the temporary directory {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class RssSampler(threading.Thread):
    """Samples VmRSS of the app processes while a run is active."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {pid: 0 for pid in pids}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def reset(self):
        with self.lock:
            self.peak = {pid: 0 for pid in self.pids}

    def take(self) -> dict[int, int]:
        with self.lock:
            return dict(self.peak)

    def run(self):
        while not self.stopped.wait(0.1):
            with self.lock:
                for pid in self.pids:
                    rss = read_proc_status(pid, "VmRSS") or 0
                    if rss > self.peak[pid]:
                        self.peak[pid] = rss


class Bench:
    def __init__(self, args, stack: Stack):
        self.args = args
        self.stack = stack
        self.sampler = RssSampler(stack.app_pids)
        self.sampler.start()
        self.lua = BENCH / "load.lua"
        self.wait_budget = args.wait_budget

    def cpu_snapshot(self, wrk_pids: list[int] = ()) -> dict:
        """CPU ticks so far of each process group of the stack (with all
        descendants), of wrk, of this script, of everything else on the
        machine ("foreign": e.g. someone's cargo build), and the machine's
        busy/idle/irq ticks."""
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)

        def tree(roots):
            out, todo = [], list(roots)
            while todo:
                p = todo.pop()
                if p in table:
                    out.append(p)
                    todo.extend(children.get(p, []))
            return out

        s = self.stack
        groups = {"wrk": tree(wrk_pids), "nginx": tree([s.nginx_pid])}
        for i, pid in enumerate(s.app_pids):
            groups[f"app{i + 1}"] = tree([pid])
        groups["postgres"] = tree([s.pg_pid])
        groups["redis"] = tree([s.redis_pid])
        groups["bench.py"] = [os.getpid()]
        ours = {pid for pids in groups.values() for pid in pids}
        # Time each group's threads spent runnable but waiting for a core
        # (/proc/PID/task/TID/schedstat, 2nd field, ns): scheduling delay.
        runq = {}
        for name, pids in groups.items():
            total = 0
            for pid in pids:
                try:
                    for tid in os.listdir(f"/proc/{pid}/task"):
                        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                            total += int(f.read().split()[1])
                except (OSError, IndexError, ValueError):
                    pass
            runq[name] = total
        groups["foreign"] = [pid for pid in table if pid not in ours]
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return dict(
            time=time.monotonic(),
            ticks={name: {pid: table[pid][1] for pid in pids} for name, pids in groups.items()},
            busy=sum(v[:8]) - v[3] - v[4], idle=v[3] + v[4], irq=v[5] + v[6], runq=runq,
        )

    @staticmethod
    def cpu_delta(before: dict, after: dict) -> dict:
        """Cores used by each group between two snapshots (2.0 = both cores)."""
        seconds = after["time"] - before["time"]
        out = {}
        for name, pids in after["ticks"].items():
            # A process that started in between counts from 0; one that
            # exited in between is lost (it ends up in "unattributed").
            ticks = sum(t - before["ticks"].get(name, {}).get(pid, 0) for pid, t in pids.items())
            out[name] = max(0, ticks) / CLK_TCK / seconds
        total = (after["busy"] - before["busy"]) / CLK_TCK / seconds
        out["unattributed"] = max(0.0, total - sum(out.values()))
        # Interrupt time: already inside the processes' times above (this
        # kernel charges softirq work, e.g. loopback TCP, to whoever ran).
        out["softirq"] = (after["irq"] - before["irq"]) / CLK_TCK / seconds
        out["total busy"] = total
        out["idle"] = (after["idle"] - before["idle"]) / CLK_TCK / seconds
        out["seconds"] = seconds
        # Threads waiting for a core, on average, per group (exited threads
        # are not counted).
        out["runq_wait"] = {name: max(0, after["runq"].get(name, 0) - before["runq"].get(name, 0)) / 1e9 / seconds
                            for name in after["runq"] if name != "foreign"}
        return out

    def wait_quiet(self):
        """Waits (up to --wait-quiet s) until nothing else on the machine uses
        more than --quiet-threshold cores, so that a run is not measured while
        someone's build shares the two cores."""
        if self.args.wait_quiet <= 0 or self.wait_budget <= 0:
            return 0.0
        give_up = time.monotonic() + min(self.args.wait_quiet, self.wait_budget)
        waited = 0.0
        while True:
            a = self.cpu_snapshot()
            time.sleep(0.5)
            b = self.cpu_snapshot()
            foreign = self.cpu_delta(a, b)
            load = foreign["foreign"] + foreign["unattributed"]
            if load <= self.args.quiet_threshold or time.monotonic() >= give_up:
                self.wait_budget -= waited
                if waited:
                    log(f"  (waited {waited:.1f}s for other work on the machine to calm down; now {load:.2f} cores)")
                return waited
            waited += 0.5

    def wrk_cmds(self, target: dict, conc: int, duration: float) -> list[list[str]]:
        soft = max(0.5, duration - self.args.tail)
        if target["via"] == "nginx":
            urls = [f"http://127.0.0.1:{self.stack.nginx_port}{target['path']}"]
        else:
            urls = [f"http://127.0.0.1:{p}{target['path']}" for p in self.stack.app_ports]
        cmds = []
        for i, url in enumerate(urls):
            c = conc // len(urls) + (1 if i < conc % len(urls) else 0)
            threads = max(1, min(c, self.args.wrk_threads // len(urls)))
            mode = ["keys", target["path"], f"{soft:.3f}", KEYS_NAMESPACE, str(target["keys"])] if target.get("keys") \
                else ["fixed", target["path"], f"{soft:.3f}"]
            cmds.append(["wrk", "-t", str(threads), "-c", str(c), "-d", f"{duration:g}s", "--timeout", "30s",
                         "--latency", "-s", str(self.lua), url, "--", *mode])
        return cmds

    def run_wrk(self, cmds: list[list[str]], soft: float, on_soft=None):
        """Runs the wrk processes at once. `on_soft` is called when the
        clients stop sending (the end of the measured part of the run)."""
        procs = []
        for cmd in cmds:
            out = tempfile.TemporaryFile()
            procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), out))
            self.stack.note_pid(procs[-1][0].pid, "TERM", "wrk")
        started = time.monotonic()
        soft_result = None
        if on_soft:
            time.sleep(max(0.0, started + soft - 0.05 - time.monotonic()))
            soft_result = on_soft([p.pid for p, _ in procs])
        cpu = 0.0
        results, raw = [], []
        for proc, out in procs:
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += rusage.ru_utime + rusage.ru_stime
            out.seek(0)
            text = out.read().decode(errors="replace")
            raw.append(text)
            line = next((l for l in text.splitlines() if l.startswith("BENCH_JSON ")), None)
            if proc.returncode != 0 or line is None:
                raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(proc.args)}\n{text}")
            results.append(json.loads(line[len("BENCH_JSON "):]))
        return results, soft_result, raw

    def wait_idle_record(self, sql: str) -> int:
        """The record once it stops moving (the apps are idle)."""
        value = int(self.stack.psql(sql))
        deadline = time.time() + 10
        while time.time() < deadline:
            time.sleep(0.25)
            again = int(self.stack.psql(sql))
            if again == value:
                return value
            value = again
        return value

    def run_one(self, tid: int, conc: int, rep: int, duration: float, record: bool = True, perf: bool = False) -> dict:
        target = TARGETS[tid]
        before_record = self.wait_idle_record(target["record"]) if target["record"] and record else None
        pg_before = self.stack.pg_counters()
        cmds = self.wrk_cmds(target, conc, duration)
        soft = max(0.5, duration - self.args.tail)
        waited = self.wait_quiet()
        app_ports = set(self.stack.app_ports)
        tw_before = time_wait_to(app_ports)
        error_log = self.stack.tmp / "nginx" / "error.log"
        error_log_at = error_log.stat().st_size if error_log.exists() else 0
        self.sampler.reset()
        perf_proc = self.start_perf(soft) if perf else None
        cpu_before = self.cpu_snapshot()
        results, cpu_after, raw = self.run_wrk(cmds, soft, on_soft=lambda pids: self.cpu_snapshot(pids))
        rss_run = self.sampler.take()
        upstream_closed = len(time_wait_to(app_ports) - tw_before)
        with open(error_log, "rb") as f:
            f.seek(error_log_at)
            nginx_errs = nginx_errors(f.read().decode(errors="replace"))
        perf_report = self.finish_perf(perf_proc) if perf_proc else None
        pg_after = self.stack.pg_counters()

        hist: dict[int, int] = {}
        for r in results:
            for v, c in r["hist"]:
                hist[v] = hist.get(v, 0) + c
        merged = sorted(hist.items())
        first = min(r["first_send"] for r in results if r["first_send"] > 0)
        last = max(r["last_answer"] for r in results)
        window = max(1e-6, last - first)
        requests = sum(r["requests"] for r in results)
        ok = sum(r["ok"] for r in results)
        other = sum(r["other"] for r in results)
        # wrk checks the request once on its first thread before running: not sent.
        sent = sum(r["sent"] - 1 for r in results)
        errors = {k: sum(r["errors"][k] for r in results) for k in ("connect", "read", "write", "timeout")}
        socket_errors = sum(errors.values())
        cpu = self.cpu_delta(cpu_before, cpu_after)

        run = dict(
            target=tid, target_name=target["name"], concurrency=conc, rep=rep, duration_s=duration,
            window_s=round(window, 3), requests=requests, rps=requests / window, ok_rps=ok / window,
            p50_ms=percentile(merged, 50) / 1000, p99_ms=percentile(merged, 99) / 1000,
            p999_ms=percentile(merged, 99.9) / 1000, max_ms=(merged[-1][0] / 1000 if merged else 0),
            ok_2xx=ok, non_2xx=other, socket_errors=socket_errors, socket_error_kinds=errors,
            sent=sent, unanswered=sent - ok - other,
            rss_kb_during={f"app{i + 1}": rss_run.get(pid, 0) for i, pid in enumerate(self.stack.app_pids)},
            hwm_kb_after={f"app{i + 1}": read_proc_status(pid, "VmHWM") for i, pid in enumerate(self.stack.app_pids)},
            cpu_cores=cpu,
            batches=pg_after["batches"] - pg_before["batches"],
            wal_sync_avg_ms=((pg_after["wal_sync_time_ms"] - pg_before["wal_sync_time_ms"])
                             / max(1, pg_after["wal_sync"] - pg_before["wal_sync"])),
            wrk_processes=len(cmds), waited_for_quiet_s=waited,
            app_conns_closed_by_client=upstream_closed, nginx_error_log=nginx_errs,
            noisy=cpu["foreign"] + cpu["unattributed"] > self.args.noisy_threshold,
        )
        if perf_report:
            run["perf"] = perf_report
        if target["record"] and record:
            after_record = self.wait_idle_record(target["record"])
            delta = after_record - before_record
            run["record_before"], run["record_after"], run["record_delta"] = before_record, after_record, delta
            run["record_exact"] = delta == ok
            run["record_note"] = (
                "record == 2xx" if delta == ok else
                f"record {'+' if delta > ok else ''}{delta - ok} vs 2xx; {run['unanswered']} requests sent and never "
                f"answered (A <= record <= A + I holds: {ok <= delta <= ok + max(0, run['unanswered']) + other})"
            )
            if run["batches"] > 0:
                run["hits_per_commit"] = delta / run["batches"]
        return run

    # perf --------------------------------------------------------------------
    def start_perf(self, duration: float):
        if not shutil.which("perf"):
            log("perf: not installed, skipped (apt-get install linux-perf)")
            return None
        data = self.stack.tmp / "perf.data"
        seconds = max(1.0, duration - 0.5)
        proc = subprocess.Popen(
            ["perf", "record", "-a", "-g", "-F", "499", "-e", "cpu-clock", "-o", str(data), "--", "sleep", f"{seconds:g}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.stack.note_pid(proc.pid, "INT", "perf")
        return proc, data

    def finish_perf(self, handle) -> dict | None:
        proc, data = handle
        proc.wait()
        out = {}
        for key, sort in (("by_process", "comm"), ("by_process_dso", "comm,dso"), ("by_symbol", "comm,dso,sym")):
            text = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.7",
                 "--sort", sort],
                capture_output=True, text=True,
            ).stdout
            out[key] = [l for l in text.splitlines() if l.strip() and not l.startswith("#")][:40]
        return out


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def summarize(runs: list[dict]) -> list[dict]:
    keyed: dict[tuple[int, int], list[dict]] = {}
    for r in runs:
        keyed.setdefault((r["concurrency"], r["target"]), []).append(r)
    out = []
    for (conc, tid), rs in sorted(keyed.items()):
        s = dict(
            concurrency=conc, target=tid, target_name=rs[0]["target_name"], reps=len(rs),
            rps=sum(r["rps"] for r in rs) / len(rs),
            rps_min=min(r["rps"] for r in rs), rps_max=max(r["rps"] for r in rs),
            ok_rps=sum(r["ok_rps"] for r in rs) / len(rs),
            p50_ms=max(r["p50_ms"] for r in rs), p99_ms=max(r["p99_ms"] for r in rs),
            p999_ms=max(r["p999_ms"] for r in rs),
            non_2xx=sum(r["non_2xx"] for r in rs), socket_errors=sum(r["socket_errors"] for r in rs),
            rss_kb_max=max(max(r["rss_kb_during"].values() or [0]) for r in rs),
            record_exact=all(r.get("record_exact", True) for r in rs) if TARGETS[tid]["record"] else None,
        )
        hpc = [r["hits_per_commit"] for r in rs if "hits_per_commit" in r]
        if hpc:
            s["hits_per_commit"] = sum(hpc) / len(hpc)
            s["batches_per_s"] = sum(r["batches"] / r["window_s"] for r in rs) / len(rs)
            s["wal_sync_avg_ms"] = sum(r["wal_sync_avg_ms"] for r in rs) / len(rs)
        s["noisy_reps"] = sum(1 for r in rs if r["noisy"])
        cores: dict[str, float] = {}
        runq: dict[str, float] = {}
        for r in rs:
            for k, v in r["cpu_cores"].items():
                if k == "runq_wait":
                    for g, w in v.items():
                        runq[g] = runq.get(g, 0.0) + w / len(rs)
                else:
                    cores[k] = cores.get(k, 0.0) + v / len(rs)
        s["cpu_cores"] = cores
        s["runq_wait"] = runq
        out.append(s)
    return out


def print_report(meta, runs, summary, checks, out=sys.stdout):
    def p(*a):
        print(*a, file=out)

    p()
    p(f"hitcounter bench  {meta['date']}  commit {meta['git_commit']}  apps={meta['apps']}  "
      f"{meta['duration_s']:g}s x {meta['reps']} reps  cores={meta['cpus']}")
    p(f"nginx: {meta['nginx_source']}; app env: {' '.join(meta['app_env']) or '(defaults)'}"
      f"{'; nginx overrides: ' + ' '.join(meta['nginx_set']) if meta['nginx_set'] else ''}"
      f"{'; pg: ' + ' '.join(meta['pg_set']) if meta['pg_set'] else ''}; access_log={meta['nginx_access_log']}")
    p()
    p("Every run (interleaved: for each concurrency, each target in turn, then again):")
    w = [24, 4, 3, 9, 7, 7, 8, 6, 6, 15, 11, 10, 9, 28]
    p(fmt_row(["target", "c", "rep", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "non2xx", "sockerr",
               "app RSS MB run", "hits/commit", "app closes", "nginx err", "record check"], w))
    for r in runs:
        rss = "/".join(f"{v / 1024:.1f}" for v in r["rss_kb_during"].values())
        rec = ""
        if "record_delta" in r:
            rec = (f"ok {r['record_delta']}=2xx" if r["record_exact"] else r["record_note"])
        p(fmt_row([TARGETS[r["target"]]["short"] + (" *" if r["noisy"] else ""), r["concurrency"], r["rep"],
                   f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
                   f"{r['p99_ms']:.2f}", f"{r['p999_ms']:.2f}", r["non_2xx"], r["socket_errors"], rss,
                   f"{r['hits_per_commit']:.1f}" if "hits_per_commit" in r else "",
                   r.get("app_conns_closed_by_client", ""), sum(r.get("nginx_error_log", {}).values()), rec], w))
    p("  app closes: connections to the apps closed from the client side during the run (TIME_WAIT); for the "
      "nginx targets, upstream connections nginx did not keep alive (for (4), wrk's own at its end)")
    errs: dict[str, int] = {}
    for r in runs:
        for k, v in r.get("nginx_error_log", {}).items():
            errs[k] = errs.get(k, 0) + v
    if errs:
        p("  nginx err: lines in nginx's error.log during the run; over all runs:")
        for k, v in sorted(errs.items(), key=lambda kv: -kv[1])[:6]:
            p(f"    {v:>8}  {k}")
    if any(r["noisy"] for r in runs):
        p("  * other work on the machine (not the stack, not wrk) used more than "
          f"{meta['noisy_threshold']} cores during this run: its numbers are low")
    p()
    p("Summary (req/s: every answer, mean of reps; 2xx/s: successful answers only, what the ratio and chart use; "
      "latency: worst rep; errors: sum):")
    w = [24, 4, 9, 15, 9, 7, 7, 8, 6, 6, 7, 11, 11, 10, 8]
    p(fmt_row(["target", "c", "req/s", "(min..max)", "2xx/s", "p50 ms", "p99 ms", "p99.9 ms", "non2xx", "sockerr",
               "RSS MB", "record==2xx", "hits/commit", "commits/s", "fsync ms"], w))
    for s in summary:
        p(fmt_row([TARGETS[s["target"]]["short"] + (" *" if s["noisy_reps"] else ""), s["concurrency"],
                   f"{s['rps']:.0f}",
                   f"{s['rps_min']:.0f}..{s['rps_max']:.0f}", f"{s['ok_rps']:.0f}", f"{s['p50_ms']:.2f}",
                   f"{s['p99_ms']:.2f}",
                   f"{s['p999_ms']:.2f}", s["non_2xx"], s["socket_errors"], f"{s['rss_kb_max'] / 1024:.1f}",
                   "" if s["record_exact"] is None else ("yes" if s["record_exact"] else "NO"),
                   f"{s['hits_per_commit']:.1f}" if "hits_per_commit" in s else "",
                   f"{s['batches_per_s']:.0f}" if "batches_per_s" in s else "",
                   f"{s['wal_sync_avg_ms']:.2f}" if "wal_sync_avg_ms" in s else ""], w))
    p()
    p("CPU while each target ran, in cores of the machine's %d (mean of reps; foreign = processes "
      "not of the bench, unattributed = processes that came and went; softirq: the part of all of these spent "
      "in interrupts, mostly loopback TCP):" % meta["cpus"])
    names = ["wrk", "nginx"] + [f"app{i + 1}" for i in range(meta["apps"])] + [
        "postgres", "redis", "foreign", "unattributed", "idle", "softirq"]
    w = [24, 4] + [8] * len(names)
    p(fmt_row(["target", "c"] + [n[:8] for n in names], w))
    for s in summary:
        p(fmt_row([TARGETS[s["target"]]["short"], s["concurrency"]] +
                  [f"{s['cpu_cores'].get(n, 0):.2f}" for n in names], w))
    p()
    p("Waiting for a core (threads runnable but not running, on average; from schedstat):")
    names = ["wrk", "nginx"] + [f"app{i + 1}" for i in range(meta["apps"])] + ["postgres", "redis"]
    w = [24, 4] + [8] * len(names)
    p(fmt_row(["target", "c"] + names, w))
    for s in summary:
        p(fmt_row([TARGETS[s["target"]]["short"], s["concurrency"]] +
                  [f"{s.get('runq_wait', {}).get(n, 0):.2f}" for n in names], w))
    p()
    for line in checks["lines"]:
        p(line)
    if checks.get("skipped"):
        p(checks["skipped"])


def evaluate(summary, runs, meta) -> dict:
    by = {(s["concurrency"], s["target"]): s for s in summary}
    lines = ["Ratio (3) nginx->app hit / (2) nginx->app /healthz, successful (2xx) answers per second:"]
    ratios = {}
    for conc in meta["concurrency"]:
        if (conc, 3) in by and (conc, 2) in by and by[(conc, 2)]["ok_rps"] > 0:
            ratios[conc] = by[(conc, 3)]["ok_rps"] / by[(conc, 2)]["ok_rps"]
            errs = by[(conc, 3)]["non_2xx"] + by[(conc, 2)]["non_2xx"]
            lines.append(f"  c={conc:<4} {ratios[conc] * 100:5.1f}%   ({by[(conc, 3)]['ok_rps']:.0f} / "
                         f"{by[(conc, 2)]['ok_rps']:.0f})" + (f"   ({errs} non-2xx answers left out)" if errs else ""))
    lines.append("Targets:")
    checks = {}

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    if 64 in ratios:
        checks["ratio_c64"] = ratios[64] >= 0.60
        lines.append(f"  [{verdict(checks['ratio_c64'])}] (3) >= 60% of (2) at c=64: {ratios[64] * 100:.1f}%")
    if (64, 3) in by:
        s = by[(64, 3)]
        checks["p99_c64"] = s["p99_ms"] <= 5.0 and s["non_2xx"] == 0 and s["socket_errors"] == 0
        lines.append(f"  [{verdict(checks['p99_c64'])}] p99 of (3) <= 5 ms at c=64 with zero errors: "
                     f"p99 {s['p99_ms']:.2f} ms, {s['non_2xx']} non-2xx, {s['socket_errors']} socket errors")
    # The target's load is c=64. Memory grows with open connections (each
    # connection holds hyper's 16 + 8 KB buffers and its task: 500 idle
    # keep-alive connections added 34 MB of RSS),
    # so the whole bench's peak, at c=256, is reported beside it.
    peak = meta["app_peak_rss_kb"]
    upto64 = [s["rss_kb_max"] for s in summary if s["concurrency"] <= 64 and s.get("rss_kb_max")]
    if 64 in meta["concurrency"] and upto64:
        rss64 = max(upto64)
        checks["rss"] = rss64 <= 30 * 1024
        lines.append(f"  [{verdict(checks['rss'])}] peak RSS per app <= 30 MB under the c=64 load: {rss64 / 1024:.1f} MB"
                     f" (whole bench, to c={max(meta['concurrency'])}: " +
                     ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in peak.items()) + ")")
    else:
        checks["rss"] = all(v is not None and v <= 30 * 1024 for v in peak.values())
        lines.append(f"  [{verdict(checks['rss'])}] peak RSS per app <= 30 MB: " +
                     ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in peak.items()))
    hit_runs = [r for r in runs if "record_delta" in r]
    checks["record"] = all(r["record_exact"] for r in hit_runs)
    bad = [r for r in hit_runs if not r["record_exact"]]
    lines.append(f"  [{verdict(checks['record'])}] record == 2xx after every hit run: "
                 f"{len(hit_runs) - len(bad)}/{len(hit_runs)} exact"
                 + ("" if not bad else "; " + "; ".join(f"{TARGETS[r['target']]['short']} c={r['concurrency']}: "
                                                       f"{r['record_note']}" for r in bad)))
    return dict(lines=lines, ratios={str(k): v for k, v in ratios.items()}, checks=checks)


def git_commit() -> str:
    try:
        rev = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                "nginx"]).returncode
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def probe_counter_api(port: int) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/hit/benchprobe/probe"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return True, f"GET /hit/benchprobe/probe -> {resp.status}"
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        if e.code == 404 and "no route" in body:
            return False, "skipped: no counter API"
        return False, f"skipped: no counter API (GET /hit/benchprobe/probe -> {e.code} {body[:120]})"
    except OSError as e:
        return False, f"skipped: counter API probe failed ({e})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=2, help="app processes behind nginx (default 2)")
    ap.add_argument("--concurrency", default="16,64,256", help="wrk connections, comma-separated")
    ap.add_argument("--targets", default="1,2,3,4,5", help="which targets (1..5), comma-separated")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per run (default 8)")
    ap.add_argument("--tail", type=float, default=1.0,
                    help="last seconds of a run in which no new request is sent, so none is cut off (default 1)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of every (concurrency, target) (default 2)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target, not reported")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk threads in all (default 2 = cores)")
    ap.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the apps, e.g. DB_POOL_SIZE=4 (repeatable)")
    ap.add_argument("--nginx-set", action="append", default=[], metavar="DIRECTIVE=VALUE",
                    help="override in the rendered nginx config: worker_processes=N, upstream_keepalive=N, "
                         "or any http-level directive (repeatable)")
    ap.add_argument("--nginx-access-log", choices=["project", "off", "buffered"], default="project",
                    help="access log as the project has it (to a file here), off, or buffered")
    ap.add_argument("--pg-set", action="append", default=[], metavar="KEY=VALUE",
                    help="PostgreSQL setting for experiments, e.g. synchronous_commit=off (repeatable)")
    ap.add_argument("--wait-quiet", type=float, default=15.0,
                    help="before each run, wait up to this many seconds until other work on the machine uses "
                         "at most --quiet-threshold cores (0: do not wait; default 15)")
    ap.add_argument("--wait-budget", type=float, default=90.0,
                    help="at most this many seconds of such waiting in the whole bench (default 90)")
    ap.add_argument("--quiet-threshold", type=float, default=0.15, help="cores (default 0.15)")
    ap.add_argument("--noisy-threshold", type=float, default=0.25,
                    help="a run during which other work used more cores than this is marked noisy (default 0.25)")
    ap.add_argument("--nice", type=int, default=-10,
                    help="scheduling priority of the bench and all it starts (default -10: ahead of other work "
                         "on a shared machine; 0: unchanged)")
    ap.add_argument("--perf", action="store_true", help="after the runs, one more run of (3) at c=64 under perf record -a (not in the table); "
                         "the profile goes to results/NAME.txt")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "hitcounter"))
    ap.add_argument("--name", default="latest", help="results go to bench/results/NAME.{json,svg,txt}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = ap.parse_args()
    args.concurrency_list = [int(c) for c in args.concurrency.split(",")]
    targets = [int(t) for t in args.targets.split(",")]
    if args.duration - args.tail < 1:
        ap.error("--duration must be at least --tail + 1 s")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    for tool in ("wrk", "nginx", "redis-server", "psql", "pg_config", "runuser"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (apt-get install -y nginx-light wrk redis-server postgresql-15)")

    if not args.no_build:
        log("cargo build --release ...")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = Path(args.binary)
    if not binary.exists():
        sys.exit(f"bench: no binary at {binary}")

    if args.nice and os.geteuid() == 0:
        # Every process the bench starts inherits this priority: on a machine
        # shared with other work (builds), the stack and wrk get the cores
        # first and the measurement is less disturbed. Other processes are
        # not touched.
        os.nice(args.nice)

    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    stack = Stack(args)
    started = time.time()
    try:
        stack.start_postgres()
        stack.start_redis()
        stack.start_apps(binary)
        stack.start_nginx()

        skipped = None
        if 5 in targets:
            has_api, message = probe_counter_api(stack.app_ports[0])
            if not has_api:
                skipped = f"(5) {TARGETS[5]['name']}: {message}"
                log(skipped)
                targets.remove(5)

        bench = Bench(args, stack)
        log(f"warm-up: {args.warmup:g}s per target at c=16")
        for tid in targets:
            bench.run_one(tid, 16, 0, args.warmup + args.tail, record=False)

        runs = []
        total = len(args.concurrency_list) * args.reps * len(targets)
        for conc in args.concurrency_list:
            for rep in range(1, args.reps + 1):
                for tid in targets:
                    run = bench.run_one(tid, conc, rep, args.duration)
                    runs.append(run)
                    log(f"[{len(runs)}/{total}] {TARGETS[tid]['short']:<16} c={conc:<4} rep {rep}: "
                        f"{run['rps']:8.0f} req/s  p99 {run['p99_ms']:7.2f} ms  "
                        f"non2xx {run['non_2xx']} sockerr {run['socket_errors']}"
                        + (f"  record {'== 2xx' if run['record_exact'] else run['record_note']}"
                           if "record_delta" in run else ""))
                    time.sleep(0.3)

        profiled = None
        if args.perf and 3 in targets:
            # One more run of (3) at c=64 under perf, kept out of the table
            # (sampling every CPU costs some throughput).
            log("profiling: one more run of (3) at c=64 under perf record -a")
            profiled = bench.run_one(3, 64, 0, args.duration, perf=True)
        peak = {f"app{i + 1}": read_proc_status(pid, "VmHWM") for i, pid in enumerate(stack.app_pids)}
        meta = dict(
            date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"), git_commit=git_commit(),
            apps=args.apps, concurrency=args.concurrency_list, targets=targets, duration_s=args.duration,
            tail_s=args.tail, reps=args.reps, cpus=NCPU, kernel=os.uname().release,
            app_env=args.app_env, nginx_set=args.nginx_set, nginx_access_log=args.nginx_access_log,
            pg_set=args.pg_set, pg_settings=stack.pg_settings, nice=args.nice, nginx_source=stack.nginx_source,
            nginx_notes=stack.nginx_notes, nginx_conf=stack.nginx_conf_text, app_peak_rss_kb=peak,
            binary=str(binary), binary_sha256=hashlib.sha256(binary.read_bytes()).hexdigest()[:16],
            wall_s=round(time.time() - started, 1), skipped=skipped, noisy_threshold=args.noisy_threshold,
            noisy_runs=sum(1 for r in runs if r["noisy"]),
        )
        summary = summarize(runs)
        checks = evaluate(summary, runs, meta)
        checks["skipped"] = skipped

        print_report(meta, runs, summary, checks)
        with open(results_dir / f"{args.name}.txt", "w") as f:
            print_report(meta, runs, summary, checks, out=f)
            for r in [profiled] if profiled and "perf" in profiled else []:
                f.write(f"\nperf (whole machine, cpu-clock) during an extra run of {r['target_name']} "
                        f"c={r['concurrency']} ({r['rps']:.0f} req/s under perf, p99 {r['p99_ms']:.2f} ms):\n")
                for key in ("by_process", "by_process_dso", "by_symbol"):
                    f.write(f"-- {key}\n" + "\n".join(r["perf"][key]) + "\n")
        (results_dir / f"{args.name}.json").write_text(json.dumps(
            dict(meta=meta, runs=runs, summary=summary, checks=checks, profiled_run=profiled), indent=1) + "\n")
        (results_dir / f"{args.name}.svg").write_text(svgchart.render(meta, summary, TARGETS, checks))
        log(f"\nwrote {results_dir / (args.name + '.json')}, .svg and .txt  (wall {meta['wall_s']:.0f}s)")
        app_warnings = sum(stack.log_tail(f"app{i + 1}", 100000).count(" ERROR ") for i in range(args.apps))
        if app_warnings:
            log(f"note: the app logs have {app_warnings} ERROR lines (run with --keep to read them)")
        return 0 if all(checks["checks"].values()) else 1
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    except Exception:
        for name in ["nginx"] + [f"app{i + 1}" for i in range(args.apps)]:
            tail = stack.log_tail(name, 15)
            if tail:
                log(f"--- {name} log tail ---\n{tail}")
        raise
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
