"""Run a cluster of the real binary in network namespaces (netns.py), and
talk to it. Standard library only, no pytest.

    with Cluster(3) as c:                 # 3 namespaces, nothing started yet
        c.start_all(); c.wait_all_ready()
        kv = c.kv_client(history)         # records into a History
        kv.put("k", "v")                  # follows 307 to the leader
        c.kill9(0); c.restart(0); c.net.partition([[0], [1, 2]])

Node i runs in namespace net.ns(i) as

    $LKV_BIN --port 8080 --working-dir <workdir>/n<i> [extra args]
    env ADDR=<ip of i>:8080  PEERS=<the other nodes' ip:8080, comma-separated>

(the clstr harness's convention), stdout and stderr appended to
<workdir>/n<i>.log with a marker line per start. restart() reuses the
directory. The binary is $LKV_BIN, else build/little-key-value; a list
(e.g. [python3, standin.py]) works too.

Where clients run: in this process, from the hub namespace at the client
address (netns.CLIENT): every socket is created there with setns() (see
netns.Net.socket), so workload threads are ordinary Python threads here and
nothing in the host's network is touched. wait_ready() polls GET /health
from there too, so "ready" means reachable the way the clients reach it.
A partition that should also cut clients off names netns.CLIENT in a group.

Requests: one connection per request (no keep-alive), so an outcome always
belongs to one request, and every wait is bounded by a timeout. request()
follows 307 redirects (Location: http://host:port/path, up to a limit) or,
with follow=False, returns the 307. Errors say whether the request may
have reached a server (RequestError.sent), which is what separates a write
that certainly failed from one whose outcome is unknown; KvClient turns
each response into an outcome and records it in a History.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import netns
from netns import CLIENT, Net

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8080
IO_TIMEOUT = 5.0          # one HTTP exchange
READY_TIMEOUT = 30.0      # start (recovery included) until /health is 200
STOP_TIMEOUT = 20.0       # SIGTERM until exit (the contract allows 15 s)
KILL_TIMEOUT = 10.0
MAX_REDIRECTS = 5
POLL = 0.05               # between polls of a condition
SERVER_ENV = ("ADDR", "PEERS", "DATA_DIR", "JOIN")


class ClusterError(Exception):
    pass


def default_binary():
    return os.environ.get("LKV_BIN") or str(REPO / "build" / "little-key-value")


def wait_for(cond, timeout, what, interval=POLL):
    """Poll cond() until it returns something truthy; return that. Bounded
    in time and in the number of polls; ClusterError naming what otherwise."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise ClusterError(f"timed out after {timeout}s waiting for {what}")


# ------------------------------------------------------------------ HTTP

class Response:
    def __init__(self, status, reason, headers, body, addr, redirects):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value)
        self.body = body
        self.addr = addr                # "host:port" that gave this answer
        self.redirects = redirects      # addresses that answered 307 on the way

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body if len(self.body) <= 120 else self.body[:120] + b"..."
        return f"<Response {self.status} from {self.addr} via {self.redirects} {body!r}>"


class RequestError(Exception):
    """No response. sent: False when the request certainly never reached a
    server (the connection was not established), True when it may have."""

    def __init__(self, addr, sent, cause):
        super().__init__(f"{addr}: {'after sending' if sent else 'connect'}: {cause!r}")
        self.addr = addr
        self.sent = sent
        self.cause = cause


class _NsConnection(http.client.HTTPConnection):
    def __init__(self, net, where, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._net, self._where = net, where

    def connect(self):
        self.sock = self._net.connect(self._where, self.host, self.port, self.timeout)


def _split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def request_once(net, addr, method, path, body=None, headers=None, timeout=IO_TIMEOUT,
                 where=CLIENT):
    """One HTTP exchange with addr ("host:port") from where's namespace.
    Returns (status, reason, headers, body); raises RequestError."""
    host, port = _split_addr(addr)
    conn = _NsConnection(net, where, host, port, timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise RequestError(addr, False, e) from None
        hdrs = {"Connection": "close"}
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise RequestError(addr, True, e) from None
        return r.status, r.reason, r.getheaders(), data
    finally:
        conn.close()


def request(net, addr, method, path, body=None, headers=None, timeout=IO_TIMEOUT,
            follow=True, max_redirects=MAX_REDIRECTS, where=CLIENT):
    """request_once, following 307s (same method and body) when follow.
    A RequestError after a redirect is about the last hop."""
    if isinstance(body, str):
        body = body.encode()
    redirects = []
    for _ in range(max_redirects + 1):
        status, reason, hdrs, data = request_once(net, addr, method, path, body, headers,
                                                  timeout, where)
        resp = Response(status, reason, hdrs, data, addr, list(redirects))
        if status != 307 or not follow:
            return resp
        loc = urlsplit(resp.header("Location") or "")
        if loc.scheme != "http" or not loc.netloc:
            return resp  # a redirect we cannot follow: the caller sees it
        redirects.append(addr)
        addr = loc.netloc
        path = loc.path + (f"?{loc.query}" if loc.query else "")
    return resp


# ------------------------------------------------------------------ the cluster

class Cluster:
    """N nodes of one binary in an isolated namespace network."""

    def __init__(self, n, binary=None, port=DEFAULT_PORT, workdir=None, args=(), env=None,
                 subnet=netns.DEFAULT_SUBNET, keep=None, delayable=False):
        """delayable: route every node's peer connections through its delay
        proxy (at 0 ms) from the start, so net.delay() later slows
        connections that are already open (keep-alive) too; otherwise only
        connections made after the delay() call are slowed."""
        self.n = n
        self.port = port
        binary = binary or default_binary()
        self.argv0 = list(binary) if isinstance(binary, (list, tuple)) else [str(binary)]
        self.args = list(args)
        self.env = dict(env or {})
        self.keep = bool(os.environ.get("LKV_CLUSTER_KEEP")) if keep is None else keep
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lkv-cluster-"))
        self.procs = [None] * n
        self.starts = [0] * n
        self._lock = threading.Lock()
        self.net = Net(n, subnet=subnet, peer_ports=(port,))
        try:
            if delayable:
                for i in range(n):
                    self.net.delay(i, 0)
        except BaseException:
            self.net.cleanup()
            raise

    # ------------------------------------------------------------ naming

    def addr(self, i):
        return f"{self.net.ip(i)}:{self.port}"

    def addrs(self):
        return [self.addr(i) for i in range(self.n)]

    def node_of(self, addr):
        """The index of the node with this host:port, or None."""
        for i in range(self.n):
            if self.addr(i) == addr:
                return i
        return None

    def data_dir(self, i):
        return self.workdir / f"n{i}"

    def log_path(self, i):
        return self.workdir / f"n{i}.log"

    # ------------------------------------------------------------ processes

    def start(self, i, extra_args=(), env=None):
        """Start node i (not running) with the same directory as before."""
        with self._lock:
            if self.running(i):
                raise ClusterError(f"node {i} is already running")
            peers = ",".join(self.addr(j) for j in range(self.n) if j != i)
            penv = {k: v for k, v in os.environ.items() if k not in SERVER_ENV}
            penv.update(self.env)
            penv.update(env or {})
            penv.update({"ADDR": self.addr(i), "PEERS": peers})
            argv = self.argv0 + ["--port", str(self.port), "--working-dir",
                                 str(self.data_dir(i))] + self.args + list(extra_args)
            self.starts[i] += 1
            log = open(self.log_path(i), "ab")
            try:
                log.write(f"=== start {self.starts[i]} of node {i} at {time.time():.3f}: "
                          f"ADDR={penv['ADDR']} PEERS={peers} {' '.join(argv)}\n".encode())
                log.flush()
                self.procs[i] = self.net.popen(i, argv, env=penv, stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
            finally:
                log.close()  # the child holds its own descriptor
            return self.procs[i]

    def start_all(self):
        for i in range(self.n):
            self.start(i)

    def running(self, i):
        p = self.procs[i]
        return p is not None and p.poll() is None

    def pid(self, i):
        return self.procs[i].pid if self.procs[i] else None

    def stop(self, i, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; the exit code. ClusterError (after SIGKILL) when
        it does not exit within timeout."""
        p = self.procs[i]
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(KILL_TIMEOUT)
            raise ClusterError(f"node {i} ignored SIGTERM for {timeout}s; killed") from None

    def kill9(self, i):
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(KILL_TIMEOUT)
        return None if p is None else p.returncode

    def restart(self, i, kill=False, extra_args=(), env=None):
        """Stop (SIGTERM, or SIGKILL with kill) if running, start again."""
        if kill:
            self.kill9(i)
        else:
            self.stop(i)
        return self.start(i, extra_args, env)

    def log_tail(self, i, lines=30):
        try:
            data = self.log_path(i).read_bytes()
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------ readiness

    def health(self, i, timeout=1.0):
        try:
            status, _, _, _ = request_once(self.net, self.addr(i), "GET", "/health",
                                           timeout=timeout)
            return status
        except RequestError:
            return None

    def wait_ready(self, i, timeout=READY_TIMEOUT):
        """Until GET /health answers 200 from the client namespace. Fails at
        once, with the log's tail, if the process exits first."""
        def ready():
            return not self.running(i) or self.health(i) == 200
        try:
            wait_for(ready, timeout, f"node {i} /health 200")
        except ClusterError as e:
            raise ClusterError(f"{e}\nlog of node {i}:\n{self.log_tail(i)}") from None
        if not self.running(i):
            code = self.procs[i].returncode if self.procs[i] else None
            raise ClusterError(f"node {i} exited ({code}) before it was ready; "
                               f"log:\n{self.log_tail(i)}")

    def wait_all_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        for i in range(self.n):
            if self.running(i):
                self.wait_ready(i, max(0.1, deadline - time.monotonic()))

    # ------------------------------------------------------------ cluster state

    def info(self, i, timeout=1.0):
        """GET /cluster/info as a dict, or None when it does not answer 200."""
        try:
            status, _, _, body = request_once(self.net, self.addr(i), "GET", "/cluster/info",
                                              timeout=timeout)
        except RequestError:
            return None
        return json.loads(body) if status == 200 else None

    def leader(self, nodes=None):
        """The node that says it leads, in the highest term, among the
        running nodes (or those given); None if no node does."""
        best = None
        for i in (range(self.n) if nodes is None else nodes):
            if not self.running(i):
                continue
            info = self.info(i)
            if info and info.get("role") == "leader":
                if best is None or info.get("term", 0) > best[1]:
                    best = (i, info.get("term", 0))
        return None if best is None else best[0]

    def wait_leader(self, nodes=None, timeout=READY_TIMEOUT):
        def found():
            i = self.leader(nodes)
            return None if i is None else (i,)   # a tuple: node 0 is truthy too
        return wait_for(found, timeout, "a leader")[0]

    # ------------------------------------------------------------ clients

    def request(self, i_or_addr, method, path, body=None, headers=None, timeout=IO_TIMEOUT,
                follow=True):
        addr = self.addr(i_or_addr) if isinstance(i_or_addr, int) else i_or_addr
        return request(self.net, addr, method, path, body, headers, timeout, follow)

    def kv_client(self, history=None, process=None, timeout=IO_TIMEOUT, nodes=None, rng=None):
        return KvClient(self, history, process, timeout, nodes, rng)

    # ------------------------------------------------------------ teardown

    def cleanup(self):
        for i in range(self.n):
            try:
                self.kill9(i)
            except Exception:
                pass
        self.net.cleanup()
        if self._own_workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ------------------------------------------------------------------ key-value client

class Outcome:
    """status: "ok", "fail" (certainly not applied) or "unknown" (may have
    been); value: for a get, the value read (None = not found); response:
    the last Response, if any; error: the RequestError, if any."""

    def __init__(self, status, value=None, response=None, error=None):
        self.status = status
        self.value = value
        self.response = response
        self.error = error

    def __repr__(self):
        return f"<Outcome {self.status} {self.value!r} {self.response or self.error!r}>"


def classify(kind, resp):
    """The outcome of a finished exchange (after redirects)."""
    body = resp.body.strip()
    if resp.status == 200:
        return Outcome("ok", resp.body.decode("utf-8") if kind == "get" else None, resp)
    if kind == "get":
        if resp.status == 404 and body == b"key not found":
            return Outcome("ok", None, resp)
        return Outcome("fail", response=resp)      # a read that saw nothing
    if resp.status == 503 and body == b"leadership lost":
        return Outcome("unknown", response=resp)   # accepted, may commit later
    if resp.status < 500 or (resp.status == 503 and body == b"no leader"):
        return Outcome("fail", response=resp)      # refused before it was accepted
    return Outcome("unknown", response=resp)       # other server errors: assume the worst


class KvClient:
    """put/get/delete against the cluster, each sent to a node chosen from
    nodes (default: all, at random), following redirects, and recorded in
    history (a linearizability.History) when one is given. Values are str."""

    def __init__(self, cluster, history=None, process=None, timeout=IO_TIMEOUT, nodes=None,
                 rng=None):
        import random
        self.cluster = cluster
        self.history = history
        self.process = process
        self.timeout = timeout
        self.nodes = list(range(cluster.n)) if nodes is None else list(nodes)
        self.rng = rng or random.Random()

    def put(self, key, value, node=None, headers=None):
        return self._op("put", key, value, "PUT", value.encode("utf-8"), node, headers)

    def get(self, key, node=None, headers=None):
        return self._op("get", key, None, "GET", None, node, headers)

    def delete(self, key, node=None, headers=None):
        return self._op("delete", key, None, "DELETE", None, node, headers)

    def _op(self, kind, key, value, method, body, node, headers):
        node = self.rng.choice(self.nodes) if node is None else node
        op = None
        if self.history is not None:
            op = self.history.invoke(kind, key, value, process=self.process)
        try:
            resp = self.cluster.request(node, method, "/kv/" + quote(key, safe=""), body,
                                        headers, self.timeout)
            out = classify(kind, resp)
        except RequestError as e:
            out = Outcome("unknown" if e.sent else "fail", error=e)
        if op is not None:
            if out.status == "ok":
                self.history.ok(op, out.value)
            elif out.status == "fail":
                self.history.fail(op)
            else:
                self.history.unknown(op)
        return out
