"""Integration fixtures: start the real little-key-value binary on a free port
in a fresh temporary directory and talk HTTP to it over plain sockets.

Every network wait has a timeout, so a broken server fails a test instead of
hanging the suite.
"""
import itertools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LKV_BIN = os.environ.get("LKV_BIN") or str(REPO / "build" / "little-key-value")
VERSION = (REPO / "VERSION").read_text().strip()

HOST = "127.0.0.1"
IO_TIMEOUT = 10.0        # any single socket wait
READY_TIMEOUT = 10.0     # start-up until /health answers 200
STOP_TIMEOUT = 20.0      # SIGTERM until exit (contract: in-flight work up to 15 s)
TEXT_PLAIN = "text/plain; charset=utf-8"

_log_ids = itertools.count(1)

# Variables the server reads; tests set them explicitly or not at all.
SERVER_ENV_VARS = ("ADDR", "DATA_DIR", "PEERS")


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_VARS}
    env.update(extra or {})
    return env


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port, host=HOST, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Response:
    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in arrival order
        self.body = body
        self.version = version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"<Response {self.status} {self.reason!r} {self.headers!r} {body!r}>"


class RawConn:
    """One TCP connection with a byte-exact HTTP/1.1 response reader, so tests
    control exactly what goes on the wire (pipelining, partial bodies,
    malformed requests) and read responses in order."""

    def __init__(self, port, host=HOST, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed by server; unparsed bytes: {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def _read_until(self, delim):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_to_eof(self):
        while True:
            try:
                self._fill()
            except EOFError:
                out = bytes(self.buf)
                self.buf.clear()
                return out

    def read_response(self, method="GET"):
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head[:-4].split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {lines[0]!r}"
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"bad header line {line!r}"
            headers.append((name.strip(), value.strip()))
        resp = Response(status, reason, headers, b"", version)
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            resp.body = self._read_chunked()
        elif resp.header("Content-Length") is not None:
            resp.body = self._read_exact(int(resp.header("Content-Length")))
        else:
            resp.body = self._read_to_eof()
        return resp

    def _read_chunked(self):
        body = bytearray()
        while True:
            size_line = self._read_until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while self._read_until(b"\r\n") != b"\r\n":
                    pass  # trailers
                return bytes(body)
            body += self._read_exact(size)
            assert self._read_exact(2) == b"\r\n"

    def closed_by_server(self, timeout=IO_TIMEOUT):
        """True once the server closes (EOF or reset) with no further bytes;
        False if it is still open after `timeout`. Bytes that do arrive are
        kept in the buffer."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
            if chunk:
                self.buf += chunk
                return False
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)


def build_request(method, path, body=None, headers=None, port=0):
    """Bytes of one HTTP/1.1 request; a body gets a Content-Length unless the
    caller passes its own framing headers."""
    headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in headers}
    out = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if "content-length" not in names and "transfer-encoding" not in names:
        if body is not None:
            out.append(f"Content-Length: {len(body)}")
        elif method in ("PUT", "POST"):
            out.append("Content-Length: 0")
    out += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(pieces):
    out = bytearray()
    for p in pieces:
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


class Server:
    def __init__(self, data_dir, log_dir, port=None, args=(), env=None, cwd=None,
                 port_flag=True, data_dir_flag=True, binary=None, host=HOST):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.host = host
        self.args = list(args)
        self.env = env
        self.cwd = cwd
        self.port_flag = port_flag
        self.data_dir_flag = data_dir_flag
        self.binary = binary or LKV_BIN
        self.proc = None
        self.stderr_path = None
        self.starts = 0
        self.expect_clean_exit = True

    def command(self):
        cmd = [self.binary]
        if self.port_flag:
            cmd += ["--port", str(self.port)]
        if self.data_dir_flag:
            cmd += ["--working-dir", str(self.data_dir)]
        return cmd + self.args

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        n = next(_log_ids)
        self.stderr_path = self.log_dir / f"stderr.{n}.port{self.port}.log"
        self.stdout_path = self.log_dir / f"stdout.{n}.port{self.port}.log"
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=clean_env(self.env), cwd=self.cwd)
        if wait:
            self.wait_ready()
        return self

    def stderr_text(self):
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Until the port accepts and GET /health is 200; fails with the
        server's stderr otherwise."""
        deadline = time.monotonic() + timeout
        last = "port never accepted"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(f"server exited with {rc} during start-up; stderr:\n{self.stderr_text()}")
            if port_accepts(self.port, self.host):
                try:
                    r = self.request("GET", "/health", timeout=2.0)
                    if r.status == 200:
                        return
                    last = f"/health answered {r.status}"
                except (OSError, EOFError, AssertionError) as e:
                    last = f"/health failed: {e!r}"
            time.sleep(0.05)
        pytest.fail(f"server not ready after {timeout}s ({last}); stderr:\n{self.stderr_text()}")

    def raw(self, timeout=IO_TIMEOUT):
        return RawConn(self.port, self.host, timeout)

    def request(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
        """One request on a fresh connection; returns the Response."""
        with self.raw(timeout) as c:
            try:
                c.send(build_request(method, path, body, headers, self.port))
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered (413, 431...) and closed before the whole body was read
            return c.read_response(method)

    def get(self, key, **kw):
        return self.request("GET", "/kv/" + key, **kw)

    def head(self, key, **kw):
        return self.request("HEAD", "/kv/" + key, **kw)

    def put(self, key, value, **kw):
        if isinstance(value, str):
            value = value.encode()
        return self.request("PUT", "/kv/" + key, value, **kw)

    def delete(self, key, **kw):
        return self.request("DELETE", "/kv/" + key, **kw)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"server did not exit within {timeout}s; stderr:\n{self.stderr_text()}")

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the server and returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)
        return self.proc.returncode

    def restart(self, wait=True):
        rc = self.stop()
        assert rc == 0, f"exit code {rc}; stderr:\n{self.stderr_text()}"
        return self.start(wait)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(args=(), data_dir=None, port=None, env=None,
    wait=True, ...) starts a server (default data dir tmp_path/"data");
    teardown SIGTERMs every server still running and asserts exit code 0."""
    servers = []

    def factory(args=(), data_dir=None, port=None, env=None, wait=True, **kw):
        n = len(servers)
        data_dir = data_dir or tmp_path / ("data" if n == 0 else f"data{n}")
        s = Server(data_dir, tmp_path / "logs", port=port, args=args, env=env, **kw)
        servers.append(s)
        return s.start(wait)

    yield factory

    problems = []
    for s in servers:
        if s.proc is None or s.proc.poll() is not None:
            continue
        s.proc.send_signal(signal.SIGTERM)
        try:
            rc = s.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(5)
            problems.append(f"port {s.port}: no exit within {STOP_TIMEOUT}s of SIGTERM")
            continue
        if rc != 0 and s.expect_clean_exit:
            problems.append(f"port {s.port}: exit code {rc} after SIGTERM; stderr tail:\n"
                            + s.stderr_text()[-3000:])
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(start_server):
    """A running server with default options on a free port and a fresh dir."""
    return start_server()


def run_binary(args, env=None, cwd=None, timeout=IO_TIMEOUT, binary=None):
    """Runs the binary expecting it to exit by itself (help, version, refused
    start-up). Fails, after killing it, if it is still running at `timeout`."""
    proc = subprocess.Popen([binary or LKV_BIN] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env(env), cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(5)
        pytest.fail(f"{args!r} still running after {timeout}s; stderr:\n{err.decode(errors='replace')}")
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       out.decode(errors="replace"), err.decode(errors="replace"))


def stderr_lines(text):
    return [line for line in text.splitlines() if line.strip()]
