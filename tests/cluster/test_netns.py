"""The namespace network: reachability, partitions, one-way cuts, loss,
delay, and that nothing is left behind. Needs root and `ip netns`."""
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import netns
from netns import CLIENT, Net

UNAVAILABLE = netns.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None,
                                reason=f"network namespaces unavailable: {UNAVAILABLE}")

PORT = 8080
UDP_PORT = 9000
# A blocked path never answers, so a negative check waits its whole timeout:
# keep that short. A short wait can only make a negative check pass
# wrongly, never fail wrongly; positive checks get a generous one.
BLOCKED_WAIT = 0.5
OPEN_WAIT = 10.0
READY_TIMEOUT = 20.0


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Three nodes, each serving an empty directory over HTTP on PORT."""
    root = tmp_path_factory.mktemp("www")
    n = Net(3, peer_ports=(PORT,))
    try:
        for i in range(3):
            n.popen(i, [sys.executable, "-m", "http.server", str(PORT), "--bind", "0.0.0.0",
                        "--directory", str(root)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: all(n.can_connect(CLIENT, i, PORT) for i in range(3)),
                   READY_TIMEOUT, "the HTTP servers")
        yield n
    finally:
        n.cleanup()


@pytest.fixture(autouse=True)
def no_faults_left(request):
    yield
    if "net" in request.fixturenames:
        request.getfixturevalue("net").clear_faults()


def reach(net, src, dst):
    return net.can_connect(src, dst, PORT, timeout=OPEN_WAIT)


def blocked(net, src, dst):
    return not net.can_connect(src, dst, PORT, timeout=BLOCKED_WAIT)


def http_exchange(net, src, dst, timeout=10.0):
    """A whole GET / from src to dst's server; the seconds it took."""
    t = time.monotonic()
    with net.connect(src, dst, PORT, timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.0 200"), data[:100]
    return time.monotonic() - t


def gone(pid):
    """Exited: no such process, or a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def datagram_arrives(net, src, dst, wait=OPEN_WAIT):
    """Send one UDP datagram src -> dst; did it arrive within wait?"""
    rx = net.socket(dst, type=socket.SOCK_DGRAM)
    tx = net.socket(src, type=socket.SOCK_DGRAM)
    try:
        rx.bind((net.ip(dst), UDP_PORT))
        rx.settimeout(wait)
        token = os.urandom(8)
        tx.sendto(token, (net.ip(dst), UDP_PORT))
        try:
            while True:
                data, _ = rx.recvfrom(64)
                if data == token:
                    return True
        except socket.timeout:
            return False
    finally:
        rx.close()
        tx.close()


def datagram_blocked(net, src, dst):
    return not datagram_arrives(net, src, dst, BLOCKED_WAIT)


# ------------------------------------------------------------------ layout

def test_every_node_reaches_every_other_and_the_client_reaches_all(net):
    for i in range(3):
        assert reach(net, CLIENT, i)
        for j in range(3):
            if i != j:
                assert reach(net, i, j), (i, j)


def test_addresses_and_names_follow_the_layout(net):
    assert [net.ip(i) for i in range(3)] == ["10.213.0.10", "10.213.0.11", "10.213.0.12"]
    assert net.ip(CLIENT) == "10.213.0.1"
    names = netns.list_namespaces()
    for ns in net.namespaces():
        assert ns in names and ns.startswith(net.prefix)
    addr = net.run(1, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout.decode()
    assert "10.213.0.11/24" in addr


def test_nodes_have_no_route_out_of_the_test_network(net):
    r = net.run(0, ["ip", "route", "get", "192.0.2.1"])
    assert r.returncode != 0 and b"unreachable" in r.stderr.lower()
    routes = net.run(0, ["ip", "-4", "route"]).stdout.decode()
    assert "default" not in routes


def test_host_namespace_is_untouched(net):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, timeout=10).stdout.decode()
    assert "lkvt" not in links
    rules = subprocess.run(["iptables-save"], capture_output=True, timeout=10).stdout.decode()
    assert "lkvt" not in rules


# ------------------------------------------------------------------ partitions

def test_partition_cuts_both_ways_and_heal_restores(net):
    net.partition([[0], [1, 2]])
    assert blocked(net, 0, 1) and blocked(net, 1, 0)
    assert blocked(net, 0, 2) and blocked(net, 2, 0)
    assert reach(net, 1, 2) and reach(net, 2, 1)
    assert all(reach(net, CLIENT, i) for i in range(3))
    net.heal()
    assert reach(net, 0, 1) and reach(net, 1, 0) and reach(net, 2, 0)


def test_partition_can_cut_the_client_off_too(net):
    net.partition([[0, CLIENT], [1, 2]])
    assert reach(net, CLIENT, 0)
    assert blocked(net, CLIENT, 1) and blocked(net, CLIENT, 2)
    assert reach(net, 1, 2)
    net.heal()
    assert reach(net, CLIENT, 1)


def test_partitions_replace_each_other(net):
    net.partition([[0], [1, 2]])
    net.partition([[0, 1], [2]])
    assert reach(net, 0, 1)
    assert blocked(net, 1, 2) and blocked(net, 0, 2)


def test_partition_must_place_every_node(net):
    with pytest.raises(ValueError):
        net.partition([[0], [1]])
    with pytest.raises(ValueError):
        net.partition([[0, 1], [1, 2]])


def test_one_way_cut_drops_only_that_direction(net):
    net.cut(0, 1)
    assert datagram_blocked(net, 0, 1)
    assert datagram_arrives(net, 1, 0)
    assert datagram_arrives(net, 0, 2)
    net.uncut(0, 1)
    assert datagram_arrives(net, 0, 1)


def test_one_way_cut_from_the_client(net):
    net.cut(CLIENT, 2)
    assert datagram_blocked(net, CLIENT, 2)
    assert datagram_arrives(net, 2, CLIENT)
    net.cut(2, CLIENT)
    assert datagram_blocked(net, 2, CLIENT)
    net.heal()
    assert datagram_arrives(net, CLIENT, 2) and datagram_arrives(net, 2, CLIENT)


# ------------------------------------------------------------------ loss

def test_total_loss_blocks_the_node_and_zero_loss_restores_it(net):
    net.loss(1, 1.0)
    assert blocked(net, 0, 1) and blocked(net, 1, 0)
    assert blocked(net, CLIENT, 1)
    assert reach(net, 0, 2)
    assert all(datagram_blocked(net, 0, 1) for _ in range(3))
    net.loss(1, 0.0)
    assert reach(net, 0, 1) and reach(net, 1, 0) and reach(net, CLIENT, 1)
    assert all(datagram_arrives(net, 0, 1) for _ in range(3))


def test_loss_uses_a_random_drop_rule(net):
    net.loss(2, 0.25)
    rules = net.run(2, ["iptables", "-S"]).stdout.decode()
    assert re.search(r"-A lkvt-loss-in -i eth0 -m statistic --mode random "
                     r"--probability 0\.25\d* -j DROP", rules), rules
    net.loss(2, 0)
    assert "statistic" not in net.run(2, ["iptables", "-S"]).stdout.decode()


# ------------------------------------------------------------------ delay

def test_delay_adds_at_least_the_configured_latency(net):
    net.delay(0, 300)
    # A request and its response each wait 300 ms: at least that in all.
    assert http_exchange(net, 0, 1) >= 0.3
    assert http_exchange(net, 0, 2) >= 0.3


def test_delay_can_be_changed_while_running(net):
    net.delay(0, 100)
    http_exchange(net, 0, 1)
    net.delay(0, 700)
    assert http_exchange(net, 0, 1) >= 0.7


def test_delay_on_an_open_connection(net):
    net.delay(0, 0)                 # the connection goes through the proxy, undelayed
    with net.connect(0, 1, PORT, timeout=10) as s:
        net.delay(0, 500)           # takes effect for chunks from now on
        t = time.monotonic()
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(12).startswith(b"HTTP/1.0")
        assert time.monotonic() - t >= 0.5


def test_delayed_traffic_still_obeys_partitions(net):
    net.delay(0, 50)
    net.partition([[0], [1, 2]])
    assert blocked(net, 1, 0)
    with pytest.raises(OSError):
        # The proxy accepts locally, then cannot reach node 1: the
        # exchange fails instead of answering.
        http_exchange(net, 0, 1, timeout=2.0)
    net.heal()
    http_exchange(net, 0, 1)


def test_undelay_removes_the_redirect(net):
    net.delay(0, 200)
    net.undelay(0)
    rules = net.run(0, ["iptables", "-t", "nat", "-S", netns.CHAIN_DELAY]).stdout.decode()
    assert "REDIRECT" not in rules
    http_exchange(net, 0, 1)


def test_delay_is_only_on_the_delayed_node_outgoing_peer_traffic(net):
    net.delay(0, 200)
    rules = net.run(0, ["iptables", "-t", "nat", "-S", netns.CHAIN_DELAY]).stdout.decode()
    assert "-d 10.213.0.11/32" in rules and "-d 10.213.0.12/32" in rules
    assert "10.213.0.1/32" not in rules and "10.213.0.10/32" not in rules
    assert f"--dport {PORT}" in rules and "! --mark" in rules
    for i in (1, 2):
        assert "REDIRECT" not in net.run(i, ["iptables", "-t", "nat", "-S"]).stdout.decode()


# ------------------------------------------------------------------ teardown

def test_cleanup_leaves_nothing_behind():
    n = Net(2)
    server = n.popen(1, [sys.executable, "-m", "http.server", str(PORT)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stray = n.run(0, ["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"]).stdout.split()
    n.delay(0, 10)
    proxy = n._proxies[0].proc
    n.cleanup()
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(n.prefix)]
    assert server.poll() is not None and proxy.poll() is not None
    assert gone(int(stray[0]))                               # not started by popen, still killed
    n.cleanup()                                              # idempotent


def test_sweep_removes_namespaces_of_dead_runs_only():
    p = subprocess.Popen(["true"])
    p.wait()
    dead = f"{netns.FAMILY}{p.pid}-0-n0"
    live = f"{netns.FAMILY}{os.getpid()}-999-n0"
    for ns in (dead, live):
        netns.sh(["ip", "netns", "add", ns])
    sleeper = subprocess.Popen(["ip", "netns", "exec", dead, "sleep", "600"])
    try:
        removed = netns.sweep()
        assert dead in removed and live not in removed
        names = netns.list_namespaces()
        assert dead not in names and live in names
        assert sleeper.wait(10) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
        for ns in (dead, live):
            netns.sh(["ip", "netns", "del", ns], check=False)


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
def test_namespaces_go_when_the_process_ends(ending):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(netns.__file__)!r})
        import netns
        n = netns.Net(2)
        n.delay(1, 10)
        print(n.prefix, flush=True)
        if {ending!r} == "sigterm":
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        prefix = p.stdout.readline().decode().strip()
        assert prefix.startswith(netns.FAMILY)
        if ending == "sigterm":
            p.send_signal(15)
        p.wait(30)
    finally:
        p.kill()
        p.wait()
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(prefix)]
