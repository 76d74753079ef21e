"""Many clients at once: parallel writers, racing writers on one key, readers
during writes, and 10,000 simultaneously open connections."""
import errno
import re
import resource
import selectors
import socket
import threading
import time

import pytest

from conftest import HOST


def run_threads(n, target):
    """Runs target(i) in n threads released together; returns the results,
    failing on any exception or a thread still running after 60 s."""
    barrier = threading.Barrier(n, timeout=30)
    results, errors = [None] * n, []

    def body(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as e:  # reported below with the thread's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after 60 s"
    assert not errors, errors[:10]
    return results


def test_100_parallel_writers_of_different_keys_all_land(server):
    statuses = run_threads(100, lambda i: server.put(f"key-{i}", f"value-{i}" * (i + 1)).status)
    assert statuses == [200] * 100
    for i in range(100):
        r = server.get(f"key-{i}")
        assert (r.status, r.body) == (200, f"value-{i}".encode() * (i + 1)), i


def test_100_parallel_writers_of_one_key_leave_one_of_their_values(server):
    values = [f"writer-{i}-".encode() * (i % 7 + 1) for i in range(100)]
    statuses = run_threads(100, lambda i: server.put("contended", values[i]).status)
    assert statuses == [200] * 100
    seen = {server.get("contended").body for _ in range(5)}
    assert len(seen) == 1, "repeated GETs disagree"
    assert seen.pop() in values


def test_readers_never_see_a_torn_value_while_writers_overwrite(server):
    values = [bytes([65 + i]) * (50_000 + 10_000 * i) for i in range(4)]
    assert server.put("shared", values[0]).status == 200
    bad = []

    def work(i):
        if i < 4:  # writers
            for _ in range(15):
                assert server.put("shared", values[i]).status == 200
        else:  # readers
            for _ in range(40):
                r = server.get("shared")
                if r.status != 200 or r.body not in values:
                    bad.append((r.status, len(r.body), r.body[:20]))

    run_threads(8, work)
    assert not bad, bad[:5]


def test_parallel_deletes_and_puts_on_distinct_keys_are_isolated(server):
    for i in range(50):
        assert server.put(f"del-{i}", "x").status == 200

    def work(i):
        if i % 2:
            return server.delete(f"del-{i}").status
        return server.put(f"new-{i}", str(i)).status

    assert run_threads(50, work) == [200] * 50
    for i in range(50):
        if i % 2:
            assert server.get(f"del-{i}").status == 404, i
            assert server.get(f"new-{i}").status == 404, i
        else:
            assert server.get(f"del-{i}").body == b"x", i
            assert server.get(f"new-{i}").body == str(i).encode(), i


# --- 10,000 connections ------------------------------------------------------------

HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class Conn:
    __slots__ = ("i", "sock", "out", "inbuf", "phase", "connected")

    def __init__(self, i, sock):
        self.i, self.sock, self.out, self.inbuf = i, sock, b"", bytearray()
        self.phase, self.connected = "put", False


def parse_response(buf):
    """(status, body) once a whole response is in buf, else None."""
    end = buf.find(HEAD_END)
    if end < 0:
        return None
    head = bytes(buf[:end + 2])
    m = CONTENT_LENGTH.search(head)
    length = int(m.group(1)) if m else 0
    if len(buf) < end + 4 + length:
        return None
    return int(head.split(b" ", 2)[1]), bytes(buf[end + 4:end + 4 + length])


def drive(sel, conns, deadline, on_response):
    """Runs the selector until no connection is waiting or the deadline."""
    waiting = {c.i for c in conns}
    problems = {}
    while waiting and time.monotonic() < deadline:
        for key, mask in sel.select(timeout=1.0):
            c = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    if not c.connected:
                        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, errno.errorcode.get(err, str(err)))
                        c.connected = True
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                if mask & selectors.EVENT_READ:
                    data = c.sock.recv(65536)
                    if not data:
                        raise EOFError("closed by server")
                    c.inbuf += data
                    parsed = parse_response(c.inbuf)
                    if parsed:
                        c.inbuf.clear()
                        sel.unregister(c.sock)
                        waiting.discard(c.i)
                        on_response(c, *parsed)
            except BlockingIOError:
                continue
            except (OSError, EOFError) as e:
                sel.unregister(c.sock)
                waiting.discard(c.i)
                problems[c.i] = repr(e)
    return waiting, problems


def test_10000_simultaneous_connections_each_put_and_all_keys_are_there(start_server):
    n = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {n + 500}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = []
    sel = selectors.DefaultSelector()
    try:
        s = start_server()  # defaults; inherits the raised limit
        deadline = time.monotonic() + 75
        for i in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((HOST, s.port))
            assert err in (0, errno.EINPROGRESS), f"connect {i}: {errno.errorcode.get(err)}"
            c = Conn(i, sock)
            c.out = b"PUT /kv/conn-%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nvalue-%d" % (
                i, len(b"value-%d" % i), i)
            conns.append(c)
            sel.register(sock, selectors.EVENT_WRITE, c)

        put_status = {}
        waiting, problems = drive(sel, conns, deadline,
                                  lambda c, status, body: put_status.__setitem__(c.i, status))
        assert not problems and not waiting, (
            f"{len(put_status)} PUTs answered, {len(problems)} failed (e.g. {list(problems.items())[:3]}), "
            f"{len(waiting)} unanswered after the deadline")
        not_ok = {i: st for i, st in put_status.items() if st != 200}
        assert not not_ok, f"{len(not_ok)} PUTs not 200, e.g. {list(not_ok.items())[:5]}"

        # Every connection is still open: read each key back over its own one.
        got = {}
        for c in conns:
            c.out = b"GET /kv/conn-%d HTTP/1.1\r\nHost: x\r\n\r\n" % c.i
            sel.register(c.sock, selectors.EVENT_WRITE, c)
        waiting, problems = drive(sel, conns, deadline,
                                  lambda c, status, body: got.__setitem__(c.i, (status, body)))
        assert not problems and not waiting, (
            f"{len(got)} GETs answered, {len(problems)} failed (e.g. {list(problems.items())[:3]}), "
            f"{len(waiting)} unanswered after the deadline")
        wrong = {i: r for i, r in got.items() if r != (200, b"value-%d" % i)}
        assert not wrong, f"{len(wrong)} keys wrong, e.g. {list(wrong.items())[:5]}"
    finally:
        sel.close()
        for c in conns:
            c.sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
