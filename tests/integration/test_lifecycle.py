"""Start, stop and restart: signals, in-flight requests at shutdown, the data
directory lock, restarting on the same port and directory."""
import signal
import time

from conftest import free_port, port_accepts, run_binary, stderr_lines


def test_sigterm_exits_0_and_stops_listening(server):
    assert server.put("k", "v").status == 200
    assert server.stop(signal.SIGTERM) == 0
    assert not port_accepts(server.port)


def test_sigint_exits_0(server):
    assert server.put("k", "v").status == 200
    assert server.stop(signal.SIGINT) == 0


def test_sigterm_lets_an_in_flight_request_finish(server):
    body = b"0123456789" * 100
    with server.raw() as c:
        c.send(b"PUT /kv/inflight HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
               + body[:500])
        time.sleep(0.2)  # the server has the request's head before the signal
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # and sees the signal before the rest of the body
        assert server.running, "server exited with a request in flight"
        c.send(body[500:])
        r = c.read_response()
        assert r.status == 200, r
    assert server.wait_exit() == 0


def test_sigterm_lets_several_in_flight_writes_finish(server):
    conns = [server.raw() for _ in range(5)]
    try:
        for i, c in enumerate(conns):
            c.send(b"PUT /kv/k%d HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234" % i)
        time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for c in conns:
            c.send(b"56789")
        for i, c in enumerate(conns):
            assert c.read_response().status == 200, i
    finally:
        for c in conns:
            c.close()
    assert server.wait_exit() == 0


def test_no_new_requests_are_served_after_sigterm(server):
    with server.raw() as c:
        # Keep the server in its shutdown phase with an unfinished request.
        c.send(b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        served = False
        try:
            r = server.request("GET", "/health", timeout=2)
            served = r.status == 200
        except (OSError, EOFError):
            pass
        assert not served, "a new connection was served after SIGTERM"
        c.send(b"56789")
        assert c.read_response().status == 200
    assert server.wait_exit() == 0


def test_idle_keep_alive_connection_does_not_delay_shutdown(server):
    with server.raw() as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
        server.send_signal(signal.SIGTERM)
        # lc waits 15 s, clstr 5 s: an idle connection must not hold shutdown.
        assert server.wait_exit(timeout=5) == 0


def test_stuck_request_is_abandoned_after_shutdown_timeout(start_server):
    s = start_server(args=["--shutdown-timeout", "1", "--request-timeout", "60"])
    with s.raw() as c:
        c.send(b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nnever finished")
        time.sleep(0.2)
        s.send_signal(signal.SIGTERM)
        assert s.wait_exit(timeout=10) == 0


def test_second_signal_exits_at_once(start_server):
    s = start_server(args=["--shutdown-timeout", "60", "--request-timeout", "60"])
    s.expect_clean_exit = False
    with s.raw() as c:
        c.send(b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nnever finished")
        time.sleep(0.2)
        s.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert s.running, "exited before the in-flight request or its timeout"
        s.send_signal(signal.SIGTERM)
        s.wait_exit(timeout=5)


def test_restart_on_the_same_port_and_directory(server):
    for i in range(20):  # leaves connections in TIME_WAIT on the server's port
        assert server.put(f"k{i}", "v").status == 200
    server.restart()
    assert server.request("GET", "/health").status == 200
    assert server.put("again", "v").status == 200


def test_restart_after_sigkill_on_the_same_directory(server):
    assert server.put("k", "v").status == 200
    server.kill()
    server.start()  # the lock died with the process
    assert server.put("k2", "v").status == 200


def test_second_server_on_the_same_directory_exits_1_and_the_first_keeps_serving(server):
    assert server.put("k", "first").status == 200
    r = run_binary(["--port", str(free_port()), "--working-dir", str(server.data_dir)])
    assert r.returncode == 1, f"exit {r.returncode}; stderr:\n{r.stderr}"
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert str(server.data_dir) in lines[0], lines[0]
    assert "lock" in lines[0].lower() or "in use" in lines[0].lower(), lines[0]
    assert server.get("k").body == b"first"
    assert server.put("k", "still serving").status == 200
    assert server.get("k").body == b"still serving"
