"""Crash-test fixtures: servers that are always reaped, a data directory and a
fault-control file per test. Helpers live in lkvcrash.py (shared with
torture.py)."""
import os
import random

import pytest

import lkvcrash


def pytest_report_header(config):
    return [f"lkv binary: {lkvcrash.LKV_BIN}", f"fault shim: {lkvcrash.LKV_FAULT_LIB}"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def fault_ctl(tmp_path):
    """Path of the shim's control file (outside the data directory). Absent
    means no fault; write lines to it to inject faults."""
    assert os.path.exists(lkvcrash.LKV_FAULT_LIB), \
        f"fault shim {lkvcrash.LKV_FAULT_LIB} not built (run `make crash`)"
    return tmp_path / "faults"


@pytest.fixture
def start_server():
    """start_server(data_dir, *args, fault_ctl=None, ready=True) -> Server.
    Every server started here is killed at teardown if still running."""
    started = []

    def start(data_dir, *args, fault_ctl=None, ready=True):
        srv = lkvcrash.Server(data_dir, args, fault_ctl=fault_ctl)
        started.append(srv)
        if ready:
            srv.wait_ready()
        return srv

    yield start
    for srv in started:
        srv.cleanup()


@pytest.fixture
def rng(request):
    """A seeded Random; the seed is in the test's failure report (set
    LKV_CRASH_SEED to replay one)."""
    seed = int(os.environ.get("LKV_CRASH_SEED") or random.randrange(1 << 32))
    request.node.user_properties.append(("seed", seed))
    print(f"seed={seed}")
    return random.Random(seed)
