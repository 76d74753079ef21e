#!/usr/bin/python3
"""failover.py: how long a 3-node cluster is without a leader after kill -9.

`make bench-failover` (root: the nodes live in network namespaces, as in
tests/cluster). One cluster of the real binary; KILLS times over: wait
until every node is up and agrees on the leader, start a client writing
without pause (each PUT to a node chosen at random, redirects followed),
kill -9 the leader, and note

  election   the new leader's own figure: duration_ms of its
             event=election_won (from its first campaign of that term's
             election to winning it);
  leader     kill -9 until a surviving node reports itself leader in
             /cluster/info (polled every 5 ms);
  write      kill -9 until the first PUT sent after the kill is answered 200
             (what a client sees).

then restart the killed node and let it catch up before the next round.
Medians and worst cases go to stdout and bench/out/failover-<stamp>.json.
The election timeout is the default (500 ms: each drawn from [500, 1000)).
Every loop is bounded in rounds and time; nothing leaves the namespaces.
"""

import argparse
import datetime
import json
import os
import random
import re
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
from cluster import Cluster, RequestError, wait_for  # noqa: E402

WON = re.compile(rb"event=election_won term=(\d+) voters=\d+ duration_ms=(\d+)")


class Writer:
    """PUTs back to back from one thread; remembers when each 200 came and
    when its request was sent."""

    def __init__(self, c):
        self.c = c
        self.acks = []          # (sent, answered) monotonic seconds
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        rng = random.Random(7)
        k = 0
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            node = rng.choice([i for i in range(self.c.n) if self.c.running(i)] or [0])
            sent = time.monotonic()
            try:
                r = self.c.request(node, "PUT", f"/kv/f{k % 1000}", b"v", timeout=2)
                ok = r.status == 200
            except RequestError:
                ok = False
            if ok:
                with self.lock:
                    self.acks.append((sent, time.monotonic()))
            else:
                time.sleep(0.002)
            k += 1

    def first_ack_sent_after(self, t, timeout=30):
        def found():
            with self.lock:
                xs = [a for s, a in self.acks if s >= t]
            return min(xs) if xs else None
        return wait_for(found, timeout, "a write acknowledged after the kill", interval=0.005)

    def close(self):
        self.stop.set()
        self.thread.join(10)


def won_events(c, i):
    return WON.findall(c.log_path(i).read_bytes())


def one_kill(c, w, rnd):
    leader = c.wait_leader(timeout=30)
    info = c.info(leader)
    # every node caught up before the kill, so that any of them may win
    wait_for(lambda: all((c.info(j) or {}).get("commitIndex", -1) >= info["commitIndex"]
                         for j in range(c.n)), 30, "every node caught up")
    term = info["term"]
    before = {j: len(won_events(c, j)) for j in range(c.n)}
    t_kill = time.monotonic()
    c.kill9(leader)
    others = [j for j in range(c.n) if j != leader]

    def new_leader():
        for j in others:
            inf = c.info(j, timeout=0.5)
            if inf and inf.get("role") == "leader" and inf.get("term", 0) > term:
                return (j,)
        return None
    nl = wait_for(new_leader, 30, "a new leader", interval=0.005)[0]
    t_leader = time.monotonic()
    t_write = w.first_ack_sent_after(t_kill)
    # the winner's own figure, for the term it won
    ev = won_events(c, nl)[before[nl]:]
    election_ms = int(ev[-1][1]) if ev else None
    c.start(leader)
    c.wait_ready(leader, 30)
    r = {"round": rnd, "killed": leader, "new_leader": nl, "old_term": term,
         "election_ms": election_ms, "leader_ms": round((t_leader - t_kill) * 1000, 1),
         "write_ms": round((t_write - t_kill) * 1000, 1)}
    print(f"[failover] round {rnd + 1}: killed node {leader}, node {nl} leads; "
          f"election {election_ms} ms, leader after {r['leader_ms']} ms, "
          f"first write after {r['write_ms']} ms", file=sys.stderr, flush=True)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=int(os.environ.get("BENCH_KILLS", "20")))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("failover: needs root (network namespaces)")
    t0 = time.monotonic()
    rounds = []
    c = Cluster(3)
    w = None
    try:
        c.start_all()
        c.wait_all_ready(30)
        c.wait_leader(timeout=30)
        w = Writer(c)
        for rnd in range(args.kills):
            rounds.append(one_kill(c, w, rnd))
    finally:
        if w:
            w.close()
        c.cleanup()

    def stats(key):
        xs = [r[key] for r in rounds if r[key] is not None]
        return {"median": statistics.median(xs), "worst": max(xs), "best": min(xs),
                "n": len(xs)} if xs else None
    summary = {k: stats(k) for k in ("election_ms", "leader_ms", "write_ms")}
    wall = round(time.monotonic() - t0, 1)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"failover-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"kills": args.kills, "rounds": rounds, "summary": summary,
                   "wall_seconds": wall}, f, indent=1)
    print(f"{args.kills} kill -9 of the leader of 3 nodes (election timeout 500 ms):")
    print("| measure | median ms | worst ms | best ms |")
    print("|---|---|---|---|")
    names = {"election_ms": "election (winner's duration_ms)",
             "leader_ms": "kill to new leader in /cluster/info",
             "write_ms": "kill to first acknowledged write"}
    for k, s in summary.items():
        if s:
            print(f"| {names[k]} | {s['median']} | {s['worst']} | {s['best']} |")
    print(f"\nwall time {wall:.0f} s; raw numbers in {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
