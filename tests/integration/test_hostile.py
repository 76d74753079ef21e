"""Hostile and careless clients: slowloris, connections dropped mid-request
and mid-response, random bytes, header floods, endless chunked bodies,
stalled bodies, 10,000 idle connections, and the --max-memory limit.

Each test checks what an ordinary client sharing the server would notice:
its requests keep working, and the server's connections and memory come
back down once the hostile ones are gone. Every loop is bounded in count
and time; the time bounds are many times the configured timeouts, so only a
server that never acts would miss them.
"""
import errno
import json
import random
import resource
import select
import selectors
import socket
import struct
import threading
import time

import pytest

from conftest import HOST, TEXT_PLAIN, build_request

KiB = 1024
MiB = 1024 * KiB


# --- helpers ------------------------------------------------------------------------

def rss_bytes(server):
    """The server's resident set size, from /proc/<pid>/status."""
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS line in /proc/<pid>/status")


def stats(server):
    r = server.request("GET", "/stats")
    assert r.status == 200, r
    return json.loads(r.body)


def wait_for_connections(server, at_most, timeout=15.0):
    """Polls /stats until its `connections` gauge (which counts the /stats
    connection itself) is at most `at_most`; returns the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        n = stats(server)["connections"]
        if n <= at_most or time.monotonic() >= deadline:
            return n
        time.sleep(0.1)


def round_trip(server, key, value):
    """One PUT and one GET, each on a fresh connection; returns what went
    wrong, or None."""
    r = server.put(key, value)
    if r.status != 200:
        return f"PUT /kv/{key}: {r!r}"
    r = server.get(key)
    if (r.status, r.body) != (200, value):
        return f"GET /kv/{key}: {r!r}"
    return None


def hard_close(sock):
    """Closes with a reset instead of a FIN, as a crashed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def peer_closed(sock):
    """True if the server has closed (EOF or reset) this non-blocking socket,
    False if it is still open. Bytes the server sent are read and dropped."""
    for _ in range(64):  # bounded: at most 4 MiB of unexpected bytes
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        if not data:
            return True
    return False


def raise_nofile_limit(need):
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (the server
    inherits it); skips the test when the hard limit is below `need`.
    Returns the old limits for restore_nofile_limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


# --- slowloris ----------------------------------------------------------------------

SLOW_REQUEST_LINE = b"GET /kv/slowloris-" + b"s" * 32 + b" HTTP/1.1\r\n"  # 25 s of trickle


def test_slowloris_connections_are_cut_while_normal_clients_are_served(start_server):
    # Half the connections trickle their request line (only --idle-timeout can
    # stop them), half send it at once and then trickle a header forever (only
    # --request-timeout can). One byte every 0.5 s resets libmicrohttpd's own
    # inactivity timer, so only the server's deadlines can close them.
    request_timeout, idle_timeout, n = 2, 3, 500
    s = start_server(args=["--request-timeout", str(request_timeout),
                           "--idle-timeout", str(idle_timeout)])
    slow = []  # [sock, bytes still to trickle, start time, close time or None, limit]
    try:
        for i in range(n):
            sock = socket.create_connection((HOST, s.port), timeout=5)
            sock.setblocking(False)
            if i % 2:
                slow.append([sock, SLOW_REQUEST_LINE, time.monotonic(), None, idle_timeout])
            else:
                sock.sendall(SLOW_REQUEST_LINE + b"Host: x\r\n")
                slow.append([sock, b"X-Slow: " + b"a" * 64, time.monotonic(), None,
                             request_timeout])

        trips, failures, served_while_all_open = 0, [], 0
        give_up = time.monotonic() + 15  # 5x the longest timeout
        while time.monotonic() < give_up:
            open_now = 0
            for c in slow:
                if c[3] is not None:
                    continue
                closed = peer_closed(c[0])
                if not closed and c[1]:
                    try:
                        c[1] = c[1][c[0].send(c[1][:1]):]
                    except BlockingIOError:
                        pass  # still open, merely full
                    except OSError:
                        closed = True
                if closed:
                    c[3] = time.monotonic()
                else:
                    open_now += 1
            if open_now == 0:
                break
            next_tick = time.monotonic() + 0.5
            while time.monotonic() < next_tick and trips < 400:
                problem = round_trip(s, f"normal-{trips}", b"value-%d" % trips)
                trips += 1
                if problem:
                    failures.append(problem)
                elif open_now == n:
                    served_while_all_open += 1
            time.sleep(max(0.0, next_tick - time.monotonic()))

        assert not failures, f"{len(failures)} of {trips} normal round trips failed: {failures[:3]}"
        assert served_while_all_open >= 5, (
            f"only {served_while_all_open} round trips completed while all {n} slow connections were open")
        still_open = [c for c in slow if c[3] is None]
        assert len(still_open) == 0, (
            f"{len(still_open)} of {n} slowloris connections still open after 15 s "
            f"(--request-timeout {request_timeout}, --idle-timeout {idle_timeout})")
        late = [(round(c[3] - c[2], 1), c[4]) for c in slow if c[3] - c[2] > c[4] + 8]
        assert not late, f"closed long after their deadline (seconds, timeout): {late[:5]}"
        assert wait_for_connections(s, at_most=2) <= 2
    finally:
        for c in slow:
            c[0].close()


# --- connections dropped mid-request and mid-response ------------------------------

def test_clients_vanishing_mid_request_or_mid_response_leave_no_connections_behind(start_server):
    # Timeouts far beyond the wait below: only noticing that the client went
    # away brings the `connections` gauge back down in time.
    s = start_server(args=["--request-timeout", "60", "--idle-timeout", "60"])
    big = bytes(range(256)) * (5 * MiB // 256)
    assert s.put("big", big).status == 200
    rounds = 40
    for i in range(rounds):
        close = hard_close if i % 2 else socket.socket.close
        # Request line cut off in the middle.
        sock = socket.create_connection((HOST, s.port), timeout=5)
        sock.sendall(b"PUT /kv/half-line-%d HT" % i)
        close(sock)
        # Headers cut off in the middle of a header name.
        sock = socket.create_connection((HOST, s.port), timeout=5)
        sock.sendall(b"PUT /kv/half-head-%d HTTP/1.1\r\nHost: x\r\nContent-Le" % i)
        close(sock)
        # Half of a body announced with Content-Length.
        sock = socket.create_connection((HOST, s.port), timeout=5)
        sock.sendall(build_request("PUT", f"/kv/half-body-{i}",
                                   headers={"Content-Length": "10000"}) + b"x" * 5000)
        close(sock)
        # A 5 MiB response abandoned after its first bytes.
        sock = socket.create_connection((HOST, s.port), timeout=5)
        sock.sendall(build_request("GET", "/kv/big"))
        assert sock.recv(16).startswith(b"HTTP/1.1 200"), "GET /kv/big did not start a 200"
        close(sock)

    assert s.proc.poll() is None, "server exited"
    assert round_trip(s, "after-drops", b"still here") is None
    for i in range(0, rounds, 7):
        assert s.get(f"half-head-{i}").status == 404
        assert s.get(f"half-body-{i}").status == 404, "a half-sent body was stored"
    r = s.get("big")
    assert (r.status, len(r.body), r.body == big) == (200, len(big), True)
    n = wait_for_connections(s, at_most=2, timeout=10)
    assert n <= 2, (f"/stats still counts {n} open connections 10 s after "
                    f"{4 * rounds} clients hung up mid-request or mid-response")


# --- random bytes ---------------------------------------------------------------------

def test_random_bytes_on_many_connections_do_not_crash_or_bloat_the_server(start_server):
    # Short deadlines, so whatever the noise left half-open is gone before
    # the fixture's SIGTERM waits for in-flight requests.
    server = start_server(args=["--request-timeout", "2", "--idle-timeout", "3"])
    rng = random.Random(20240611)  # fixed, so a failure can be replayed
    prefixes = [
        b"",
        b"GET /kv/random HTTP/1.1\r\n",
        b"PUT /kv/random-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PUT /kv/random-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 8192\r\n\r\n",
    ]
    base = rss_bytes(server)
    peak = base
    for _ in range(5):
        socks = []
        try:
            for i in range(200):
                sock = socket.create_connection((HOST, server.port), timeout=5)
                socks.append(sock)
                payload = prefixes[i % len(prefixes)] + rng.randbytes(rng.randint(1, 6) * KiB)
                try:
                    sock.sendall(payload)
                except OSError:
                    pass  # answered 400 and closed before reading it all
        finally:
            for sock in socks:
                sock.close()
        assert server.proc.poll() is None, "server exited on random input"
        peak = max(peak, rss_bytes(server))

    assert round_trip(server, "after-noise", b"clean value") is None
    # 1000 connections of at most 14 KiB each: a leak of their buffers shows.
    assert peak - base < 64 * MiB, f"RSS grew from {base >> 20} MiB to {peak >> 20} MiB"
    assert server.get("random-cl").status == 404, "a body cut short was stored"
    n = wait_for_connections(server, at_most=2, timeout=15)
    assert n <= 2, f"/stats still counts {n} open connections 15 s after every client left"


# --- header flood -------------------------------------------------------------------

def test_request_with_10000_headers_is_refused_and_closed(server):
    headers = b"".join(b"X-Flood-%d: v\r\n" % i for i in range(10_000))
    request = (b"PUT /kv/flooded HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
               + headers + b"\r\nv")
    with server.raw() as c:
        sender = threading.Thread(target=lambda: _send_quietly(c.sock, request), daemon=True)
        sender.start()
        r = c.read_response()
        assert r.status in (431, 400), r
        assert c.closed_by_server(), "connection left open after refusing 10,000 headers"
        sender.join(10)
    assert server.get("flooded").status == 404
    assert round_trip(server, "after-flood", b"v") is None


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server refused and closed before reading it all


# --- endless chunked body ---------------------------------------------------------------

def test_endless_chunked_put_neither_grows_memory_nor_stays_open(start_server):
    request_timeout, limit = 3, 1 * MiB
    s = start_server(args=["--max-value-bytes", "1m", "--request-timeout", str(request_timeout)])
    base = rss_bytes(s)
    piece = b"z" * (64 * KiB)
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sock = socket.create_connection((HOST, s.port), timeout=5)
    sock.setblocking(False)
    sent, peak, reply, ended = 0, base, bytearray(), False
    started = time.monotonic()
    give_up = started + request_timeout + 12
    next_sample = started
    try:
        out = memoryview(build_request("PUT", "/kv/endless",
                                       headers={"Transfer-Encoding": "chunked"}) + chunk)
        while not ended and time.monotonic() < give_up:
            if time.monotonic() >= next_sample:
                peak = max(peak, rss_bytes(s))
                next_sample = time.monotonic() + 0.1
            readable, writable, _ = select.select([sock], [sock], [], 0.1)
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    ended = True
                reply += data
            if writable and not ended:
                try:
                    n = sock.send(out)
                except BlockingIOError:
                    continue
                except OSError:
                    ended = True
                    continue
                sent += n
                out = out[n:] if n < len(out) else memoryview(chunk)
        elapsed = time.monotonic() - started
    finally:
        sock.close()

    peak = max(peak, rss_bytes(s))
    assert ended, f"an endless chunked body was still being accepted after {elapsed:.0f} s"
    assert sent > 4 * limit, f"only {sent} bytes went out before the connection ended"
    if reply:
        assert reply.startswith(b"HTTP/1.1 413"), bytes(reply[:200])
    assert peak - base < 48 * MiB, (
        f"RSS grew by {(peak - base) >> 20} MiB while {sent >> 20} MiB of chunked body arrived")
    assert s.get("endless").status == 404
    assert round_trip(s, "after-endless", b"v") is None


# --- declared body that never comes ---------------------------------------------------

def test_stalled_bodies_are_dropped_after_request_timeout_without_blocking_others(start_server):
    # More stalled requests than worker threads: if one tied up a worker,
    # the normal client below would hang.
    request_timeout = 2
    s = start_server(args=["--request-timeout", str(request_timeout), "--idle-timeout", "60"])
    stalled = []
    try:
        started = time.monotonic()
        for i in range(16):
            c = s.raw()
            c.send(build_request("PUT", f"/kv/stalled-{i}", headers={"Content-Length": "100000"})
                   + b"only a little")
            stalled.append(c)
        for i in range(20):
            assert round_trip(s, f"meanwhile-{i}", b"value %d" % i) is None
        assert time.monotonic() - started < request_timeout, (
            "the normal round trips took longer than the stalled requests' deadline")

        for c in stalled:
            remaining = max(0.1, started + request_timeout + 10 - time.monotonic())
            closed = c.closed_by_server(timeout=remaining)
            if not closed and c.buf:  # a 408 may come before the close
                r = c.read_response()
                assert r.status in (408, 400), r
                closed = c.closed_by_server(timeout=remaining)
            assert closed, (f"a request stalled mid-body still open "
                            f"{time.monotonic() - started:.0f} s later (--request-timeout 2)")
    finally:
        for c in stalled:
            c.close()
    for i in range(16):
        assert s.get(f"stalled-{i}").status == 404
    assert round_trip(s, "afterwards", b"v") is None


# --- 10,000 idle connections ------------------------------------------------------------

def test_normal_client_is_served_while_10000_idle_connections_are_open(start_server):
    n = 10_000
    old_limit = raise_nofile_limit(n + 500)
    idle = []
    sel = selectors.DefaultSelector()
    try:
        s = start_server()
        for i in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((HOST, s.port))
            assert err in (0, errno.EINPROGRESS), f"connect {i}: {errno.errorcode.get(err)}"
            idle.append(sock)
            if err:
                sel.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 30
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert not err, f"an idle connection failed: {errno.errorcode.get(err, err)}"
                sel.unregister(key.fileobj)
        pending = len(sel.get_map())
        assert pending == 0, f"{pending} of {n} connections not established after 30 s"

        # They must be accepted by the server, not just waiting in the backlog.
        deadline = time.monotonic() + 30
        while stats(s)["connections"] < n and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stats(s)["connections"] >= n

        for i in range(30):
            assert round_trip(s, f"busy-{i}", b"v%d" % i) is None
        with s.raw() as c:  # and keep-alive on top of them
            for i in range(30):
                c.send(build_request("GET", f"/kv/busy-{i}"))
                r = c.read_response()
                assert (r.status, r.body) == (200, b"v%d" % i), r

        dropped = sum(peer_closed(sock) for sock in idle)
        assert dropped == 0, f"{dropped} idle connections were closed well before --idle-timeout"
    finally:
        sel.close()
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old_limit)


# --- --max-memory ----------------------------------------------------------------------

def fill_to_memory_limit(server, value_size, most):
    """PUTs mem-0, mem-1, ... until one is refused; returns the stored keys
    and the refusal."""
    stored = []
    for i in range(most):
        key = f"mem-{i}"
        r = server.put(key, bytes([65 + i % 26]) * value_size)
        if r.status != 200:
            return stored, key, r
        stored.append(key)
    pytest.fail(f"{most} PUTs of {value_size} bytes all accepted under --max-memory")


def test_writes_over_max_memory_get_507_while_reads_and_deletes_go_on(start_server):
    s = start_server(args=["--max-memory", "64k"])
    stored, refused_key, r = fill_to_memory_limit(s, 8 * KiB, most=20)
    # 64 KiB holds seven 8 KiB values with their 5-byte keys.
    assert len(stored) == 7, f"the limit refused the write after {len(stored)} values, not 7"
    assert (r.status, r.body) == (507, b"insufficient storage\n"), r
    assert r.header("Content-Type") == TEXT_PLAIN
    assert s.get(refused_key).status == 404, "a refused PUT was stored"
    assert s.put(refused_key, b"x" * 8 * KiB).status == 507, "still full, still refused"

    for i, key in enumerate(stored):
        r = s.get(key)
        assert (r.status, r.body) == (200, bytes([65 + i % 26]) * 8 * KiB), key
    assert s.head(stored[0]).status == 200

    assert s.delete(stored[0]).status == 200
    assert s.delete("never-existed").status == 200
    assert s.put(refused_key, b"x" * 8 * KiB).status == 200, "space freed by DELETE not reusable"
    assert s.put("one-more", b"y" * 8 * KiB).status == 507

    assert s.request("DELETE", "/clear").status == 200
    stored, _, _ = fill_to_memory_limit(s, 8 * KiB, most=20)
    assert len(stored) == 7, "after DELETE /clear the whole limit is usable again"


def test_overwriting_a_key_at_max_memory_with_a_same_size_value_succeeds(start_server):
    # Replacing a value does not add data, so a full store must accept it.
    s = start_server(args=["--max-memory", "64k"])
    stored, _, r = fill_to_memory_limit(s, 8 * KiB, most=20)
    assert r.status == 507
    r = s.put(stored[0], b"#" * 8 * KiB)
    assert r.status == 200, f"overwrite of a stored 8 KiB value with another 8 KiB: {r!r}"
    assert s.get(stored[0]).body == b"#" * 8 * KiB
