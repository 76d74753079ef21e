"""What an operator sees: /health, /stats (JSON), /metrics (Prometheus text
0.0.4), and the start-up and shutdown log lines."""
import json
import math
import re
import time

import pytest

from conftest import VERSION

ROUTES = ["kv_get", "kv_head", "kv_put", "kv_delete", "clear", "health", "stats", "metrics", "other"]


# --- /health -----------------------------------------------------------------------

def test_health_is_200_ok(server):
    r = server.request("GET", "/health")
    assert (r.status, r.body) == (200, b"ok\n")


def test_head_health_is_200_without_body(server):
    with server.raw() as c:
        c.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_response("HEAD")
        get = c.read_response()
    assert head.status == 200
    assert head.header("Content-Length") == "3"
    assert get.body == b"ok\n"


@pytest.mark.parametrize("path", ["/health", "/stats", "/metrics"])
def test_head_on_read_only_endpoints_is_200_without_body(server, path):
    with server.raw() as c:
        c.send(b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        head = c.read_response("HEAD")
        after = c.read_response()
    assert head.status == 200, head
    assert int(head.header("Content-Length", "0")) > 0, head
    assert (after.status, after.body) == (200, b"ok\n"), "HEAD response carried a body"


# --- /stats ------------------------------------------------------------------------

def flatten(obj, path=()):
    """[(path tuple, leaf)] for every leaf of a JSON document."""
    if isinstance(obj, dict):
        return [item for k, v in obj.items() for item in flatten(v, path + (str(k),))]
    if isinstance(obj, list):
        return [item for i, v in enumerate(obj) for item in flatten(v, path + (list_label(v, i),))]
    return [(path, obj)]


def list_label(element, index):
    """A list of objects such as [{"route": "kv_put", ...}] is labelled by
    the naming field, so it reads like {"kv_put": {...}}."""
    if isinstance(element, dict):
        for k in ("route", "name", "code", "status"):
            if isinstance(element.get(k), (str, int)) and not isinstance(element.get(k), bool):
                return str(element[k])
    return str(index)


def numbers(doc):
    return {p: v for p, v in flatten(doc)
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def get_stats(server):
    r = server.request("GET", "/stats")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    return json.loads(r.body)


def increments(before, after, route=None, contains=None):
    """Numeric leaves that exist in both documents, restricted to paths
    mentioning `route` (and `contains`), mapped to their increase."""
    out = {}
    for p, v in after.items():
        if p in before and (route is None or route in p) and (contains is None or contains in p):
            out[p] = v - before[p]
    return out


def exercise_every_route(server):
    assert server.put("a", "1").status == 200
    assert server.get("a").status == 200
    assert server.head("a").status == 200
    assert server.delete("a").status == 200
    assert server.request("DELETE", "/clear").status == 200
    assert server.request("GET", "/health").status == 200
    assert server.request("GET", "/metrics").status == 200
    assert server.request("GET", "/nope").status == 404
    get_stats(server)


def test_stats_is_json_naming_every_route(server):
    exercise_every_route(server)
    doc = get_stats(server)
    names = {part for p, _ in flatten(doc) for part in p}
    missing = [r for r in ROUTES if r not in names]
    assert not missing, f"routes missing from /stats: {missing}\n{json.dumps(doc, indent=1)}"


def test_stats_route_counts_increase_by_the_requests_made(server):
    exercise_every_route(server)
    before = numbers(get_stats(server))
    for i in range(5):
        assert server.put(f"k{i}", "v").status == 200
    for i in range(3):
        assert server.get(f"k{i}").status == 200
    for i in range(2):
        assert server.request("GET", f"/unknown{i}").status == 404
    after = numbers(get_stats(server))
    for route, n in (("kv_put", 5), ("kv_get", 3), ("other", 2)):
        deltas = increments(before, after, route)
        assert n in deltas.values(), f"no {route} figure rose by {n}: {deltas}"


def test_stats_count_status_codes(server):
    exercise_every_route(server)
    before = numbers(get_stats(server))
    for i in range(4):
        assert server.get(f"missing{i}").status == 404
    for i in range(3):
        assert server.get("bad!").status == 400
    after = numbers(get_stats(server))
    assert 4 in increments(before, after, contains="404").values(), increments(before, after, contains="404")
    assert 3 in increments(before, after, contains="400").values(), increments(before, after, contains="400")


def latency_figures(doc, route):
    """{'min': v, 'avg': v, ...} from leaves under `route` whose name starts
    with each statistic (min, min_us, p50_ms...)."""
    out = {}
    for p, v in numbers(doc).items():
        if route not in p:
            continue
        leaf = p[-1].lower()
        for stat in ("min", "avg", "p50", "p99", "max"):
            if leaf == stat or re.match(rf"{stat}[_-]", leaf):
                out.setdefault(stat, v)
    return out


def test_stats_report_ordered_latency_per_route(server):
    for i in range(30):
        assert server.put(f"k{i}", "v" * (i + 1)).status == 200
        assert server.get(f"k{i}").status == 200
    doc = get_stats(server)
    for route in ("kv_put", "kv_get"):
        lat = latency_figures(doc, route)
        assert set(lat) == {"min", "avg", "p50", "p99", "max"}, f"{route}: {lat}\n{json.dumps(doc, indent=1)}"
        assert 0 <= lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"], lat
        assert lat["min"] <= lat["avg"] <= lat["max"], lat
        assert lat["max"] > 0, lat


def key_count_paths(doc, expected):
    return [p for p, v in numbers(doc).items()
            if re.search(r"keys|key_count", "_".join(p).lower()) and v == expected]


def test_stats_report_key_count_and_bytes(server):
    data = {"alpha": b"1234567890", "beta": b"x" * 100, "gamma": b"\x00" * 7}
    for k, v in data.items():
        assert server.put(k, v).status == 200
    doc = get_stats(server)
    assert key_count_paths(doc, 3), f"no key count of 3:\n{json.dumps(doc, indent=1)}"
    value_bytes = sum(len(v) for v in data.values())
    total_bytes = value_bytes + sum(len(k) for k in data)
    bytes_paths = [p for p, v in numbers(doc).items()
                   if "bytes" in p[-1].lower() and v in (value_bytes, total_bytes)]
    assert bytes_paths, f"no bytes figure of {value_bytes} or {total_bytes}:\n{json.dumps(doc, indent=1)}"

    assert server.request("DELETE", "/clear").status == 200
    doc = get_stats(server)
    assert key_count_paths(doc, 0), f"key count not 0 after clear:\n{json.dumps(doc, indent=1)}"
    after = numbers(doc)
    assert any(after.get(p) == 0 for p in bytes_paths), f"bytes not 0 after clear: {bytes_paths}"


def test_stats_report_the_size_of_the_snapshot_on_disk(start_server):
    server = start_server(args=["--checkpoint-bytes", "4096"])
    deadline = time.monotonic() + 10
    i = 0
    while get_stats(server)["checkpoints"]["count"] == 0:
        assert time.monotonic() < deadline, "no checkpoint after 4 KiB of log"
        assert server.put(f"k{i}", "v" * 200).status == 200
        i += 1
    ckpt = get_stats(server)["checkpoints"]
    snap = server.data_dir / ("snap-%020d.snap" % ckpt["last_index"])
    assert snap.exists(), sorted(p.name for p in server.data_dir.iterdir())
    assert ckpt["last_bytes"] == snap.stat().st_size > 64


INDEXES = ("last_index", "durable_index", "commit_index", "applied_index")


def log_indexes(server):
    log = get_stats(server)["log"]
    return tuple(log[k] for k in INDEXES)


def test_stats_show_durable_commit_and_applied_indexes_advancing_per_write(server):
    start = log_indexes(server)
    assert len(set(start)) == 1, f"idle single node, yet {dict(zip(INDEXES, start))}"
    assert server.put("a", "1").status == 200
    assert log_indexes(server) == tuple(v + 1 for v in start)
    assert server.put("b", "2").status == 200
    assert server.delete("a").status == 200
    assert server.request("DELETE", "/clear").status == 200
    assert log_indexes(server) == tuple(v + 4 for v in start)
    assert server.get("b").status == 404  # reads move no index
    assert log_indexes(server) == tuple(v + 4 for v in start)


def test_indexes_resume_where_they_were_after_a_restart(start_server):
    server = start_server()
    for i in range(3):
        assert server.put(f"k{i}", "v").status == 200
    before = log_indexes(server)
    assert before[0] >= 3, before
    server.restart()
    assert log_indexes(server) == before
    assert server.put("k9", "v").status == 200
    assert log_indexes(server) == tuple(v + 1 for v in before)


# --- /metrics --------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, f"bad label set {text!r}"
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_metrics(text):
    """Checks the exposition format and returns ({family: type},
    [(name, labels, value)])."""
    types, helps, samples, seen_sample = {}, set(), [], set()
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"second HELP for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"second TYPE for {name}"
            assert name not in seen_sample, f"TYPE for {name} after its samples"
            types[name] = kind
        elif line.startswith("#"):
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line {line!r}"
            name, labels, value = m.group(1), parse_labels(m.group(3) or ""), m.group(4)
            v = float(value)  # accepts +Inf, -Inf, NaN
            family = name
            if family not in types:
                for suffix in ("_bucket", "_sum", "_count", "_total"):
                    if name.endswith(suffix) and name[: -len(suffix)] in types:
                        family = name[: -len(suffix)]
            assert family in types, f"sample {name} has no # TYPE"
            assert family in helps, f"sample {name} has no # HELP"
            seen_sample.add(family)
            samples.append((name, labels, v))
    return types, samples


def get_metrics(server):
    r = server.request("GET", "/metrics")
    assert r.status == 200, r
    ctype = (r.header("Content-Type") or "").replace(" ", "")
    assert ctype.startswith("text/plain;version=0.0.4"), r.header("Content-Type")
    return parse_metrics(r.body.decode("utf-8"))


def value_of(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
    return found[0] if found else 0.0


def test_metrics_are_valid_prometheus_text_with_lkv_names(server):
    exercise_every_route(server)
    types, samples = get_metrics(server)
    assert samples
    bad = sorted({n for n, _, _ in samples if not n.startswith("lkv_")} | {t for t in types if not t.startswith("lkv_")})
    assert not bad, f"metric names without lkv_ prefix: {bad}"


def test_metrics_count_requests_by_route_and_code(server):
    exercise_every_route(server)
    _, before = get_metrics(server)
    for i in range(7):
        assert server.put(f"k{i}", "v").status == 200
    for i in range(2):
        assert server.get(f"missing{i}").status == 404
    _, after = get_metrics(server)
    name = "lkv_http_requests_total"
    put_200 = value_of(after, name, route="kv_put", code="200") - value_of(before, name, route="kv_put", code="200")
    get_404 = value_of(after, name, route="kv_get", code="404") - value_of(before, name, route="kv_get", code="404")
    assert (put_200, get_404) == (7, 2)


def test_metrics_report_the_key_count(server):
    for i in range(4):
        assert server.put(f"k{i}", "v").status == 200
    _, samples = get_metrics(server)
    assert value_of(samples, "lkv_keys") == 4
    assert server.delete("k0").status == 200
    _, samples = get_metrics(server)
    assert value_of(samples, "lkv_keys") == 3
    assert server.request("DELETE", "/clear").status == 200
    _, samples = get_metrics(server)
    assert value_of(samples, "lkv_keys") == 0


def test_metrics_show_the_log_indexes(server):
    for i in range(2):
        assert server.put(f"k{i}", "v").status == 200
    _, samples = get_metrics(server)
    want = log_indexes(server)
    got = tuple(value_of(samples, "lkv_log_" + k) for k in INDEXES)
    assert got == want and want[0] >= 2, (got, want)


def test_metric_values_are_finite_where_counts_are_concerned(server):
    exercise_every_route(server)
    types, samples = get_metrics(server)
    for name, labels, v in samples:
        if types.get(name) in ("counter", "gauge") or name.endswith(("_total", "_count")):
            assert math.isfinite(v) and v >= 0, (name, labels, v)


# --- logs ------------------------------------------------------------------------

def test_start_up_logs_address_data_dir_and_version(server):
    lines = [line for line in server.stderr_text().splitlines()
             if str(server.port) in line and str(server.data_dir) in line and VERSION in line]
    assert len(lines) == 1, f"expected one start-up line with port, dir and version:\n{server.stderr_text()}"


def test_shutdown_logs_a_request_summary(server):
    for i in range(3):
        assert server.put(f"k{i}", "v").status == 200
    assert server.get("k0").status == 200
    assert server.stop() == 0
    summary = [line for line in server.stderr_text().splitlines() if "request_summary" in line]
    assert summary, server.stderr_text()
    assert any("kv_put" in line for line in summary), summary
    assert any("kv_get" in line for line in summary), summary
