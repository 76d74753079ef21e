"""Checkpoints are taken while writes go on (fuzzy snapshots): writes that
land while one is being walked, and a clear in the middle of one, must all
be there after a kill -9 that recovers from that snapshot plus the log."""
import re
import threading

import lkvcrash
from lkvcrash import Client, make_value, read_value

KEYS = 600
VALUE_SIZE = 32 * 1024  # about 20 MB in all: a checkpoint takes a while


def preload(srv, model):
    with Client(srv.port) as c:
        for i in range(KEYS):
            value = make_value(f"pre{i}", VALUE_SIZE)
            assert c.put(f"k{i}", value)[0] == 200
            model[f"k{i}"] = value


def count_events(srv, event, start):
    return sum(f"event={event} " in line for line in srv.lines[start:])


def checkpoint_running(srv):
    """True when the newest checkpoint event logged is a start. (Counting
    starts and ends after a mark is off by one for good when a checkpoint
    of the preload is still running at the mark.)"""
    for line in reversed(srv.lines):
        if "event=checkpoint_start " in line:
            return True
        if "event=checkpoint_done " in line or "event=checkpoint_failed " in line:
            return False
    return False


def assert_state(srv, model):
    with Client(srv.port) as c:
        for key, value in sorted(model.items()):
            assert read_value(c, key) == value, f"{key} after recovery"


def test_writes_during_a_checkpoint_survive_a_kill9_after_it(start_server, data_dir, rng):
    srv = start_server(data_dir, "--checkpoint-bytes", "4m")
    model = {}
    preload(srv, model)
    mark = len(srv.lines)
    during = 0  # writes acknowledged while a checkpoint was running
    with Client(srv.port) as c:
        for i in range(20000):
            key = f"k{rng.randrange(KEYS)}"
            running = checkpoint_running(srv)
            if rng.random() < 0.2:
                assert c.delete(key)[0] == 200
                model[key] = None
            else:
                value = make_value(f"{key}@{i}", rng.choice([10, 1000, VALUE_SIZE]))
                assert c.put(key, value)[0] == 200
                model[key] = value
            if running:
                during += 1
            if during > 50 and count_events(srv, "checkpoint_done", mark) >= 2:
                break
    assert during > 50, f"only {during} writes overlapped a checkpoint:\n{srv.tail()}"
    done = [l for l in srv.lines[mark:] if "event=checkpoint_done" in l]
    assert len(done) >= 2, srv.tail()
    srv.kill9()

    srv = start_server(data_dir)
    recovered = srv.wait_line("event=recovered", 5)
    snap = int(re.search(r"snapshot_index=(\d+)", recovered).group(1))
    assert snap > 0, recovered
    assert_state(srv, model)


def test_a_clear_during_a_checkpoint_abandons_it_and_loses_nothing(start_server, data_dir):
    srv = start_server(data_dir, "--checkpoint-bytes", "4m")
    model = {}
    preload(srv, model)
    abandoned = False
    with Client(srv.port) as c:
        for attempt in range(5):
            mark = len(srv.lines)
            # Grow the log past the threshold so that a checkpoint starts,
            # then clear while it is being walked.
            started = threading.Event()
            srv.on_line.append(lambda l: "event=checkpoint_start" in l and started.set())
            i = 0
            while not started.is_set():
                key = f"k{i % KEYS}"
                value = make_value(f"{key}#{attempt}.{i}", VALUE_SIZE)
                assert c.put(key, value)[0] == 200
                model[key] = value
                i += 1
            assert c.clear()[0] == 200
            model = {k: None for k in model}
            for j in range(20):
                value = make_value(f"after{attempt}.{j}", 100)
                assert c.put(f"a{attempt}-{j}", value)[0] == 200
                model[f"a{attempt}-{j}"] = value
            if srv.wait_line("the map was cleared during the walk", 5, start=mark):
                abandoned = True
                break
    assert abandoned, f"no clear landed during a checkpoint in 5 tries:\n{srv.tail()}"
    # The next checkpoint starts at once and completes.
    after = srv.lines.index(next(l for l in srv.lines[mark:]
                                 if "the map was cleared during the walk" in l))
    assert srv.wait_line("event=checkpoint_done", 20, start=after) is not None, srv.tail()
    assert not list(data_dir.glob("*.tmp"))
    srv.kill9()

    srv = start_server(data_dir)
    assert srv.wait_line("event=recovered", 5) is not None
    assert_state(srv, model)
    snaps = lkvcrash.snapshots(data_dir)
    assert len(snaps) == 1, snaps
