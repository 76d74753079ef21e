#include "node/ident.h"

#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001B3ull;
    }
    return h;
}

#define FNV_OFFSET 0xCBF29CE484222325ull

raft_id ident_member_id(const char *addr)
{
    uint64_t h = fnv1a(FNV_OFFSET, addr);
    return h ? h : 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t ident_cluster_id(const struct raft_membership *c)
{
    const char *addrs[RAFT_MAX_MEMBERS];
    for (size_t i = 0; i < c->n; i++)
        addrs[i] = c->m[i].addr;
    qsort(addrs, c->n, sizeof *addrs, cmp_str);
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < c->n; i++) {
        h = fnv1a(h, addrs[i]);
        h = fnv1a(h, ",");
    }
    return h ? h : 1;
}

int ident_initial_conf(const char *self, const char (*peers)[128], size_t npeers,
                       struct raft_membership *out)
{
    memset(out, 0, sizeof *out);
    if (npeers + 1 > RAFT_MAX_MEMBERS)
        return LKV_EINVAL;
    for (size_t i = 0; i <= npeers; i++) {
        const char *addr = i == 0 ? self : peers[i - 1];
        struct raft_member m = {.id = ident_member_id(addr), .flags = RAFT_VOTER_IN};
        snprintf(m.addr, sizeof m.addr, "%s", addr);
        size_t j = out->n;
        while (j > 0 && out->m[j - 1].id > m.id) {
            out->m[j] = out->m[j - 1];
            j--;
        }
        if (j > 0 && out->m[j - 1].id == m.id)
            return LKV_EINVAL;
        out->m[j] = m;
        out->n++;
    }
    return 0;
}

bool ident_lone_voter(const struct raft_membership *c, raft_id self)
{
    size_t voters = 0;
    bool me = false;
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].flags & (RAFT_VOTER_IN | RAFT_VOTER_OUT)) {
            voters++;
            me = me || c->m[i].id == self;
        }
    }
    return voters == 1 && me;
}
