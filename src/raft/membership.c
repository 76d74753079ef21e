/* raft/membership: configuration queries and the config entry codec. */
#include "raft/raft.h"

#include "util/endian.h"
#include "util/err.h"

#include <string.h>

#define MEMBERSHIP_VERSION 1

bool raft_membership_joint(const struct raft_membership *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].flags & RAFT_VOTER_OUT)
            return true;
    }
    return false;
}

const struct raft_member *raft_membership_find(const struct raft_membership *c, raft_id id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].id == id)
            return &c->m[i];
    }
    return NULL;
}

bool raft_membership_is_voter(const struct raft_membership *c, raft_id id)
{
    const struct raft_member *m = raft_membership_find(c, id);
    return m && (m->flags & (RAFT_VOTER_IN | RAFT_VOTER_OUT));
}

size_t raft_membership_encode(const struct raft_membership *c, uint8_t *out, size_t cap)
{
    size_t need = 2;
    for (size_t i = 0; i < c->n; i++) {
        size_t alen = strnlen(c->m[i].addr, RAFT_ADDR_MAX);
        if (alen >= RAFT_ADDR_MAX || c->m[i].id == RAFT_NONE ||
            (i > 0 && c->m[i - 1].id >= c->m[i].id))
            return 0; /* what decode would refuse is never written */
        need += 8 + 1 + 1 + alen;
    }
    if (need > cap || c->n > RAFT_MAX_MEMBERS)
        return 0;
    size_t o = 0;
    out[o++] = MEMBERSHIP_VERSION;
    out[o++] = (uint8_t)c->n;
    for (size_t i = 0; i < c->n; i++) {
        size_t alen = strlen(c->m[i].addr);
        le_put64(out + o, c->m[i].id);
        o += 8;
        out[o++] = c->m[i].flags;
        out[o++] = (uint8_t)alen;
        memcpy(out + o, c->m[i].addr, alen);
        o += alen;
    }
    return o;
}

int raft_membership_decode(const uint8_t *p, size_t len, struct raft_membership *out)
{
    if (len < 2 || p[0] != MEMBERSHIP_VERSION || p[1] > RAFT_MAX_MEMBERS)
        return LKV_ECORRUPT;
    struct raft_membership c = {.n = p[1]};
    size_t o = 2;
    bool any_voter = false;
    for (size_t i = 0; i < c.n; i++) {
        if (len - o < 10)
            return LKV_ECORRUPT;
        struct raft_member *m = &c.m[i];
        m->id = le_get64(p + o);
        m->flags = p[o + 8];
        size_t alen = p[o + 9];
        o += 10;
        if (m->id == RAFT_NONE || (m->flags & ~(RAFT_VOTER_IN | RAFT_VOTER_OUT)) ||
            alen >= RAFT_ADDR_MAX || len - o < alen || memchr(p + o, 0, alen))
            return LKV_ECORRUPT;
        if (i > 0 && c.m[i - 1].id >= m->id)
            return LKV_ECORRUPT; /* sorted, no duplicates */
        memcpy(m->addr, p + o, alen);
        m->addr[alen] = '\0';
        o += alen;
        any_voter = any_voter || (m->flags & RAFT_VOTER_IN);
    }
    if (o != len || !any_voter)
        return LKV_ECORRUPT;
    *out = c;
    return 0;
}
