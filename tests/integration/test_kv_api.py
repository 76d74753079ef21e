"""The key-value API: PUT/GET/HEAD/DELETE /kv/{key}, DELETE /clear, key and
value rules, error bodies, 405 with Allow, unknown paths."""
import pytest

from conftest import TEXT_PLAIN

MiB = 1024 * 1024


def assert_text_plain(r):
    assert r.header("Content-Type") == TEXT_PLAIN, r


def assert_error(r, status, message):
    assert (r.status, r.body) == (status, message.encode() + b"\n"), r
    assert_text_plain(r)


# --- basic operations --------------------------------------------------------

def test_put_then_get_returns_the_value_as_text_plain(server):
    r = server.put("greeting", "hello world")
    assert r.status == 200, r
    assert_text_plain(r)
    r = server.get("greeting")
    assert (r.status, r.body) == (200, b"hello world")
    assert_text_plain(r)
    assert r.header("Content-Length") == "11"


def test_get_of_a_missing_key_is_404_key_not_found(server):
    assert_error(server.get("never-written"), 404, "key not found")


def test_put_overwrites_the_previous_value(server):
    assert server.put("k", "first, longer value").status == 200
    assert server.put("k", "second").status == 200
    assert server.get("k").body == b"second"


def test_delete_removes_the_key(server):
    assert server.put("doomed", "x").status == 200
    r = server.delete("doomed")
    assert r.status == 200, r
    assert_text_plain(r)
    assert_error(server.get("doomed"), 404, "key not found")


def test_delete_of_a_missing_key_is_200(server):
    r = server.delete("never-written")
    assert r.status == 200, r
    assert_text_plain(r)


def test_delete_twice_is_200_both_times(server):
    assert server.put("k", "v").status == 200
    assert server.delete("k").status == 200
    assert server.delete("k").status == 200
    assert server.get("k").status == 404


def test_clear_removes_every_key(server):
    keys = [f"key-{i}" for i in range(25)]
    for k in keys:
        assert server.put(k, k * 3).status == 200
    r = server.request("DELETE", "/clear")
    assert r.status == 200, r
    assert_text_plain(r)
    for k in keys:
        assert server.get(k).status == 404, k
    assert server.put("after-clear", "v").status == 200
    assert server.get("after-clear").body == b"v"


def test_clear_on_an_empty_store_is_200(server):
    r = server.request("DELETE", "/clear")
    assert r.status == 200
    assert_text_plain(r)


def test_head_has_gets_headers_and_no_body(server):
    value = b"twenty-three bytes long"
    assert server.put("h", value).status == 200
    with server.raw() as c:
        # HEAD then GET on one connection: a body after HEAD would be read as
        # the start of the next response.
        c.send(b"HEAD /kv/h HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/h HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_response("HEAD")
        get = c.read_response("GET")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(value)) == get.header("Content-Length")
    assert head.header("Content-Type") == TEXT_PLAIN
    assert (get.status, get.body) == (200, value)


def test_head_of_a_missing_key_is_404_without_body(server):
    with server.raw() as c:
        c.send(b"HEAD /kv/nope HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_response("HEAD")
        health = c.read_response("GET")
    assert head.status == 404
    assert head.header("Content-Type") == TEXT_PLAIN
    assert (health.status, health.body) == (200, b"ok\n")


def test_a_get_after_a_writes_200_sees_the_write(server):
    for i in range(50):
        assert server.put("counter", str(i)).status == 200
        assert server.get("counter").body == str(i).encode()
        if i % 10 == 9:
            assert server.delete("counter").status == 200
            assert server.get("counter").status == 404


# --- values --------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    b"\x00",
    b"a\x00b\x00\x00c",
    bytes(range(256)),
    b"\xff\xfe\xfd invalid utf-8 \xc3\x28 \x80",
    b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b" leading and trailing spaces \n",
    "héllo wörld, ключ, 日本語, emoji 🎉".encode("utf-8"),
    b"x",
], ids=["nul", "embedded-nuls", "all-bytes", "invalid-utf8", "http-lookalike",
        "whitespace", "utf8-text", "one-byte"])
def test_values_round_trip_byte_for_byte(server, value):
    assert server.put("v", value).status == 200
    r = server.get("v")
    assert r.status == 200
    assert r.body == value
    assert server.head("v").header("Content-Length") == str(len(value))


def test_ten_mib_value_is_accepted_and_round_trips(server):
    value = bytes(range(256)) * (10 * MiB // 256)
    assert len(value) == 10 * MiB
    assert server.put("big", value, timeout=30).status == 200
    r = server.get("big", timeout=30)
    assert r.status == 200
    assert r.body == value


def test_value_one_byte_over_ten_mib_is_413(server):
    with server.raw() as c:
        c.send(b"PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (10 * MiB + 1))
        r = c.read_response()
    assert_error(r, 413, "value too large")
    assert server.get("big").status == 404


def test_empty_value_is_400_value_cannot_be_empty(server):
    assert_error(server.put("k", b""), 400, "value cannot be empty")
    assert server.get("k").status == 404


def test_empty_value_does_not_replace_an_existing_value(server):
    assert server.put("k", "keep me").status == 200
    assert server.put("k", b"").status == 400
    assert server.get("k").body == b"keep me"


# --- keys --------------------------------------------------------------------

def test_every_allowed_key_character_is_accepted(server):
    key = "ABCXYZabcxyz0189:_.-"
    assert server.put(key, "v").status == 200
    assert server.get(key).body == b"v"


def test_keys_are_case_sensitive(server):
    assert server.put("Key", "upper").status == 200
    assert server.put("key", "lower").status == 200
    assert server.get("Key").body == b"upper"
    assert server.get("key").body == b"lower"
    assert server.get("KEY").status == 404


def test_percent_encoded_key_is_the_decoded_key(server):
    assert server.put("%41", "via escape").status == 200
    assert server.get("A").body == b"via escape"
    assert server.put("b", "plain").status == 200
    assert server.get("%62").body == b"plain"
    assert server.get("%6B%65%79-%3a").status == 404
    assert server.put("key-:", "mixed case hex").status == 200
    assert server.get("%6B%65%79-%3a").body == b"mixed case hex"


def test_key_of_1024_bytes_is_accepted(server):
    key = "k" * 1024
    assert server.put(key, "long key").status == 200
    assert server.get(key).body == b"long key"


def test_key_length_counts_decoded_bytes(server):
    # 3072 characters on the wire, 1024 bytes once decoded.
    assert server.put("%41" * 1024, "v").status == 200
    assert server.get("A" * 1024).body == b"v"


def test_key_of_1025_bytes_is_invalid(server):
    key = "k" * 1025
    assert_error(server.put(key, "v"), 400, "invalid key")
    assert_error(server.get(key), 400, "invalid key")


INVALID_KEYS = [
    "a%20b",     # space
    "a%2Fb",     # decodes to a/b
    "a/b",       # a second path segment
    "key!",
    "a*b",
    "a+b",
    "a~b",
    "a%00b",     # NUL
    "%C3%A9",    # e-acute, not ASCII
    "%zz",       # bad escape
    "abc%",      # trailing percent
    "abc%4",     # truncated escape
    "%",
]


@pytest.mark.parametrize("key", INVALID_KEYS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_invalid_key_is_400_invalid_key(server, key, method):
    r = server.request(method, "/kv/" + key, b"v" if method == "PUT" else None)
    assert_error(r, 400, "invalid key")


@pytest.mark.parametrize("path", ["/kv/", "/kv"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_missing_key_is_400_key_cannot_be_empty(server, path, method):
    r = server.request(method, path, b"v" if method == "PUT" else None)
    assert_error(r, 400, "key cannot be empty")


def test_head_with_missing_key_is_400_without_body(server):
    with server.raw() as c:
        c.send(b"HEAD /kv/ HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response("HEAD").status == 400
        assert c.read_response("GET").body == b"ok\n"


def test_query_string_is_ignored(server):
    assert server.request("PUT", "/kv/q?x=1", b"value").status == 200
    assert server.get("q").body == b"value"
    assert server.request("GET", "/kv/q?y=2&z").body == b"value"
    assert server.request("DELETE", "/kv/q?x=1").status == 200
    assert server.get("q").status == 404


def test_key_errors_come_before_body_errors(server):
    assert_error(server.put("", b""), 400, "key cannot be empty")
    assert_error(server.put("bad!", b""), 400, "invalid key")
    with server.raw() as c:
        # An invalid key with an oversized body: the key error wins.
        c.send(b"PUT /kv/bad! HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (20 * MiB))
        assert_error(c.read_response(), 400, "invalid key")
    with server.raw() as c:
        c.send(b"PUT /kv/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (20 * MiB))
        assert_error(c.read_response(), 400, "key cannot be empty")


def test_a_failed_put_does_not_create_the_key(server):
    assert server.put("a%20b", "v").status == 400
    assert server.get("a").status == 404
    assert server.get("b").status == 404


# --- routing -------------------------------------------------------------------

ALLOW = [
    ("POST", "/kv/k", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/kv/k", {"GET", "HEAD", "PUT", "DELETE"}),
    ("OPTIONS", "/kv/k", {"GET", "HEAD", "PUT", "DELETE"}),
    ("GET", "/clear", {"DELETE"}),
    ("PUT", "/clear", {"DELETE"}),
    ("POST", "/clear", {"DELETE"}),
    ("POST", "/health", {"GET", "HEAD"}),
    ("DELETE", "/health", {"GET", "HEAD"}),
    ("PUT", "/stats", {"GET", "HEAD"}),
    ("DELETE", "/metrics", {"GET", "HEAD"}),
]


@pytest.mark.parametrize("method,path,allowed", ALLOW, ids=[f"{m} {p}" for m, p, _ in ALLOW])
def test_unsupported_method_is_405_with_allow_header(server, method, path, allowed):
    r = server.request(method, path, b"v" if method in ("POST", "PUT", "PATCH") else None)
    assert (r.status, r.body) == (405, b"method not allowed\n"), r
    allow = r.header("Allow")
    assert allow is not None, r
    assert {m.strip() for m in allow.split(",")} == allowed


@pytest.mark.parametrize("path", ["/kv/k", "/clear"])
def test_405_under_kv_and_clear_is_text_plain(server, path):
    r = server.request("POST", path, b"v")
    assert r.status == 405
    assert_text_plain(r)


def test_rejected_method_does_not_change_the_store(server):
    assert server.put("k", "v").status == 200
    assert server.request("POST", "/kv/k", b"other").status == 405
    assert server.request("GET", "/clear").status == 405
    assert server.get("k").body == b"v"


@pytest.mark.parametrize("method,path", [
    ("GET", "/"),
    ("GET", "/nope"),
    ("GET", "/kvx/a"),
    ("GET", "/KV/a"),
    ("GET", "/health/extra"),
    ("PUT", "/nope"),
    ("DELETE", "/clear/all"),
])
def test_unknown_path_is_404_not_found(server, method, path):
    r = server.request(method, path, b"v" if method == "PUT" else None)
    assert (r.status, r.body) == (404, b"not found\n"), r
