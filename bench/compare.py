#!/usr/bin/python3
"""compare.py: this build against an earlier one, and against itself.

`make bench-compare` (bench/run.sh --compare). Three single-node servers
are measured in one sitting: "base" (built from an earlier commit in a git
worktree of its own), "new" (build/little-key-value) and "again" (the same
binary as "new", measured as if it were another build). Every round starts
the three fresh, each in its own data directory, preloads the GET keys, and
runs PUT c1, PUT c64 and GET c64 with wrk, each workload on the three back
to back, in an order rotated by round and workload, so that the shared
machine's noise lands on all alike.

Reported, as medians over the rounds: throughput, and the server's CPU per
request (user + system time of the server process over the run, divided by
the requests answered), for each build; then the ratios new/base and
again/new. again/new is what the same build does against itself: the noise
a new/base ratio has to be read against. Throughput on this machine swings
by about 20% between runs; CPU per request is steadier.

Only 127.0.0.1 is contacted. Standard library only; uses bench.py's helpers.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (its helpers: Server, run_wrk, wrk_env, lkv_load ...)
from bench import BenchError, Server, log, med  # noqa: E402

WORKLOADS = [("put", 1), ("put", 64), ("get", 64)]
BUILDS = ["base", "new", "again"]


def build_base(rev, tmp):
    """Checks rev out into a worktree under tmp and builds its server there.
    Returns (binary path, the commit it resolved to)."""
    commit = subprocess.run(["git", "-C", bench.ROOT, "rev-parse", "--verify", rev + "^{commit}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    tree = os.path.join(tmp, "base-src")
    subprocess.run(["git", "-C", bench.ROOT, "worktree", "add", "--detach", "-q", tree, commit],
                   check=True)
    log(f"building base {commit[:12]} in {tree}")
    subprocess.run(["make", "-C", tree, "--no-print-directory", "-s", "build/little-key-value"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(tree, "build", "little-key-value"), commit


def remove_base(tmp):
    tree = os.path.join(tmp, "base-src")
    if os.path.isdir(tree):
        subprocess.run(["git", "-C", bench.ROOT, "worktree", "remove", "--force", tree],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_round(r, bins, cfg, runs):
    """All three servers fresh and preloaded; then each workload on each of
    them back to back, in an order rotated by round and by workload, so that
    no build is always measured first or always next to the same one."""
    live = {}
    try:
        for b in BUILDS:
            srv, port, _ = bench.lkv_start(os.path.join(bench.ARGS.tmp, f"r{r}-{b}"),
                                           name=b, binary=bins[b])
            live[b] = (srv, port)
            secs, done, got = bench.lkv_load(port, "g", cfg["preload"], 300)
            if not done:
                raise BenchError(f"{b}: preload stopped at {got} of {cfg['preload']} keys")
        out = {b: {} for b in BUILDS}
        for w, (wl, conns) in enumerate(WORKLOADS):
            k = (r + w) % len(BUILDS)
            for b in BUILDS[k:] + BUILDS[:k]:
                srv, port = live[b]
                if wl == "get":
                    env = bench.wrk_env("lkv-get", prefix="g", keys=cfg["preload"])
                else:
                    env = bench.wrk_env("lkv-put", fresh_prefix=f"P{conns:04d}_")
                res = bench.run_wrk(port, conns, cfg["seconds"], env, [srv])
                cores = res["cpu"]["server"]
                res["cpu_us_per_req"] = round(cores / res["rps"] * 1e6, 2) if res["rps"] else None
                out[b][f"{wl}_c{conns}"] = res
                log(f"round {r + 1} {wl} c{conns} {b:5s}: {res['rps']:.0f} req/s, "
                    f"{res['cpu_us_per_req']} us CPU/req, {res['errors']} errors")
        for b in BUILDS:
            runs[b].append(out[b])
    finally:
        for srv, _ in live.values():
            srv.stop()


def ratio(a, b):
    r = bench.ratio(a, b)
    return None if r is None else round(r, 3)


def summarize(runs):
    s = {}
    for wl, conns in WORKLOADS:
        key = f"{wl}_c{conns}"
        row = {}
        for b in BUILDS:
            rs = [x[key] for x in runs[b]]
            row[b] = {"rps": med([x["rps"] for x in rs]),
                      "cpu_us_per_req": med([x["cpu_us_per_req"] for x in rs
                                             if x["cpu_us_per_req"] is not None]),
                      "p50_ms": med([x["p50_ms"] for x in rs]),
                      "errors": sum(x["errors"] for x in rs)}
        for m in ("rps", "cpu_us_per_req"):
            row[f"{m}_new_over_base"] = ratio(row["new"][m], row["base"][m])
            row[f"{m}_again_over_new"] = ratio(row["again"][m], row["new"][m])
        s[key] = row
    return s


def render(s, meta):
    lines = [f"Base {meta['base_commit'][:12]} ({meta['base_rev']}) against "
             f"{meta['new_commit'][:12]}{' + uncommitted changes' if meta['dirty'] else ''}; "
             f"{meta['rounds']} rounds of {meta['seconds']} s, medians.", "",
             "| workload | base req/s | new req/s | again req/s | new/base | again/new "
             "| base CPU us/req | new CPU us/req | again CPU us/req | new/base | again/new |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in s.items():
        f = lambda v: "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.2f}")
        lines.append(
            f"| {key.replace('_', ' ').upper()} | {f(row['base']['rps'])} | {f(row['new']['rps'])} "
            f"| {f(row['again']['rps'])} | {row['rps_new_over_base']} | {row['rps_again_over_new']} "
            f"| {f(row['base']['cpu_us_per_req'])} | {f(row['new']['cpu_us_per_req'])} "
            f"| {f(row['again']['cpu_us_per_req'])} | {row['cpu_us_per_req_new_over_base']} "
            f"| {row['cpu_us_per_req_again_over_new']} |")
    lines += ["", "CPU per request within 10% of base: " + ", ".join(
        f"{k.replace('_', ' ').upper()} "
        f"{'yes' if r['cpu_us_per_req_new_over_base'] is not None and r['cpu_us_per_req_new_over_base'] <= 1.10 else 'NO'}"
        for k, r in s.items())]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tmp", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=os.environ.get("BENCH_BASE", "b7fd2ff"),
                   help="the earlier commit (default: the last one before the Raft work)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--command", default="make bench-compare")
    args = p.parse_args()
    bench.ARGS = args
    cfg = {"rounds": 1 if args.quick else int(os.environ.get("BENCH_ROUNDS", "5")),
           "seconds": int(os.environ.get("BENCH_SECONDS", "2" if args.quick else "5")),
           "preload": int(os.environ.get("BENCH_PRELOAD", "5000" if args.quick else "20000"))}
    if cfg["rounds"] < 1:
        raise SystemExit("compare: BENCH_ROUNDS must be at least 1")
    git = lambda *a: subprocess.run(["git", "-C", bench.ROOT, *a], capture_output=True,
                                    text=True).stdout.strip()
    meta = {"base_rev": args.base, "new_commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "rounds": cfg["rounds"], "seconds": cfg["seconds"], "preload": cfg["preload"],
            "command": args.command, "machine": bench.machine_info(args.command)}
    t0 = time.monotonic()
    runs = {b: [] for b in BUILDS}
    try:
        base_bin, meta["base_commit"] = build_base(args.base, args.tmp)
        bins = {"base": base_bin, "new": bench.LKV, "again": bench.LKV}
        for r in range(cfg["rounds"]):
            one_round(r, bins, cfg, runs)
    finally:
        Server.stop_all()
        remove_base(args.tmp)
    s = summarize(runs)
    meta["wall_seconds"] = round(time.monotonic() - t0, 1)
    table = render(s, meta)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"compare-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "summary": s}, f, indent=1)
    with open(os.path.join(args.out, f"compare-{stamp}.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\nwall time {meta['wall_seconds']:.0f} s; raw numbers in "
          f"bench/out/compare-{stamp}.json")


if __name__ == "__main__":
    bench.run_main(main, "compare", (subprocess.CalledProcessError,))
