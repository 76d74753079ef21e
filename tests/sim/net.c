#include "net.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void net_init(struct net *net, const struct net_weather *w)
{
    *net = (struct net){.w = *w};
}

void net_free(struct net *net)
{
    for (size_t i = 0; i < net->n; i++)
        net_packet_free(&net->p[i]);
    free(net->p);
    net->p = NULL;
    net->n = net->cap = 0;
}

void net_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    dst->snap = NULL;
    if (src->n_entries) {
        dst->entries = malloc(src->n_entries * sizeof *dst->entries);
        assert(dst->entries);
        for (size_t i = 0; i < src->n_entries; i++) {
            dst->entries[i] = src->entries[i];
            lkv_blob_ref(dst->entries[i].data);
        }
    }
    if (src->snap) {
        dst->snap = malloc(sizeof *dst->snap);
        assert(dst->snap);
        *dst->snap = *src->snap;
        lkv_blob_ref(dst->snap->data);
    }
}

void net_msg_free(struct raft_msg *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        lkv_blob_unref(m->entries[i].data);
    free(m->entries);
    if (m->snap)
        lkv_blob_unref(m->snap->data);
    free(m->snap);
    m->entries = NULL;
    m->snap = NULL;
    m->n_entries = 0;
}

void net_packet_free(struct packet *p)
{
    net_msg_free(&p->m);
}

static void queue(struct net *net, struct rng *g, uint64_t now, unsigned from_inc,
                  const struct raft_msg *m, bool original)
{
    if (net->n == net->cap) {
        net->cap = net->cap ? net->cap * 2 : 64;
        net->p = realloc(net->p, net->cap * sizeof *net->p);
        assert(net->p);
    }
    uint64_t delay = rng_range(g, 0, net->w.delay_max);
    if (net->w.slow && rng_chance(g, net->w.slow))
        delay = rng_range(g, 10, 40);
    struct packet *p = &net->p[net->n++];
    *p = (struct packet){.at = now + delay, .seq = ++net->seq, .from_inc = from_inc,
                         .original = original};
    net_msg_copy(&p->m, m);
}

void net_send(struct net *net, struct rng *g, uint64_t now, unsigned from_inc,
              const struct raft_msg *m)
{
    net->sent++;
    /* A snapshot travels on a stream of its own whose failure the sender
     * hears of (raft_report_snapshot), so it is never lost silently. */
    bool stream = m->type == RAFT_MSG_SNAPSHOT;
    if (!stream && net->w.drop && rng_chance(g, net->w.drop)) {
        net->dropped++;
        return;
    }
    queue(net, g, now, from_inc, m, true);
    if (!stream && net->w.dup && rng_chance(g, net->w.dup)) {
        net->duplicated++;
        queue(net, g, now, from_inc, m, false);
    }
}

size_t net_ready_count(const struct net *net, uint64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < net->n; i++)
        k += net->p[i].at <= now;
    return k;
}

bool net_take(struct net *net, struct rng *g, uint64_t now, struct packet *out)
{
    size_t k = net_ready_count(net, now);
    if (k == 0)
        return false;
    size_t pick = (size_t)rng_below(g, k);
    for (size_t i = 0; i < net->n; i++) {
        if (net->p[i].at > now || pick-- > 0)
            continue;
        *out = net->p[i];
        net->p[i] = net->p[--net->n];
        net->delivered++;
        return true;
    }
    assert(0 && "unreachable");
    return false;
}

bool net_link_up(const struct net *net, raft_id from, raft_id to)
{
    if (from >= NET_MAX_IDS || to >= NET_MAX_IDS)
        return false;
    return !net->cut[from][to];
}

bool net_reaches(const struct net *net, raft_id to)
{
    for (size_t i = 0; i < net->n; i++)
        if (net->p[i].m.to == to && net_link_up(net, net->p[i].m.from, to))
            return true;
    return false;
}

void net_heal(struct net *net)
{
    memset(net->cut, 0, sizeof net->cut);
}

void net_msg_describe(const struct raft_msg *m, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "%s%s %llu->%llu t%llu", raft_msg_type_name(m->type),
                     m->reject ? "(reject)" : "", (unsigned long long)m->from,
                     (unsigned long long)m->to, (unsigned long long)m->term);
    if (k < 0 || (size_t)k >= cap)
        return;
    size_t off = (size_t)k;
    switch (m->type) {
    case RAFT_MSG_APPEND:
        snprintf(buf + off, cap - off, " after (%llu,%llu) n=%zu commit=%llu",
                 (unsigned long long)m->index, (unsigned long long)m->log_term, m->n_entries,
                 (unsigned long long)m->commit);
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(buf + off, cap - off, " index=%llu hint=%llu lt=%llu", (unsigned long long)m->index,
                 (unsigned long long)m->hint, (unsigned long long)m->log_term);
        break;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        snprintf(buf + off, cap - off, " last (%llu,%llu)%s", (unsigned long long)m->index,
                 (unsigned long long)m->log_term, m->transfer ? " transfer" : "");
        break;
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        snprintf(buf + off, cap - off, " commit=%llu ctx=%llu", (unsigned long long)m->commit,
                 (unsigned long long)m->ctx);
        break;
    case RAFT_MSG_SNAPSHOT:
        if (m->snap)
            snprintf(buf + off, cap - off, " snap (%llu,%llu)", (unsigned long long)m->snap->index,
                     (unsigned long long)m->snap->term);
        break;
    default:
        break;
    }
}
