/* route: pure request routing and key decoding (bytes in, struct out). */
#ifndef LKV_HTTP_ROUTE_H
#define LKV_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_PUT, HTTP_DELETE, HTTP_POST, HTTP_OTHER };

enum http_endpoint {
    EP_KV,
    EP_CLEAR,
    EP_HEALTH,
    EP_STATS,
    EP_METRICS,
    EP_RAFT,            /* POST /raft: node-to-node messages */
    EP_CLUSTER_INFO,    /* /cluster/info */
    EP_CLUSTER_MEMBERS, /* /cluster/members */
    EP_CLUSTER_MEMBER,  /* /cluster/members/{host:port} */
    EP_CLUSTER_LEADER,  /* /cluster/leader */
    EP_NOT_FOUND
};

enum http_key_status { KEY_OK, KEY_EMPTY, KEY_INVALID };

struct http_route {
    enum http_endpoint ep;
    enum http_method method;
    bool method_allowed;            /* false: answer 405 with http_route_allow(ep) */
    enum http_key_status key;       /* EP_KV only */
    size_t klen;                    /* EP_KV with KEY_OK: decoded key length */
    size_t member_at;               /* EP_CLUSTER_MEMBER: offset of host:port in the path */
};

/* True for requests only the leader serves (followers redirect them). */
bool http_route_needs_leader(const struct http_route *r);

/* Maps a request method token to the enum (case-sensitive, as HTTP says). */
enum http_method http_method_parse(const char *method);

/* Routes `path` (the request target without its query string, not yet
 * percent-decoded; path_len bytes, need not be NUL-terminated). For /kv/{key}
 * the key is percent-decoded into keybuf, which must hold max_key bytes, and
 * checked: 1..max_key bytes of A-Z a-z 0-9 : _ . -; a malformed escape makes
 * it KEY_INVALID. Never reads or writes out of bounds, whatever the input. */
void http_route_parse(enum http_method method, const char *path, size_t path_len,
                      size_t max_key, char *keybuf, struct http_route *out);

/* The Allow header value for an endpoint ("GET, HEAD, PUT, DELETE", ...);
 * NULL for EP_NOT_FOUND. */
const char *http_route_allow(enum http_endpoint ep);

#endif
