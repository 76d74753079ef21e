#!/usr/bin/python3
"""Kill -9 torture: many cycles of concurrent writers on shared keys, SIGKILL at
a random moment, restart, and check every key against what the clients know.

    make torture TORTURE_ARGS="--cycles 300 --kill-during-checkpoint"

What the clients know. The server puts every write in one log order, and
recovery restores a prefix of that order that contains every acknowledged
write. The clients cannot see the order, only real time: a write acknowledged
before another was sent precedes it. So for one key (a CLEAR counts as a
write of "absent" to every key):

  - if some write to it was acknowledged: let T be the latest send time among
    its acknowledged writes. An acknowledged write whose answer came before T
    is certainly followed by the one sent at T, so it cannot be the last. The
    recovered value must be the result of an acknowledged write answered at
    or after T, or of any write that was never answered (it may sit after
    all of them in the log);
  - otherwise: the value at the start of the cycle, or the result of any
    unanswered write.

The check is per key, so it is sound but does not look for a single prefix
explaining all keys at once. Values are derived from (cycle, writer, seq),
so every write's result is distinct and a truncated or misplaced value never
matches. The state verified at the end of a cycle is the next cycle's start.

Exit status 0 when every cycle checked out, 1 otherwise; the last line is a
one-line summary.
"""
import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lkvcrash  # noqa: E402
from lkvcrash import Client, Server, digest, make_value  # noqa: E402

PUT, DELETE, CLEAR = "put", "del", "clear"


class Op:
    __slots__ = ("kind", "key", "dig", "t_send", "t_ack")

    def __init__(self, kind, key, dig):
        self.kind, self.key, self.dig = kind, key, dig
        self.t_send = self.t_ack = None

    def result(self):
        return self.dig if self.kind == PUT else None


class Writer(threading.Thread):
    def __init__(self, wid, cycle, port, keys, rng, args, stop):
        super().__init__(daemon=True)
        self.wid, self.cycle, self.port, self.keys = wid, cycle, port, keys
        self.rng, self.args, self.stop = rng, args, stop
        self.ops = []
        self.errors = []

    def value_size(self):
        # log-uniform over 1 B .. max: every scale is exercised
        return max(1, int(math.exp(self.rng.uniform(0, math.log(self.args.max_value)))))

    def run(self):
        client = Client(self.port)
        try:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                r = self.rng.random()
                key = self.rng.choice(self.keys)
                if r < self.args.clear_rate:
                    op, call = Op(CLEAR, None, None), client.clear
                elif r < self.args.clear_rate + self.args.delete_rate:
                    op, call = Op(DELETE, key, None), lambda k=key: client.delete(k)
                else:
                    value = make_value(f"c{self.cycle}.w{self.wid}.s{seq}", self.value_size())
                    op = Op(PUT, key, digest(value))
                    call = lambda k=key, v=value: client.put(k, v)
                self.ops.append(op)
                op.t_send = time.monotonic()
                try:
                    status, body = call()
                except (OSError, http.client.HTTPException):
                    return  # the server is gone: op stays unanswered
                if status != 200:
                    self.errors.append(f"{op.kind} {op.key}: {status} {body[:80]!r}")
                    return
                op.t_ack = time.monotonic()
        finally:
            client.close()


def candidates(initial, ops):
    """Digests (None = absent) the key may hold after recovery; ops are the
    writes that affect it (its PUT/DELETEs and every CLEAR)."""
    acked = [o for o in ops if o.t_ack is not None]
    out = {o.result() for o in ops if o.t_ack is None}
    if acked:
        latest_send = max(o.t_send for o in acked)
        out |= {o.result() for o in acked if o.t_ack >= latest_send}
    else:
        out.add(initial)
    return out


class Torture:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.keys = [f"key{i:04d}" for i in range(args.keys)]
        self.state = {k: None for k in self.keys}
        self.base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lkv-torture-"))
        self.data_dir = self.base / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server_args = []
        if args.kill_during_checkpoint:
            self.server_args += ["--checkpoint-bytes", args.checkpoint_bytes]
        self.totals = dict(cycles=0, ops=0, acknowledged=0, verified_keys=0, failures=0,
                           kills_in_checkpoint=0, garbage_tails=0, fresh_starts=0)

    def fail(self, cycle, msg):
        self.totals["failures"] += 1
        print(f"FAIL cycle={cycle}: {msg}", flush=True)

    def start(self, cycle):
        srv = Server(self.data_dir, self.server_args)
        try:
            srv.wait_ready()
        except AssertionError as e:
            srv.cleanup()
            self.fail(cycle, f"server did not start: {e}")
            return self.start_over(cycle)
        return srv

    def start_over(self, cycle):
        """With --keep-going, sets the directory the server refused aside
        and goes on from an empty one; otherwise ends the run."""
        if not self.args.keep_going:
            return None
        broken = self.base / f"data.refused-cycle{cycle}"
        self.data_dir.rename(broken)
        print(f"  kept {broken}; starting over from an empty directory", flush=True)
        self.data_dir.mkdir()
        self.state = {k: None for k in self.keys}
        self.totals["fresh_starts"] += 1
        srv = Server(self.data_dir, self.server_args)
        try:
            return srv.wait_ready()
        except AssertionError as e:
            srv.cleanup()
            self.fail(cycle, f"server did not start on an empty directory: {e}")
            return None

    def kill(self, srv, cycle):
        """Kills at a random moment, or right after a checkpoint starts.
        Returns True when a checkpoint was running at the kill."""
        killed = threading.Event()
        if self.args.kill_during_checkpoint:
            armed = threading.Event()

            def on_line(line):
                if armed.is_set() and "event=checkpoint_start" in line and not killed.is_set():
                    os.kill(srv.pid, signal.SIGKILL)
                    killed.set()
            srv.on_line.append(on_line)
            time.sleep(self.rng.uniform(0.1, 1.0))
            armed.set()
            killed.wait(5.0)
        else:
            time.sleep(self.rng.uniform(0.05, 1.5))
        if not killed.is_set():
            os.kill(srv.pid, signal.SIGKILL)
        try:
            srv.kill9()
        except AssertionError as e:
            self.fail(cycle, str(e))
        running = False
        for line in srv.lines:
            if "event=checkpoint_start" in line:
                running = True
            elif "event=checkpoint_done" in line or "event=checkpoint_failed" in line:
                running = False
        return running

    def add_garbage_tail(self):
        """Appends random bytes after the last record of the last segment;
        returns True if it did."""
        segs = lkvcrash.segments(self.data_dir)
        if not segs:
            return False
        with open(segs[-1], "rb") as f:
            magic = f.read(8)
        if magic != lkvcrash.SEG_MAGIC:
            return False  # a segment whose creation the kill cut short
        _, end = lkvcrash.walk_segment(segs[-1], check_crc=False)
        garbage = lkvcrash.random_garbage(self.rng, self.rng.randint(1, 4096))
        lkvcrash.write_at(segs[-1], end, garbage)
        return True

    def verify(self, srv, cycle, writers):
        per_key = {k: [] for k in self.keys}
        clears = []
        for w in writers:
            for o in w.ops:
                (clears if o.kind == CLEAR else per_key[o.key]).append(o)
        bad = 0
        present = 0
        with Client(srv.port) as c:
            for key in self.keys:
                allowed = candidates(self.state[key], per_key[key] + clears)
                try:
                    got = lkvcrash.read_value(c, key)
                except (AssertionError, OSError, http.client.HTTPException) as e:
                    self.fail(cycle, f"GET {key}: {e}")
                    return
                d = digest(got)
                self.totals["verified_keys"] += 1
                if d not in allowed:
                    bad += 1
                    if bad <= 10:
                        self.fail(cycle, f"{key}: recovered "
                                  f"{'absent' if got is None else f'{len(got)} bytes {d[:12]}'}"
                                  f", allowed {sorted(str(a)[:12] for a in allowed)}")
                    else:
                        self.totals["failures"] += 1
                self.state[key] = d
                present += got is not None
            status, body = c.request("GET", "/stats")
        if status == 200 and json.loads(body)["keys"] != present:
            self.fail(cycle, f"/stats counts {json.loads(body)['keys']} keys, "
                      f"the key pool accounts for {present}")

    def cycle(self, n):
        srv = self.start(n)
        if srv is None:
            return False
        stop = threading.Event()
        writers = [Writer(w, n, srv.port, self.keys, random.Random(self.rng.random()), self.args,
                          stop) for w in range(self.args.writers)]
        for w in writers:
            w.start()
        in_checkpoint = self.kill(srv, n)
        stop.set()
        for w in writers:
            w.join(60)
            if w.is_alive():
                self.fail(n, f"writer {w.wid} hung after the kill")
                return False
        for w in writers:
            for e in w.errors:
                self.fail(n, f"refused before the kill: {e}")
        self.totals["cycles"] += 1
        self.totals["ops"] += sum(len(w.ops) for w in writers)
        self.totals["acknowledged"] += sum(o.t_ack is not None for w in writers for o in w.ops)
        self.totals["kills_in_checkpoint"] += in_checkpoint

        garbage = self.args.garbage_tail and self.add_garbage_tail()
        starts_before = self.totals["fresh_starts"]
        self.totals["garbage_tails"] += garbage
        srv = self.start(n)
        if srv is None:
            return False
        if self.totals["fresh_starts"] > starts_before:
            return True  # the state this cycle produced is gone; nothing to verify
        try:
            if garbage and srv.wait_line("event=torn_", 2) is None:
                self.fail(n, "garbage after the log end was not reported as a torn tail")
            self.verify(srv, n, writers)
        finally:
            srv.kill9()
        return True

    def run(self):
        t0 = time.monotonic()
        print(f"torture: seed={self.args.seed} dir={self.base} writers={self.args.writers} "
              f"keys={self.args.keys} max_value={self.args.max_value} "
              f"kill_during_checkpoint={self.args.kill_during_checkpoint} "
              f"garbage_tail={self.args.garbage_tail}", flush=True)
        for n in range(self.args.cycles):
            if not self.cycle(n):
                break
            if self.args.progress and (n + 1) % self.args.progress == 0:
                print(f"  cycle {n + 1}: " + " ".join(f"{k}={v}" for k, v in self.totals.items()),
                      flush=True)
        t = self.totals
        ok = t["failures"] == 0 and t["cycles"] == self.args.cycles
        if not ok and t["cycles"] < self.args.cycles:
            t["failures"] = max(t["failures"], 1)
        print("torture: " + " ".join(f"{k}={v}" for k, v in t.items()) +
              f" seconds={time.monotonic() - t0:.0f} result={'ok' if ok else 'FAILED'}",
              flush=True)
        if ok and not self.args.keep and not self.args.dir:
            shutil.rmtree(self.base, ignore_errors=True)
        elif not ok:
            print(f"torture: data kept in {self.data_dir}", flush=True)
        return 0 if ok else 1


def size_arg(s):
    mult = {"k": 1 << 10, "m": 1 << 20}.get(s[-1:].lower(), 1)
    return int(s[:-1] if mult > 1 else s) * mult


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--writers", type=int, default=32)
    p.add_argument("--keys", type=int, default=128, help="size of the shared key pool")
    p.add_argument("--max-value", type=size_arg, default=1 << 20)
    p.add_argument("--delete-rate", type=float, default=0.2)
    p.add_argument("--clear-rate", type=float, default=0.001)
    p.add_argument("--kill-during-checkpoint", action="store_true",
                   help="small --checkpoint-bytes, kill right after a checkpoint starts")
    p.add_argument("--checkpoint-bytes", default="256k")
    p.add_argument("--garbage-tail", action="store_true",
                   help="append random bytes after the log end before each restart")
    p.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    p.add_argument("--dir", help="work directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--keep-going", action="store_true",
                   help="when the server refuses to start, set the directory aside, count a "
                        "failure and go on from an empty one")
    p.add_argument("--progress", type=int, default=10, help="print totals every N cycles")
    args = p.parse_args()
    if not os.access(lkvcrash.LKV_BIN, os.X_OK):
        sys.exit(f"torture: {lkvcrash.LKV_BIN} is not executable (make, or set LKV_BIN)")
    sys.exit(Torture(args).run())


if __name__ == "__main__":
    main()
