#!/usr/bin/python3
"""bench.py: the measurements behind `make bench`; started by bench/run.sh.

One sitting on this machine:
  1. BENCH_ROUNDS rounds; each starts little-key-value, Redis 7 (appendfsync
     always) and etcd 3.4 fresh in a temp dir, runs the fdatasync probe there,
     preloads the GET keys, then runs every workload on every system back to
     back, the order of the systems rotated each round, so that noise from
     the shared VM lands on all of them alike.
  2. A million keys: load, recovery from the log and from a snapshot, RSS,
     and latency while checkpoints of those keys run.
Medians of the rounds go into one markdown table (stdout) and everything
measured into bench/out/<timestamp>.json. Only 127.0.0.1 is contacted.
Standard library only.
"""

import argparse
import base64
import csv
import datetime
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LKV = os.path.join(ROOT, "build", "little-key-value")
PROBE = os.path.join(ROOT, "build", "bench", "fsync_probe")
LUA = os.path.join(ROOT, "bench", "wrk", "bench.lua")
HOST = "127.0.0.1"

VALUE_BYTES = 100
KEY_BYTES = 16
HUGE_CHECKPOINT = "1024g"  # the option's maximum: no checkpoint while the server runs
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (workload, connections) measured on each system, in this order every round.
WORKLOADS = [("get", 1), ("get", 64), ("put", 1), ("put", 64), ("put", 256), ("mix", 64)]
SYSTEMS = ["ours", "redis", "etcd"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- processes

class Server:
    """A server process we started; its pid goes to the pid file that
    run.sh's trap reads, in case this script dies without cleaning up."""

    live = []

    def __init__(self, name, argv, log_path, pidfile):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        with open(pidfile, "a") as f:
            f.write(f"{self.proc.pid}\n")
        Server.live.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Signals the process and waits; SIGKILL if it outlives timeout.
        Returns the exit status."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} pid {self.pid} still running {timeout:.0f}s after "
                    f"{signal.Signals(sig).name}; killing it")
                self.proc.kill()
                self.proc.wait(10)
        if not self.log.closed:
            self.log.close()
        if self in Server.live:
            Server.live.remove(self)
        return self.proc.returncode

    def rss_bytes(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise BenchError(f"no VmRSS for {self.name}")

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return 0.0

    @classmethod
    def stop_all(cls):
        for s in list(cls.live):
            s.stop(signal.SIGKILL, 10)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_call(port, method, path, body=None, timeout=5.0, headers=None):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_until(check, what, timeout, server=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and not server.alive():
            raise BenchError(f"{what}: {server.name} exited with {server.proc.returncode} "
                             f"(log {server.log_path})")
        try:
            if check():
                return
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(interval)
    raise BenchError(f"{what}: not ready after {timeout:.0f}s")


def machine_busy():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def run_client(argv, env, timeout, servers=()):
    """Runs a load generator to completion (killed after timeout seconds).
    Returns (stdout, cpu) where cpu has the client's, each server's and the
    whole machine's CPU use over the run, in cores (1.0 = one core busy)."""
    out_path = os.path.join(ARGS.tmp, "client.out")
    srv_before = [s.cpu_seconds() for s in servers]
    busy0, total0 = machine_busy()
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = max(time.monotonic() - t0, 1e-6)
    busy1, total1 = machine_busy()
    with open(out_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}: {text[-600:]}")
    cpu = {
        "client": round((ru.ru_utime + ru.ru_stime) / wall, 3),
        "server": round(sum(s.cpu_seconds() - b for s, b in zip(servers, srv_before)) / wall, 3),
        "machine_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1),
    }
    return text, cpu


# ---------------------------------------------------------------- wrk

def wrk_env(mode, **kv):
    env = dict(os.environ)
    env["BENCH_MODE"] = mode
    env["BENCH_VALUE_BYTES"] = str(VALUE_BYTES)
    for k, v in kv.items():
        env["BENCH_" + k.upper()] = str(v)
    return env


def wrk_threads(conns):
    return max(1, min(os.cpu_count() or 1, conns))


def parse_wrk(text):
    for line in text.splitlines():
        if line.startswith("BENCH_RESULT "):
            r = json.loads(line[len("BENCH_RESULT "):])
            lat = r["latency_us"]
            secs = max(r["duration_us"], 1) / 1e6
            return {
                "rps": round(r["requests"] / secs, 1),
                "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000,
                "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000,
                "requests": r["requests"], "errors": sum(r["errors"].values()),
                "error_detail": r["errors"],
            }
    raise BenchError("wrk printed no BENCH_RESULT line: " + text[-600:])


def run_wrk(port, conns, seconds, env, servers):
    threads = wrk_threads(conns)
    env["BENCH_THREADS"] = str(threads)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
            "--latency", "-s", LUA, f"http://{HOST}:{port}/"]
    text, cpu = run_client(argv, env, seconds + 60, servers)
    r = parse_wrk(text)
    r["cpu"] = cpu
    return r


def wrk_load(port, env, conns, is_done, bound_s):
    """Runs the Lua loader until is_done() says every key is in (then
    SIGINT, which makes wrk print and exit), or until bound_s. Returns the
    seconds it took and whether it finished."""
    threads = wrk_threads(conns)
    env["BENCH_THREADS"] = str(threads)
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{int(bound_s)}s", "--timeout", "10s",
            "-s", LUA, f"http://{HOST}:{port}/"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    done = False
    try:
        while time.monotonic() - t0 < bound_s + 5:
            time.sleep(0.25)
            try:
                done = is_done()
            except (OSError, http.client.HTTPException, ValueError):
                done = False
            if done or proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    if not done:
        done = is_done()
    return time.monotonic() - t0, done


# ---------------------------------------------------------------- little-key-value

def lkv_argv(data_dir, port, checkpoint_bytes, binary=None):
    return [binary or LKV, "--bind", HOST, "--port", str(port), "--working-dir", data_dir,
            "--checkpoint-bytes", checkpoint_bytes, "--log-level", "info"]


def lkv_stats(port):
    status, body = http_call(port, "GET", "/stats")
    if status != 200:
        raise BenchError(f"/stats answered {status}")
    return json.loads(body)


def lkv_start(data_dir, checkpoint_bytes=HUGE_CHECKPOINT, name="ours", binary=None):
    """Starts the server (build/little-key-value, or binary) and returns
    (server, port, seconds from spawn to the first /health 200). Polls with a
    raw socket every half millisecond so the time resolution is well under
    the times measured."""
    port = free_port()
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.monotonic()
    srv = Server(name, lkv_argv(data_dir, port, checkpoint_bytes, binary),
                 os.path.join(os.path.dirname(data_dir), os.path.basename(data_dir) + ".log"),
                 ARGS.pidfile)
    deadline = t0 + 180
    req = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        if not srv.alive():
            raise BenchError(f"little-key-value exited with {srv.proc.returncode} "
                             f"(log {srv.log_path})")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.sendall(req)
                first = s.recv(64)
            if first.startswith(b"HTTP/1.1 200") or first.startswith(b"HTTP/1.0 200"):
                return srv, port, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.0005)
    srv.stop(signal.SIGKILL)
    raise BenchError("little-key-value did not answer /health within 180s")


METRICS = ("lkv_log_fsync_duration_seconds_sum", "lkv_log_fsync_duration_seconds_count",
           "lkv_log_batches_total", "lkv_log_records_total",
           'lkv_http_request_duration_seconds_sum{route="kv_put"}',
           'lkv_http_request_duration_seconds_count{route="kv_put"}',
           'lkv_http_request_duration_seconds_sum{route="kv_get"}',
           'lkv_http_request_duration_seconds_count{route="kv_get"}')


def lkv_metrics(port):
    status, body = http_call(port, "GET", "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    vals = {}
    for line in body.decode().splitlines():
        name, _, v = line.rpartition(" ")
        if name in METRICS:
            vals[name] = float(v)
    return vals


def server_view(before, after):
    """What the server saw during one run, from /metrics counter deltas:
    mean fdatasync, records per group commit, mean PUT and GET latency."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in METRICS}
    per = lambda a, b: None if not d[b] else d[a] / d[b]
    ms = lambda v: None if v is None else round(v * 1000, 3)
    put, get = 'route="kv_put"}', 'route="kv_get"}'
    return {
        "fsync_mean_ms": ms(per("lkv_log_fsync_duration_seconds_sum",
                                "lkv_log_fsync_duration_seconds_count")),
        "batches": int(d["lkv_log_batches_total"]),
        "records_per_batch": None if not d["lkv_log_batches_total"] else
        round(d["lkv_log_records_total"] / d["lkv_log_batches_total"], 2),
        "put_mean_ms": ms(per("lkv_http_request_duration_seconds_sum{" + put,
                              "lkv_http_request_duration_seconds_count{" + put)),
        "get_mean_ms": ms(per("lkv_http_request_duration_seconds_sum{" + get,
                              "lkv_http_request_duration_seconds_count{" + get)),
    }


def lkv_load(port, prefix, n, bound_s):
    base = lkv_stats(port)["keys"]
    env = wrk_env("lkv-load", prefix=prefix, keys=n)
    secs, done = wrk_load(port, env, 256, lambda: lkv_stats(port)["keys"] >= base + n, bound_s)
    return secs, done, lkv_stats(port)["keys"] - base


def log_events(path, offset=0):
    """Parses key=value log lines from offset on; returns (events, new offset)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    events = []
    for line in data.decode("utf-8", "replace").splitlines():
        fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        if "event" in fields:
            fields["ts"] = line.split(" ", 1)[0]
            events.append(fields)
    return events, offset + len(data)


def log_ts(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


# ---------------------------------------------------------------- Redis

def redis_start(data_dir, appendonly=True):
    port = free_port()
    os.makedirs(data_dir, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", HOST, "--dir", data_dir,
            "--save", "", "--daemonize", "no", "--logfile", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else \
        ["--appendonly", "no"]
    srv = Server("redis", argv, data_dir + ".log", ARGS.pidfile)

    def pong():
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    wait_until(pong, "redis-server", 30, srv)
    return srv, port


def redis_load(port, keys):
    """SETs every (key, value) through redis-cli --pipe."""
    p = subprocess.Popen(["redis-cli", "-h", HOST, "-p", str(port), "--pipe"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(300, p.kill)
    timer.start()
    try:
        value = VALUE.encode()
        chunk = []
        n = 0
        for k in keys:
            kb = k.encode()
            chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                         % (len(kb), kb, len(value), value))
            n += 1
            if len(chunk) == 10000:
                p.stdin.write(b"".join(chunk))
                chunk = []
        p.stdin.write(b"".join(chunk))
        p.stdin.close()
        out = p.stdout.read().decode("utf-8", "replace")
        p.wait()
    finally:
        timer.cancel()
    if p.returncode != 0 or f"errors: 0, replies: {n}" not in out:
        raise BenchError("redis-cli --pipe: " + out[-400:])


def redis_command(port, line):
    """Sends one inline command; returns the reply's first line."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(line.encode() + b"\r\n")
        return s.recv(256).split(b"\r\n")[0].decode()


def redis_dbsize(port):
    return int(redis_command(port, "DBSIZE").lstrip(":"))


def redis_info_memory(port):
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"INFO memory\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1:data.index(b"\r\n")]) + 5:
            got = s.recv(65536)
            if not got:
                break
            data += got
    m = re.search(rb"used_memory:(\d+)", data)
    return int(m.group(1)) if m else None


def redis_bench(port, test, conns, n, keyspace, server):
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(n),
            "-c", str(conns), "-P", "1", "-d", str(VALUE_BYTES), "-r", str(keyspace), "--csv"]
    text, cpu = run_client(argv, dict(os.environ), 300, [server])
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    header = next((r for r in rows if r[0] == "test"), None)
    row = next((r for r in rows if r[0] == test.upper()), None)
    if header is None or row is None:
        raise BenchError("redis-benchmark printed no CSV row: " + text[-600:])
    d = dict(zip(header, row))
    return {"rps": float(d["rps"]), "p50_ms": float(d["p50_latency_ms"]),
            "p99_ms": float(d["p99_latency_ms"]), "max_ms": float(d["max_latency_ms"]),
            "requests": n, "errors": 0, "cpu": cpu}


# ---------------------------------------------------------------- etcd

def etcd_start(data_dir):
    cport, pport = free_port(), free_port()
    curl, purl = f"http://{HOST}:{cport}", f"http://{HOST}:{pport}"
    argv = ["etcd", "--name", "bench", "--data-dir", data_dir,
            "--listen-client-urls", curl, "--advertise-client-urls", curl,
            "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
            "--initial-cluster", f"bench={purl}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-level", "error"]
    srv = Server("etcd", argv, data_dir + ".log", ARGS.pidfile)

    def healthy():
        status, body = http_call(cport, "GET", "/health", timeout=1)
        return status == 200 and b'"true"' in body
    wait_until(healthy, "etcd", 60, srv, interval=0.1)
    return srv, cport


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_count(port, prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": b64(prefix), "range_end": b64(end), "count_only": True})
    status, resp = http_call(port, "POST", "/v3/kv/range", body,
                             headers={"Content-Type": "application/json"})
    if status != 200:
        raise BenchError(f"etcd range answered {status}")
    return int(json.loads(resp).get("count", 0))


# ---------------------------------------------------------------- phase 1: rounds

def key_name(prefix, i):
    return f"{prefix}{i:0{KEY_BYTES - len(prefix)}d}"


def run_probe(directory):
    argv = [PROBE, "--mode", "append", "--record-bytes", "128", "--count",
            str(CFG["probe_count"]), "--rounds", "5", "--json", directory]
    text, _ = run_client(argv, dict(os.environ), 300)
    return json.loads(text)["modes"]["append"]


def redis_calibrated_n(port, test, conns, keyspace, server):
    """redis-benchmark runs a request count, not a duration: a short run
    first sizes -n so each measured run lasts about BENCH_SECONDS."""
    key = (test, conns)
    if key not in REDIS_N:
        trial = 200 if (test == "set" and conns == 1) else 2000 if conns == 1 else 20000
        r = redis_bench(port, test, conns, trial, keyspace, server)
        REDIS_N[key] = int(min(max(r["rps"] * CFG["seconds"], 500), 5_000_000))
    return REDIS_N[key]


def measure(system, wl, conns, ctx, r):
    secs = CFG["seconds"]
    pre = CFG["preload"]
    if system == "ours":
        srv, port = ctx["ours"]
        if wl == "get":
            env = wrk_env("lkv-get", prefix="g", keys=pre)
        elif wl == "put":
            env = wrk_env("lkv-put", fresh_prefix=f"P{conns:04d}_")
        else:
            env = wrk_env("lkv-mix", prefix="g", keys=pre, get_pct=90,
                          fresh_prefix=f"M{conns:04d}_")
        before = lkv_metrics(port)
        res = run_wrk(port, conns, secs, env, [srv])
        res["server"] = server_view(before, lkv_metrics(port))
        return res
    if system == "redis":
        srv, port = ctx["redis"]
        test = "set" if wl == "put" else "get"
        keyspace = pre if wl == "get" else 1_000_000
        n = redis_calibrated_n(port, test, conns, keyspace, srv)
        return redis_bench(port, test, conns, n, keyspace, srv)
    srv, port = ctx["etcd"]
    if wl == "get":
        env = wrk_env("etcd-get", prefix="g", keys=pre)
    else:
        env = wrk_env("etcd-put", fresh_prefix=f"P{conns:04d}_")
    return run_wrk(port, conns, secs, env, [srv])


def applies(system, wl):
    return wl != "mix" or system == "ours"


def one_round(r, results):
    rdir = os.path.join(ARGS.tmp, f"round{r}")
    os.makedirs(rdir)
    log(f"round {r + 1}/{CFG['rounds']}: fdatasync probe in {rdir}")
    results["probe"].append(run_probe(rdir))
    ctx = {}
    try:
        srv, port, _ = lkv_start(os.path.join(rdir, "lkv"))
        ctx["ours"] = (srv, port)
        ctx["redis"] = redis_start(os.path.join(rdir, "redis"))
        ctx["etcd"] = etcd_start(os.path.join(rdir, "etcd"))
        pre = CFG["preload"]
        log(f"round {r + 1}: preloading {pre} keys into each system")
        secs, done, n = lkv_load(port, "g", pre, 120)
        if not done:
            raise BenchError(f"ours: preload stopped at {n}/{pre} keys")
        # redis-benchmark -r N reads keys "key:" + 12 digits, 0..N-1.
        redis_load(ctx["redis"][1], (f"key:{i:012d}" for i in range(pre)))
        eport = ctx["etcd"][1]
        _, done = wrk_load(eport, wrk_env("etcd-load", prefix="g", keys=pre), 256,
                           lambda: etcd_count(eport, "g") >= pre, 120)
        if not done:
            raise BenchError(f"etcd: preload incomplete ({etcd_count(eport, 'g')}/{pre})")
        # The loader's probe GETs (one per wrk thread but the first) are 404s too.
        get404_before = lkv_stats(port)["requests"]["kv_get"]["status"]["404"]
        if redis_dbsize(ctx["redis"][1]) != pre:
            raise BenchError("redis: preload incomplete")
        order = SYSTEMS[r % 3:] + SYSTEMS[:r % 3]
        for wl, conns in WORKLOADS:
            for system in order:
                if not applies(system, wl):
                    continue
                res = measure(system, wl, conns, ctx, r)
                res["round"] = r
                results["runs"][system].setdefault(f"{wl}_c{conns}", []).append(res)
                log(f"  {system:5s} {wl} c{conns}: {res['rps']:.0f} req/s p50 "
                    f"{res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms"
                    + (f" errors {res['errors']}" if res["errors"] else ""))
        stats = lkv_stats(port)
        results["ours_get_404"] += stats["requests"]["kv_get"]["status"]["404"] - get404_before
    finally:
        for name in ("ours", "redis", "etcd"):
            if name in ctx:
                ctx[name][0].stop(signal.SIGKILL)
        shutil.rmtree(rdir, ignore_errors=True)


# ---------------------------------------------------------------- phase 2: a million keys

def big_phase(results):
    n = CFG["big_keys"]
    bdir = os.path.join(ARGS.tmp, "big")
    data = os.path.join(bdir, "lkv")
    os.makedirs(bdir)
    big = results["big"]
    big["keys"] = n
    try:
        log(f"loading {n} keys (16-byte keys, 100-byte values) over 256 connections")
        srv, port, _ = lkv_start(data)
        secs, done, loaded = lkv_load(port, "k", n, 115)
        big["load_seconds"] = round(secs, 2)
        big["loaded"] = loaded
        if not done:
            log(f"load stopped at {loaded}/{n} keys after {secs:.0f}s; going on with those")
        st = lkv_stats(port)
        big["data_bytes"] = st["bytes"]
        big["rss_after_load"] = srv.rss_bytes()
        srv.stop(signal.SIGKILL)

        log("recovery from the log only (SIGKILL each time, so no checkpoint is written)")
        for r in range(CFG["rounds"]):
            srv, port, t = lkv_start(data)
            rss = srv.rss_bytes()
            ev = [e for e in log_events(srv.log_path)[0] if e["event"] == "recovered"][-1]
            srv.stop(signal.SIGKILL)
            big["recovery_log"].append({"seconds": round(t, 4), "rss": rss,
                                        "replayed": int(ev["replayed"]),
                                        "keys": int(ev["keys"]),
                                        "server_ms": int(ev["duration_ms"])})
            log(f"  log replay: {t * 1000:.0f} ms to /health 200, {ev['replayed']} records")

        log("writing a snapshot (SIGTERM: final checkpoint)")
        srv, port, _ = lkv_start(data)
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGTERM, 120)
        big["final_checkpoint_seconds"] = round(time.monotonic() - t0, 2)
        if rc != 0:
            raise BenchError(f"SIGTERM exit status {rc}")

        log("recovery from the snapshot")
        for r in range(CFG["rounds"]):
            srv, port, t = lkv_start(data)
            rss = srv.rss_bytes()
            ev = [e for e in log_events(srv.log_path)[0] if e["event"] == "recovered"][-1]
            srv.stop(signal.SIGKILL)
            big["recovery_snapshot"].append({"seconds": round(t, 4), "rss": rss,
                                             "replayed": int(ev["replayed"]),
                                             "snapshot_index": int(ev["snapshot_index"]),
                                             "keys": int(ev["keys"]),
                                             "server_ms": int(ev["duration_ms"])})
            log(f"  snapshot: {t * 1000:.0f} ms to /health 200, snapshot_index "
                f"{ev['snapshot_index']}, replayed {ev['replayed']}")

        for r in range(CFG["rounds"]):
            stall_round(data, n if done else loaded, big, r)
    finally:
        Server.stop_all()
        shutil.rmtree(bdir, ignore_errors=True)


def stall_round(data, nkeys, big, r):
    """50/50 GET/overwrite at 64 connections, first with checkpoints off
    (baseline), then with --checkpoint-bytes 1m so checkpoints of every key
    run back to back through the window."""
    secs = CFG["stall_seconds"]
    env = lambda: wrk_env("lkv-stall", prefix="k", keys=nkeys, get_pct=50)
    srv, port, _ = lkv_start(data)
    base = run_wrk(port, 64, secs, env(), [srv])
    st = lkv_stats(port)
    base["server_us"] = {"get": st["requests"]["kv_get"]["latency_us"],
                         "put": st["requests"]["kv_put"]["latency_us"],
                         "fsync": st["log"]["fsync_us"]}
    srv.stop(signal.SIGKILL)

    srv, port, _ = lkv_start(data, "1m")
    _, offset = log_events(srv.log_path)
    w0 = time.time()
    res = run_wrk(port, 64, secs, env(), [srv])
    w1 = time.time()

    def settled():
        evs = log_events(srv.log_path, offset)[0]
        return (sum(e["event"] == "checkpoint_start" for e in evs)
                <= sum(e["event"] in ("checkpoint_done", "checkpoint_failed") for e in evs))
    wait_until(settled, "checkpoint to finish", 120, srv, interval=0.2)
    evs = log_events(srv.log_path, offset)[0]
    # The server's own view of the same window (it started just before):
    # which of GET and PUT is slow, and how slow fdatasync was.
    st = lkv_stats(port)
    pick = lambda h: {k: h.get(k) for k in ("p50", "p99", "p999", "max")}
    server_us = {"get": pick(st["requests"]["kv_get"]["latency_us"]),
                 "put": pick(st["requests"]["kv_put"]["latency_us"]),
                 "fsync": pick(st["log"]["fsync_us"])}
    srv.stop(signal.SIGTERM, 120)

    starts = [e for e in evs if e["event"] == "checkpoint_start"]
    dones = [e for e in evs if e["event"] == "checkpoint_done"]
    covered = 0.0
    for s, d in zip(starts, dones):
        a, b = max(log_ts(s["ts"]), w0), min(log_ts(d["ts"]), w1)
        covered += max(0.0, b - a)
    res.update({
        "baseline": base,
        "server_us": server_us,
        "checkpoints": len(starts),
        "start_us": [int(e["start_us"]) for e in starts],
        "checkpoint_ms": [int(e["duration_ms"]) for e in dones],
        "failed": sum(e["event"] == "checkpoint_failed" for e in evs),
        "window_covered_pct": round(100 * covered / max(w1 - w0, 1e-6), 1),
    })
    big["stall"].append(res)
    log(f"  stall {r + 1}: {len(starts)} checkpoints covering {res['window_covered_pct']}% "
        f"of the window, start_us {res['start_us']}, p99 {res['p99_ms']:.1f} ms "
        f"max {res['max_ms']:.1f} ms (no checkpoint: p99 {base['p99_ms']:.1f} max "
        f"{base['max_ms']:.1f})")


def redis_memory(results):
    n = CFG["big_keys"]
    d = os.path.join(ARGS.tmp, "redis-mem")
    log(f"Redis RSS with {n} keys (appendonly off for the load: RSS does not depend on it)")
    try:
        srv, port = redis_start(d, appendonly=False)
        t0 = time.monotonic()
        redis_load(port, (key_name("k", i) for i in range(1, n + 1)))
        results["big"]["redis_load_seconds"] = round(time.monotonic() - t0, 2)
        results["big"]["redis_rss"] = srv.rss_bytes()
        results["big"]["redis_used_memory"] = redis_info_memory(port)
        srv.stop(signal.SIGKILL)
    finally:
        Server.stop_all()
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results):
    s = {"probe_p50_ms": med([p["p50_us"] / 1000 for p in results["probe"]]), "systems": {}}
    for system, runs in results["runs"].items():
        s["systems"][system] = {}
        for key, rs in runs.items():
            s["systems"][system][key] = {
                f: med([x[f] for x in rs]) for f in ("rps", "p50_ms", "p99_ms", "max_ms")}
            s["systems"][system][key]["errors"] = sum(x["errors"] for x in rs)
            s["systems"][system][key]["cpu"] = {
                f: med([x["cpu"][f] for x in rs]) for f in ("client", "server", "machine_busy_pct")}
            if system == "ours":
                s["systems"][system][key]["server"] = {
                    f: med([x["server"][f] for x in rs])
                    for f in ("fsync_mean_ms", "records_per_batch", "put_mean_ms", "get_mean_ms")}
    big = results["big"]
    if big.get("recovery_log"):
        s["recovery_log_s"] = med([x["seconds"] for x in big["recovery_log"]])
        s["rss_after_log_replay"] = med([x["rss"] for x in big["recovery_log"]])
    if big.get("recovery_snapshot"):
        s["recovery_snapshot_s"] = med([x["seconds"] for x in big["recovery_snapshot"]])
        s["rss_after_snapshot"] = med([x["rss"] for x in big["recovery_snapshot"]])
    if big.get("stall"):
        st = big["stall"]
        s["stall"] = {f: med([x[f] for x in st]) for f in ("rps", "p50_ms", "p99_ms", "max_ms")}
        s["stall"]["baseline"] = {f: med([x["baseline"][f] for x in st])
                                  for f in ("rps", "p50_ms", "p99_ms", "max_ms")}
        starts = [f for x in st for f in x["start_us"]]
        s["stall"]["start_us_median"] = med(starts)
        s["stall"]["start_us_max"] = max(starts) if starts else None
        s["stall"]["checkpoints"] = sum(x["checkpoints"] for x in st)
        s["stall"]["window_covered_pct"] = med([x["window_covered_pct"] for x in st])
        s["stall"]["server_us"] = {
            op: {f: med([x["server_us"][op][f] for x in st]) for f in ("p99", "max")}
            for op in ("get", "put", "fsync")}
        s["stall"]["baseline"]["server_us"] = {
            op: {f: med([x["baseline"]["server_us"][op][f] for x in st]) for f in ("p99", "max")}
            for op in ("get", "put", "fsync")}
    s["rss_after_load"] = big.get("rss_after_load")
    s["raw_bytes"] = big.get("keys", 0) * (KEY_BYTES + VALUE_BYTES)
    return s


def fmt(v, digits=0, unit=""):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def targets(s):
    """(name, value shown, limit shown, PASS/MISS) for every target of issue 4."""
    o, rd, et = (s["systems"].get(k, {}) for k in ("ours", "redis", "etcd"))
    g = lambda d, k, f="rps": d.get(k, {}).get(f)
    rows = []

    def add(name, value, limit, ok):
        rows.append((name, value, limit, "-" if ok is None else "PASS" if ok else "MISS"))

    p50, probe = g(o, "put_c1", "p50_ms"), s["probe_p50_ms"]
    lim = None if probe is None else 1.5 * probe + 0.1
    add("PUT c1 p50 / fdatasync p50",
        f"{fmt(p50, 3)} ms / {fmt(probe, 3)} ms = {fmt(ratio(p50, probe), 2)}x",
        f"p50 <= 1.5 x fdatasync p50 + 0.1 ms = {fmt(lim, 3)} ms",
        None if p50 is None or lim is None else p50 <= lim)
    for c in (64, 256):
        ours, red, etc = g(o, f"put_c{c}"), g(rd, f"put_c{c}"), g(et, f"put_c{c}")
        add(f"PUT c{c} vs Redis SET", f"{fmt(ratio(ours, red), 3)}x", ">= 1x",
            None if ratio(ours, red) is None else ours >= red)
        add(f"PUT c{c} vs etcd PUT", f"{fmt(ratio(ours, etc), 3)}x", ">= 5x",
            None if ratio(ours, etc) is None else ours >= 5 * etc)
    ours, red = g(o, "get_c64"), g(rd, "get_c64")
    add("GET c64 vs Redis GET", f"{fmt(ratio(ours, red), 3)}x", ">= 1x",
        None if ratio(ours, red) is None else ours >= red)
    n = s["raw_bytes"] // (KEY_BYTES + VALUE_BYTES)
    v = s.get("recovery_log_s")
    add(f"recovery, {n:,} keys, log only", f"{fmt(v, 3)} s", "< 1 s", None if v is None else v < 1)
    v = s.get("recovery_snapshot_s")
    add(f"recovery, {n:,} keys, snapshot", f"{fmt(v, 3)} s", "< 0.5 s",
        None if v is None else v < 0.5)
    raw = s["raw_bytes"]
    for label, key in (("after load", "rss_after_load"), ("after restart from snapshot",
                                                          "rss_after_snapshot")):
        v = s.get(key)
        add(f"RSS {label} / raw bytes",
            f"{fmt(None if v is None else v / 1e6, 1)} MB / {raw / 1e6:.1f} MB = "
            f"{fmt(ratio(v, raw), 2)}x", "<= 1.6x",
            None if v is None or not raw else v <= 1.6 * raw)
    st = s.get("stall", {})
    add("checkpoint: p99 (50/50 GET/PUT c64)", f"{fmt(st.get('p99_ms'), 2)} ms", "< 5 ms",
        None if st.get("p99_ms") is None else st["p99_ms"] < 5)
    add("checkpoint: max latency", f"{fmt(st.get('max_ms'), 1)} ms", "< 50 ms",
        None if st.get("max_ms") is None else st["max_ms"] < 50)
    return rows


def render(results, s):
    o, rd, et = (s["systems"].get(k, {}) for k in ("ours", "redis", "etcd"))
    m = results["machine"]
    out = []
    out.append(f"## little-key-value benchmark, {m['date']}")
    out.append("")
    out.append(f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_gb']} GB RAM, "
               f"Linux {m['kernel']}, data on {m['filesystem']}; load average at start "
               f"{m['loadavg_start']}, at end {m['loadavg_end']}.")
    out.append(f"Command: `{m['command']}` (rounds: {CFG['rounds']}, medians; wrk "
               f"{CFG['seconds']} s per run; {CFG['preload']:,} preloaded keys for GET; "
               f"values {VALUE_BYTES} B). Versions: {m['versions']}.")
    out.append("")
    out.append("| workload | ours req/s | ours p50 ms | ours p99 ms | Redis req/s (p50/p99 ms) "
               "| etcd req/s (p50/p99 ms) | ours/Redis | ours/etcd |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    names = {"get": "GET", "put": "PUT", "mix": "GET/PUT 90/10"}
    for wl, c in WORKLOADS:
        key = f"{wl}_c{c}"
        a = o.get(key, {})
        b = rd.get(key, {}) if wl != "mix" else {}
        e = et.get(key, {}) if wl != "mix" else {}
        cell = lambda d: "-" if not d else \
            f"{fmt(d['rps'])} ({fmt(d['p50_ms'], 2)}/{fmt(d['p99_ms'], 2)})"
        out.append(f"| {names[wl]} c{c} | {fmt(a.get('rps'))} | {fmt(a.get('p50_ms'), 2)} | "
                   f"{fmt(a.get('p99_ms'), 2)} | {cell(b)} | {cell(e)} | "
                   f"{fmt(ratio(a.get('rps'), b.get('rps')), 2)} | "
                   f"{fmt(ratio(a.get('rps'), e.get('rps')), 2)} |")
    big = results["big"]
    st = s.get("stall", {})
    out.append("")
    out.append(f"fdatasync p50 (128 B appends, probe): {fmt(s['probe_p50_ms'], 3)} ms. "
               f"Million-key phase: {big.get('loaded', 0):,} keys loaded in "
               f"{fmt(big.get('load_seconds'), 1)} s; recovery {fmt(s.get('recovery_log_s'), 3)} s "
               f"from the log, {fmt(s.get('recovery_snapshot_s'), 3)} s from a snapshot; RSS "
               f"{fmt(big.get('rss_after_load', 0) / 1e6, 1)} MB after load, "
               f"{fmt((s.get('rss_after_log_replay') or 0) / 1e6, 1)} MB after log replay, "
               f"{fmt((s.get('rss_after_snapshot') or 0) / 1e6, 1)} MB after snapshot load; Redis "
               f"{fmt((big.get('redis_rss') or 0) / 1e6, 1)} MB RSS with the same keys. "
               f"Checkpoint window: {st.get('checkpoints', 0)} checkpoints in "
               f"{CFG['rounds']} x {CFG['stall_seconds']} s of 50/50 GET/overwrite at c64, covering "
               f"{fmt(st.get('window_covered_pct'), 0)}% of each, checkpoint start {fmt(st.get('start_us_median'))}"
               f" us median / {fmt(st.get('start_us_max'))} us max; {fmt(st.get('rps'))} req/s, "
               f"p50/p99/max {fmt(st.get('p50_ms'), 2)}/{fmt(st.get('p99_ms'), 2)}/"
               f"{fmt(st.get('max_ms'), 1)} ms (same load without checkpoints: "
               f"{fmt(st.get('baseline', {}).get('rps'))} req/s, "
               f"{fmt(st.get('baseline', {}).get('p50_ms'), 2)}/"
               f"{fmt(st.get('baseline', {}).get('p99_ms'), 2)}/"
               f"{fmt(st.get('baseline', {}).get('max_ms'), 1)} ms).")
    if st.get("server_us"):
        sv, bv = st["server_us"], st["baseline"]["server_us"]
        one = lambda d: "; ".join(
            f"{op} {fmt(d[op]['p99'] / 1000, 2)}/{fmt(d[op]['max'] / 1000, 1)}"
            for op in ("get", "put", "fsync"))
        out.append("")
        out.append(f"Server-side p99/max ms in that window: {one(sv)} (without checkpoints: "
                   f"{one(bv)}).")
    out.append("")
    out.append("CPU during the runs (cores busy, median; 2.0 = both cores; busy % = whole "
               "machine, other tenants included), and what our server saw (from /metrics "
               "deltas: mean fdatasync, records per group commit, mean server-side latency):")
    out.append("")
    out.append("| workload | ours srv | wrk | busy % | Redis srv | redis-benchmark | busy % | "
               "etcd srv | wrk | busy % | ours fsync ms | recs/batch | ours srv ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl, c in WORKLOADS:
        key = f"{wl}_c{c}"
        cells = []
        for d in (o, rd, et):
            cpu = d.get(key, {}).get("cpu") if (wl != "mix" or d is o) else None
            cells += ["-"] * 3 if not cpu else [fmt(cpu["server"], 2), fmt(cpu["client"], 2),
                                                 fmt(cpu["machine_busy_pct"], 0)]
        sv = o.get(key, {}).get("server", {})
        lat = sv.get("get_mean_ms") if wl == "get" else sv.get("put_mean_ms")
        cells += [fmt(sv.get("fsync_mean_ms"), 3), fmt(sv.get("records_per_batch"), 1),
                  fmt(lat, 3) + (" (PUT)" if wl == "mix" else "")]
        out.append(f"| {names[wl]} c{c} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| target (issue 4) | measured | limit | result |")
    out.append("|---|---|---|---|")
    for row in targets(s):
        out.append("| " + " | ".join(row) + " |")
    errs = {f"{sys_}/{k}": v["errors"] for sys_, d in s["systems"].items()
            for k, v in d.items() if v["errors"]}
    if errs or results["ours_get_404"]:
        out.append("")
        out.append(f"Client errors (non-2xx, timeouts, socket errors): {errs}; ours GET 404s: "
                   f"{results['ours_get_404']}.")
    if CFG["quick"]:
        out.append("")
        out.append("(--quick: one short round and fewer keys; a smoke test, not a result.)")
    return "\n".join(out)


def machine_info(command):
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True,
                                  timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    real = os.path.realpath(ARGS.tmp)
    fs, best = "?", ""
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fs = mnt, f"{typ} ({dev} on {mnt})"
    redis_v = re.search(r"v=(\S+)", first_line(["redis-server", "--version"]))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu_model": model, "mem_gb": round(mem_kb / 1048576, 1),
        "kernel": platform.release(), "filesystem": fs, "tmp": ARGS.tmp,
        "loadavg_start": open("/proc/loadavg").read().split()[0],
        "command": command,
        "git": first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "versions": ", ".join([
            "little-key-value " + first_line([LKV, "--version"]).split()[-1],
            "Redis " + (redis_v.group(1) if redis_v else "?"),
            "etcd " + first_line(["etcd", "--version"]).split()[-1],
            first_line(["wrk", "-v"]).split(" [")[0]]),
    }


def main():
    global ARGS, CFG, REDIS_N, VALUE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tmp", required=True, help="scratch directory (run.sh creates and removes it)")
    p.add_argument("--pidfile", required=True)
    p.add_argument("--out", required=True, help="directory for the JSON and markdown results")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--command", default="make bench")
    ARGS = p.parse_args()
    quick = ARGS.quick
    CFG = {
        "quick": quick,
        "rounds": 1 if quick else int(os.environ.get("BENCH_ROUNDS", "3")),
        "seconds": int(os.environ.get("BENCH_SECONDS", "2" if quick else "5")),
        "preload": int(os.environ.get("BENCH_PRELOAD", "5000" if quick else "20000")),
        "big_keys": int(os.environ.get("BENCH_KEYS", "100000" if quick else "1000000")),
        "stall_seconds": int(os.environ.get("BENCH_STALL_SECONDS", "3" if quick else "8")),
        "probe_count": 500 if quick else 1000,
    }
    if CFG["rounds"] < 1:
        raise SystemExit("bench: BENCH_ROUNDS must be at least 1")
    REDIS_N = {}
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    VALUE = "".join(alphabet[(i * 7) % len(alphabet)] for i in range(1, VALUE_BYTES + 1))

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    t_start = time.monotonic()
    results = {"config": CFG, "machine": machine_info(ARGS.command), "probe": [],
               "runs": {s: {} for s in SYSTEMS}, "ours_get_404": 0,
               "big": {"recovery_log": [], "recovery_snapshot": [], "stall": []}}
    try:
        for r in range(CFG["rounds"]):
            one_round(r, results)
        big_phase(results)
        redis_memory(results)
    finally:
        Server.stop_all()
    results["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[0]
    results["wall_seconds"] = round(time.monotonic() - t_start, 1)
    results["redis_benchmark_n"] = {f"{t}_c{c}": n for (t, c), n in REDIS_N.items()}
    s = summarize(results)
    results["summary"] = s
    results["targets"] = [dict(zip(("target", "measured", "limit", "result"), row))
                          for row in targets(s)]
    table = render(results, s)
    os.makedirs(ARGS.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(ARGS.out, stamp + ".json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(ARGS.out, stamp + ".md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\nwall time {results['wall_seconds']:.0f} s; raw numbers in "
          f"{os.path.relpath(os.path.join(ARGS.out, stamp + '.json'), ROOT)}")


def run_main(fn, name, failures=()):
    """fn(), with a one-line message and exit status 1 for a BenchError (or
    any of failures), 130 for an interrupt."""
    try:
        fn()
    except (BenchError, *failures) as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_main(main, "bench")
