/* Routing and key decoding: every rule of the contract's key grammar. */
#include <criterion/criterion.h>
#include <string.h>

#include "http/route.h"

static char key[1024];

static struct http_route route(const char *method, const char *path, size_t max_key)
{
    struct http_route r;
    http_route_parse(http_method_parse(method), path, strlen(path), max_key, key, &r);
    return r;
}

Test(route, kv_key_is_decoded_and_accepted)
{
    struct http_route r = route("GET", "/kv/user:42_a.b-C", 1024);
    cr_assert_eq(r.ep, EP_KV);
    cr_assert(r.method_allowed);
    cr_assert_eq(r.key, KEY_OK);
    cr_assert_eq(r.klen, 13);
    cr_assert_arr_eq(key, "user:42_a.b-C", 13);
}

Test(route, percent_escapes_decode_to_key_bytes)
{
    struct http_route r = route("PUT", "/kv/%41%62%3a", 1024);
    cr_assert_eq(r.key, KEY_OK);
    cr_assert_eq(r.klen, 3);
    cr_assert_arr_eq(key, "Ab:", 3);
}

Test(route, escaped_slash_and_space_are_invalid)
{
    cr_assert_eq(route("GET", "/kv/a%2Fb", 1024).key, KEY_INVALID);
    cr_assert_eq(route("GET", "/kv/a%20b", 1024).key, KEY_INVALID);
    cr_assert_eq(route("GET", "/kv/a/b", 1024).key, KEY_INVALID);
    cr_assert_eq(route("GET", "/kv/a+b", 1024).key, KEY_INVALID);
}

Test(route, malformed_escapes_are_invalid)
{
    cr_assert_eq(route("GET", "/kv/%zz", 1024).key, KEY_INVALID);
    cr_assert_eq(route("GET", "/kv/a%4", 1024).key, KEY_INVALID);
    cr_assert_eq(route("GET", "/kv/a%", 1024).key, KEY_INVALID);
}

Test(route, empty_key_forms)
{
    cr_assert_eq(route("GET", "/kv/", 1024).key, KEY_EMPTY);
    cr_assert_eq(route("PUT", "/kv", 1024).key, KEY_EMPTY);
    cr_assert_eq(route("PUT", "/kv", 1024).ep, EP_KV);
}

Test(route, key_length_limit_counts_decoded_bytes)
{
    char path[64] = "/kv/";
    memset(path + 4, 'a', 8);
    path[12] = '\0';
    cr_assert_eq(route("GET", path, 8).key, KEY_OK);
    cr_assert_eq(route("GET", path, 7).key, KEY_INVALID);
    /* three escapes decode to three bytes: fits a limit of 3 */
    cr_assert_eq(route("GET", "/kv/%41%42%43", 3).key, KEY_OK);
    cr_assert_eq(route("GET", "/kv/%41%42%43%44", 3).key, KEY_INVALID);
}

Test(route, fixed_endpoints_and_unknown_paths)
{
    cr_assert_eq(route("DELETE", "/clear", 16).ep, EP_CLEAR);
    cr_assert_eq(route("GET", "/health", 16).ep, EP_HEALTH);
    cr_assert_eq(route("GET", "/stats", 16).ep, EP_STATS);
    cr_assert_eq(route("GET", "/metrics", 16).ep, EP_METRICS);
    cr_assert_eq(route("GET", "/health/", 16).ep, EP_NOT_FOUND);
    cr_assert_eq(route("GET", "/kvx", 16).ep, EP_NOT_FOUND);
    cr_assert_eq(route("GET", "/", 16).ep, EP_NOT_FOUND);
    cr_assert_eq(route("GET", "", 16).ep, EP_NOT_FOUND);
}

Test(route, methods_per_endpoint)
{
    cr_assert(route("HEAD", "/kv/a", 16).method_allowed);
    cr_assert(route("DELETE", "/kv/a", 16).method_allowed);
    cr_assert_not(route("POST", "/kv/a", 16).method_allowed);
    cr_assert_not(route("PATCH", "/kv/a", 16).method_allowed);
    cr_assert(route("DELETE", "/clear", 16).method_allowed);
    cr_assert_not(route("GET", "/clear", 16).method_allowed);
    cr_assert_not(route("PUT", "/health", 16).method_allowed);
    cr_assert(route("HEAD", "/metrics", 16).method_allowed);
    cr_assert_str_eq(http_route_allow(EP_KV), "GET, HEAD, PUT, DELETE");
    cr_assert_str_eq(http_route_allow(EP_CLEAR), "DELETE");
    cr_assert_str_eq(http_route_allow(EP_STATS), "GET, HEAD");
    cr_assert_null(http_route_allow(EP_NOT_FOUND));
}

Test(route, method_tokens_are_case_sensitive)
{
    cr_assert_eq(http_method_parse("get"), HTTP_OTHER);
    cr_assert_eq(http_method_parse("GET"), HTTP_GET);
}

Test(route, path_is_not_read_past_its_length)
{
    /* "/kv/ab" with length 5 is the key "a" */
    struct http_route r;
    http_route_parse(HTTP_GET, "/kv/ab", 5, 16, key, &r);
    cr_assert_eq(r.key, KEY_OK);
    cr_assert_eq(r.klen, 1);
}
