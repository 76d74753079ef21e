/* The node driver: starts, crashes and restarts cores, carries out their
 * ready bundles in the order raft.h prescribes (crashing at random points
 * of it), applies committed entries, serves reads, and shows every step of
 * it to the checker. */
#include "sim.h"

#include "util/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum cut { CUT_NONE, CUT_BEFORE_PERSIST, CUT_MID_PERSIST, CUT_AFTER_PERSIST };

#define ULL(x) ((unsigned long long)(x))

static struct node *node_of(struct sim *s, raft_id id)
{
    return id > 0 && id < SIM_MAX_IDS ? &s->nodes[id] : NULL;
}

/* Every committed index a leader of a later term must hold: checked once
 * when a core first shows itself leader of a term (its log only grows
 * while it leads), and again whenever an index becomes known committed. */
static void check_holds_committed(struct sim *s, struct node *n, uint64_t term, uint64_t index)
{
    const struct committed *k = check_committed(&s->chk, index);
    bool ok;
    if (index <= n->sh.base) {
        const struct committed *b = check_committed(&s->chk, n->sh.base);
        ok = b && b->chain == n->sh.base_chain;
    } else {
        uint64_t t, chain;
        ok = shadow_get(&n->sh, index, &t, &chain) && t == k->term && chain == k->chain;
    }
    if (!ok)
        check_fail(&s->chk, "leader completeness",
                   "n%llu leads term %llu without index %llu (term %llu) committed in term "
                   "%llu; its log is (%llu..%llu]",
                   ULL(n->id), ULL(term), ULL(index), ULL(k->term), ULL(k->commit_term),
                   ULL(n->sh.base), ULL(shadow_last(&n->sh)));
}

static void check_leader_completeness(struct sim *s, struct node *n, uint64_t term)
{
    uint64_t ci = check_committed_before(&s->chk, term);
    if (ci)
        check_holds_committed(s, n, term, ci);
    s->chk.leaders_checked++;
}

/* Index became known committed (or known committed in an earlier term):
 * every current leader of a later term must already hold it. */
static void leaders_hold(struct sim *s, uint64_t index)
{
    const struct committed *k = check_committed(&s->chk, index);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++) {
        struct node *m = &s->nodes[id];
        if (m->state == NODE_UP && m->lead_checked && m->lead_checked == m->leading &&
            m->leading > k->commit_term)
            check_holds_committed(s, m, m->leading, index);
    }
}

static void note_commit(struct sim *s, struct node *n, uint64_t term, uint64_t index,
                        uint64_t entry_term, uint64_t chain, bool payload_known, uint64_t payload)
{
    if (check_commit(&s->chk, n->id, term, index, entry_term, chain, payload_known, payload))
        leaders_hold(s, index);
}

/* The core says everything through commit is committed: record what its
 * log holds there. Only valid while the shadow is current. */
static void observe_commit(struct sim *s, struct node *n, uint64_t commit, uint64_t term)
{
    uint64_t hi = commit < shadow_last(&n->sh) ? commit : shadow_last(&n->sh);
    if (n->seen_commit >= hi)
        return;
    if (n->seen_commit < n->sh.base) {
        note_commit(s, n, term, n->sh.base, n->sh.base_term, n->sh.base_chain, false, 0);
        n->seen_commit = n->sh.base;
    }
    for (uint64_t i = n->seen_commit + 1; i <= hi; i++) {
        const struct shadow_entry *se = shadow_at(&n->sh, i);
        note_commit(s, n, term, i, se->term, se->chain, true, se->payload);
    }
    n->seen_commit = hi;
}

/* The shadow of a restarted core: its snapshot, then the log on disk. */
static void shadow_from_disk(struct sim *s, struct node *n, const struct raft_snapshot *snap)
{
    shadow_reset(&n->sh, snap->index, snap->term, n->sm.chain);
    check_log_entry(&s->chk, n->id, snap->index, snap->term, n->sm.chain);
    uint64_t last = memstore_last_index(n->ms);
    for (uint64_t i = snap->index + 1; i <= last; i++) {
        const struct raft_entry *e = memstore_entry(n->ms, i);
        if (!e || !shadow_append(&n->sh, e, 1))
            check_fail(&s->chk, "disk", "n%llu: index %llu missing from its disk log",
                       ULL(n->id), ULL(i));
        const struct shadow_entry *se = shadow_at(&n->sh, i);
        check_log_entry(&s->chk, n->id, i, se->term, se->chain);
    }
}

void node_start(struct sim *s, raft_id id)
{
    struct node *n = &s->nodes[id];
    if (!n->ms) {
        n->id = id;
        n->ms = memstore_new(&s->initial);
        n->slow = s->w.drift ? (unsigned)rng_range(&s->rng, 0, s->w.drift) : 0;
    }
    struct raft_boot boot;
    memstore_boot(n->ms, &boot);
    if (!sm_from_snapshot(&n->sm, &boot.snap))
        check_fail(&s->chk, "snapshot", "n%llu: the snapshot on disk at %llu does not decode",
                   ULL(id), ULL(boot.snap.index));
    shadow_from_disk(s, n, &boot.snap);
    if (boot.snap.index)
        note_commit(s, n, boot.hs.term, boot.snap.index, boot.snap.term, n->sm.chain, false, 0);
    struct raft_options opt = s->opt;
    opt.id = id;
    opt.seed = rng_next(&s->rng);
    opt.storage = memstore_storage(n->ms);
    int rc = raft_new(&opt, &boot, &n->r);
    if (rc != 0)
        check_fail(&s->chk, "boot", "n%llu: raft_new refused its own disk: %s", ULL(id),
                   lkv_strerror(rc));
    n->state = NODE_UP;
    n->inc++;
    n->seen_commit = boot.snap.index;
    n->lead_checked = n->leading = 0;
    n->lead_commit = n->lead_commit_term = n->iso_since = 0;
    n->input_since_ready = true;
    n->n_reads = 0;
    sim_trace(s, "n%llu start inc=%u term=%llu vote=%llu commit=%llu snap=%llu log=(%llu..%llu]",
              ULL(id), n->inc, ULL(boot.hs.term), ULL(boot.hs.vote), ULL(boot.hs.commit),
              ULL(boot.snap.index), ULL(memstore_first_index(n->ms) - 1),
              ULL(memstore_last_index(n->ms)));
    node_after_input(s, n);
}

void node_crash(struct sim *s, struct node *n, const char *where)
{
    raft_free(n->r);
    n->r = NULL;
    n->state = NODE_DOWN;
    n->n_reads = 0;
    n->leading = n->lead_checked = 0;
    s->res->crashes++;
    sim_trace(s, "n%llu CRASH %s; disk keeps term=%llu vote=%llu log=(%llu..%llu]", ULL(n->id),
              where, ULL(memstore_hard_state(n->ms).term), ULL(memstore_hard_state(n->ms).vote),
              ULL(memstore_first_index(n->ms) - 1), ULL(memstore_last_index(n->ms)));
}

void node_destroy(struct node *n)
{
    raft_free(n->r);
    memstore_free(n->ms);
    shadow_free(&n->sh);
    free(n->reads);
    raft_id id = n->id;
    *n = (struct node){.id = id, .state = NODE_GONE};
}

/* What a message promises must already be on the disk when it leaves: a
 * granted vote (term and vote durable), an accepted append (the entries it
 * acknowledges durable). Several inputs may share a bundle, so the disk may
 * already be in a later term than the message: it then no longer tells. */
static void check_durable_before_send(struct sim *s, struct node *n, const struct raft_msg *m)
{
    struct raft_hard_state hs = memstore_hard_state(n->ms);
    if (hs.term > m->term)
        return;
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
        if (hs.term != m->term || hs.vote != m->to)
            check_fail(&s->chk, "vote durability",
                       "n%llu grants n%llu its vote in term %llu while its disk says term %llu "
                       "vote n%llu",
                       ULL(n->id), ULL(m->to), ULL(m->term), ULL(hs.term), ULL(hs.vote));
    }
    if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index >= memstore_first_index(n->ms)) {
        uint64_t t = 0, chain;
        bool held = shadow_get(&n->sh, m->index, &t, &chain);
        if (memstore_last_index(n->ms) < m->index || (held && memstore_term(n->ms, m->index) != t))
            check_fail(&s->chk, "append durability",
                       "n%llu acknowledges index %llu (term %llu) to n%llu before it is on its "
                       "disk (disk log ends at %llu)",
                       ULL(n->id), ULL(m->index), ULL(t), ULL(m->to),
                       ULL(memstore_last_index(n->ms)));
    }
}

static void send_all(struct sim *s, struct node *n, const struct raft_msg *m, size_t k,
                     const char *when)
{
    for (size_t i = 0; i < k; i++) {
        if (m[i].from != n->id || !node_of(s, m[i].to) || m[i].to == n->id)
            check_fail(&s->chk, "message", "n%llu sent a %s from n%llu to n%llu", ULL(n->id),
                       raft_msg_type_name(m[i].type), ULL(m[i].from), ULL(m[i].to));
        check_durable_before_send(s, n, &m[i]);
        if (s->cfg.verbose) {
            char d[160];
            net_msg_describe(&m[i], d, sizeof d);
            sim_trace(s, "  send%s %s", when, d);
        }
        net_send(&s->net, &s->rng, s->now, n->inc, &m[i]);
    }
}

/* A leader never changes an entry of its log while it leads (a bundle may
 * hand the same entries again after a failed persist). */
static void check_leader_keeps_log(struct sim *s, struct node *n, const struct raft_ready *rd,
                                   uint64_t term)
{
    uint64_t last = rd->entries[rd->n_entries - 1].index;
    if (last < shadow_last(&n->sh))
        check_fail(&s->chk, "leader append-only",
                   "n%llu, leader of term %llu, cuts its log back from %llu to %llu", ULL(n->id),
                   ULL(term), ULL(shadow_last(&n->sh)), ULL(last));
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        const struct shadow_entry *se = shadow_at(&n->sh, e->index);
        if (se && (se->term != e->term || se->type != e->type ||
                   se->payload != sm_payload_hash(e)))
            check_fail(&s->chk, "leader append-only",
                       "n%llu, leader of term %llu, replaces (index %llu, term %llu) of its log",
                       ULL(n->id), ULL(term), ULL(e->index), ULL(se->term));
    }
}

/* The core's log as this bundle changes it, checked for log matching; a
 * leader of a term is checked for completeness at its first bundle. */
static void follow_log(struct sim *s, struct node *n, const struct raft_ready *rd, uint64_t term)
{
    if (rd->snapshot) {
        const struct raft_snapshot *sn = rd->snapshot;
        uint64_t a, t, chain;
        if (!sm_decode(sn->data, &a, &t, &chain) || a != sn->index || t != sn->term)
            check_fail(&s->chk, "snapshot", "n%llu: snapshot (%llu,%llu) carries another state",
                       ULL(n->id), ULL(sn->index), ULL(sn->term));
        check_log_entry(&s->chk, n->id, sn->index, sn->term, chain);
        note_commit(s, n, term, sn->index, sn->term, chain, false, 0);
        shadow_install(&n->sh, sn->index, sn->term, chain);
    }
    if (rd->n_entries) {
        uint64_t from = rd->entries[0].index;
        if (n->lead_checked == term && n->leading == term)
            check_leader_keeps_log(s, n, rd, term);
        if (!shadow_append(&n->sh, rd->entries, rd->n_entries))
            check_fail(&s->chk, "ready contract",
                       "n%llu: entries %llu..%llu do not follow its log (%llu..%llu]", ULL(n->id),
                       ULL(from), ULL(from + rd->n_entries - 1), ULL(n->sh.base),
                       ULL(shadow_last(&n->sh)));
        for (uint64_t i = from; i <= shadow_last(&n->sh); i++) {
            const struct shadow_entry *se = shadow_at(&n->sh, i);
            check_log_entry(&s->chk, n->id, i, se->term, se->chain);
        }
    }
    if (n->leading == term && n->lead_checked != term) {
        check_leader_completeness(s, n, term);
        n->lead_checked = term;
    }
}

static void install_snapshot(struct sim *s, struct node *n, const struct raft_snapshot *sn)
{
    if (sn->index < n->sm.applied)
        check_fail(&s->chk, "state machine safety",
                   "n%llu installs a snapshot at %llu behind its applied index %llu", ULL(n->id),
                   ULL(sn->index), ULL(n->sm.applied));
    sm_from_snapshot(&n->sm, sn);
    sim_trace(s, "  n%llu state machine <- snapshot (%llu,%llu)", ULL(n->id), ULL(sn->index),
              ULL(sn->term));
}

/* A committed configuration entry that drops members: they never return
 * (the simulator adds only new ids), so they may be decommissioned. */
static void note_removals(struct sim *s, const struct node *n, const struct raft_entry *e)
{
    if (e->type != RAFT_ENTRY_CONFIG)
        return;
    struct raft_membership next;
    if (raft_membership_decode(e->data ? e->data->data : NULL, e->data ? e->data->len : 0,
                               &next) != 0)
        check_fail(&s->chk, "config entry", "n%llu applies a config entry at %llu that does "
                   "not decode", ULL(n->id), ULL(e->index));
    const struct raft_membership *old = &n->sm.conf;
    for (size_t i = 0; i < old->n; i++)
        if (old->m[i].id < SIM_MAX_IDS && !raft_membership_find(&next, old->m[i].id) &&
            !s->removed[old->m[i].id]) {
            s->removed[old->m[i].id] = true;
            sim_trace(s, "  n%llu removed by the committed config at %llu", ULL(old->m[i].id),
                      ULL(e->index));
        }
}

static void apply_entry(struct sim *s, struct node *n, const struct raft_entry *e, uint64_t term)
{
    if (e->index != n->sm.applied + 1)
        check_fail(&s->chk, "apply order", "n%llu applies index %llu after index %llu",
                   ULL(n->id), ULL(e->index), ULL(n->sm.applied));
    uint64_t chain = sm_chain_next(n->sm.chain, e);
    const struct shadow_entry *se = shadow_at(&n->sh, e->index);
    if (se && se->chain != chain)
        check_fail(&s->chk, "apply from own log",
                   "n%llu applies (index %llu, term %llu) that is not the entry in its log",
                   ULL(n->id), ULL(e->index), ULL(e->term));
    note_commit(s, n, term, e->index, e->term, chain, true, sm_payload_hash(e));
    note_removals(s, n, e);
    sm_apply(&n->sm, e);
    s->chk.entries_applied++;
}

static void take_reads(struct sim *s, struct node *n, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_reads; i++) {
        check_read_released(&s->chk, n->id, n->inc, rd->reads[i].ctx, rd->reads[i].index);
        if (n->n_reads == n->cap_reads) {
            n->cap_reads = n->cap_reads ? 2 * n->cap_reads : 8;
            n->reads = realloc(n->reads, n->cap_reads * sizeof *n->reads);
            assert(n->reads);
        }
        n->reads[n->n_reads++] = (struct pending_read){rd->reads[i].ctx, rd->reads[i].index};
    }
    size_t k = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].index <= n->sm.applied)
            sim_trace(s, "  n%llu serves read ctx=%llu at index %llu (applied %llu)", ULL(n->id),
                      ULL(n->reads[i].ctx), ULL(n->reads[i].index), ULL(n->sm.applied));
        else
            n->reads[k++] = n->reads[i];
    }
    n->n_reads = k;
}

/* On the disk the term never goes back and a vote, once cast, is kept for
 * the rest of its term. */
static void check_hard_state(struct sim *s, struct node *n, const struct raft_hard_state *before)
{
    struct raft_hard_state hs = memstore_hard_state(n->ms);
    if (hs.term < before->term)
        check_fail(&s->chk, "term durability", "n%llu persists term %llu after term %llu",
                   ULL(n->id), ULL(hs.term), ULL(before->term));
    if (hs.term == before->term && before->vote != RAFT_NONE && hs.vote != before->vote)
        check_fail(&s->chk, "one vote per term",
                   "n%llu persists a vote for n%llu in term %llu, where it voted for n%llu",
                   ULL(n->id), ULL(hs.vote), ULL(hs.term), ULL(before->vote));
}

static enum cut pick_cut(struct sim *s, const struct raft_ready *rd)
{
    if (s->calm || !s->w.crash_in_ready || !rng_chance(&s->rng, s->w.crash_in_ready))
        return CUT_NONE;
    switch (rng_below(&s->rng, 3)) {
    case 0:
        return CUT_BEFORE_PERSIST;
    case 1:
        return rd->n_entries ? CUT_MID_PERSIST : CUT_AFTER_PERSIST;
    default:
        return CUT_AFTER_PERSIST;
    }
}

/* The disk is full: nothing is written, except perhaps the truncation. */
static void persist_fails(struct sim *s, struct node *n, const struct raft_ready *rd)
{
    if (!rd->snapshot && rd->n_entries && rng_chance(&s->rng, 500)) {
        uint64_t from = rd->entries[0].index;
        if (from >= memstore_first_index(n->ms) && from <= memstore_last_index(n->ms) + 1) {
            struct raft_ready t = {.entries = rd->entries, .n_entries = rd->n_entries};
            memstore_persist(n->ms, &t, 0);
        }
    }
    sim_trace(s, "  n%llu persist fails: disk full", ULL(n->id));
    raft_advance(n->r, rd, LKV_ENOSPC);
}

static void trace_ready(const struct sim *s, const struct node *n, const struct raft_ready *rd)
{
    if (!s->cfg.verbose)
        return;
    sim_trace(s,
              "n%llu ready %s t%llu leader=%llu hs%s(t%llu v%llu c%llu) snap=%llu ents=%zu@%llu "
              "msgs=%zu+%zu committed=%zu@%llu reads=%zu",
              ULL(n->id), raft_role_name(rd->role), ULL(rd->term), ULL(rd->leader),
              rd->hs_changed ? "*" : "", ULL(rd->hs.term), ULL(rd->hs.vote), ULL(rd->hs.commit),
              ULL(rd->snapshot ? rd->snapshot->index : 0), rd->n_entries,
              ULL(rd->n_entries ? rd->entries[0].index : 0), rd->n_msgs, rd->n_msgs_after,
              rd->n_committed, ULL(rd->n_committed ? rd->committed[0].index : 0), rd->n_reads);
}

/* One bundle, in the contract's order. False when the node crashed in it or
 * its disk was full. */
static bool ready_once(struct sim *s, struct node *n)
{
    struct raft_ready rd;
    raft_ready(n->r, &rd);
    n->input_since_ready = false;
    struct raft_status st;
    raft_status(n->r, &st);
    n->leading = st.role == RAFT_LEADER ? st.term : 0;
    if (n->leading)
        check_leader(&s->chk, st.term, n->id);
    trace_ready(s, n, &rd);
    follow_log(s, n, &rd, st.term);
    send_all(s, n, rd.msgs, rd.n_msgs, "");
    enum cut cut = pick_cut(s, &rd);
    if (cut == CUT_BEFORE_PERSIST) {
        node_crash(s, n, "before persisting");
        return false;
    }
    if (!s->calm && s->w.disk_full && rng_chance(&s->rng, s->w.disk_full)) {
        persist_fails(s, n, &rd);
        return false; /* the same work comes back: retried at a later step */
    }
    size_t keep = cut == CUT_MID_PERSIST ? (size_t)rng_below(&s->rng, rd.n_entries) : rd.n_entries;
    struct raft_hard_state before = memstore_hard_state(n->ms);
    memstore_persist(n->ms, &rd, keep);
    check_hard_state(s, n, &before);
    if (cut != CUT_NONE) {
        node_crash(s, n, cut == CUT_MID_PERSIST ? "mid-persist" : "after persisting");
        return false;
    }
    send_all(s, n, rd.msgs_after, rd.n_msgs_after, "(after)");
    if (rd.snapshot)
        install_snapshot(s, n, rd.snapshot);
    for (size_t i = 0; i < rd.n_committed; i++)
        apply_entry(s, n, &rd.committed[i], st.term);
    take_reads(s, n, &rd);
    raft_advance(n->r, &rd, 0);
    return true;
}

void node_drain(struct sim *s, struct node *n)
{
    for (int i = 0; n->state == NODE_UP && raft_has_ready(n->r); i++) {
        if (i == 64)
            check_fail(&s->chk, "ready contract", "n%llu still has a ready after 64 bundles",
                       ULL(n->id));
        if (!ready_once(s, n))
            return;
    }
}

void node_after_input(struct sim *s, struct node *n)
{
    n->input_since_ready = true;
    if (s->calm || rng_chance(&s->rng, s->w.eager_ready))
        node_drain(s, n);
}

/* A packet that will never arrive: a real transport would notice a failed
 * connection, and always reports a snapshot it could not hand over. */
static void undelivered(struct sim *s, struct packet *p, const char *why)
{
    if (s->cfg.verbose) {
        char d[160];
        net_msg_describe(&p->m, d, sizeof d);
        sim_trace(s, "lost %s (%s)", d, why);
    }
    struct node *from = node_of(s, p->m.from);
    if (!p->original || !from || from->state != NODE_UP || from->inc != p->from_inc)
        return;
    if (p->m.type == RAFT_MSG_SNAPSHOT)
        raft_report_snapshot(from->r, p->m.to, false);
    else if (rng_chance(&s->rng, 200))
        raft_report_unreachable(from->r, p->m.to);
    else
        return;
    node_after_input(s, from);
}

void node_deliver(struct sim *s, struct packet *p)
{
    struct node *to = node_of(s, p->m.to);
    if (!to || to->state != NODE_UP) {
        undelivered(s, p, "node down");
        return;
    }
    if (!net_link_up(&s->net, p->m.from, p->m.to)) {
        undelivered(s, p, "link cut");
        return;
    }
    if (s->cfg.verbose) {
        char d[160];
        net_msg_describe(&p->m, d, sizeof d);
        sim_trace(s, "deliver #%llu %s", ULL(p->seq), d);
    }
    raft_step(to->r, &p->m);
    node_after_input(s, to);
    struct node *from = node_of(s, p->m.from);
    if (p->m.type == RAFT_MSG_SNAPSHOT && p->original && from->state == NODE_UP &&
        from->inc == p->from_inc) {
        s->res->snapshots_sent++;
        raft_report_snapshot(from->r, p->m.to, true);
        node_after_input(s, from);
    }
}

/* True when n, in its current configuration, is a quorum by itself. */
static bool quorum_alone(const struct node *n)
{
    const struct raft_membership *c = raft_membership_current(n->r);
    const uint8_t sets[2] = {RAFT_VOTER_IN, RAFT_VOTER_OUT};
    for (int k = 0; k < 2; k++) {
        size_t voters = 0;
        bool self = false;
        for (size_t i = 0; i < c->n; i++) {
            voters += (c->m[i].flags & sets[k]) != 0;
            self |= c->m[i].id == n->id && (c->m[i].flags & sets[k]);
        }
        if (voters > 1 || (voters == 1 && !self))
            return false;
    }
    return true;
}

/* A leader's commit index only moves to an entry that a quorum of its
 * configuration holds on disk (the leader counting itself only after its
 * own write, followers acknowledging only after theirs). */
static void check_commit_durable(struct sim *s, struct node *n, uint64_t commit)
{
    uint64_t t, chain;
    if (commit <= n->sh.base || !shadow_get(&n->sh, commit, &t, &chain))
        return;
    const struct raft_membership *c = raft_membership_current(n->r);
    const uint8_t sets[2] = {RAFT_VOTER_IN, RAFT_VOTER_OUT};
    for (int k = 0; k < 2; k++) {
        size_t voters = 0, durable = 0;
        for (size_t i = 0; i < c->n; i++) {
            if (!(c->m[i].flags & sets[k]))
                continue;
            voters++;
            const struct node *m = node_of(s, c->m[i].id);
            durable += m && m->ms &&
                       (memstore_term(m->ms, commit) == t ||
                        memstore_snapshot(m->ms)->index > commit);
        }
        if (voters && 2 * durable <= voters)
            check_fail(&s->chk, "commit durability",
                       "n%llu, leader of term %llu, commits index %llu (term %llu) that only %zu "
                       "of %zu voters hold on disk",
                       ULL(n->id), ULL(n->leading), ULL(commit), ULL(t), durable, voters);
    }
}

static bool isolated(const struct sim *s, raft_id id)
{
    bool others = false;
    for (raft_id o = 1; o < SIM_MAX_IDS; o++) {
        enum node_state st = s->nodes[o].state;
        if (o == id || (st != NODE_UP && st != NODE_DOWN))
            continue;
        others = true;
        if (net_link_up(&s->net, id, o) || net_link_up(&s->net, o, id))
            return false;
    }
    /* a packet from a node decommissioned since may still arrive */
    return others && !net_reaches(&s->net, id);
}

/* Cut off from everyone, a node that is no quorum alone cannot win a
 * pre-vote, so its term stays; a leader there steps down (check-quorum)
 * within a few election timeouts. */
static void check_isolated(struct sim *s, struct node *n, const struct raft_status *st)
{
    if (!isolated(s, n->id)) {
        n->iso_since = 0;
        return;
    }
    if (!n->iso_since) {
        n->iso_since = s->now ? s->now : 1;
        n->iso_term = st->term;
        return;
    }
    if (quorum_alone(n)) {
        /* It may win and lead alone: only what follows a change that
         * ends that counts. */
        n->iso_since = s->now ? s->now : 1;
        n->iso_term = st->term;
        return;
    }
    if (s->opt.pre_vote && st->term > n->iso_term)
        check_fail(&s->chk, "pre-vote",
                   "n%llu raised its term from %llu to %llu while cut off from every node",
                   ULL(n->id), ULL(n->iso_term), ULL(st->term));
    uint64_t limit = 3 * (uint64_t)s->opt.election_ticks;
    if (s->opt.check_quorum && n->leading && s->now - n->iso_since > limit)
        check_fail(&s->chk, "check quorum",
                   "n%llu still leads term %llu after %llu ticks cut off from every node",
                   ULL(n->id), ULL(n->leading), ULL(s->now - n->iso_since));
}

static void check_leader_commit(struct sim *s, struct node *n, const struct raft_status *st)
{
    if (!n->leading)
        return;
    if (n->lead_commit_term != st->term) {
        n->lead_commit_term = st->term;
        n->lead_commit = st->commit;
    } else if (st->commit > n->lead_commit) {
        check_commit_durable(s, n, st->commit);
        n->lead_commit = st->commit;
    }
}

void node_check(struct sim *s, struct node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    n->leading = st.role == RAFT_LEADER ? st.term : 0;
    if (n->leading)
        check_leader(&s->chk, st.term, n->id);
    check_note_commit_index(&s->chk, st.commit);
    if (st.commit > st.last_index)
        check_fail(&s->chk, "commit beyond log", "n%llu has commit %llu past its last index %llu",
                   ULL(n->id), ULL(st.commit), ULL(st.last_index));
    check_isolated(s, n, &st);
    check_leader_commit(s, n, &st);
    if (n->input_since_ready)
        return;
    observe_commit(s, n, st.commit, st.term);
    if (raft_has_ready(n->r))
        return;
    uint64_t t = 0, chain;
    shadow_get(&n->sh, shadow_last(&n->sh), &t, &chain);
    if (st.last_index != shadow_last(&n->sh) || st.last_term != t)
        check_fail(&s->chk, "ready contract",
                   "n%llu reports its log ends at (%llu,%llu) but its ready bundles built "
                   "one that ends at (%llu,%llu)",
                   ULL(n->id), ULL(st.last_index), ULL(st.last_term), ULL(shadow_last(&n->sh)),
                   ULL(t));
}

void node_compact(struct sim *s, struct node *n)
{
    uint64_t a = n->sm.applied;
    if (a <= memstore_snapshot(n->ms)->index || a < memstore_first_index(n->ms) ||
        a > memstore_last_index(n->ms))
        return;
    if (memstore_term(n->ms, a) != n->sm.term)
        check_fail(&s->chk, "apply from own log",
                   "n%llu applied index %llu with term %llu, its disk has term %llu", ULL(n->id),
                   ULL(a), ULL(n->sm.term), ULL(memstore_term(n->ms, a)));
    struct lkv_blob *b = sm_encode(&n->sm);
    memstore_compact(n->ms, a, &n->sm.conf, b, s->w.retain);
    lkv_blob_unref(b);
    sim_trace(s, "n%llu compact at %llu (term %llu) retain %llu: log now (%llu..%llu]", ULL(n->id),
              ULL(a), ULL(n->sm.term), ULL(s->w.retain), ULL(memstore_first_index(n->ms) - 1),
              ULL(memstore_last_index(n->ms)));
}
