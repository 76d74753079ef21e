"""Concurrent key-value clients that record a History, for cluster tests.

    w = Workload(cluster, history, clients=6, keys=["k0", "k1"], ops_per_client=200)
    w.start()
    ...                       # the nemesis: kill, partition, delay, restart
    w.join(timeout=120)       # every client stops after its ops or at w.deadline
    result = linearizability.check(history)

Each client is a thread with its own KvClient and random generator (seeded,
so a run's choice of operations repeats; the interleaving does not). Every
put writes a value unique in the whole run ("c<client>-<n>"), which is what
makes unknown writes cheap for the checker. Clients pick a node at random
for each request (or one from `nodes`) and follow redirects.

Keep per-key histories to a few hundred operations (more keys, or a new
key every so often): the checker's cost grows with the operations that are
concurrent on one key, unknown-outcome deletes above all.
"""
import random
import threading
import time

from cluster import IO_TIMEOUT, ClusterError

DEFAULT_MIX = (("get", 0.45), ("put", 0.45), ("delete", 0.10))


class Workload:
    def __init__(self, cluster, history, clients=4, keys=("k0",), ops_per_client=100,
                 duration=60.0, mix=DEFAULT_MIX, seed=0, nodes=None, timeout=IO_TIMEOUT,
                 pause=0.0):
        self.cluster = cluster
        self.history = history
        self.keys = list(keys)
        self.ops_per_client = ops_per_client
        self.duration = duration
        self.mix = list(mix)
        self.seed = seed
        self.nodes = nodes
        self.timeout = timeout
        self.pause = pause                # seconds between one client's requests
        self.clients = clients
        self.counts = {}                  # (kind, status) -> n, under lock
        self.errors = []                  # exceptions that ended a client thread
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.deadline = None

    def start(self):
        self.deadline = time.monotonic() + self.duration
        for c in range(self.clients):
            t = threading.Thread(target=self._client, args=(c,), name=f"c{c}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self):
        """Ask every client to finish its current request and end."""
        self._stop.set()

    def completed(self, status=None):
        """Requests finished so far (with that status only, if given)."""
        with self._lock:
            return sum(n for (_, s), n in self.counts.items() if status in (None, s))

    def done(self):
        """Every client has finished."""
        return bool(self._threads) and not any(t.is_alive() for t in self._threads)

    def join(self, timeout=None):
        """Wait for the clients; ClusterError if one is still running after
        timeout (default: the deadline plus two request timeouts)."""
        if timeout is None:
            timeout = max(0.0, self.deadline - time.monotonic()) + 2 * self.timeout + 5
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.stop()
            raise ClusterError(f"clients {alive} still running after {timeout:.1f}s")
        if self.errors:
            raise self.errors[0]
        return self.counts

    def _client(self, c):
        rng = random.Random(f"{self.seed}/{c}")
        kv = self.cluster.kv_client(self.history, process=f"c{c}", timeout=self.timeout,
                                    nodes=self.nodes, rng=rng)
        kinds = [k for k, _ in self.mix]
        weights = [w for _, w in self.mix]
        try:
            for n in range(self.ops_per_client):
                if self._stop.is_set() or time.monotonic() >= self.deadline:
                    break
                kind = rng.choices(kinds, weights)[0]
                key = rng.choice(self.keys)
                if kind == "put":
                    out = kv.put(key, f"c{c}-{n}")
                elif kind == "get":
                    out = kv.get(key)
                else:
                    out = kv.delete(key)
                with self._lock:
                    self.counts[(kind, out.status)] = self.counts.get((kind, out.status), 0) + 1
                if self.pause:
                    self._stop.wait(self.pause)
        except Exception as e:  # reported by join(); the history stays usable
            with self._lock:
                self.errors.append(e)

    def summary(self):
        with self._lock:
            return ", ".join(f"{k}/{s}={n}" for (k, s), n in sorted(self.counts.items()))
