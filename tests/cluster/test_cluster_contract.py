"""The Cluster section's smaller promises, against the real binary in
namespaces: who may POST /raft (cluster id, membership, recipient, secret,
checksum), a restart that ignores PEERS, a --join node that waits, the
membership and info views, /clear redirected, a write that lost its
leader, and a cluster of one that leads before it answers."""

import os
import struct
import sys
import time

import pytest

import netns
from cluster import Cluster, wait_for
from test_raft_cluster import agree, put_ok, three  # noqa: F401  (three: a fixture)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crash"))
from lkvcrash import crc32c  # noqa: E402  (the disk format's checksum, also the wire's)

UNAVAILABLE = netns.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None,
                                reason=f"network namespaces unavailable: {UNAVAILABLE}")

# ---------------------------------------------------------------- the wire format
# docs/raft-protocol.md: FNV-1a ids, a 40-byte batch header, 56-byte
# message headers, CRC-32C of everything before the last 4 bytes.

FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def fnv1a(h, s):
    for b in s.encode():
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def member_id(addr):
    return fnv1a(FNV_OFFSET, addr) or 1


def cluster_id(addrs):
    h = FNV_OFFSET
    for a in sorted(addrs):
        h = fnv1a(fnv1a(h, a), ",")
    return h or 1


def heartbeat_batch(cid, src, dst, term=1):
    """One heartbeat in an otherwise valid batch. Term 1 is below any term
    a running cluster has reached, so the node answers it and changes nothing."""
    hb = struct.pack("<BBHIQQQQQQ", 7, 0, 0, 0, term, 0, 0, 0, 0, 0)
    body = b"LKVR" + bytes([1, 0, 0, 0]) + struct.pack("<QQQII", cid, src, dst, 1, 0) + hb
    return body + struct.pack("<I", crc32c(body))


def post_raft(c, i, body, headers=None):
    h = {"Content-Type": "application/octet-stream"}
    h.update(headers or {})
    return c.request(i, "POST", "/raft", body, h, follow=False).status


# ---------------------------------------------------------------- tests

def test_raft_accepts_only_this_clusters_members_addressed_to_it(three):
    c = three
    leader, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    f = (leader + 1) % 3
    cid = cluster_id(c.addrs())
    me, other = member_id(c.addr(f)), member_id(c.addr((f + 1) % 3))
    stranger = member_id("10.213.0.99:8080")
    assert post_raft(c, f, heartbeat_batch(cid, other, me)) == 204
    assert post_raft(c, f, heartbeat_batch(cid ^ 1, other, me)) == 403      # another cluster
    assert post_raft(c, f, heartbeat_batch(cid, stranger, me)) == 403      # not a member
    assert post_raft(c, f, heartbeat_batch(cid, other, other)) == 403      # not for this node
    good = heartbeat_batch(cid, other, me)
    assert post_raft(c, f, good[:-1] + bytes([good[-1] ^ 0xFF])) == 400   # checksum
    assert post_raft(c, f, b"hello") == 400
    # none of it disturbed the cluster
    assert agree(c, range(3)) == (leader, term)
    put_ok(c, leader, "after-raft-probes", b"fine")


def test_with_a_cluster_secret_raft_needs_it():
    c = Cluster(3, args=["--cluster-secret", "s3cret"])
    try:
        c.start_all()
        c.wait_all_ready()
        leader, _ = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
        put_ok(c, leader, "secret", b"kept")       # the nodes themselves send it
        f = (leader + 1) % 3
        body = heartbeat_batch(cluster_id(c.addrs()), member_id(c.addr(leader)),
                               member_id(c.addr(f)))
        assert post_raft(c, f, body) == 403
        assert post_raft(c, f, body, {"X-Cluster-Secret": "wrong"}) == 403
        assert post_raft(c, f, body, {"X-Cluster-Secret": "s3cret"}) == 204
    finally:
        c.cleanup()


def test_a_restart_reads_the_membership_from_its_log_and_ignores_peers(three):
    c = three
    leader, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    f = (leader + 1) % 3
    c.stop(f)
    c.start(f, extra_args=["--peers", "10.213.0.99:8080"])
    c.wait_ready(f)
    assert "event=peers_ignored" in c.log_path(f).read_text()
    want = sorted(a for a in c.addrs() if a != c.addr(f))
    assert sorted(c.info(f)["peers"]) == want
    nl = c.wait_leader()
    put_ok(c, nl, "after-restart", b"same-members")
    assert wait_for(lambda: c.request(f, "GET", "/kv/after-restart").body == b"same-members",
                    20, "the restarted node serving the write through its leader")


def test_a_join_node_never_campaigns_and_answers_503_no_leader():
    c = Cluster(1, args=["--join"])
    try:
        c.start(0)
        c.wait_ready(0)
        info = c.info(0)
        assert info["role"] == "follower" and info["leader"] is None and info["peers"] == []
        r = c.request(0, "PUT", "/kv/x", b"y", follow=False)
        assert (r.status, r.body.strip()) == (503, b"no leader")
        assert r.header("Retry-After") == "1"
        # What must not happen is watched for over six election timeouts
        # (T = 500 ms, each drawn under 1 s): 60 polls, 0.1 s apart.
        for _ in range(60):
            assert "event=election_started" not in c.log_path(0).read_text()
            assert c.info(0)["role"] == "follower"
            assert c.request(0, "GET", "/kv/x", follow=False).status == 503
            time.sleep(0.1)
    finally:
        c.cleanup()


def test_members_view_info_fields_and_clear_redirect(three):
    c = three
    leader, term = wait_for(lambda: agree(c, range(3)), 20, "agreement on a leader")
    r = c.request(leader, "GET", "/cluster/members")
    assert r.status == 200
    m = r.json()
    assert sorted(x["id"] for x in m["members"]) == sorted(c.addrs())
    assert all(x["voter"] is True for x in m["members"])
    assert m["leader"] == c.addr(leader) and m["joint"] is False
    f = (leader + 1) % 3
    r = c.request(f, "GET", "/cluster/info")
    assert r.header("Content-Type", "").startswith("application/json")
    info = r.json()
    assert info["id"] == c.addr(f) and info["role"] == "follower" and info["term"] == term
    assert info["leader"] == c.addr(leader) and info["votedFor"] in (None, *c.addrs())
    assert sorted(info["peers"]) == sorted(a for a in c.addrs() if a != c.addr(f))
    for k in ("commitIndex", "appliedIndex", "lastIndex"):
        assert isinstance(info[k], int)
    r = c.request(f, "DELETE", "/clear?why=test", follow=False)
    assert r.status == 307
    assert r.header("Location") == f"http://{c.addr(leader)}/clear?why=test"


def test_a_write_whose_leader_is_cut_off_gets_503_leadership_lost():
    # A long election timeout: the cut-off leader keeps believing it leads
    # for up to that long, so the PUT reaches it while it still does.
    c = Cluster(3, args=["--election-timeout-ms", "3000", "--heartbeat-ms", "100"])
    try:
        c.start_all()
        c.wait_all_ready()
        leader, term = wait_for(lambda: agree(c, range(3)), 40, "agreement on a leader")
        put_ok(c, leader, "before", b"1")
        c.net.isolate(leader)
        r = c.request(leader, "PUT", "/kv/lost", b"2", follow=False, timeout=20)
        assert (r.status, r.body.strip()) == (503, b"leadership lost"), r
        c.net.heal()
        nl = c.wait_leader(timeout=40)
        put_ok(c, nl, "after", b"3")
        got = c.request(nl, "GET", "/kv/before")
        assert got.status == 200 and got.body == b"1"
    finally:
        c.cleanup()


def test_a_cluster_of_one_leads_before_it_answers():
    c = Cluster(1)
    try:
        c.start(0)
        c.wait_ready(0)
        info = c.info(0)      # the first answer it gives after /health
        assert info["role"] == "leader" and info["leader"] == c.addr(0)
        r = c.request(0, "PUT", "/kv/solo", b"v", follow=False)
        assert r.status == 200
    finally:
        c.cleanup()
