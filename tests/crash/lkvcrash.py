"""Shared helpers for the crash tests and tests/crash/torture.py: run the real
binary, talk HTTP to it, read and damage its files.

Standard library only. Every wait is bounded, so a hung server fails a test
instead of hanging the run.
"""
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LKV_BIN = os.environ.get("LKV_BIN") or str(REPO / "build" / "little-key-value")
LKV_FAULT_LIB = (os.environ.get("LKV_FAULT_LIB") or
                 str(REPO / "build" / "tests" / "libfaultinject.so"))

HOST = "127.0.0.1"
IO_TIMEOUT = 20.0       # one HTTP exchange (generous: sanitizer builds are slow)
READY_TIMEOUT = 20.0    # start-up (recovery included) until /health answers 200
STOP_TIMEOUT = 20.0     # SIGTERM until exit: the contract allows 15 s
EOF_TIMEOUT = 10.0      # after death, until every holder of stderr is gone

SEG_HDR = 32
REC_HDR = 32
SEG_MAGIC = b"LKVLOG\x00\x01"
SNAP_MAGIC = b"LKVSNAP\x00"
SNAP_HDR = 64
OP_SET, OP_DELETE, OP_CLEAR = 1, 2, 3

SERVER_ENV_VARS = ("ADDR", "DATA_DIR", "PEERS", "LD_PRELOAD", "LKV_FAULT_CTL", "LKV_FAULT_DIR")


# ---------------------------------------------------------------- crc32c

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- values

def make_value(tag, size):
    """Deterministic bytes for (tag, size): the same call regenerates them,
    and a prefix or a neighbour's value never matches."""
    block = hashlib.sha256(f"{tag}/{size}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def digest(value):
    return None if value is None else hashlib.sha256(value).hexdigest()


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One run of the binary. stderr is read by a thread into `lines`;
    `on_line` callbacks run in that thread for every line."""

    def __init__(self, data_dir, args=(), fault_ctl=None, port=None):
        self.data_dir = str(data_dir)
        self.port = port or free_port()
        self.args = list(args)
        self.lines = []
        self.on_line = []
        self._cv = threading.Condition()
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_VARS}
        if fault_ctl is not None:
            # A sanitizer runtime must come first in the preload list.
            first = os.environ.get("LKV_PRELOAD_FIRST")
            env["LD_PRELOAD"] = f"{first}:{LKV_FAULT_LIB}" if first else LKV_FAULT_LIB
            env["LKV_FAULT_CTL"] = str(fault_ctl)
            env["LKV_FAULT_DIR"] = os.path.realpath(self.data_dir)
        cmd = [LKV_BIN, "--port", str(self.port), "--bind", HOST,
               "--working-dir", self.data_dir] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
            for cb in list(self.on_line):
                cb(line)
        with self._cv:
            self._cv.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        with self._cv:
            return "\n".join(self.lines)

    def tail(self, n=30):
        with self._cv:
            return "\n".join(self.lines[-n:])

    def wait_line(self, needle, timeout, start=0):
        """Waits for a stderr line containing needle, at or after index start.
        Returns the line, or None at timeout or when stderr closed."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return None
                self._cv.wait(min(left, 0.2))

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.drain()
                raise AssertionError(f"server exited with {self.proc.returncode} before it "
                                     f"was ready:\n{self.tail()}")
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=2.0)
                c.request("GET", "/health")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.tail()}")

    def drain(self, timeout=EOF_TIMEOUT):
        """Waits until stderr reached EOF: the server (and anything that
        inherited its stderr) is gone and every line written is in self.lines."""
        self._reader.join(timeout)
        assert not self._reader.is_alive(), \
            f"stderr still open {timeout} s after the server died (a process outlived it?)"

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(EOF_TIMEOUT)
        self.drain()

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM; returns the exit code (asserts it came within timeout)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.tail()}")
        self.drain()
        return code

    def wait_exit(self, timeout):
        """Waits for the process to exit on its own; returns the code or None."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.drain()
        return code

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(EOF_TIMEOUT)
        self._reader.join(EOF_TIMEOUT)
        if self.proc.stderr:
            self.proc.stderr.close()


def run_to_exit(data_dir, args=(), timeout=READY_TIMEOUT):
    """Starts the server expecting it to refuse to start: returns (code, stderr).
    A server that comes up instead is killed and reported as code None."""
    srv = Server(data_dir, args)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            code = srv.proc.poll()
            if code is not None:
                srv.drain()
                return code, srv.stderr_text()
            if srv.wait_line("event=start ", 0.05) is not None:
                return None, srv.stderr_text()
        return None, srv.stderr_text()
    finally:
        srv.cleanup()


# ---------------------------------------------------------------- HTTP

class Client:
    """A keep-alive connection. Methods return (status, body); OSError and
    http.client exceptions propagate (the server may be dead)."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body)
            r = self.conn.getresponse()
            data = r.read()
        except BaseException:
            self.close()
            raise
        if r.will_close:
            self.close()
        return r.status, data

    def put(self, key, value):
        return self.request("PUT", "/kv/" + key, value)

    def get(self, key):
        return self.request("GET", "/kv/" + key)

    def delete(self, key):
        return self.request("DELETE", "/kv/" + key)

    def clear(self):
        return self.request("DELETE", "/clear")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_value(client, key):
    """GET key: the value, or None for 404; anything else is an error."""
    status, body = client.get(key)
    if status == 404:
        return None
    assert status == 200, f"GET {key}: {status} {body[:100]!r}"
    return body


# ---------------------------------------------------------------- files

def forget_cache(f):
    """Drops the file's clean pages from the page cache. Reading preallocated,
    never-written space leaves zero pages cached, and the kernel then reports
    that space as data to SEEK_DATA/SEEK_HOLE, which recovery uses to find
    where a segment's data ends: a test that looked at a file would change
    what the server sees. After a real crash that cache is cold."""
    f.flush()
    os.fsync(f.fileno())
    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_uncached(path):
    with open(path, "rb") as f:
        data = f.read()
        forget_cache(f)
    return data


def segments(data_dir):
    return sorted(Path(data_dir).glob("log-*.seg"))


def snapshots(data_dir):
    return sorted(Path(data_dir).glob("snap-*.snap"))


class Record:
    def __init__(self, offset, crc, length, rtype, flags, reserved, batch_pos, index, term,
                 payload):
        self.offset, self.crc, self.len, self.type = offset, crc, length, rtype
        self.flags, self.reserved, self.batch_pos = flags, reserved, batch_pos
        self.index, self.term, self.payload = index, term, payload

    @property
    def end(self):
        return self.offset + REC_HDR + self.len

    def command(self):
        """(op, key, value) of a command record."""
        p = self.payload
        op = p[0]
        if op == OP_CLEAR:
            return op, None, None
        klen = struct.unpack_from("<I", p, 1)[0]
        key = p[5:5 + klen].decode()
        return op, key, (p[5 + klen:] if op == OP_SET else None)


def encode_record(index, payload, batch_pos=0, term=0, rtype=1):
    hdr = struct.pack("<IBBHIQQ", len(payload), rtype, 0, 0, batch_pos, index, term)
    crc = crc32c(hdr + payload)
    return struct.pack("<I", crc) + hdr + payload


def encode_set(key, value):
    k = key.encode()
    return struct.pack("<BI", OP_SET, len(k)) + k + value


def walk_segment(path, check_crc=True):
    """Walks the records of a segment from offset 32 the way recovery does.
    Returns (records, end): records up to the first one that is not intact
    (zero header, impossible field, runs past the file, bad crc), and the
    offset where that walk stopped. With check_crc=False the crc is ignored
    (fast, for large logs of a killed but not power-cut server)."""
    data = read_uncached(path)
    assert data[:8] == SEG_MAGIC, f"{path}: not a segment"
    recs, off = [], SEG_HDR
    while off + REC_HDR <= len(data):
        crc, length, rtype, flags, reserved, bpos, index, term = \
            struct.unpack_from("<IIBBHIQQ", data, off)
        if data[off:off + REC_HDR] == bytes(REC_HDR):
            break
        if rtype not in (1, 2, 3) or flags or reserved or index == 0:
            break
        if off + REC_HDR + length > len(data):
            break
        payload = data[off + REC_HDR:off + REC_HDR + length]
        if check_crc and crc32c(data[off + 4:off + REC_HDR] + payload) != crc:
            break
        recs.append(Record(off, crc, length, rtype, flags, reserved, bpos, index, term, payload))
        off += REC_HDR + length
    return recs, off


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        forget_cache(f)


def flip_byte(path, offset, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))
        forget_cache(f)


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)
        forget_cache(f)


def dir_fingerprint(data_dir):
    """name -> (size, sha256) for every file in the directory."""
    out = {}
    for p in sorted(Path(data_dir).iterdir()):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            out[p.name] = (p.stat().st_size, h.hexdigest())
    return out


def random_garbage(rng, n):
    """n random bytes whose first byte is nonzero (so never a zero header)."""
    g = bytearray(rng.getrandbits(8) for _ in range(n))
    if g:
        g[0] |= 0x80
    return bytes(g)


# ---------------------------------------------------------------- load with a per-key model

class OwnedKeysWriter(threading.Thread):
    """Runs ops on its own keys until the server dies or stop is set.
    acked: key -> digest (None = absent) after the last acknowledged op.
    inflight: (key, digest) of the op whose answer never came, if any."""

    def __init__(self, wid, port, acked, rng, stop, cycle, max_value=64 * 1024, tolerate=()):
        super().__init__(daemon=True)
        self.max_value = max_value
        # statuses that mean "refused, never applied" (503 while shutting
        # down): the op leaves the model and the writer stops quietly
        self.tolerate = tolerate
        self.wid, self.port, self.acked, self.rng, self.stop = wid, port, acked, rng, stop
        self.cycle = cycle
        self.keys = sorted(k for k in acked)
        self.inflight = None
        self.ops = 0
        self.acks = 0
        self.errors = []

    def run(self):
        client = Client(self.port)
        seq = 0
        try:
            while not self.stop.is_set():
                key = self.rng.choice(self.keys)
                seq += 1
                if self.rng.random() < 0.25:
                    self.inflight = (key, None)
                    call = lambda: client.delete(key)
                else:
                    size = self.rng.randint(1, self.max_value)
                    value = make_value(f"{key}#{self.cycle}.{seq}", size)
                    self.inflight = (key, digest(value))
                    call = lambda: client.put(key, value)
                self.ops += 1
                try:
                    status, body = call()
                except (OSError, http.client.HTTPException):
                    return  # the server died: this op stays in flight
                if status in self.tolerate:
                    self.inflight = None
                    return
                if status != 200:
                    self.errors.append(f"{key}: status {status} {body[:80]!r}")
                    return
                self.acked[key] = self.inflight[1]
                self.inflight = None
                self.acks += 1
        finally:
            client.close()


def check_owned_keys(port, writers):
    """Compares every key with its allowed states; returns the failures and
    carries the observed state into each writer's model."""
    failures = []
    present = 0
    with Client(port) as c:
        for w in writers:
            for key in w.keys:
                got = read_value(c, key)
                got_d = digest(got)
                allowed = {w.acked[key]}
                if w.inflight and w.inflight[0] == key:
                    allowed.add(w.inflight[1])
                if got_d not in allowed:
                    failures.append(
                        f"{key}: got {'absent' if got is None else f'{len(got)} bytes'} "
                        f"({got_d}), allowed {sorted(map(str, allowed))}")
                w.acked[key] = got_d
                present += got is not None
        status, body = c.request("GET", "/stats")
    assert status == 200
    keys = json.loads(body)["keys"]
    if keys != present:
        failures.append(f"/stats says {keys} keys, the writers' keys account for {present}")
    return failures
