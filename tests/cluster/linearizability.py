"""A linearizability checker for histories of key-value operations, and the
recorder that concurrent clients write them into. Standard library only.

Model: one register per key, initially absent (None).
    put(k, v)  -> ok          the register becomes v
    delete(k)  -> ok          the register becomes None
    get(k)     -> v or None   legal only if the register holds exactly that

Each operation carries its invocation time and its return time from one
monotonic clock (ns). An operation whose outcome is unknown (a timeout, a
connection lost after the request went out, 503 "leadership lost") has no
return time: it may take effect at any point after its invocation, or
never. Unknown reads observed nothing and are dropped. An unknown write is
narrowed down before the search, exactly (no verdict changes):
- if no read returned its value (None for a delete), it cannot matter and is
  dropped: removing it from any linearization leaves every read legal;
- if it is the only write of a value that some read returned, it certainly
  happened, before the first such read returned: it becomes an ordinary
  operation with that return time;
- otherwise it is optional: it either took effect before the last read of
  its value returned (later it could not matter) or never. When the search
  reaches the end of that window with the op not placed, it drops it.
The search stops as soon as every non-optional operation is placed: the
optional ones left took effect later or never. Unique values per write make
unknown writes cheap; unknown deletes stay optional and cost the most.

Algorithm: Wing & Gong's search as improved by Lowe and used by Porcupine.
Call and return events sit in one time-ordered list; the search walks it,
tentatively linearizing a call whose operation is legal in the current model
state (removing its call and return from the list), and backtracks when it
meets the return of an operation it has not linearized. Configurations
already explored, (bitmask of linearized operations, model state), are
memoised, which is what keeps realistic histories fast. A history is
linearizable iff every key's sub-history is (a register per key composes),
so each key is checked alone.

A key with no reads is linearizable without a search.

Events with equal timestamps are ordered call before return, so operations
that merely touch are treated as concurrent (the lenient reading).

Bounds: check() takes a timeout for the whole history and answers "unknown"
for keys it could not decide in time, or whose search memo outgrew
MAX_CONFIGS, instead of hanging or exhausting memory.

Explanations: for a key that is not linearizable, check() shrinks the key's
operations to a small subset that is still not linearizable (delta
debugging), keeping only subsets whose verdict carries over to the full
history: a read stays only while every write of the value it returned is
kept (for a None read: every delete). Then any linearization of the full
history, restricted to the subset, would linearize the subset, so the subset
alone proves the violation.
"""
import bisect
import json
import threading
import time

KINDS = ("put", "get", "delete")
_CLOCK_CHECK_EVERY = 2048        # search steps between looks at the clock
MAX_CONFIGS = 1_000_000          # memoised configurations per key (~150 MB) before "unknown"


class Op:
    """One operation. value: the value written (put), the value read (get;
    None = not found), None (delete). ret None = outcome unknown."""

    __slots__ = ("id", "process", "kind", "key", "value", "call", "ret")

    def __init__(self, kind, key, value=None, call=0, ret=None, process=None, id=None):
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        if kind == "delete" and value is not None:
            raise ValueError("a delete has no value")
        if ret is not None and ret < call:
            raise ValueError(f"op returns ({ret}) before it is invoked ({call})")
        self.id = id
        self.process = process
        self.kind = kind
        self.key = key
        self.value = value
        self.call = call
        self.ret = ret

    @property
    def unknown(self):
        return self.ret is None

    @property
    def is_write(self):
        return self.kind != "get"

    def describe(self, t0=0):
        """One line: interval in ms from t0 (times in ns), process, op, outcome."""
        start = (self.call - t0) / 1e6
        end = "?" if self.ret is None else f"{(self.ret - t0) / 1e6:.3f}"
        if self.kind == "put":
            what = f"put({self.key!r}, {_short(self.value)})"
        else:
            what = f"{self.kind}({self.key!r})"
        if self.unknown:
            outcome = "unknown outcome (may or may not have taken effect)"
        elif self.kind == "get":
            outcome = "not found" if self.value is None else _short(self.value)
        else:
            outcome = "ok"
        who = "" if self.process is None else f"{self.process}: "
        return f"[{start:.3f} ms, {end} ms] {who}{what} -> {outcome}"

    def __repr__(self):
        return (f"Op({self.kind!r}, {self.key!r}, {self.value!r}, call={self.call}, "
                f"ret={self.ret}, process={self.process!r})")


def _short(v, limit=40):
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


# ------------------------------------------------------------------ recording

class History:
    """A thread-safe recorder. A client calls invoke() just before sending a
    request and one of ok() / fail() / unknown() once it knows the outcome:

        op = history.invoke("put", key, value, process="c3")
        ...            # the request
        history.ok(op)               # or history.ok(op, value_read) for a get
        history.fail(op)             # it certainly did not take effect
        history.unknown(op)          # it may or may not have

    Operations still open when ops() is called count as unknown."""

    def __init__(self, clock=time.monotonic_ns):
        self._clock = clock
        self._lock = threading.Lock()
        self._ops = []                  # index = op id; None once failed
        self._open = set()

    def invoke(self, kind, key, value=None, process=None):
        if process is None:
            process = threading.current_thread().name
        op = Op(kind, key, value if kind == "put" else None, call=0, process=process)
        with self._lock:
            op.id = len(self._ops)
            op.call = self._clock()
            self._ops.append(op)
            self._open.add(op.id)
        return op.id

    def ok(self, op_id, value=None):
        """Completed: a write took effect; a get read value (None = not found)."""
        with self._lock:
            now = self._clock()
            op = self._take_open(op_id)
            if op.kind == "get":
                op.value = value
            op.ret = now

    def fail(self, op_id):
        """Certainly did not take effect (refused before it was accepted)."""
        with self._lock:
            self._take_open(op_id)
            self._ops[op_id] = None

    def unknown(self, op_id):
        with self._lock:
            self._take_open(op_id)

    def _take_open(self, op_id):
        if op_id not in self._open:
            raise ValueError(f"op {op_id} is not open")
        self._open.discard(op_id)
        return self._ops[op_id]

    def ops(self):
        """Copies of every operation not failed, in invocation order."""
        with self._lock:
            return [Op(o.kind, o.key, o.value, o.call, o.ret, o.process, o.id)
                    for o in self._ops if o is not None]

    def __len__(self):
        with self._lock:
            return sum(1 for o in self._ops if o is not None)

    def dump(self, path):
        save_ops(self.ops(), path)


def _encode_value(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return {"str": v}


def _decode_value(v):
    if v is None:
        return None
    return bytes.fromhex(v["hex"]) if "hex" in v else v["str"]


def save_ops(ops, path):
    """Write ops as JSON (one object per line), for replaying a failure."""
    with open(path, "w") as f:
        for o in ops:
            f.write(json.dumps({"id": o.id, "process": o.process, "kind": o.kind,
                                "key": _encode_value(o.key), "value": _encode_value(o.value),
                                "call": o.call, "ret": o.ret}) + "\n")


def load_ops(path):
    with open(path) as f:
        return [Op(d["kind"], _decode_value(d["key"]), _decode_value(d["value"]),
                   d["call"], d["ret"], d["process"], d["id"])
                for d in map(json.loads, f) if d]


# ------------------------------------------------------------------ checking

class CheckResult:
    """status: "ok", "illegal" or "unknown". For "illegal": key, ops (a small
    subset of that key's operations that is already not linearizable) and
    explanation. For "unknown": undecided_keys."""

    def __init__(self, status, key=None, ops=None, explanation="", undecided_keys=(),
                 keys_checked=0, elapsed=0.0):
        self.status = status
        self.key = key
        self.ops = ops or []
        self.explanation = explanation
        self.undecided_keys = list(undecided_keys)
        self.keys_checked = keys_checked
        self.elapsed = elapsed

    def __str__(self):
        if self.status == "ok":
            return f"linearizable ({self.keys_checked} keys, {self.elapsed:.2f} s)"
        if self.status == "unknown":
            return (f"unknown: no verdict within the time limit for keys "
                    f"{self.undecided_keys!r} ({self.elapsed:.2f} s)")
        return self.explanation

    def __repr__(self):
        return f"<CheckResult {self.status} key={self.key!r}>"


def check(history, timeout=30.0, explain_timeout=10.0):
    """Is the history linearizable? history: a History or a list of Op.
    timeout bounds the verdict for all keys together; explain_timeout bounds
    shrinking the explanation of a violation (the subset found so far is
    reported when it runs out)."""
    ops = history.ops() if isinstance(history, History) else list(history)
    t0 = time.monotonic()
    deadline = t0 + timeout
    by_key = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    undecided = []
    checked = 0
    for key in sorted(by_key, key=repr):
        key_ops = _prepare(by_key[key])
        evidence = _zone_violation(key_ops)
        if evidence is not None and _search(evidence, deadline) == "illegal":
            verdict = "illegal"
        else:
            evidence = key_ops
            verdict = _search(key_ops, deadline)
        checked += 1
        if verdict == "illegal":
            small = _shrink(evidence, time.monotonic() + explain_timeout)
            return CheckResult("illegal", key, small, _explain(key, small),
                               keys_checked=checked, elapsed=time.monotonic() - t0)
        if verdict == "unknown":
            undecided.append(key)
    status = "unknown" if undecided else "ok"
    return CheckResult(status, undecided_keys=undecided, keys_checked=checked,
                       elapsed=time.monotonic() - t0)


def _prepare(ops):
    """Drop the reads that observed nothing; sort by invocation."""
    return sorted((o for o in ops if not (o.kind == "get" and o.unknown)), key=lambda o: o.call)


def _unknown_write_windows(ops):
    """For each op: (return time for the search, optional). A known op keeps
    its return and is mandatory. An unknown write (see the module docstring):
    - the only write of a value some read returned must have taken effect
      before the first of those reads returned: mandatory, with that return;
    - otherwise it matters only if it took effect before the last read of
      its value returned: optional (it may never happen), until then;
    - a write of a value no read returned never matters: None, dropped."""
    reads = {}
    writers = {}
    for o in ops:
        if o.kind == "get":
            reads.setdefault(o.value, []).append(o.ret)
        else:
            writers[o.value] = writers.get(o.value, 0) + 1
    out = []
    for o in ops:
        if not o.unknown:
            out.append((o.ret, False))
        elif o.value not in reads:
            out.append(None)
        elif o.kind == "put" and writers[o.value] == 1:
            out.append((min(reads[o.value]), False))
        else:
            out.append((max(reads[o.value]), True))
    return out


def _search(all_ops, deadline):
    """Lowe's search over one key's operations: "ok", "illegal" or "unknown"."""
    windows = _unknown_write_windows(all_ops)
    ops = [o for o, w in zip(all_ops, windows) if w is not None]
    windows = [w for w in windows if w is not None]
    if not any(o.kind == "get" for o in ops):
        return "ok"
    m = len(ops)
    # Values as small integers, 0 = absent: cheap to hash in the memo.
    ids = {None: 0}
    val = [ids.setdefault(o.value, len(ids)) for o in ops]
    kind = [o.kind for o in ops]
    optional = [opt for _, opt in windows]
    # reads_left[v]: reads of value v not placed yet, for each value with
    # exactly one writer (None excluded: any delete, or the initial state,
    # explains a None read). No other write can come between v's writer and
    # a read of v, so while one is left no write may be placed.
    writers = [0] * len(ids)
    for j in range(m):
        if kind[j] != "get":
            writers[val[j]] += 1
    tracked = [v != 0 and writers[v] == 1 for v in range(len(ids))]
    reads_left = [0] * len(ids)
    for j in range(m):
        if kind[j] == "get" and tracked[val[j]]:
            reads_left[val[j]] += 1

    # Events: entry 0 is the list head; call of op j and its return follow
    # in time order (calls first at equal times).
    events = sorted([(o.call, 0, j) for j, o in enumerate(ops)] +
                    [(ret, 1, j) for j, (ret, _) in enumerate(windows)])
    n = len(events) + 1
    op_of = [-1] * n
    is_call = [False] * n
    call_entry = [0] * m
    ret_entry = [0] * m
    for e, (_, k, j) in enumerate(events, start=1):
        op_of[e] = j
        if k == 0:
            is_call[e] = True
            call_entry[j] = e
        else:
            ret_entry[j] = e
    nxt = list(range(1, n)) + [-1]
    prv = [-1] + list(range(0, n - 1))

    def unlink(e):
        p, q = prv[e], nxt[e]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def relink(e):
        p, q = prv[e], nxt[e]
        nxt[p] = e
        if q != -1:
            prv[q] = e

    # Done once every mandatory op is placed: the optional ones left over
    # never took effect.
    mandatory_left = optional.count(False)
    state = 0
    done = 0                        # bitmask: ops linearized or dropped
    seen = set()
    stack = []                      # (call entry, state before, dropped?)
    e = nxt[0]
    steps = 0
    while mandatory_left:
        steps += 1
        if steps % _CLOCK_CHECK_EVERY == 0 and (time.monotonic() > deadline
                                                 or len(seen) > MAX_CONFIGS):
            return "unknown"
        j = op_of[e]
        if is_call[e]:
            if kind[j] == "get":
                legal, new_state = val[j] == state, state
            else:
                legal, new_state = not reads_left[state], val[j]
            dropping = False
        else:
            # The end of an op's window, the op not placed yet. An optional
            # op may still never have happened; any other means this branch
            # is exhausted.
            legal, new_state, dropping = optional[j], state, True
        if legal:
            config = (done | (1 << j), new_state)
            if config not in seen:
                seen.add(config)
                stack.append((call_entry[j], state, dropping))
                state, done = new_state, config[0]
                if kind[j] == "get" and tracked[val[j]]:
                    reads_left[val[j]] -= 1
                unlink(call_entry[j])
                unlink(ret_entry[j])
                if not optional[j]:
                    mandatory_left -= 1
                e = nxt[0]
                continue
        if is_call[e]:
            e = nxt[e]
            continue
        # Backtrack to the latest choice that has an alternative: placing a
        # call later. A drop has none (placing the op earlier is a choice
        # made before it).
        while True:
            if not stack:
                return "illegal"
            e, state, dropped = stack.pop()
            j = op_of[e]
            done &= ~(1 << j)
            if kind[j] == "get" and tracked[val[j]]:
                reads_left[val[j]] += 1
            relink(ret_entry[j])
            relink(e)
            if not optional[j]:
                mandatory_left += 1
            if not dropped:
                break
        e = nxt[e]
    return "ok"


def _zone_violation(ops):
    """A quick necessary condition (Gibbons & Korach's zones), so that the
    common violations are found without a search however concurrent the
    history: None, or a subset of ops that breaks it (closed as the
    explanations are, so the subset alone proves the violation).

    For a value v with exactly one writer w, its cluster is w and the reads
    of v. The register holds v from w's linearization point through the last
    read of v with no write between. If some op of the cluster returned (at
    f) before another was invoked (at b), the register holds v throughout
    (f, b), its forward zone. So: no read of v returns before w is invoked;
    no two forward zones overlap; and no other op, written or read, that must
    have happened lies wholly inside a forward zone."""
    windows = _unknown_write_windows(ops)
    writers = {}
    for o in ops:
        if o.is_write:
            writers.setdefault(o.value, []).append(o)
    clusters = {}                   # v -> [(op, return for the search)]
    placed = []                     # every op that certainly happened
    for o, w in zip(ops, windows):
        if w is None or w[1]:
            continue
        placed.append((o, w[0]))
        if o.value is not None:
            if not writers.get(o.value):
                return [o]          # a read of a value never written
            if len(writers[o.value]) == 1:
                clusters.setdefault(o.value, []).append((o, w[0]))
    zones = []
    for v, members in clusters.items():
        w = writers[v][0]
        for o, r in members:
            if o.kind == "get" and r < w.call:
                return _with_writers(ops, [w, o])
        f_op, f = min(members, key=lambda t: t[1])
        b_op = max(members, key=lambda t: t[0].call)[0]
        if f < b_op.call:
            zones.append((f, b_op.call, v, [w, f_op, b_op]))
    zones.sort(key=lambda z: z[0])
    widest = None
    for z in zones:
        if widest is not None and z[0] < widest[1]:
            return _with_writers(ops, widest[3] + z[3])
        if widest is None or z[1] > widest[1]:
            widest = z
    # Zones are disjoint now, so scanning the ops invoked inside each one
    # costs O(n) in all.
    placed.sort(key=lambda t: t[0].call)
    calls = [o.call for o, _ in placed]
    for f, b, v, witnesses in zones:
        i = bisect.bisect_right(calls, f)
        while i < len(placed) and calls[i] < b:
            o, r = placed[i]
            if r < b and o.value != v:
                return _with_writers(ops, witnesses + [o])
            i += 1
    return None


def _with_writers(ops, subset):
    """subset (ops, possibly repeated) plus every write of each value its
    reads returned, in ops order: the closure the explanations need."""
    read_values = {o.value for o in subset if o.kind == "get"}
    ids = {id(o) for o in subset}
    return [o for o in ops if id(o) in ids or (o.is_write and o.value in read_values)]


def _sound_subset(all_ops, keep):
    """keep (a set of indices into all_ops) minus every read with a write of
    its value outside keep; see the module docstring for why."""
    dropped_values = {all_ops[i].value for i in range(len(all_ops))
                      if i not in keep and all_ops[i].is_write}
    return {i for i in keep
            if not (all_ops[i].kind == "get" and all_ops[i].value in dropped_values)}


def _shrink(ops, deadline):
    """A small subset of ops, still not linearizable (ddmin over chunks)."""
    cur = set(range(len(ops)))
    chunks = 2
    while len(cur) > 1 and time.monotonic() < deadline:
        order = sorted(cur)
        size = -(-len(order) // chunks)
        progress = False
        for start in range(0, len(order), size):
            cand = _sound_subset(ops, cur - set(order[start:start + size]))
            if not cand or len(cand) >= len(cur):
                continue
            sub = [ops[i] for i in sorted(cand)]
            if _search(sub, deadline) == "illegal":
                cur = cand
                chunks = max(chunks - 1, 2)
                progress = True
                break
        if not progress:
            if size == 1:
                break
            chunks = min(len(cur), chunks * 2)
    return [ops[i] for i in sorted(cur)]


def _explain(key, ops):
    t0 = min(o.call for o in ops)
    lines = [o.describe(t0) for o in sorted(ops, key=lambda o: o.call)]
    reads = [o for o in ops if o.kind == "get"]
    if len(ops) == 1 and reads and reads[0].value is not None:
        why = "a read returned a value that no write of this key wrote"
    else:
        why = ("no order of these operations respects both their real-time order "
               "(an operation that returned before another was invoked comes first) "
               "and a register's semantics")
    return (f"key {key!r} is not linearizable: {why}. The {len(ops)} operations "
            f"(times from the first invocation):\n  " + "\n  ".join(lines))
