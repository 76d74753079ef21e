"""SIGTERM: a clean stop checkpoints, drops the log and exits 0; the next start
loads the snapshot and has everything."""
import os
import random
import signal
import struct
import threading
import time

import lkvcrash
from lkvcrash import Client, OwnedKeysWriter, check_owned_keys, make_value, read_value


def test_sigterm_restart_keeps_every_write_and_leaves_only_a_snapshot(start_server, data_dir,
                                                                      rng):
    model = {}
    last_snap_index = 0
    for rnd in range(3):
        srv = start_server(data_dir)
        with Client(srv.port) as c:
            for i in range(150):
                key = f"k{rng.randrange(200)}"
                if rng.random() < 0.2:
                    assert c.delete(key)[0] == 200
                    model[key] = None
                else:
                    value = make_value(f"{key}@{rnd}.{i}", rng.choice([1, 7, 4096, 65536]))
                    assert c.put(key, value)[0] == 200
                    model[key] = value
            if rnd == 2:
                assert c.clear()[0] == 200
                model = {k: None for k in model}
                key = "after-clear"
                assert c.put(key, b"x")[0] == 200
                model[key] = b"x"
        t0 = time.monotonic()
        code = srv.terminate()
        took = time.monotonic() - t0
        assert code == 0, f"round {rnd}: exit code {code} after SIGTERM\n{srv.tail()}"
        assert took < 15, f"round {rnd}: SIGTERM took {took:.1f} s"

        snaps = lkvcrash.snapshots(data_dir)
        assert len(snaps) == 1, f"round {rnd}: snapshots after a clean stop: {snaps}"
        index = int(snaps[0].name[5:25])
        assert index > last_snap_index, f"round {rnd}: snapshot {snaps[0].name} is not newer"
        header = snaps[0].read_bytes()[:lkvcrash.SNAP_HDR]
        assert struct.unpack_from("<Q", header, 16)[0] == index, "snapshot header index != name"
        last_snap_index = index
        # Everything is in the snapshot: no log record may be left behind.
        for seg in lkvcrash.segments(data_dir):
            recs, _ = lkvcrash.walk_segment(seg)
            assert not recs, f"round {rnd}: {seg.name} still holds {len(recs)} records"
        assert not list(data_dir.glob("*.tmp"))

        srv = start_server(data_dir)
        assert srv.wait_line("event=recovered", 5) is not None
        assert f"snapshot_index={index} replayed=0" in srv.wait_line("event=recovered", 5), \
            srv.tail()
        with Client(srv.port) as c:
            for key, value in sorted(model.items()):
                got = read_value(c, key)
                assert got == value, (f"round {rnd}: {key}: got "
                                      f"{None if got is None else len(got)} bytes, want "
                                      f"{None if value is None else len(value)}")
        assert srv.terminate() == 0


def start_owned_writers(srv, models, rng, stop, cycle):
    writers = [OwnedKeysWriter(w, srv.port, models[w], random.Random(rng.random()), stop, cycle,
                               tolerate=(503,))
               for w in range(len(models))]
    for w in writers:
        w.start()
    return writers


def join_writers(writers):
    for w in writers:
        w.join(30)
        assert not w.is_alive(), f"writer {w.wid} hung"
    errors = [e for w in writers for e in w.errors]
    assert not errors, f"writes failed: {errors[:5]}"
    return sum(w.acks for w in writers)


def test_sigterm_under_load_keeps_every_acknowledged_write(start_server, data_dir, rng):
    # In-flight writes finish or are refused with 503; whatever got 200 is
    # in the final snapshot.
    models = [{f"w{w:02d}-k{j}": None for j in range(8)} for w in range(16)]
    acks = 0
    for cycle in range(3):
        srv = start_server(data_dir)
        stop = threading.Event()
        writers = start_owned_writers(srv, models, rng, stop, cycle)
        time.sleep(rng.uniform(0.3, 1.0))
        code = srv.terminate()
        stop.set()
        acks += join_writers(writers)
        assert code == 0, f"cycle {cycle}: exit code {code} after SIGTERM:\n{srv.tail()}"
        srv = start_server(data_dir)
        failures = check_owned_keys(srv.port, writers)
        assert not failures, \
            f"cycle {cycle}: after SIGTERM and restart:\n" + "\n".join(failures[:20])
        assert srv.terminate() == 0
    assert acks > 0


def test_second_sigterm_exits_at_once_and_loses_nothing(start_server, data_dir, rng):
    models = [{f"w{w:02d}-k{j}": None for j in range(8)} for w in range(16)]
    for cycle in range(3):
        srv = start_server(data_dir)
        stop = threading.Event()
        writers = start_owned_writers(srv, models, rng, stop, cycle)
        time.sleep(rng.uniform(0.3, 1.0))
        os.kill(srv.pid, signal.SIGTERM)
        time.sleep(rng.uniform(0, 0.05))
        if srv.proc.poll() is None:
            os.kill(srv.pid, signal.SIGTERM)
        code = srv.wait_exit(10)
        stop.set()
        assert code is not None, f"cycle {cycle}: still running 10 s after a second SIGTERM"
        join_writers(writers)
        srv = start_server(data_dir)
        failures = check_owned_keys(srv.port, writers)
        assert not failures, f"cycle {cycle}: after two SIGTERMs and restart:\n" + \
            "\n".join(failures[:20])
        srv.kill9()
