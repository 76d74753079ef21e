"""The real binary as a 3- and 5-node Raft cluster, each node in its own
network namespace: elections, redirects, failover, partitions, slow and
lossy links, durability through crashes, catch-up, and linearizability of
concurrent clients while a nemesis partitions, kills and restarts nodes.

Every wait is for a condition with a generous deadline; nothing sleeps for a
fixed time to let something happen.
"""
import math
import random
import threading
import time

import pytest

import netns
from cluster import Cluster, RequestError, wait_for
from linearizability import History, Op, check
from workload import Workload

UNAVAILABLE = netns.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None,
                                reason=f"network namespaces unavailable: {UNAVAILABLE}")

ET_S = 0.5  # the default election timeout


def started(n, **kw):
    c = Cluster(n, **kw)
    try:
        c.start_all()
        c.wait_all_ready()
    except BaseException:
        c.cleanup()
        raise
    return c


@pytest.fixture
def three():
    c = started(3)
    yield c
    c.cleanup()


def put_ok(c, node, key, value, attempts=50):
    """PUT with retries through elections; the response that said 200."""
    last = None
    for _ in range(attempts):
        try:
            r = c.request(node, "PUT", f"/kv/{key}", value, timeout=3)
        except RequestError as e:
            last = e
            r = None
        if r is not None and r.status == 200:
            return r
        last = r or last
        wait_for(lambda: c.leader() is not None, 20, "a leader")
    raise AssertionError(f"PUT {key} never succeeded: {last}")


def agree(c, nodes):
    """(leader index, term) once every node in nodes names the same leader
    in the same term; None while they do not."""
    seen = set()
    for i in nodes:
        info = c.info(i)
        if not info or info["leader"] is None:
            return None
        seen.add((info["leader"], info["term"]))
    if len(seen) != 1:
        return None
    addr, term = seen.pop()
    return c.node_of(addr), term


def agree_on_other(c, nodes, old):
    """As agree, once the leader they name is not `old`."""
    got = agree(c, nodes)
    return got if got and got[0] != old else None


# ---------------------------------------------------------------- elections

@pytest.mark.parametrize("n", [3, 5])
def test_every_node_agrees_on_one_leader(n):
    with started(n) as c:
        leader, term = wait_for(lambda: agree(c, range(n)), 20, "agreement on a leader")
        roles = [c.info(i)["role"] for i in range(n)]
        assert roles.count("leader") == 1 and roles[leader] == "leader", roles
        assert term >= 1
        info = c.info(leader)
        assert sorted(info["peers"]) == sorted(a for a in c.addrs() if a != c.addr(leader))
        assert c.request(leader, "PUT", "/kv/a", b"1").status == 200


def test_followers_redirect_get_put_delete_with_the_exact_location(three):
    c = three
    leader, _ = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    f = (leader + 1) % 3
    path = "/kv/some-key:1.x?a=1&b=two"
    for method, body in (("GET", None), ("HEAD", None), ("PUT", b"v"), ("DELETE", None)):
        r = c.request(f, method, path, body, follow=False)
        assert r.status == 307, (method, r)
        assert r.header("Location") == f"http://{c.addr(leader)}{path}", (method, r.headers)
        assert r.header("Content-Type", "").startswith("text/plain"), r.headers
    r = c.request(f, "DELETE", "/clear", follow=False)
    assert r.status == 307 and r.header("Location") == f"http://{c.addr(leader)}/clear"
    # followed, the write lands on the leader
    assert c.request(f, "PUT", "/kv/via-follower", b"ok").status == 200
    assert c.request(leader, "GET", "/kv/via-follower").body == b"ok"


def test_node_without_a_leader_answers_503_no_leader(three):
    c = three
    wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    c.kill9(0)
    c.kill9(1)

    def alone():
        info = c.info(2)
        return info and info["leader"] is None and info["role"] != "leader"
    wait_for(alone, 20, "node 2 to know no leader")
    r = c.request(2, "GET", "/kv/x", follow=False)
    assert r.status == 503 and r.body == b"no leader\n", r
    assert r.header("Retry-After") == "1"
    assert c.request(2, "PUT", "/kv/x", b"v", follow=False).status == 503
    assert c.request(2, "GET", "/health").status == 200  # it serves, without a leader


# ---------------------------------------------------------------- failover

def test_failover_after_kill9_and_the_old_leader_rejoins_as_follower(three):
    c = three
    old, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    put_ok(c, old, "before", b"1")
    c.kill9(old)
    rest = [i for i in range(3) if i != old]
    new, new_term = wait_for(lambda: agree_on_other(c, rest, old), 20, "a new leader")
    assert new_term > term
    put_ok(c, new, "after", b"2")
    c.start(old)
    c.wait_ready(old)

    def rejoined():
        info = c.info(old)
        return (info and info["role"] == "follower" and info["leader"] == c.addr(new)
                and info["term"] == c.info(new)["term"]) or None
    wait_for(rejoined, 20, "the old leader to follow the new one")
    assert c.request(old, "GET", "/kv/after").body == b"2"  # redirected to the leader


def test_sigterm_on_the_leader_hands_leadership_over(three):
    c = three
    old, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    put_ok(c, old, "k", b"v")
    assert c.stop(old) == 0
    log = c.log_path(old).read_text(errors="replace")
    assert "event=leadership_handover" in log, log[-2000:]
    # The successor was chosen by the transfer: it leads the very next term,
    # with no election timeout in between.
    rest = [i for i in range(3) if i != old]
    new, new_term = wait_for(lambda: agree_on_other(c, rest, old), 10, "the successor")
    assert new_term == term + 1, (term, new_term)
    assert c.request(new, "GET", "/kv/k").body == b"v"


# ---------------------------------------------------------------- partitions

def test_minority_has_no_leader_majority_writes_and_the_heal_keeps_the_leader():
    with started(5) as c:
        old, term = wait_for(lambda: agree(c, range(5)), 20, "agreement on a leader")
        minority = [old, (old + 1) % 5]
        majority = [i for i in range(5) if i not in minority]
        c.net.partition([minority, majority])

        def leaderless(i):
            info = c.info(i)
            return info and info["leader"] is None and info["role"] != "leader"
        for i in minority:
            wait_for(lambda i=i: leaderless(i), 20, f"node {i} in the minority to know no leader")
            r = c.request(i, "PUT", "/kv/minority", b"x", follow=False)
            assert r.status == 503 and r.body == b"no leader\n", r
        new, new_term = wait_for(lambda: agree_on_other(c, majority, old), 20,
                                 "a majority leader")
        for k in range(20):
            assert c.request(new, "PUT", f"/kv/m{k}", b"y").status == 200
        c.net.heal()

        def caught_up():
            infos = [c.info(i) for i in range(5)]
            if any(x is None for x in infos):
                return None
            applied = [x["appliedIndex"] for x in infos]
            return min(applied) >= infos[new]["commitIndex"] and all(
                x["leader"] == c.addr(new) for x in infos) or None
        wait_for(caught_up, 20, "the healed minority to follow and catch up")
        info = c.info(new)
        assert info["role"] == "leader" and info["term"] == new_term, \
            "the heal deposed the majority's leader"
        assert c.request(minority[0], "GET", "/kv/m19").body == b"y"


def test_leader_with_delayed_outgoing_traffic_is_replaced_and_steps_down():
    with started(3, delayable=True) as c:
        old, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
        c.net.delay(old, 3000)  # far past 2x the election timeout
        rest = [i for i in range(3) if i != old]
        new, new_term = wait_for(lambda: agree_on_other(c, rest, old), 30, "a new leader")
        assert new_term > term
        c.net.delay(old, 0)

        def stepped_down():
            info = c.info(old)
            return info and info["role"] == "follower" and info["term"] >= new_term or None
        wait_for(stepped_down, 30, "the slow leader to step down")
        put_ok(c, new, "k", b"v")


def test_an_election_completes_under_20_percent_packet_loss():
    c = Cluster(3)
    try:
        # A packet between two nodes passes the sender's rule and the
        # receiver's: this per-interface rate drops 20% of them end to end.
        per_rule = 1 - math.sqrt(0.8)
        for i in range(3):
            c.net.loss(i, per_rule)
        c.start_all()
        c.wait_all_ready(timeout=60)
        leader = c.wait_leader(timeout=60)  # /cluster/info said "leader"
        put_ok(c, leader, "lossy", b"still")

        def read_back():
            try:
                r = c.request(c.wait_leader(timeout=60), "GET", "/kv/lossy", timeout=3)
            except RequestError:
                return None  # the client's own packets are lost too
            return r.status == 200 and r.body or None
        assert wait_for(read_back, 60, "the write read back") == b"still"
    finally:
        c.cleanup()


# ---------------------------------------------------------------- durability

def write_many(c, node, prefix, n, threads=4):
    """n PUTs from a few client threads; {key: value} of those answered 200."""
    acked, lock = {}, threading.Lock()

    def run(t):
        for k in range(t, n, threads):
            key, value = f"{prefix}{k}", f"{prefix}-{k}-{random.random()}".encode()
            try:
                r = c.request(node, "PUT", f"/kv/{key}", value, timeout=5)
            except RequestError:
                continue
            if r.status == 200:
                with lock:
                    acked[key] = value
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return acked


def assert_present(c, acked, node=None):
    node = c.wait_leader(timeout=30) if node is None else node
    missing = []
    for key, value in acked.items():
        r = c.request(node, "GET", f"/kv/{key}", timeout=5)
        if r.status != 200 or r.body != value:
            missing.append((key, r.status))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def test_acknowledged_writes_survive_kill9_of_every_node(three):
    c = three
    leader = c.wait_leader()
    acked = write_many(c, leader, "all", 300)
    assert len(acked) == 300
    for i in range(3):
        c.kill9(i)
    c.start_all()
    c.wait_all_ready()
    assert_present(c, acked)


def test_acknowledged_writes_survive_the_loss_of_a_minority_leader_included():
    with started(5) as c:
        leader = c.wait_leader()
        acked = write_many(c, leader, "a", 200)
        victims = [leader, (leader + 2) % 5]
        # writes go on while the minority dies
        more = {}
        t = threading.Thread(target=lambda: more.update(write_many(c, (leader + 1) % 5, "b", 200)))
        t.start()
        for v in victims:
            c.kill9(v)
        t.join(120)
        rest = [i for i in range(5) if i not in victims]
        new, _ = wait_for(lambda: agree_on_other(c, rest, leader), 20,
                          "a leader among the survivors")
        acked.update(more)
        acked.update(write_many(c, new, "c", 100))
        assert_present(c, acked, new)


def test_follower_down_for_thousands_of_writes_catches_up(three):
    c = three
    leader = c.wait_leader()
    f = (leader + 1) % 3
    assert c.stop(f) == 0
    acked = write_many(c, leader, "bulk", 3000, threads=8)
    assert len(acked) == 3000
    c.start(f)
    c.wait_ready(f)

    def caught_up():
        lf, ll = c.info(f), c.info(leader)
        return lf and ll and lf["appliedIndex"] >= ll["commitIndex"] or None
    wait_for(caught_up, 60, "the follower to catch up")
    # Leadership moves to the follower; reading from it shows the data.
    r = c.request(leader, "POST", "/cluster/leader", c.addr(f).encode(), timeout=10)
    assert r.status == 200, r
    assert c.wait_leader() == f
    sample = dict(random.Random(7).sample(sorted(acked.items()), 200))
    assert_present(c, sample, f)


# ---------------------------------------------------------------- linearizability

def nemesis(c, stop, rng, log):
    """Partitions, heals, kill -9 and restarts (the leader included), one
    at a time, until stop is set."""
    while not stop.is_set():
        action = rng.choice(["partition", "isolate-leader", "kill", "heal"])
        if action == "partition":
            nodes = list(range(c.n))
            rng.shuffle(nodes)
            cut = rng.randint(1, c.n // 2)
            c.net.partition([nodes[:cut], nodes[cut:]])
        elif action == "isolate-leader":
            ld = c.leader()
            if ld is not None:
                c.net.isolate(ld)
        elif action == "kill":
            ld = c.leader()
            victim = ld if ld is not None and rng.random() < 0.5 else rng.randrange(c.n)
            c.kill9(victim)
            stop.wait(rng.uniform(0.3, 1.0))
            c.start(victim)
        else:
            c.net.heal()
        log.append(action)
        stop.wait(rng.uniform(0.5, 1.5))
    c.net.heal()


@pytest.mark.parametrize("n", [3, 5])
def test_concurrent_clients_stay_linearizable_through_faults(n):
    rng = random.Random(1234 + n)
    with started(n) as c:
        c.wait_leader()
        history = History()
        w = Workload(c, history, clients=6, keys=[f"k{i}" for i in range(8)],
                     ops_per_client=100000, duration=20, seed=n, timeout=2.0)
        stop, actions = threading.Event(), []
        t = threading.Thread(target=nemesis, args=(c, stop, rng, actions))
        w.start()
        t.start()
        wait_for(lambda: w.done() or None, 60, "the clients to finish")
        stop.set()
        t.join(30)
        w.join()
        assert w.completed("ok") >= 100, f"too little got through: {w.summary()}"
        result = check(history, timeout=60)
        assert result.status == "ok", (str(result), actions, w.summary())


def test_the_checker_rejects_a_stale_read_in_a_real_history(three):
    c = three
    c.wait_leader()
    history = History()
    w = Workload(c, history, clients=4, keys=["k"], ops_per_client=60, duration=20,
                 mix=(("put", 1),), seed=9, timeout=2.0)
    w.start()
    w.join()
    assert check(history).status == "ok"
    ops = [o for o in history.ops() if o.kind == "put" and o.ret is not None]
    assert len(ops) >= 2
    first, last = min(ops, key=lambda o: o.ret), max(ops, key=lambda o: o.ret)
    # a read, after the newest write returned, that sees the first value
    stale = Op("get", "k", first.value, call=last.ret + 1, ret=last.ret + 2, process="stale")
    result = check(history.ops() + [stale])
    assert result.status == "illegal", str(result)


# ---------------------------------------------------------------- observability

def test_cluster_info_stats_and_metrics_show_the_raft_figures(three):
    c = three
    leader, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    put_ok(c, leader, "x", b"y")

    def followers_listed():
        info = c.info(leader)
        fs = info.get("followers", []) if info else []
        return len(fs) == 2 and all(f["lag"] == 0 for f in fs) and fs or None
    fs = wait_for(followers_listed, 20, "both followers caught up in /cluster/info")
    assert {f["id"] for f in fs} == {a for a in c.addrs() if a != c.addr(leader)}
    assert all(f["matchIndex"] == c.info(leader)["lastIndex"] for f in fs)
    stats = c.request(leader, "GET", "/stats").json()
    assert stats["raft"]["role"] == "leader" and stats["raft"]["term"] == term
    assert stats["raft"]["messages_sent"]["append"] > 0
    assert stats["raft"]["elections_won"] >= 1
    metrics = c.request(leader, "GET", "/metrics").text
    assert f"lkv_raft_term {term}" in metrics
    assert 'lkv_raft_role{role="leader"} 1' in metrics
    assert "lkv_raft_follower_lag{follower=" in metrics
    members = c.request((leader + 1) % 3, "GET", "/cluster/members").json()
    assert members["leader"] == c.addr(leader) and not members["joint"]
    assert sorted(m["id"] for m in members["members"]) == sorted(c.addrs())
