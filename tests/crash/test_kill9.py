"""SIGKILL under load: every acknowledged write survives, nothing else appears.

32 writers each own 8 keys and run PUT/DELETE on them one at a time over a
keep-alive connection, so each key's history is a simple sequence: after a
kill, a key holds the state of its writer's last acknowledged op on it, or
the state of the one op that was in flight when the kill hit. Anything else
(an older value, a neighbour's value, a truncated value, a resurrected
delete) is a lost or invented write.
"""
import os
import random
import signal
import threading
import time

from lkvcrash import OwnedKeysWriter, check_owned_keys

WRITERS = 32
KEYS_PER_WRITER = 8
CYCLES = 8


def run_kill_cycles(start_server, data_dir, rng, args=(), kill_on_checkpoint=False):
    """Runs CYCLES load+SIGKILL+restart+check rounds. Returns
    (acknowledged ops, kills that landed while a checkpoint ran)."""
    models = [{f"w{w:02d}-k{j}": None for j in range(KEYS_PER_WRITER)} for w in range(WRITERS)]
    total_acks = 0
    kills_in_checkpoint = 0
    for cycle in range(CYCLES):
        srv = start_server(data_dir, *args)
        stop = threading.Event()
        writers = [OwnedKeysWriter(w, srv.port, models[w],
                                   random.Random(rng.random()), stop, cycle)
                   for w in range(WRITERS)]
        killed = threading.Event()
        if kill_on_checkpoint:
            armed = threading.Event()

            def kill_at_checkpoint(line, srv=srv, armed=armed, killed=killed):
                if armed.is_set() and "event=checkpoint_start" in line and not killed.is_set():
                    os.kill(srv.pid, signal.SIGKILL)
                    killed.set()
            srv.on_line.append(kill_at_checkpoint)
        for w in writers:
            w.start()
        if kill_on_checkpoint:
            time.sleep(rng.uniform(0.2, 1.0))
            armed.set()
            killed.wait(5.0)  # no checkpoint in 5 s: kill anyway, counted as outside
        else:
            time.sleep(rng.uniform(0.2, 1.5))
        if not killed.is_set():
            os.kill(srv.pid, signal.SIGKILL)
        srv.kill9()
        stop.set()
        for w in writers:
            w.join(30)
            assert not w.is_alive(), f"writer {w.wid} hung after the kill"
        errors = [e for w in writers for e in w.errors]
        assert not errors, f"cycle {cycle}: writes refused before the kill: {errors[:5]}"
        total_acks += sum(w.acks for w in writers)

        # Was a checkpoint running when the kill hit? stderr is complete now.
        running = False
        for line in srv.lines:
            if "event=checkpoint_start" in line:
                running = True
            elif "event=checkpoint_done" in line or "event=checkpoint_failed" in line:
                running = False
        kills_in_checkpoint += running

        srv = start_server(data_dir, *args)
        failures = check_owned_keys(srv.port, writers)
        assert not failures, (f"cycle {cycle}: {len(failures)} keys wrong after SIGKILL and "
                              f"restart:\n" + "\n".join(failures[:20]) +
                              f"\nserver log:\n{srv.tail()}")
        srv.kill9()
    print(f"acks={total_acks} kills_in_checkpoint={kills_in_checkpoint}")
    return total_acks, kills_in_checkpoint


def test_acknowledged_writes_survive_kill9_under_load(start_server, data_dir, rng):
    acks, _ = run_kill_cycles(start_server, data_dir, rng)
    # A run where nothing was acknowledged checked nothing.
    assert acks >= CYCLES * WRITERS, f"only {acks} writes acknowledged in {CYCLES} cycles"


def test_acknowledged_writes_survive_kill9_during_checkpoints(start_server, data_dir, rng):
    acks, during = run_kill_cycles(start_server, data_dir, rng,
                                   args=("--checkpoint-bytes", "256k"), kill_on_checkpoint=True)
    assert acks >= CYCLES * WRITERS, f"only {acks} writes acknowledged in {CYCLES} cycles"
    assert during >= 1, "no kill landed while a checkpoint was running: the test proved nothing"
    # No snapshot left half-written under its final name, no temp file kept.
    assert not list(data_dir.glob("*.tmp")), sorted(os.listdir(data_dir))
