"""An isolated test network of Linux network namespaces, for cluster tests.

Standard library only, no pytest. Needs root, iproute2 (`ip netns`) and
iptables (the nf_tables variant works; no netem needed).

Layout of one Net with N nodes, subnet S (default "10.213.0"), run prefix
P = "lkvt<pid>-<k>-" (k counts the Nets of one process):

    namespace P+"hub"                       namespace P+"n<i>", i = 0..N-1
    +-------------------------------+       +------------------------------+
    | bridge lkvt-br  S.1/24        |       | lo 127.0.0.1                 |
    |   = the client address        |       | eth0 S.(10+i)/24             |
    |   ports lkvt-n0 .. lkvt-n<N-1> +-veth-+ iptables filter:             |
    | iptables filter: INPUT ->     |       |   INPUT  -> lkvt-cut, lkvt-loss-in
    |   lkvt-cut (cuts to client)   |       |   OUTPUT -> lkvt-loss-out    |
    +-------------------------------+       | iptables nat:                |
                                            |   OUTPUT -> lkvt-delay       |
                                            +------------------------------+

- Nothing is created in the host's (root) namespace: no interface, route or
  rule. Node namespaces have no default route, so they reach only the
  subnet. Because every address lives inside private namespaces, the subnet
  cannot collide with the host's; it is configurable for readability only.
- Node i has address S.(10+i), so the last digit names the node. The hub's
  bridge address S.1 is "the client": test code in this process talks to
  the nodes from there (see `socket`), not from the root namespace. From the
  root namespace S.x is routed out of the default route, where a sandbox's
  egress proxy may even accept the connection, so never connect from there.
- Everything visible from the host (the namespaces) carries the run prefix
  P. Objects inside them (bridge, veths, chains) carry the family prefix
  "lkvt-"; they cannot collide with anything and vanish with their
  namespace.

Faults, all with iptables inside our namespaces:
- cut(src, dst): packets from src to dst are dropped in dst's INPUT chain
  (dst's lkvt-cut; for dst = CLIENT the hub's). A drop at the receiver is a
  black hole: connects time out, established connections stall; nothing
  gets a reset. partition(groups) cuts every pair in different groups both
  ways; heal() removes every cut.
- loss(i, p): each packet in and out of node i's eth0 is dropped with
  probability p (`-m statistic --mode random`); 0 removes it.
- delay(i, ms): new TCP connections from node i to the other nodes' peer
  ports are redirected (nat OUTPUT REDIRECT) to a delayproxy.py process in
  node i's namespace, which connects on to the original destination (read
  with SO_ORIGINAL_DST) with SO_MARK set, the mark the REDIRECT rule
  excludes, and holds every chunk it forwards, in both directions, for ms.
  Changing the delay takes effect at once, on open connections too.
  undelay(i) removes the redirect (connections already made through the
  proxy stay on it with delay 0).

Processes: popen(i, argv) runs argv in node i's namespace with
`ip netns exec` (which execs, so the Popen's pid is argv's process).
cleanup() kills every process this Net started and whatever else is still
inside its namespaces, then deletes them. It runs at exit (atexit, and a
SIGTERM/SIGHUP handler when the default one was in place). A run that was
SIGKILLed leaves namespaces behind; sweep() removes those of dead runs of
the family (run prefix with a pid that no longer exists), killing what
still runs inside them, and every new Net calls it first.
"""
import atexit
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

FAMILY = "lkvt"
CLIENT = "client"
DEFAULT_SUBNET = "10.213.0"
NODE_HOST_BASE = 10
CLIENT_HOST = 1
PROXY_MARK = 0x4C4B           # SO_MARK of the delay proxy's own connections
IFNAMSIZ = 15                 # usable characters of an interface name

CMD_TIMEOUT = 20.0            # any one ip/iptables command
KILL_TIMEOUT = 10.0           # SIGKILL until a process is gone
PROXY_START_TIMEOUT = 10.0

NETNS_DIR = Path("/run/netns")
DELAYPROXY = Path(__file__).resolve().with_name("delayproxy.py")

# Chains, in node namespaces unless said otherwise.
CHAIN_CUT = "lkvt-cut"             # filter INPUT (also in the hub)
CHAIN_LOSS_IN = "lkvt-loss-in"     # filter INPUT
CHAIN_LOSS_OUT = "lkvt-loss-out"   # filter OUTPUT
CHAIN_DELAY = "lkvt-delay"         # nat OUTPUT
BRIDGE = "lkvt-br"
NODE_IFACE = "eth0"

_RUN_RE = re.compile(r"^%s(\d+)-" % FAMILY)
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_net_ids = itertools.count()
_live = []                         # every Net not yet cleaned up
_live_lock = threading.RLock()         # re-entered by the signal handler
_handlers_installed = False


class NetError(Exception):
    pass


def available():
    """None when namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "iptables-restore"):
        if not _which(tool):
            return f"{tool} not found"
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=CMD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ip netns unavailable: {e}"
    if r.returncode != 0:
        return "ip netns unavailable: " + r.stderr.decode(errors="replace").strip()
    return None


def _which(tool):
    # sbin may be missing from a non-login root PATH; ip and iptables live there.
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(tool, path=path) is not None


def sh(argv, input=None, check=True, timeout=CMD_TIMEOUT):
    """Run one command, bounded in time; NetError with its stderr on failure."""
    try:
        r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NetError(f"timed out after {timeout}s: {' '.join(argv)}") from None
    if check and r.returncode != 0:
        raise NetError(f"failed ({r.returncode}): {' '.join(argv)}: "
                       + r.stderr.decode(errors="replace").strip())
    return r


def list_namespaces():
    r = sh(["ip", "netns", "list"])
    return [line.split()[0] for line in r.stdout.decode().splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(ns):
    """SIGKILL every process inside ns (they were started there by a Net),
    and wait until they are gone."""
    deadline = time.monotonic() + KILL_TIMEOUT
    while True:
        r = sh(["ip", "netns", "pids", ns], check=False)
        pids = [int(p) for p in r.stdout.split()] if r.returncode == 0 else []
        if not pids:
            return
        if time.monotonic() > deadline:
            raise NetError(f"processes {pids} in {ns} survive SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _delete_namespace(ns):
    _kill_namespace_processes(ns)
    sh(["ip", "netns", "del", ns], check=False)


def sweep(family=FAMILY):
    """Delete the namespaces of dead runs of this family; returns their names.
    A run is dead when the pid in its prefix no longer exists."""
    run_re = re.compile(r"^%s(\d+)-" % re.escape(family))
    removed = []
    for ns in list_namespaces():
        m = run_re.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            # Node namespaces first: the hub's bridge ports go with them.
            removed.append(ns)
    for ns in sorted(removed, key=lambda n: n.endswith("hub")):
        _delete_namespace(ns)
    return removed


class _NsSwitch:
    """Moves the calling thread into a namespace and back (setns acts on one
    thread). A socket keeps the namespace it was created in."""

    def __init__(self, ns):
        self.ns = ns

    def __enter__(self):
        self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = os.open(NETNS_DIR / self.ns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self.back)
            raise
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                os.close(self.back)
                raise OSError(e, f"setns({self.ns}): {os.strerror(e)}")
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            if _libc.setns(self.back, _CLONE_NEWNET) != 0:
                # A thread left in a test namespace would send traffic to the
                # wrong place; there is no safe way to go on.
                e = ctypes.get_errno()
                os.write(2, f"netns: cannot return from {self.ns}: {os.strerror(e)}\n".encode())
                os._exit(70)
        finally:
            os.close(self.back)


def _cleanup_all():
    with _live_lock:
        nets = list(_live)
    for net in nets:
        try:
            net.cleanup()
        except Exception as e:  # at exit: report, go on with the others
            print(f"netns: cleanup of {net.prefix} failed: {e}", file=sys.stderr)


def _on_signal(signum, frame):
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)


class _Proxy:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.lock = threading.Lock()

    def command(self, line):
        with self.lock:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
            reply = _readline_bounded(self.proc, PROXY_START_TIMEOUT)
        if not reply.startswith("ok"):
            raise NetError(f"delay proxy answered {reply!r} to {line!r}")


def _readline_bounded(proc, timeout):
    """One line of proc's stdout, or NetError when none comes in time."""
    out = []

    def read():
        out.append(proc.stdout.readline().decode(errors="replace").strip())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive() or not out:
        raise NetError(f"no answer from pid {proc.pid} within {timeout}s")
    return out[0]


class Net:
    """N node namespaces on one bridge; see the module docstring.

    Nodes are 0..N-1; CLIENT names the hub's bridge address wherever a node
    may be named (cut, socket, popen, ip)."""

    def __init__(self, n, subnet=DEFAULT_SUBNET, peer_ports=(8080,), family=FAMILY):
        if not 1 <= n <= 200:
            raise ValueError("between 1 and 200 nodes")
        if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", subnet):
            raise ValueError("subnet is three octets, e.g. 10.213.0")
        self.n = n
        self.subnet = subnet
        self.peer_ports = tuple(peer_ports)
        self.prefix = f"{family}{os.getpid()}-{next(_net_ids)}-"
        self.hub = self.prefix + "hub"
        self._procs = []            # every Popen started by this Net
        self._procs_lock = threading.RLock()  # re-entered by the signal handler
        self._proxies = {}          # node -> _Proxy
        self._cuts = set()          # (src, dst)
        self._loss = {}             # node -> p
        self._delay = {}            # node -> ms
        self._rules_lock = threading.Lock()
        self._closed = False
        sweep(family)
        _install_exit_handlers()
        with _live_lock:
            _live.append(self)
        t0 = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.cleanup()
            raise
        self.setup_seconds = time.monotonic() - t0

    # ------------------------------------------------------------ naming

    def ns(self, who):
        """The namespace of a node, or the hub for CLIENT."""
        if who == CLIENT:
            return self.hub
        self._check_node(who)
        return f"{self.prefix}n{who}"

    def ip(self, who):
        if who == CLIENT:
            return f"{self.subnet}.{CLIENT_HOST}"
        self._check_node(who)
        return f"{self.subnet}.{NODE_HOST_BASE + who}"

    def namespaces(self):
        return [self.ns(i) for i in range(self.n)] + [self.hub]

    def _check_node(self, i):
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise ValueError(f"no node {i!r} (nodes are 0..{self.n - 1} and CLIENT)")

    # ------------------------------------------------------------ building

    def _build(self):
        ip = lambda ns, *args: sh(["ip", "-n", ns, *args])
        sh(["ip", "netns", "add", self.hub])
        ip(self.hub, "link", "set", "dev", "lo", "up")
        ip(self.hub, "link", "add", "name", BRIDGE, "type", "bridge")
        ip(self.hub, "addr", "add", f"{self.ip(CLIENT)}/24", "dev", BRIDGE)
        ip(self.hub, "link", "set", "dev", BRIDGE, "up")
        self._restore(self.hub, f"*filter\n:{CHAIN_CUT} - [0:0]\n-A INPUT -j {CHAIN_CUT}\nCOMMIT\n")
        for i in range(self.n):
            ns, port = self.ns(i), f"lkvt-n{i}"
            assert len(port) <= IFNAMSIZ
            sh(["ip", "netns", "add", ns])
            ip(ns, "link", "set", "dev", "lo", "up")
            ip(self.hub, "link", "add", "name", port, "type", "veth",
               "peer", "name", NODE_IFACE, "netns", ns)
            ip(self.hub, "link", "set", "dev", port, "master", BRIDGE, "up")
            ip(ns, "addr", "add", f"{self.ip(i)}/24", "dev", NODE_IFACE)
            ip(ns, "link", "set", "dev", NODE_IFACE, "up")
            self._restore(ns, (
                f"*filter\n:{CHAIN_CUT} - [0:0]\n:{CHAIN_LOSS_IN} - [0:0]\n:{CHAIN_LOSS_OUT} - [0:0]\n"
                f"-A INPUT -j {CHAIN_CUT}\n-A INPUT -j {CHAIN_LOSS_IN}\n-A OUTPUT -j {CHAIN_LOSS_OUT}\n"
                f"COMMIT\n*nat\n:{CHAIN_DELAY} - [0:0]\n-A OUTPUT -j {CHAIN_DELAY}\nCOMMIT\n"))

    def _restore(self, ns, text):
        sh(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=text.encode())

    # ------------------------------------------------------------ processes

    def exec_argv(self, who):
        """The argv prefix that runs a command in who's namespace."""
        return ["ip", "netns", "exec", self.ns(who)]

    def popen(self, who, argv, **kwargs):
        """Start argv in who's namespace; cleanup() kills it if still running."""
        if self._closed:
            raise NetError("net is cleaned up")
        proc = subprocess.Popen(self.exec_argv(who) + list(argv), **kwargs)
        with self._procs_lock:
            self._procs.append(proc)
        return proc

    def run(self, who, argv, timeout=CMD_TIMEOUT, check=False, input=None):
        """Run argv in who's namespace to completion (bounded); CompletedProcess."""
        try:
            return subprocess.run(self.exec_argv(who) + list(argv), input=input,
                                  capture_output=True, timeout=timeout, check=check)
        except subprocess.TimeoutExpired:
            raise NetError(f"timed out after {timeout}s in {self.ns(who)}: {argv}") from None

    # ------------------------------------------------------------ sockets

    def socket(self, who=CLIENT, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A socket living in who's namespace (CLIENT: the hub, at the client
        address). Connect it from any thread; traffic stays in the test net."""
        with _NsSwitch(self.ns(who)):
            return socket.socket(family, type)

    def connect(self, who, dst, port, timeout=5.0):
        """A TCP connection from who to dst (a node, CLIENT or an address)."""
        host = dst if isinstance(dst, str) and dst != CLIENT else self.ip(dst)
        s = self.socket(who)
        try:
            s.settimeout(timeout)
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    def can_connect(self, who, dst, port, timeout=1.0):
        try:
            self.connect(who, dst, port, timeout).close()
            return True
        except OSError:
            return False

    # ------------------------------------------------------------ partitions

    def cut(self, src, dst):
        """Drop every packet from src to dst (one way)."""
        self._set_cuts(self._cuts | {(src, dst)})

    def cut_both(self, a, b):
        self._set_cuts(self._cuts | {(a, b), (b, a)})

    def uncut(self, src, dst):
        self._set_cuts(self._cuts - {(src, dst)})

    def partition(self, groups):
        """Replace all cuts: members of different groups cannot talk, either
        way. groups must cover every node; CLIENT may be put in a group, and
        when it is in none it still reaches every node."""
        groups = [list(g) for g in groups]
        seen = [m for g in groups for m in g]
        if len(seen) != len(set(seen)):
            raise ValueError(f"a member is in two groups: {groups}")
        missing = set(range(self.n)) - set(seen)
        if missing:
            raise ValueError(f"nodes {sorted(missing)} are in no group")
        for m in seen:
            if m != CLIENT:
                self._check_node(m)
        cuts = set()
        for gi, g in enumerate(groups):
            for gj, h in enumerate(groups):
                if gi != gj:
                    cuts |= {(a, b) for a in g for b in h}
        self._set_cuts(cuts)

    def isolate(self, node):
        """Cut node from every other node, both ways (the client still reaches it)."""
        self.partition([[node], [i for i in range(self.n) if i != node]] if self.n > 1 else [[node]])

    def heal(self):
        """Remove every cut (loss and delay stay)."""
        self._set_cuts(set())

    def cuts(self):
        return set(self._cuts)

    def _set_cuts(self, cuts):
        for src, dst in cuts:
            for m in (src, dst):
                if m != CLIENT:
                    self._check_node(m)
            if src == dst:
                raise ValueError(f"cannot cut {src!r} from itself")
        with self._rules_lock:
            old = self._cuts
            for dst in set(d for _, d in old) | set(d for _, d in cuts):
                want = sorted(self.ip(s) for s, d in cuts if d == dst)
                have = sorted(self.ip(s) for s, d in old if d == dst)
                if want != have:
                    rules = "".join(f"-A {CHAIN_CUT} -s {a} -j DROP\n" for a in want)
                    self._restore(self.ns(dst), f"*filter\n-F {CHAIN_CUT}\n{rules}COMMIT\n")
            self._cuts = set(cuts)

    # ------------------------------------------------------------ loss

    def loss(self, node, p):
        """Drop each packet into and out of node's interface with probability p."""
        self._check_node(node)
        if not 0.0 <= p <= 1.0:
            raise ValueError("p is a probability")
        with self._rules_lock:
            text = f"*filter\n-F {CHAIN_LOSS_IN}\n-F {CHAIN_LOSS_OUT}\n"
            if p > 0:
                stat = f"-m statistic --mode random --probability {p:.6f} -j DROP\n"
                text += (f"-A {CHAIN_LOSS_IN} -i {NODE_IFACE} {stat}"
                         f"-A {CHAIN_LOSS_OUT} -o {NODE_IFACE} {stat}")
            self._restore(self.ns(node), text + "COMMIT\n")
            if p > 0:
                self._loss[node] = p
            else:
                self._loss.pop(node, None)

    # ------------------------------------------------------------ delay

    def delay(self, node, ms, ports=None):
        """Hold node's outgoing TCP traffic to the peers (both directions of
        those connections) for ms per chunk; see the module docstring."""
        self._check_node(node)
        if ms < 0:
            raise ValueError("ms >= 0")
        ports = tuple(ports or self.peer_ports)
        with self._rules_lock:
            proxy = self._proxies.get(node) or self._start_proxy(node)
            proxy.command(f"delay {ms:g}")
            rules = "".join(
                f"-A {CHAIN_DELAY} -p tcp -d {self.ip(j)} --dport {port} "
                f"-m mark ! --mark {PROXY_MARK:#x} -j REDIRECT --to-ports {proxy.port}\n"
                for j in range(self.n) if j != node for port in ports)
            self._restore(self.ns(node), f"*nat\n-F {CHAIN_DELAY}\n{rules}COMMIT\n")
            self._delay[node] = ms

    def undelay(self, node):
        self._check_node(node)
        with self._rules_lock:
            if node not in self._delay:
                return
            self._restore(self.ns(node), f"*nat\n-F {CHAIN_DELAY}\nCOMMIT\n")
            self._proxies[node].command("delay 0")
            del self._delay[node]

    def _start_proxy(self, node):
        proc = self.popen(node, [sys.executable, str(DELAYPROXY), "--mark", str(PROXY_MARK)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = _readline_bounded(proc, PROXY_START_TIMEOUT)
        m = re.fullmatch(r"port (\d+)", line)
        if not m:
            raise NetError(f"delay proxy in {self.ns(node)} said {line!r}")
        proxy = _Proxy(proc, int(m.group(1)))
        self._proxies[node] = proxy
        return proxy

    # ------------------------------------------------------------ all faults

    def faults(self):
        return {"cuts": set(self._cuts), "loss": dict(self._loss), "delay": dict(self._delay)}

    def clear_faults(self):
        self.heal()
        for node in list(self._loss):
            self.loss(node, 0)
        for node in list(self._delay):
            self.undelay(node)

    # ------------------------------------------------------------ teardown

    def cleanup(self):
        """Kill everything started here, delete every namespace. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._procs_lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        existing = set(list_namespaces())
        for ns in [self.ns(i) for i in range(self.n)] + [self.hub]:
            if ns in existing:
                _delete_namespace(ns)
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
