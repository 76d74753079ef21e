"""Injected I/O failures (LD_PRELOAD shim, see faultinject.c).

Contract: a failed log fsync is fatal (the write is never acknowledged, the
server logs why and exits non-zero); a full disk is not (507, reads go on,
the log stays consistent, writes work again once space returns); a failed
checkpoint costs nothing but the checkpoint.
"""
import hashlib
import http.client
import threading
import time

import pytest

import lkvcrash
from lkvcrash import Client, make_value, read_value

NO_SPACE = (507, b"insufficient storage\n")


def fired(srv, call):
    return [l for l in srv.lines if l.startswith(f"faultinject call={call} ")]


def assert_state(srv, model):
    with Client(srv.port) as c:
        for key, value in sorted(model.items()):
            got = read_value(c, key)
            assert got == value, (f"{key}: got {None if got is None else len(got)} bytes, want "
                                  f"{None if value is None else len(value)}\n{srv.tail()}")


def put_all(c, model, prefix, n, size=1000):
    for i in range(n):
        key = f"{prefix}{i}"
        value = make_value(key, size)
        status, body = c.put(key, value)
        assert status == 200, f"PUT {key}: {status} {body!r}"
        model[key] = value


def log_commands(data_dir):
    """(op, key) of every intact record in the log, in log order."""
    out = []
    for seg in lkvcrash.segments(data_dir):
        recs, _ = lkvcrash.walk_segment(seg)
        out += [r.command()[:2] for r in recs if r.type == 1]
    return out


def assert_nothing_after_log_end(data_dir):
    """After the last intact record of the last segment, only zeros (never
    written or preallocated) or the end of the file."""
    seg = lkvcrash.segments(data_dir)[-1]
    _, end = lkvcrash.walk_segment(seg)
    tail = lkvcrash.read_uncached(seg)[end:]
    assert tail.count(0) == len(tail), \
        f"{seg.name}: bytes of refused writes remain after offset {end}"


# ------------------------------------------------------------ fdatasync EIO

def test_fdatasync_eio_fails_the_write_and_stops_the_server(start_server, data_dir, fault_ctl):
    srv = start_server(data_dir, fault_ctl=fault_ctl)
    model = {}
    with Client(srv.port) as c:
        put_all(c, model, "before", 5)
        fault_ctl.write_text("fdatasync EIO\n")
        status, body = c.put("doomed", b"never acknowledged")
        assert status == 500, f"PUT during fdatasync EIO answered {status} {body!r}"
        try:
            status, _ = c.put("doomed2", b"never acknowledged either")
            assert status != 200, "a write was acknowledged after fdatasync failed"
        except (OSError, http.client.HTTPException):
            pass  # already gone
    code = srv.wait_exit(20)
    assert code is not None, f"server still running 20 s after fdatasync failed:\n{srv.tail()}"
    assert code != 0, f"exit code 0 after a fatal fdatasync error:\n{srv.tail()}"
    assert fired(srv, "fdatasync"), "the fault never fired"
    why = [l for l in srv.lines if "level=error" in l and "fdatasync" in l]
    assert why, f"no error line says fdatasync failed:\n{srv.tail()}"

    fault_ctl.unlink()
    srv = start_server(data_dir)
    assert_state(srv, model)


def test_writes_acknowledged_around_fdatasync_eio_survive(start_server, data_dir, fault_ctl):
    srv = start_server(data_dir, fault_ctl=fault_ctl)
    acked, sent, refused = {}, {}, []
    lock = threading.Lock()

    def writer(w):
        with Client(srv.port) as c:
            for i in range(100000):
                key = f"w{w}-{i}"
                value = make_value(key, 2000)
                with lock:
                    sent[key] = value
                try:
                    status, _ = c.put(key, value)
                except (OSError, http.client.HTTPException):
                    return
                if status != 200:
                    with lock:
                        refused.append(status)
                    return
                with lock:
                    acked[key] = value

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    fault_ctl.write_text("fdatasync EIO\n")
    code = srv.wait_exit(20)
    for t in threads:
        t.join(20)
    assert code not in (None, 0), f"exit code {code}:\n{srv.tail()}"
    assert acked, "nothing was acknowledged before the fault"
    assert refused and set(refused) <= {500, 503}, f"refusals: {sorted(set(refused))}"

    fault_ctl.unlink()
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        for key, value in sent.items():
            got = read_value(c, key)
            if key in acked:
                assert got == value, f"acknowledged {key} lost"
            else:
                assert got in (None, value), f"{key}: {len(got)} bytes of something else"


# ------------------------------------------------------------ ENOSPC

@pytest.mark.parametrize("fault", ["pwritev ENOSPC", "pwritev ENOSPC short"])
def test_disk_full_on_log_write_answers_507_and_writes_resume(start_server, data_dir, fault_ctl,
                                                             fault):
    srv = start_server(data_dir, fault_ctl=fault_ctl)
    old_a = make_value("a-old", 3000)
    with Client(srv.port) as c:
        assert c.put("a", old_a)[0] == 200
        assert c.put("b", b"bee")[0] == 200
        fault_ctl.write_text(fault + "\n")
        assert c.put("c", make_value("c", 3000)) == NO_SPACE
        assert c.put("a", make_value("a-new", 5000)) == NO_SPACE
        assert c.delete("b") == NO_SPACE
        assert c.clear() == NO_SPACE
        assert c.get("a") == (200, old_a), "a refused overwrite became visible"
        assert c.get("b") == (200, b"bee"), "a refused delete became visible"
        assert c.get("c")[0] == 404

        # Concurrent writes share batches: a short write covering whole
        # records of a batch must not keep them.
        results = {}

        def put(i):
            with Client(srv.port) as pc:
                results[i] = pc.put(f"par{i}", make_value(f"par{i}", 700 + i))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(r == NO_SPACE for r in results.values()) and len(results) == 16, results

        fault_ctl.unlink()
        assert c.put("d", b"dee")[0] == 200, "writes did not resume once space returned"
        assert c.get("d") == (200, b"dee")
    assert fired(srv, "pwritev"), "the fault never fired"
    if "short" in fault:
        assert any("mode=short" in l for l in fired(srv, "pwritev")), "no short write happened"
    assert srv.proc.poll() is None, "ENOSPC must not stop the server"
    srv.kill9()

    # The log holds exactly the acknowledged writes, and no byte of the
    # refused ones.
    assert log_commands(data_dir) == [(1, "a"), (1, "b"), (1, "d")]
    assert_nothing_after_log_end(data_dir)
    srv = start_server(data_dir)
    assert_state(srv, dict({"a": old_a, "b": b"bee", "c": None, "d": b"dee"},
                           **{f"par{i}": None for i in range(16)}))


def test_disk_full_whose_rollback_fails_stops_the_server(start_server, data_dir, fault_ctl):
    # The refused bytes cannot be cut off: the log is no longer known to be
    # consistent, so this is fatal, like a failed fsync.
    srv = start_server(data_dir, fault_ctl=fault_ctl)
    model = {}
    with Client(srv.port) as c:
        put_all(c, model, "before", 5)
        fault_ctl.write_text("pwritev ENOSPC short\nftruncate EIO\n")
        refused = make_value("refused", 3000)
        status, body = c.put("refused", refused)
        assert status in (500, 507), f"PUT answered {status} {body!r}"
    code = srv.wait_exit(20)
    assert code not in (None, 0), f"exit code {code}:\n{srv.tail()}"
    assert fired(srv, "ftruncate"), "the rollback was never attempted"
    fault_ctl.unlink()
    srv = start_server(data_dir)
    assert_state(srv, model)
    with Client(srv.port) as c:
        assert read_value(c, "refused") in (None, refused)


def test_disk_full_creating_first_segment_answers_507(start_server, data_dir, fault_ctl):
    fault_ctl.write_text("fallocate ENOSPC\n")
    srv = start_server(data_dir, fault_ctl=fault_ctl)
    with Client(srv.port) as c:
        assert c.put("x", b"refused") == NO_SPACE
        assert c.get("x")[0] == 404
        fault_ctl.unlink()
        assert c.put("y", b"accepted")[0] == 200
    assert fired(srv, "fallocate")
    srv.kill9()
    srv = start_server(data_dir)
    assert_state(srv, {"x": None, "y": b"accepted"})


@pytest.mark.parametrize("fault", ["fallocate ENOSPC", "pwrite ENOSPC"])
def test_disk_full_creating_next_segment_answers_507(start_server, data_dir, fault_ctl, fault):
    srv = start_server(data_dir, "--checkpoint-bytes", "16k", fault_ctl=fault_ctl)
    model = {}
    with Client(srv.port) as c:
        # Up to the first checkpoint, which rotates: the next write needs a
        # new segment.
        for i in range(200):
            put_all(c, model, f"k{i}-", 1)
            if srv.wait_line("event=checkpoint_start", 0.05) is not None:
                break
        else:
            pytest.fail(f"no checkpoint started:\n{srv.tail()}")
        fault_ctl.write_text(fault + "\n")
        assert c.put("refused", b"no room") == NO_SPACE
        assert c.get("k0-0") == (200, model["k0-0"])
        fault_ctl.unlink()
        put_all(c, model, "after", 5)
    assert fired(srv, fault.split()[0])
    srv.kill9()
    srv = start_server(data_dir)
    assert_state(srv, dict(model, refused=None))


# ------------------------------------------------------------ failing checkpoints

def wait_checkpoints_idle(srv, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = list(srv.lines)
        starts = sum("event=checkpoint_start" in l for l in lines)
        ends = sum("event=checkpoint_done" in l or
                   ("event=checkpoint_failed" in l and "level=warn" in l) for l in lines)
        if starts == ends:
            return
        time.sleep(0.05)
    pytest.fail(f"a checkpoint is still running after {timeout} s:\n{srv.tail()}")


def sha(path):
    return hashlib.sha256(lkvcrash.read_uncached(path)).hexdigest()


@pytest.mark.parametrize("fault", ["fsync EIO match=snap-", "pwrite ENOSPC match=snap-",
                                   "pwritev ENOSPC match=snap-", "pwritev EIO match=snap-"])
def test_failing_periodic_checkpoint_keeps_serving_and_keeps_the_log(start_server, data_dir,
                                                                     fault_ctl, fault):
    srv = start_server(data_dir, "--checkpoint-bytes", "16k", fault_ctl=fault_ctl)
    model = {}
    with Client(srv.port) as c:
        for i in range(200):
            put_all(c, model, f"k{i}-", 1)
            if srv.wait_line("event=checkpoint_done", 0.05) is not None:
                break
        else:
            pytest.fail(f"no checkpoint completed:\n{srv.tail()}")
        wait_checkpoints_idle(srv)
        snaps = lkvcrash.snapshots(data_dir)
        assert len(snaps) == 1, snaps
        old, old_sha = snaps[0], sha(snaps[0])

        mark = len(srv.lines)
        fault_ctl.write_text(fault + "\n")
        after = {}
        for i in range(300):
            put_all(c, after, f"f{i}-", 1)
            if srv.wait_line("event=checkpoint_failed", 0.05, start=mark) is not None:
                break
        else:
            pytest.fail(f"no checkpoint failed:\n{srv.tail()}")
        put_all(c, after, "more", 20)  # still serving writes
        model.update(after)
        wait_checkpoints_idle(srv)
        for key in ("k0-0", "more19"):
            assert c.get(key) == (200, model[key])
    assert fired(srv, fault.split()[0]), "the fault never fired"
    assert srv.proc.poll() is None, "a failed checkpoint stopped the server"
    assert lkvcrash.snapshots(data_dir) == [old] and sha(old) == old_sha, \
        "the old snapshot was replaced or changed by a failed checkpoint"
    assert not list(data_dir.glob("*.tmp")), "a failed checkpoint left its temp file"
    srv.kill9()

    # The log after the old snapshot was not dropped.
    in_log = {key for op, key in log_commands(data_dir)}
    missing = sorted(set(after) - in_log)
    assert not missing, f"records of {len(missing)} writes are gone from the log: {missing[:5]}"
    srv = start_server(data_dir)
    recovered = srv.wait_line("event=recovered", 5)
    assert f"snapshot_index={int(old.name[5:25])} " in recovered, recovered
    assert_state(srv, model)


def test_failing_checkpoint_at_sigterm_keeps_the_log(start_server, data_dir, fault_ctl):
    model = {}
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        put_all(c, model, "first", 20)
    assert srv.terminate() == 0
    old = lkvcrash.snapshots(data_dir)[0]
    old_sha = sha(old)

    srv = start_server(data_dir, fault_ctl=fault_ctl)
    with Client(srv.port) as c:
        put_all(c, model, "second", 20)
        assert c.delete("first3")[0] == 200
        model["first3"] = None
    fault_ctl.write_text("fsync EIO match=snap-\n")
    srv.terminate()  # exit code: either is defensible, the data is what matters
    assert fired(srv, "fsync"), "the fault never fired"
    assert lkvcrash.snapshots(data_dir) == [old] and sha(old) == old_sha
    assert not list(data_dir.glob("*.tmp"))
    in_log = {key for op, key in log_commands(data_dir)}
    assert {f"second{i}" for i in range(20)} | {"first3"} <= in_log, "the log was dropped"

    fault_ctl.unlink()
    srv = start_server(data_dir)
    assert_state(srv, model)


# ------------------------------------------------------------ read errors at start

@pytest.mark.parametrize("target", ["log-", "snap-"])
def test_read_error_during_recovery_refuses_start_and_deletes_nothing(start_server, data_dir,
                                                                      fault_ctl, target):
    srv = start_server(data_dir)
    model = {}
    with Client(srv.port) as c:
        put_all(c, model, "pre", 5)
    if target == "snap-":
        assert srv.terminate() == 0  # the final checkpoint leaves a snapshot to read
        srv = start_server(data_dir)
        with Client(srv.port) as c:
            put_all(c, model, "post", 5)
    srv.kill9()  # leaves log records to replay
    files = sorted(p.name for p in data_dir.iterdir() if p.name.startswith(target))
    assert files, f"no {target}* file to fail reading"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in data_dir.iterdir() if p.name != "LOCK"}

    fault_ctl.write_text(f"pread EIO match={target}\n")
    failing = lkvcrash.Server(data_dir, fault_ctl=fault_ctl)
    try:
        code = failing.wait_exit(20)
        failing.drain()
        err = failing.stderr_text()
    finally:
        failing.cleanup()
    # An unreadable file must stop recovery with a clear message: starting
    # without it would lose acknowledged writes.
    assert code == 1, f"exit code {code}, want 1:\n{err}"
    assert "faultinject call=pread" in err, "the fault never fired"
    named = [l for l in err.splitlines() if target in l and "faultinject" not in l]
    assert named, f"no line names the {target}* file:\n{err}"
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in data_dir.iterdir() if p.name != "LOCK"}
    assert after == before, "a start refused for a read error changed the directory"

    fault_ctl.unlink()
    assert_state(start_server(data_dir), model)
