"""The cluster process manager, HTTP client, workload and checker together,
against stand-in nodes (standin.py) since the real binary does not cluster
yet; and the real binary as a cluster of one, when it is built."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

import netns
from cluster import Cluster, ClusterError, default_binary, wait_for
from linearizability import History, check
from netns import CLIENT
from workload import Workload

UNAVAILABLE = netns.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None,
                                reason=f"network namespaces unavailable: {UNAVAILABLE}")

STANDIN = [sys.executable, str(Path(__file__).with_name("standin.py"))]


@pytest.fixture
def standins(request):
    """Three stand-in nodes, started and ready. Parametrise indirectly with
    a mode to get the broken one."""
    mode = getattr(request, "param", "redirect")
    c = Cluster(3, binary=STANDIN, env={"STANDIN_MODE": mode})
    try:
        c.start_all()
        c.wait_all_ready()
        yield c
    finally:
        c.cleanup()


def test_nodes_start_with_the_clstr_convention(standins):
    c = standins
    for i in range(3):
        info = c.info(i)
        assert info["id"] == c.addr(i) == f"10.213.0.{10 + i}:8080"
        assert sorted(info["peers"]) == sorted(c.addr(j) for j in range(3) if j != i)
        assert info["pid"] == c.pid(i)
        assert c.data_dir(i).is_dir()
        log = c.log_path(i).read_text()
        assert "=== start 1 of node 0" in c.log_path(0).read_text()
        assert f"addr={c.addr(i)}" in log
    assert c.wait_leader() == 0


def test_requests_follow_redirects_to_the_leader(standins):
    c = standins
    r = c.request(2, "PUT", "/kv/a", "one")
    assert r.status == 200 and r.addr == c.addr(0) and r.redirects == [c.addr(2)]
    r = c.request(1, "GET", "/kv/a")
    assert r.status == 200 and r.body == b"one" and r.redirects == [c.addr(1)]
    r = c.request(1, "GET", "/kv/a", follow=False)
    assert r.status == 307 and r.header("Location") == f"http://{c.addr(0)}/kv/a"


def test_kill9_and_restart_keep_acknowledged_writes(standins):
    c = standins
    kv = c.kv_client()
    assert kv.put("k", "before", node=0).status == "ok"
    c.kill9(0)
    assert not c.running(0)
    out = kv.put("k", "during", node=1)       # redirected to the dead leader
    assert out.status == "fail" and not out.error.sent
    c.restart(0)
    c.wait_ready(0)
    assert kv.get("k", node=2).value == "before"
    assert c.starts[0] == 2 and "=== start 2 of node 0" in c.log_path(0).read_text()


def test_stop_is_sigterm_and_waits(standins):
    assert standins.stop(1) == 0
    assert not standins.running(1)
    assert standins.health(1) is None


def test_wait_ready_reports_a_node_that_dies(tmp_path):
    with Cluster(1, binary=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]) as c:
        c.start(0)
        with pytest.raises(ClusterError, match=r"exited \(3\)(.|\n)*boom"):
            c.wait_ready(0, timeout=20)


def test_outcomes_of_requests(standins):
    c = standins
    h = History()
    kv = c.kv_client(h, process="t", timeout=0.5)
    assert kv.put("x", "1").status == "ok"
    assert kv.get("x").value == "1"
    assert kv.delete("x").status == "ok"
    out = kv.get("x")
    assert out.status == "ok" and out.value is None
    # The leader applies the write, then answers after the client gave up.
    out = kv.put("x", "2", node=0, headers={"X-Standin-Delay-Ms": "3000"})
    assert out.status == "unknown" and out.error.sent
    kv.timeout = 10
    assert kv.get("x").value == "2"
    # A node the client cannot reach: the request never left.
    c.net.partition([[0, 1], [2, CLIENT]])
    kv.timeout = 0.5
    out = kv.put("x", "3", node=1)
    assert out.status == "fail" and not out.error.sent
    c.net.heal()
    ops = h.ops()
    assert [o.kind for o in ops] == ["put", "get", "delete", "get", "put", "get"]
    assert ops[4].unknown
    assert check(h).status == "ok"


def test_workload_with_kills_and_partitions_is_linearizable(standins):
    c = standins
    h = History()
    w = Workload(c, h, clients=6, keys=["a", "b", "c"], ops_per_client=150, duration=60,
                 timeout=1.0, seed=1, pause=0.01).start()

    def more(n, status=None):
        target = w.completed(status) + n
        wait_for(lambda: w.completed(status) >= target or w.done(), 30, f"{n} more ops")

    # The nemesis, each step once the clients have made progress: kill the
    # leader and restart it, cut the client off from it, slow a follower.
    more(50, "ok")
    c.kill9(0)
    more(20)
    c.restart(0)
    c.wait_ready(0)
    more(50, "ok")
    c.net.partition([[0], [1, 2, CLIENT]])
    more(10)
    c.net.heal()
    c.net.delay(1, 50)
    more(50, "ok")
    w.join()
    assert w.counts.get(("put", "fail")), w.summary()      # the nemesis was felt
    assert w.counts.get(("put", "ok"), 0) > 50, w.summary()
    r = check(h, timeout=60)
    assert r.status == "ok", str(r)


@pytest.mark.parametrize("standins", ["stale"], indirect=True)
def test_stale_reads_from_a_broken_cluster_are_caught(standins):
    c = standins
    h = History()
    kv = c.kv_client(h, process="t")
    # Followers get writes 5 s late and serve reads from their own copy.
    assert kv.put("k", "new", node=0).status == "ok"
    assert kv.get("k", node=1).value is None
    r = check(h)
    assert r.status == "illegal" and r.key == "k"
    assert "not found" in r.explanation


@pytest.mark.parametrize("standins", ["stale"], indirect=True)
def test_workload_against_a_broken_cluster_is_not_linearizable(standins):
    h = History()
    Workload(standins, h, clients=4, keys=["a", "b"], ops_per_client=40, duration=60,
             seed=2).start().join()
    r = check(h, timeout=60)
    assert r.status == "illegal", str(r)


def test_delayable_cluster_slows_peer_connections_already_open():
    with Cluster(2, binary=STANDIN, delayable=True) as c:
        c.start_all()
        c.wait_all_ready()
        assert c.net.faults()["delay"] == {0: 0, 1: 0}
        with c.net.connect(1, 0, c.port, timeout=10) as s:   # as a peer would
            c.net.delay(1, 300)
            t = time.monotonic()
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.")
            assert time.monotonic() - t >= 0.3


def test_history_of_a_run_can_be_saved_for_replay(standins, tmp_path):
    h = History()
    Workload(standins, h, clients=2, keys=["a"], ops_per_client=10).start().join()
    h.dump(tmp_path / "history.jsonl")
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(h) and json.loads(lines[0])["key"] == {"str": "a"}


@pytest.mark.skipif(not os.access(default_binary(), os.X_OK),
                    reason=f"{default_binary()} not built (make)")
def test_real_binary_as_a_cluster_of_one():
    with Cluster(1) as c:
        c.start(0)
        c.wait_ready(0)
        kv = c.kv_client()
        assert kv.put("k", "v").status == "ok"
        assert kv.get("k").value == "v"
        c.kill9(0)
        c.restart(0)
        c.wait_ready(0)
        assert kv.get("k").value == "v"
        assert c.stop(0) == 0
