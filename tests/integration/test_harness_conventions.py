"""How the two public harnesses drive the server: lc runs ./run.sh with flags
and treats an accepting port as ready; clstr runs the binary with ADDR,
DATA_DIR and PEERS only and polls /health."""
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import REPO, TEXT_PLAIN, Server, free_port, port_accepts

RUN_SH = REPO / "run.sh"


def wait_accepting(server, timeout):
    """lc's readiness rule: the port accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = server.proc.poll()
        if rc is not None:
            pytest.fail(f"exited with {rc} before listening; stderr:\n{server.stderr_text()}")
        if port_accepts(server.port, timeout=0.5):
            return
        time.sleep(0.02)
    pytest.fail(f"port {server.port} not accepting after {timeout}s; stderr:\n{server.stderr_text()}")


def kill_leftovers(marker):
    """SIGKILLs processes this test started indirectly (a server orphaned by
    killing run.sh), recognised by the unique temp path on their command line."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def lc(tmp_path):
    """Starts ./run.sh the way lc does; kills whatever is left at the end."""
    if not RUN_SH.exists():
        pytest.fail("run.sh is missing from the repository root")
    started = []

    def start(port, data_dir, form="equals"):
        if form == "equals":
            args = [f"--port={port}", f"--working-dir={data_dir}"]
        else:
            args = ["--port", str(port), "--working-dir", str(data_dir)]
        s = Server(data_dir, tmp_path / "logs", port=port, args=args, cwd=REPO,
                   port_flag=False, data_dir_flag=False, binary="./run.sh")
        started.append(s)
        s.start(wait=False)
        wait_accepting(s, 30)
        return s

    yield start
    for s in started:
        if s.running:
            s.proc.kill()
            s.proc.wait(5)
    kill_leftovers(str(tmp_path))


@pytest.mark.parametrize("form", ["equals", "separate"])
def test_lc_run_sh_serves_as_soon_as_the_port_accepts(lc, tmp_path, form):
    s = lc(free_port(), tmp_path / "lc-data", form)
    # No /health poll: lc sends its first request right after connecting.
    r = s.put("first", "request")
    assert r.status == 200, r
    assert s.get("first").body == b"request"


def test_lc_sigterm_to_run_sh_exits_0_within_15_seconds(lc, tmp_path):
    s = lc(free_port(), tmp_path / "lc-data")
    assert s.put("k", "v").status == 200
    s.send_signal(signal.SIGTERM)
    assert s.wait_exit(timeout=15) == 0
    assert not port_accepts(s.port)


def test_lc_restart_after_sigterm_on_the_same_port_and_directory(lc, tmp_path):
    port, data = free_port(), tmp_path / "lc-data"
    first = lc(port, data)
    assert first.put("k", "v").status == 200
    first.send_signal(signal.SIGTERM)
    assert first.wait_exit(timeout=15) == 0
    time.sleep(1)
    second = lc(port, data)
    assert second.put("k2", "v").status == 200


def test_lc_restart_after_sigkill_of_run_sh_on_the_same_port_and_directory(lc, tmp_path):
    # SIGKILL reaches only run.sh's own process: unless run.sh execs the
    # server, an orphan keeps the port and the directory lock.
    port, data = free_port(), tmp_path / "lc-data"
    first = lc(port, data)
    assert first.put("k", "v").status == 200
    first.proc.kill()
    first.proc.wait(5)
    time.sleep(1)
    second = lc(port, data)
    assert second.put("k2", "v").status == 200
    assert second.proc.poll() is None, f"restarted server exited:\n{second.stderr_text()}"


def test_clstr_environment_only_start(start_server, tmp_path):
    port, data = free_port(), tmp_path / "clstr-data"
    s = start_server(port=port, data_dir=data, port_flag=False, data_dir_flag=False,
                     env={"ADDR": f"127.0.0.1:{port}", "DATA_DIR": str(data), "PEERS": ""})
    assert s.command() == [s.binary], "must be started without flags"
    r = s.put("k", "v")
    assert r.status == 200
    assert r.header("Content-Type") == TEXT_PLAIN  # clstr checks this on a PUT's 200
    assert s.get("k").body == b"v"
    assert data.is_dir()
    s.send_signal(signal.SIGTERM)
    assert s.wait_exit(timeout=5) == 0  # clstr's grace period


def test_binary_serves_as_soon_as_the_port_accepts(start_server):
    s = start_server(wait=False)
    wait_accepting(s, 10)
    r = s.put("first", "request")
    assert r.status == 200, r
