"""Command line and environment: options, their two spellings, defaults,
refusals (exit 2) and unusable data directories (exit 1)."""
import socket

import pytest

from conftest import (HOST, VERSION, port_accepts, free_port, run_binary, stderr_lines)


def test_help_prints_usage_to_stdout_and_exits_0():
    r = run_binary(["--help"])
    assert r.returncode == 0, r.stderr
    for opt in ("--port", "--working-dir", "--bind", "--max-value-bytes", "--log-level"):
        assert opt in r.stdout, f"{opt} missing from --help:\n{r.stdout}"


def test_version_prints_name_and_version_file_and_exits_0():
    r = run_binary(["--version"])
    assert r.returncode == 0, r.stderr
    assert any("little-key-value" in line and VERSION in line for line in r.stdout.splitlines()), r.stdout


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_port_and_working_dir_accept_both_spellings(start_server, tmp_path, form):
    port, data = free_port(), tmp_path / "fresh-dir"
    if form == "separate":
        args = ["--port", str(port), "--working-dir", str(data)]
    else:
        args = [f"--port={port}", f"--working-dir={data}"]
    s = start_server(args=args, port=port, data_dir=data, port_flag=False, data_dir_flag=False)
    assert s.put("k", "v").status == 200
    assert s.get("k").body == b"v"
    assert data.is_dir(), "working dir was not created"


VALID_OPTIONS = [
    ("--bind", "127.0.0.1"),
    ("--peers", ""),
    ("--threads", "2"),
    ("--max-connections", "100"),
    ("--max-key-bytes", "16"),
    ("--max-value-bytes", "1m"),
    ("--max-header-bytes", "8192"),
    ("--idle-timeout", "30"),
    ("--request-timeout", "5"),
    ("--shutdown-timeout", "5"),
    ("--checkpoint-bytes", "1m"),
    ("--log-level", "debug"),
]


@pytest.mark.parametrize("form", ["separate", "equals"])
@pytest.mark.parametrize("opt,value", VALID_OPTIONS, ids=[o for o, _ in VALID_OPTIONS])
def test_every_option_accepts_both_spellings(start_server, opt, value, form):
    args = [opt, value] if form == "separate" else [f"{opt}={value}"]
    s = start_server(args=args)
    assert s.put("k", "v").status == 200
    assert s.get("k").body == b"v"


BAD_OPTIONS = [
    (["--bogus"], "bogus"),
    (["--bogus=1"], "bogus"),
    (["--port", "0"], "port"),
    (["--port", "65536"], "port"),
    (["--port", "-1"], "port"),
    (["--port", "eighty"], "port"),
    (["--port=80x"], "port"),
    (["--port="], "port"),
    (["--max-value-bytes", "lots"], "max-value-bytes"),
    (["--max-value-bytes", "1x"], "max-value-bytes"),
    (["--max-value-bytes", "0"], "max-value-bytes"),
    (["--max-key-bytes", "abc"], "max-key-bytes"),
    (["--max-key-bytes", "0"], "max-key-bytes"),
    (["--max-header-bytes", "abc"], "max-header-bytes"),
    (["--idle-timeout", "soon"], "idle-timeout"),
    (["--request-timeout", "-5"], "request-timeout"),
    (["--shutdown-timeout", "x"], "shutdown-timeout"),
    (["--threads", "many"], "threads"),
    (["--max-connections", "none"], "max-connections"),
    (["--checkpoint-bytes", "big"], "checkpoint-bytes"),
    (["--log-level", "verbose"], "log-level"),
]


@pytest.mark.parametrize("args,name", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_stderr_line_naming_it_and_exit_2(tmp_path, args, name):
    port = free_port()
    full = ["--working-dir", str(tmp_path / "d")] + args
    if name != "port":
        full += ["--port", str(port)]
    r = run_binary(full)
    assert r.returncode == 2, f"exit {r.returncode}; stderr:\n{r.stderr}"
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1, f"expected one stderr line, got:\n{r.stderr}"
    assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    if name != "port":
        assert not port_accepts(port)


def test_option_missing_its_value_is_refused_with_exit_2(tmp_path):
    r = run_binary(["--working-dir", str(tmp_path / "d"), "--port"])
    assert r.returncode == 2, r.stderr
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and "port" in lines[0], r.stderr


def test_default_port_is_8080_and_default_working_dir_is_data_in_cwd(start_server, tmp_path):
    if port_accepts(8080):
        pytest.skip("something else is listening on 8080")
    s = start_server(port=8080, data_dir=tmp_path / "data", cwd=tmp_path,
                     port_flag=False, data_dir_flag=False)
    assert s.put("k", "v").status == 200
    assert (tmp_path / "data").is_dir(), "./data was not created in the working directory"


def test_bind_restricts_listening_to_that_address(start_server):
    s = start_server(args=["--bind", "127.0.0.2"], host="127.0.0.2")
    assert s.request("GET", "/health").status == 200
    assert not port_accepts(s.port, "127.0.0.1"), "reachable on 127.0.0.1 although bound to 127.0.0.2"


def test_default_bind_listens_on_all_addresses(server):
    assert port_accepts(server.port, "127.0.0.1")
    assert port_accepts(server.port, "127.0.0.2")


@pytest.mark.parametrize("limit,size", [("1k", 1024), ("2K", 2048), ("1m", 1 << 20)])
def test_max_value_bytes_accepts_binary_suffixes(start_server, limit, size):
    s = start_server(args=["--max-value-bytes", limit])
    assert s.put("at-limit", b"x" * size).status == 200
    assert s.get("at-limit").body == b"x" * size
    r = s.put("over-limit", b"x" * (size + 1))
    assert r.status == 413, r
    assert s.get("over-limit").status == 404


def test_max_value_bytes_can_raise_the_limit_above_the_default(start_server):
    s = start_server(args=["--max-value-bytes=64m"])
    big = b"v" * (10 * 1024 * 1024 + 1)  # one byte over the default limit
    assert s.put("big", big, timeout=30).status == 200
    assert s.head("big").header("Content-Length") == str(len(big))
    with s.raw() as c:  # 64 MiB + 1 is still refused, from the header alone
        c.send(b"PUT /kv/huge HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % ((64 << 20) + 1))
        assert c.read_response().status == 413


@pytest.mark.parametrize("value", ["1g", "1G", "2g"])
def test_size_options_accept_the_g_suffix(start_server, value):
    s = start_server(args=["--checkpoint-bytes", value])
    assert s.put("k", "v").status == 200


def test_max_key_bytes_changes_the_key_limit(start_server):
    s = start_server(args=["--max-key-bytes", "8"])
    assert s.put("k" * 8, "v").status == 200
    r = s.put("k" * 9, "v")
    assert (r.status, r.body) == (400, b"invalid key\n")


def test_max_header_bytes_raises_the_header_limit(start_server):
    s = start_server(args=["--max-header-bytes", "32768"])
    r = s.request("GET", "/health", headers={"X-Filler": "a" * 12000})
    assert r.status == 200, r


def test_log_level_error_hides_informational_lines(start_server):
    quiet = start_server(args=["--log-level", "error"])
    assert quiet.put("k", "v").status == 200
    assert quiet.stop() == 0
    noisy = start_server(args=["--log-level", "info"])
    assert noisy.put("k", "v").status == 200
    assert noisy.stop() == 0
    assert "request_summary" in noisy.stderr_text()
    assert "request_summary" not in quiet.stderr_text(), quiet.stderr_text()
    assert len(stderr_lines(quiet.stderr_text())) < len(stderr_lines(noisy.stderr_text()))


# --- environment ---------------------------------------------------------

def test_addr_environment_sets_the_port_and_ignores_the_host(start_server, tmp_path):
    port = free_port()
    # The clstr harness passes this node's name; only the port matters.
    s = start_server(port=port, env={"ADDR": f"node-1:{port}"}, port_flag=False)
    assert s.put("k", "v").status == 200


def test_data_dir_environment_sets_the_working_dir(start_server, tmp_path):
    data = tmp_path / "from-env"
    s = start_server(data_dir=data, env={"DATA_DIR": str(data)}, data_dir_flag=False)
    assert s.put("k", "v").status == 200
    assert data.is_dir()


def test_flags_win_over_environment(start_server, tmp_path):
    env_port, flag_port = free_port(), free_port()
    env_dir, flag_dir = tmp_path / "env-dir", tmp_path / "flag-dir"
    s = start_server(port=flag_port, data_dir=flag_dir,
                     env={"ADDR": f"{HOST}:{env_port}", "DATA_DIR": str(env_dir)})
    assert s.put("k", "v").status == 200
    assert not port_accepts(env_port), "listening on ADDR's port although --port was given"
    assert flag_dir.is_dir()
    assert not env_dir.exists(), "DATA_DIR was used although --working-dir was given"


def test_empty_peers_environment_runs_a_single_node(start_server):
    s = start_server(env={"PEERS": ""})
    assert s.put("k", "v").status == 200


@pytest.mark.parametrize("how", ["env", "flag"])
def test_malformed_peers_is_refused_with_exit_2(tmp_path, how):
    port = free_port()
    args = ["--port", str(port), "--working-dir", str(tmp_path / "d")]
    env = None
    if how == "env":
        env = {"PEERS": "10.0.0.2:8080,not-an-address"}
    else:
        args += ["--peers", "10.0.0.2:8080,not-an-address"]
    r = run_binary(args, env=env)
    assert r.returncode == 2, f"exit {r.returncode}; stderr:\n{r.stderr}"
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and "peers" in lines[0].lower(), r.stderr
    assert not port_accepts(port)


# --- data directory --------------------------------------------------------

def test_working_dir_below_a_regular_file_exits_1_naming_the_path(tmp_path):
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory")
    bad = blocker / "data"
    port = free_port()
    r = run_binary(["--port", str(port), "--working-dir", str(bad)])
    assert r.returncode == 1, f"exit {r.returncode}; stderr:\n{r.stderr}"
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] or str(blocker) in lines[0], lines[0]
    assert not port_accepts(port)


def test_working_dir_that_is_a_regular_file_exits_1_naming_the_path(tmp_path):
    bad = tmp_path / "regular-file"
    bad.write_text("not a directory")
    r = run_binary(["--port", str(free_port()), "--working-dir", str(bad)])
    assert r.returncode == 1, f"exit {r.returncode}; stderr:\n{r.stderr}"
    lines = stderr_lines(r.stderr)
    assert len(lines) == 1 and str(bad) in lines[0], r.stderr


def test_port_already_in_use_fails_start_up_without_serving(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_binary(["--bind", HOST, "--port", str(port), "--working-dir", str(tmp_path / "d")])
    assert r.returncode != 0, r.stderr
    assert str(port) in r.stderr, r.stderr
