#!/usr/bin/python3
"""A stand-in for a cluster node, to test the cluster harness before the
real binary clusters. It takes the real binary's start-up convention
(`--port N --working-dir DIR`, env ADDR and PEERS) and a small part of its
HTTP API: /health, /kv/{key} (GET, PUT, DELETE), /cluster/info.

The leader is fixed: the lowest member address. Two modes (env
STANDIN_MODE):

- "redirect" (default), linearizable: followers answer 307 to the leader
  for everything under /kv/; the leader alone holds the data, in memory
  and in an fsync'ed append-only log in the working directory that it
  replays at start, so kill -9 and restart keep acknowledged writes.
- "stale", deliberately broken: writes still go to the leader, but each
  follower keeps its own copy, which the leader updates with a POST
  /replicate to it STANDIN_LAG_MS (default 5000) after acknowledging the
  write, and followers answer GETs from their copy. Reads on followers
  are stale: the linearizability checker must notice.

A request header X-Standin-Delay-Ms: N makes the leader apply the write,
then wait N ms before answering, so a client times out on a write that
did take effect (an unknown outcome). SIGTERM: stop serving, exit 0.
"""
import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

TEXT = "text/plain; charset=utf-8"


class Store:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.data = {}
        if os.path.exists(path):
            with open(path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # a torn last line from a kill -9
                    self._apply(rec["k"], rec["v"])
        self.log = open(path, "ab")

    def _apply(self, key, value):
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def write(self, key, value, durable=True):
        with self.lock:
            if durable:
                self.log.write(json.dumps({"k": key, "v": value}).encode() + b"\n")
                self.log.flush()
                os.fsync(self.log.fileno())
            self._apply(key, value)

    def get(self, key):
        with self.lock:
            return self.data.get(key)


class Node:
    def __init__(self, addr, peers, workdir, mode, lag):
        self.addr = addr
        self.peers = peers
        self.leader = min([addr] + peers)
        self.mode = mode
        self.lag = lag
        self.store = Store(os.path.join(workdir, "standin.log"))

    @property
    def is_leader(self):
        return self.addr == self.leader

    def replicate_later(self, key, value):
        def send():
            time.sleep(self.lag)
            for peer in self.peers:
                host, port = peer.rsplit(":", 1)
                try:
                    c = http.client.HTTPConnection(host, int(port), timeout=5)
                    c.request("POST", "/replicate", json.dumps({"k": key, "v": value}))
                    c.getresponse().read()
                    c.close()
                except OSError:
                    pass  # a lost update only makes the stale copy staler
        threading.Thread(target=send, daemon=True).start()


def make_handler(node):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("standin %s %s\n" % (node.addr, fmt % args))

        def reply(self, status, body=b"", ctype=TEXT, headers=()):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def key(self):
            path = urlsplit(self.path).path
            return unquote(path[len("/kv/"):]) if path.startswith("/kv/") else None

        def redirect(self):
            self.reply(307, "", headers=[("Location", f"http://{node.leader}{self.path}")])

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/health":
                return self.reply(200, "ok\n")
            if path == "/cluster/info":
                info = {"id": node.addr, "role": "leader" if node.is_leader else "follower",
                        "term": 1, "leader": node.leader, "votedFor": node.leader,
                        "peers": node.peers, "mode": node.mode, "pid": os.getpid()}
                return self.reply(200, json.dumps(info), "application/json")
            key = self.key()
            if key is None:
                return self.reply(404, "not found\n")
            if not node.is_leader and node.mode == "redirect":
                return self.redirect()
            value = node.store.get(key)
            if value is None:
                return self.reply(404, "key not found\n")
            self.reply(200, value.encode())

        def do_PUT(self):
            self.write(lambda: self.body().decode())

        def do_DELETE(self):
            self.write(lambda: None)

        def write(self, value_of):
            key = self.key()
            if key is None:
                return self.reply(404, "not found\n")
            if not node.is_leader:
                self.body()
                return self.redirect()
            value = value_of()
            node.store.write(key, value)
            if node.mode == "stale":
                node.replicate_later(key, value)
            delay = int(self.headers.get("X-Standin-Delay-Ms") or 0)
            if delay:
                time.sleep(delay / 1000.0)
            self.reply(200, "")

        def do_POST(self):
            if urlsplit(self.path).path != "/replicate":
                return self.reply(404, "not found\n")
            rec = json.loads(self.body())
            node.store.write(rec["k"], rec["v"], durable=False)
            self.reply(200, "")

    return Handler


def main():
    ap = argparse.ArgumentParser(description="cluster node stand-in")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--working-dir", required=True)
    args = ap.parse_args()
    addr = os.environ.get("ADDR") or f"127.0.0.1:{args.port}"
    peers = [p for p in os.environ.get("PEERS", "").split(",") if p]
    mode = os.environ.get("STANDIN_MODE", "redirect")
    lag = float(os.environ.get("STANDIN_LAG_MS", "5000")) / 1000.0
    os.makedirs(args.working_dir, exist_ok=True)
    node = Node(addr, peers, args.working_dir, mode, lag)
    server = ThreadingHTTPServer(("0.0.0.0", args.port), make_handler(node))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    sys.stderr.write(f"standin addr={addr} peers={','.join(peers)} mode={mode} "
                     f"leader={node.leader}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
