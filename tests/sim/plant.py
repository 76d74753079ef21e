#!/usr/bin/env python3
"""Plants one bug at a time in src/raft and runs the simulator over it, to
show which invariant catches each one and at which seed (a simulator that
cannot fail is a defect). Every file is restored afterwards; nothing here
is ever committed with a bug in. Run from the repository root:

    /usr/bin/python3 tests/sim/plant.py [--seeds N] [name ...]

The bugs are the unit tests' mutants (tests/unit/mutants/raft_mutants.py,
imported, so both suites break the same rules) plus a few of the
simulator's own. The baseline (no bug) is run first: a failure there is a
bug of the core itself (tests/sim/FINDINGS.md), which makes the other
results harder to read.
"""
import importlib.util
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = "build/plant"


def unit_mutants():
    path = ROOT / "tests" / "unit" / "mutants" / "raft_mutants.py"
    spec = importlib.util.spec_from_file_location("raft_mutants", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {name: (f, old, new) for name, (f, old, new, _test) in mod.MUTANTS.items()}


# name: (file, old, new) -- rules the unit mutants do not break
OWN = {
    "vote_twice": ("raft.c", "bool can_vote = r->vote == m->from ||",
                   "bool can_vote = true || r->vote == m->from ||"),
    "follower_commit_uncapped": ("replicate.c",
                                 "commit_from_leader(r, m->commit < lastnew ? m->commit : lastnew);",
                                 "commit_from_leader(r, m->commit);"),
    "snapshot_behind_commit": ("replicate.c", "    if (s->index <= r->log.commit) {\n        resp.index",
                               "    if (0) {\n        resp.index"),
    "conf_two_at_once": ("conf.c", "if (r->pending_conf_index > r->log.commit || r->confs.n > 1 ||",
                         "if (r->confs.n > 8 ||"),
    "lease_always": ("readindex.c", "    uint64_t acked = quorum_round((struct raft *)r);\n    if (acked == 0",
                     "    return true;\n    uint64_t acked = quorum_round((struct raft *)r);\n    if (acked == 0"),
    "read_without_round": ("readindex.c", "        if (lease) {\n            if (push(&r->reads_ready, rq)",
                           "        if (1) {\n            if (push(&r->reads_ready, rq)"),
}


def run(cmd, timeout=None):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def simulate(seeds):
    """Failing seeds -> invariant, or an error string."""
    b = run(["make", "-s", "WARN=-w", f"BUILD={BUILD}", f"{BUILD}/tests/sim"])
    if b.returncode != 0:
        return "does not build: " + b.stderr[-300:].strip().replace("\n", " ")
    try:
        t = run([f"{BUILD}/tests/sim", "--seeds", str(seeds), "--jobs", "2", "--keep-going"],
                timeout=1800)
    except subprocess.TimeoutExpired:
        return "timed out"
    out = t.stdout + t.stderr
    fails = re.findall(r"SIM FAILURE seed=(\d+)[^\n]*\n(?:  invariant: ([^\n]*))?", out)
    return {int(seed): inv or "crash" for seed, inv in fails}


def describe(result, baseline, seeds):
    if isinstance(result, str):
        return result
    new = {k: v for k, v in result.items() if k not in baseline}
    if not new:
        return f"not caught in {seeds} seeds"
    first = min(new)
    kinds = sorted(set(new.values()))
    return f"caught seed={first} invariant={new[first]} ({len(new)} seeds: {', '.join(kinds)})"


def main(argv):
    seeds = 2000
    if argv[:1] == ["--seeds"]:
        seeds, argv = int(argv[1]), argv[2:]
    plants = {**unit_mutants(), **OWN}
    baseline = simulate(seeds)
    if isinstance(baseline, str):
        print(f"baseline: {baseline}")
        return 1
    print(f"{'baseline':28s} {len(baseline)} failing seeds of {seeds}: "
          f"{sorted(baseline.items())[:8]}", flush=True)
    # a+b plants a and b together (e.g. figure8+no_noop: the no-op masks Figure 8)
    for name in argv or plants:
        parts = name.split("+")
        origs = {}
        try:
            ok = True
            for part in parts:
                fname, old, new = plants[part]
                path = ROOT / "src" / "raft" / fname
                text = path.read_text()
                origs.setdefault(path, text)
                if text.count(old) != 1:
                    print(f"{name:28s} pattern of {part} not found exactly once in {fname}", flush=True)
                    ok = False
                    break
                path.write_text(text.replace(old, new))
            if ok:
                print(f"{name:28s} {describe(simulate(seeds), baseline, seeds)}", flush=True)
        finally:
            for path, text in origs.items():
                path.write_text(text)
    run(["make", "-s", "WARN=-w", f"BUILD={BUILD}", f"{BUILD}/liblkv.a"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
