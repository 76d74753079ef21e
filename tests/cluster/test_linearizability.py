"""The linearizability checker and the history recorder, on hand-built
histories, histories simulated from a real linearizable register, and small
random histories cross-checked against brute force."""
import itertools
import random
import threading
import time

import pytest

from linearizability import History, Op, _prepare, _zone_violation, check, load_ops, save_ops

MS = 1_000_000  # the checker's times are ns


def op(kind, key, value, call, ret, process=None):
    """An op with times in ms; ret None = unknown outcome."""
    return Op(kind, key, value, call * MS, None if ret is None else ret * MS, process)


def put(key, value, call, ret, process=None):
    return op("put", key, value, call, ret, process)


def get(key, value, call, ret, process=None):
    return op("get", key, value, call, ret, process)


def delete(key, call, ret, process=None):
    return op("delete", key, None, call, ret, process)


# ------------------------------------------------------------------ simulation

def simulate(seed, processes=6, ops_per_process=50, keys=3, p_unknown=0.0, p_lost=0.5,
             p_delete=0.15, p_get=0.45):
    """A history of a real linearizable register store: each operation takes
    effect at one instant inside its interval (an unknown write: at some
    instant after its invocation, possibly long after its client gave up, or
    never), and reads return the state at their instant. Values are unique."""
    rng = random.Random(seed)
    ops = []
    effects = []                                # (instant, tiebreak, op)
    for p in range(processes):
        clock = rng.randrange(0, 50 * MS)
        for i in range(ops_per_process):
            call = clock + rng.randrange(0, 3 * MS)
            dur = rng.randrange(1, 10 * MS)
            r = rng.random()
            kind = "get" if r < p_get else "delete" if r < p_get + p_delete else "put"
            key = f"k{rng.randrange(keys)}"
            value = f"p{p}.{i}" if kind == "put" else None
            o = Op(kind, key, value, call, call + dur, process=f"p{p}")
            instant = call + rng.randrange(0, dur + 1)
            if rng.random() < p_unknown:
                o.ret = None
                if kind != "get" and rng.random() < p_lost:
                    instant = None
                else:
                    instant = call + rng.randrange(0, 20 * dur)
            if instant is not None:
                effects.append((instant, rng.random(), o))
            ops.append(o)
            clock = call + dur
    state = {}
    for _, _, o in sorted(effects, key=lambda t: t[:2]):
        if o.kind == "put":
            state[o.key] = o.value
        elif o.kind == "delete":
            state.pop(o.key, None)
        else:
            o.value = state.get(o.key)
    return ops


def make_stale(ops):
    """Turn one read into a stale one: a get that read put P's value, where P
    completed before the get began and an earlier put Q of the key completed
    before P began, now returns Q's value. None when there is no such read."""
    puts = [o for o in ops if o.kind == "put" and not o.unknown]
    by_value = {o.value: o for o in puts}
    for g in ops:
        if g.kind != "get" or g.unknown or g.value not in by_value:
            continue
        p = by_value[g.value]
        if p.ret >= g.call:
            continue
        for q in puts:
            if q.key == g.key and q.ret < p.call:
                g.value = q.value
                return g
    return None


# ------------------------------------------------------------------ brute force

def brute_force_linearizable(ops):
    """Every order of the known operations plus any subset of the unknown
    writes, checked directly. Tiny histories only."""
    known = [o for o in ops if not o.unknown]
    unknown_writes = [o for o in ops if o.unknown and o.kind != "get"]

    def before(a, b):
        return a.ret is not None and a.ret < b.call

    for r in range(len(unknown_writes) + 1):
        for extra in itertools.combinations(unknown_writes, r):
            chosen = known + list(extra)
            for order in itertools.permutations(chosen):
                if any(before(order[j], order[i])
                       for i in range(len(order)) for j in range(i + 1, len(order))):
                    continue
                state, legal = {}, True
                for o in order:
                    if o.kind == "put":
                        state[o.key] = o.value
                    elif o.kind == "delete":
                        state.pop(o.key, None)
                    elif state.get(o.key) != o.value:
                        legal = False
                        break
                if legal:
                    return True
    return False


def random_tiny_history(rng, n, unique):
    """One key, random intervals and read results, some unknown outcomes.
    Values either from a small set (duplicates on purpose) or one per put."""
    ops = []
    written = ["a", "b"]
    for i in range(n):
        call = rng.randrange(0, 20)
        ret = None if rng.random() < 0.2 else call + rng.randrange(0, 8)
        kind = rng.choice(["put", "put", "get", "get", "delete"])
        if kind == "put":
            value = f"v{i}" if unique else rng.choice(written)
            if unique:
                written.append(value)
        elif kind == "get":
            value = rng.choice(written + [None])
        else:
            value = None
        ops.append(op(kind, "k", value, call, ret))
    return ops


# ------------------------------------------------------------------ hand-built histories

def test_sequential_history_is_linearizable():
    h = [get("k", None, 0, 1), put("k", "a", 2, 3), get("k", "a", 4, 5),
         delete("k", 6, 7), get("k", None, 8, 9), put("k", "b", 10, 11), get("k", "b", 12, 13)]
    assert check(h).status == "ok"


def test_overlapping_writes_may_be_seen_in_either_order():
    # put a and put b overlap: readers after both may see either, but all
    # readers after both must agree on the last one.
    base = [put("k", "a", 0, 10), put("k", "b", 5, 15)]
    assert check(base + [get("k", "a", 20, 21), get("k", "a", 22, 23)]).status == "ok"
    assert check(base + [get("k", "b", 20, 21), get("k", "b", 22, 23)]).status == "ok"
    r = check(base + [get("k", "b", 20, 21), get("k", "a", 22, 23)])
    assert r.status == "illegal"


def test_read_concurrent_with_a_write_sees_old_or_new():
    base = [put("k", "a", 0, 1), put("k", "b", 10, 20)]
    assert check(base + [get("k", "a", 12, 13)]).status == "ok"
    assert check(base + [get("k", "b", 12, 13)]).status == "ok"
    # Once a read saw the new value, a later read cannot see the old one.
    assert check(base + [get("k", "b", 12, 13), get("k", "a", 14, 15)]).status == "illegal"


def test_keys_are_independent_registers():
    h = [put("x", "1", 0, 1), put("y", "2", 0, 1), get("x", "1", 2, 3), get("y", "2", 2, 3),
         get("z", None, 2, 3)]
    r = check(h)
    assert r.status == "ok" and r.keys_checked == 3


def test_stale_read_after_a_completed_write_is_rejected():
    h = [put("k", "old", 0, 1, "c1"), put("k", "new", 2, 3, "c2"),
         get("k", "old", 4, 5, "c3"),
         put("other", "x", 0, 1), get("other", "x", 2, 3)]
    r = check(h)
    assert r.status == "illegal"
    assert r.key == "k"
    # The explanation is exactly the three operations that conflict.
    assert sorted((o.kind, o.value) for o in r.ops) == [
        ("get", "old"), ("put", "new"), ("put", "old")]
    assert "'k'" in r.explanation and "c3" in r.explanation and "'old'" in r.explanation


def test_read_of_a_value_never_written_is_rejected_with_just_that_read():
    h = [put("k", "a", 0, 1), get("k", "a", 2, 3), get("k", "ghost", 4, 5)]
    r = check(h)
    assert r.status == "illegal"
    assert [(o.kind, o.value) for o in r.ops] == [("get", "ghost")]
    assert "no write" in r.explanation


def test_read_of_deleted_key_after_delete_completed_is_rejected():
    h = [put("k", "a", 0, 1), delete("k", 2, 3), get("k", "a", 4, 5)]
    assert check(h).status == "illegal"


def test_operations_that_touch_count_as_concurrent():
    # The put returns at the instant the get is invoked: treated as
    # overlapping, so the get may still see the old (absent) value.
    assert check([put("k", "a", 0, 5), get("k", None, 5, 6)]).status == "ok"
    assert check([put("k", "a", 0, 5), get("k", None, 5.001, 6)]).status == "illegal"


# ------------------------------------------------------------------ unknown outcomes

def test_unknown_write_that_took_effect():
    h = [put("k", "a", 0, 1), put("k", "b", 2, None), get("k", "b", 10, 11), get("k", "b", 12, 13)]
    assert check(h).status == "ok"


def test_unknown_write_that_never_took_effect():
    h = [put("k", "a", 0, 1), put("k", "b", 2, None), get("k", "a", 10, 11), get("k", "a", 20, 21)]
    assert check(h).status == "ok"


def test_unknown_write_may_take_effect_long_after_a_later_write():
    # b was sent first, timed out, and applied after c completed.
    h = [put("k", "a", 0, 1), put("k", "b", 2, None), put("k", "c", 3, 4),
         get("k", "c", 5, 6), get("k", "b", 7, 8)]
    assert check(h).status == "ok"


def test_unknown_write_cannot_take_effect_before_it_was_invoked():
    h = [get("k", "b", 0, 1), put("k", "b", 5, None)]
    r = check(h)
    assert r.status == "illegal"
    assert {o.kind for o in r.ops} == {"get", "put"}
    assert "unknown outcome" in r.explanation


def test_unknown_write_that_was_seen_cannot_be_undone():
    h = [put("k", "a", 0, 1), put("k", "b", 2, None), get("k", "b", 3, 4), get("k", "a", 5, 6)]
    r = check(h)
    assert r.status == "illegal"
    assert len(r.ops) == 4


def test_unknown_delete_both_ways():
    base = [put("k", "a", 0, 1), delete("k", 2, None)]
    assert check(base + [get("k", None, 3, 4)]).status == "ok"
    assert check(base + [get("k", "a", 3, 4)]).status == "ok"
    assert check(base + [get("k", None, 3, 4), get("k", "a", 5, 6)]).status == "illegal"


def test_unknown_read_is_ignored():
    h = [put("k", "a", 0, 1), get("k", "nonsense", 2, None)]
    assert check(h).status == "ok"


def test_many_unobserved_unknown_writes_are_cheap():
    # 500 concurrent timed-out writes nobody read: pruned, not searched.
    h = [put("k", "a", 0, 1)] + [put("k", f"lost{i}", 2, None) for i in range(500)]
    h += [get("k", "a", 3 + i, 3.5 + i) for i in range(50)]
    r = check(h, timeout=60)
    assert r.status == "ok"


# ------------------------------------------------------------------ generated histories

@pytest.mark.parametrize("seed", range(8))
def test_simulated_register_histories_are_linearizable(seed):
    ops = simulate(seed, processes=4 + seed, ops_per_process=60, keys=2 + seed % 3)
    assert check(ops, timeout=60).status == "ok"


@pytest.mark.parametrize("seed", range(8))
def test_simulated_histories_with_unknown_writes_are_linearizable(seed):
    ops = simulate(100 + seed, processes=6, ops_per_process=60, keys=2, p_unknown=0.15)
    assert any(o.unknown for o in ops)
    assert check(ops, timeout=60).status == "ok"


@pytest.mark.parametrize("seed", range(6))
def test_simulated_history_with_one_stale_read_is_rejected(seed):
    ops = simulate(200 + seed, processes=6, ops_per_process=60, keys=3, p_unknown=0.1)
    stale = make_stale(ops)
    assert stale is not None
    r = check(ops, timeout=60)
    assert r.status == "illegal"
    assert r.key == stale.key
    assert any(o is stale or (o.kind == "get" and o.call == stale.call) for o in r.ops)
    assert len(r.ops) <= 6, r.explanation


def test_thousands_of_operations_over_tens_of_keys_finish():
    ops = simulate(7, processes=16, ops_per_process=400, keys=30, p_unknown=0.05)
    assert len(ops) == 6400
    t = time.monotonic()
    r = check(ops, timeout=120)
    assert r.status == "ok", str(r)
    print(f"6400 ops / 30 keys checked in {time.monotonic() - t:.2f} s")


def test_thousands_of_operations_on_few_hot_keys_finish():
    ops = simulate(8, processes=10, ops_per_process=300, keys=3, p_unknown=0.05)
    r = check(ops, timeout=120)
    assert r.status == "ok", str(r)


def test_search_over_its_time_limit_answers_unknown():
    # 22 concurrent writes of one value, then reads no order can explain (a
    # None with no delete after the writes). Duplicate values leave the quick
    # zone check nothing to go on, so the search would try every subset of
    # the writes before giving up.
    h = [put("k", "x", 0, 100) for _ in range(22)]
    h += [get("k", "x", 101, 102), get("k", None, 103, 104), get("k", "x", 105, 106)]
    t = time.monotonic()
    r = check(h, timeout=0.5)
    assert r.status == "unknown"
    assert r.undecided_keys == ["k"]
    assert time.monotonic() - t < 30


def test_overlapping_zones_of_two_values_are_rejected_quickly():
    # a and b written concurrently, then read b, a, b: whichever came last,
    # one of the values would have to come back.
    h = [put("k", "a", 0, 1), put("k", "b", 0, 1),
         get("k", "a", 2, 3), get("k", "b", 4, 5), get("k", "a", 6, 7)]
    h += [op("put", "k", f"noise{i}", 0, 200, process=f"n{i}") for i in range(40)]
    r = check(h, timeout=60)
    assert r.status == "illegal"
    assert len(r.ops) == 4 and {o.value for o in r.ops} == {"a", "b"}


# ------------------------------------------------------------------ against brute force

@pytest.mark.parametrize("unique", [False, True], ids=["shared-values", "unique-values"])
def test_agrees_with_brute_force_on_small_random_histories(unique):
    rng = random.Random(12345 + unique)
    verdicts = {"ok": 0, "illegal": 0}
    for _ in range(1500):
        h = random_tiny_history(rng, rng.randrange(1, 7), unique)
        expect = brute_force_linearizable(h)
        # The quick zone check is a necessary condition: what it flags is
        # a subset that really is not linearizable.
        evidence = _zone_violation(_prepare(h))
        assert evidence is None or not brute_force_linearizable(evidence), (h, evidence)
        r = check(h)
        assert r.status == ("ok" if expect else "illegal"), h
        verdicts[r.status] += 1
        if r.status == "illegal":
            # The explanation is a subset of the history that is itself
            # not linearizable.
            assert all(any(o is x for x in h) for o in r.ops)
            assert not brute_force_linearizable(r.ops), (h, r.ops)
    # Both verdicts were exercised.
    assert verdicts["ok"] > 100 and verdicts["illegal"] > 100, verdicts


# ------------------------------------------------------------------ recorder

def test_history_records_concurrent_clients():
    h = History()
    threads, per = 8, 200

    def client(p):
        for i in range(per):
            w = h.invoke("put", f"k{i % 5}", f"{p}.{i}", process=f"c{p}")
            h.ok(w)
            r = h.invoke("get", f"k{i % 5}", process=f"c{p}")
            h.ok(r, f"{p}.{i}")

    ts = [threading.Thread(target=client, args=(p,)) for p in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    ops = h.ops()
    assert len(ops) == threads * per * 2
    assert len({o.id for o in ops}) == len(ops)
    assert all(o.ret is not None and o.ret >= o.call for o in ops)
    # Each client's own operations are sequential in the recorded times.
    for p in range(threads):
        mine = [o for o in ops if o.process == f"c{p}"]
        assert all(a.ret <= b.call for a, b in zip(mine, mine[1:]))


def test_history_outcomes():
    h = History()
    a = h.invoke("put", "k", "a")
    h.ok(a)
    b = h.invoke("put", "k", "b")
    h.fail(b)                       # refused: gone from the history
    c = h.invoke("put", "k", "c")
    h.unknown(c)
    d = h.invoke("get", "k")
    h.ok(d, "a")
    e = h.invoke("delete", "k")     # still open: counts as unknown
    ops = {o.id: o for o in h.ops()}
    assert set(ops) == {a, c, d, e}
    assert not ops[a].unknown and ops[c].unknown and ops[e].unknown
    assert ops[d].value == "a"
    with pytest.raises(ValueError):
        h.ok(a)                     # already completed
    assert check(h).status == "ok"


def test_saved_history_loads_back(tmp_path):
    ops = [put("k", "a", 0, 1, "c1"), put("k", b"\x00\xff", 2, None, "c2"),
           get("k", None, 3, 4), delete("k", 5, 6)]
    save_ops(ops, tmp_path / "h.jsonl")
    back = load_ops(tmp_path / "h.jsonl")
    assert [(o.kind, o.key, o.value, o.call, o.ret, o.process) for o in back] == \
           [(o.kind, o.key, o.value, o.call, o.ret, o.process) for o in ops]
