/* raft: roles, elections, ticks, message dispatch, and the ready/advance
 * cycle. Replication lives in replicate.c, configurations in conf.c, reads
 * in readindex.c. */
#include "raft/core.h"

#include "util/err.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum campaign_kind { CAMPAIGN_PRE, CAMPAIGN_ELECTION, CAMPAIGN_TRANSFER };

/* ---- small helpers ---- */

static uint64_t next_rand(struct raft *r)
{
    /* splitmix64 */
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void core_reset_timeout(struct raft *r)
{
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    /* [T, 2T), drawn anew at every reset so that two nodes that collided
     * once are unlikely to collide again */
    r->timeout = r->opt.election_ticks + (unsigned)(next_rand(r) % r->opt.election_ticks);
}

const struct raft_membership *core_conf(const struct raft *r)
{
    return &r->confs.v[r->confs.n - 1].conf;
}

bool core_promotable(const struct raft *r)
{
    /* A voter of the committed configuration may still campaign while an
     * entry that removes or demotes it is uncommitted: otherwise a
     * demoted leader holding the only copy of that entry leaves nobody
     * able to win (thesis 4.2.2). Its votes are still counted in its
     * newest configuration, where its own does not count. */
    for (size_t i = 0; i < r->confs.n; i++) {
        if (raft_membership_is_voter(&r->confs.v[i].conf, r->opt.id))
            return true;
    }
    return false;
}

struct progress *core_progress(struct raft *r, raft_id id)
{
    for (size_t i = 0; i < r->nprs; i++) {
        if (r->prs[i].id == id)
            return &r->prs[i];
    }
    return NULL;
}

static void msg_free(struct raft_msg *m)
{
    rlog_free_entries(m->entries, m->n_entries);
    m->entries = NULL;
    m->n_entries = 0;
    if (m->snap) {
        lkv_blob_unref(m->snap->data);
        free(m->snap);
        m->snap = NULL;
    }
}

static void msgvec_clear(struct msgvec *v)
{
    for (size_t i = 0; i < v->n; i++)
        msg_free(&v->v[i]);
    v->n = 0;
}

void core_send(struct raft *r, struct raft_msg *m, bool after)
{
    struct msgvec *v = after ? &r->out_after : &r->out;
    m->from = r->opt.id;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct raft_msg *p = realloc(v->v, cap * sizeof *p);
        if (!p) {
            msg_free(m); /* a lost message: Raft recovers from those */
            return;
        }
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = *m;
}

static void reply(struct raft *r, const struct raft_msg *to, uint8_t type, uint64_t term,
                  bool reject, bool after)
{
    struct raft_msg m = {.type = type, .to = to->from, .term = term, .reject = reject};
    core_send(r, &m, after);
}

/* ---- roles ---- */

void core_become_follower(struct raft *r, uint64_t term, raft_id leader)
{
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    if (r->role == RAFT_LEADER)
        read_on_step_down(r);
    r->win_on_persist = false;
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transferee = RAFT_NONE;
    r->bcast_pending = false;
    core_reset_timeout(r);
}

static void reset_votes(struct raft *r)
{
    memset(r->votes, -1, sizeof r->votes);
}

static void become_pre_candidate(struct raft *r)
{
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = RAFT_NONE;
    reset_votes(r);
    core_reset_timeout(r);
}

static void become_candidate(struct raft *r)
{
    r->term++;
    r->vote = r->opt.id;
    r->role = RAFT_CANDIDATE;
    r->leader = RAFT_NONE;
    reset_votes(r);
    core_reset_timeout(r);
}

static void become_leader(struct raft *r)
{
    r->role = RAFT_LEADER;
    r->leader = r->opt.id;
    r->transferee = RAFT_NONE;
    core_reset_timeout(r);
    r->elections_won++;
    /* Fresh progress for everyone: nothing is known of their logs yet. */
    for (size_t i = 0; i < r->nprs; i++)
        progress_free(&r->prs[i]);
    r->nprs = 0;
    if (conf_sync_progress(r) != 0)
        return; /* out of memory: check-quorum will depose this leader */
    read_on_leader(r);
    /* Configuration changes wait until everything a previous leader may
     * have appended is committed. The no-op makes that happen promptly: a
     * leader only counts replicas of its own term's entries (Figure 8). */
    r->pending_conf_index = rlog_last_index(&r->log);
    uint64_t index;
    repl_append_local(r, RAFT_ENTRY_NOOP, NULL, &index);
}

static int vote_of(void *arg, raft_id id)
{
    struct raft *r = arg;
    const struct raft_membership *c = core_conf(r);
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].id == id)
            return r->votes[i];
    }
    return -1;
}

static enum quorum_vote record_vote(struct raft *r, raft_id id, bool granted)
{
    const struct raft_membership *c = core_conf(r);
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].id == id && r->votes[i] < 0)
            r->votes[i] = granted ? 1 : 0;
    }
    return quorum_vote_result(c, vote_of, r);
}

static void campaign(struct raft *r, enum campaign_kind kind)
{
    if (!core_promotable(r))
        return;
    r->elections++;
    uint8_t type;
    uint64_t vterm;
    if (kind == CAMPAIGN_PRE) {
        become_pre_candidate(r);
        type = RAFT_MSG_PREVOTE;
        vterm = r->term + 1; /* asked about, not taken */
    } else {
        become_candidate(r);
        type = RAFT_MSG_VOTE;
        vterm = r->term;
    }
    if (record_vote(r, r->opt.id, true) == QUORUM_WON) {
        /* Its own vote is all it needs. A leader counts itself only once
         * durable: it takes office when the bundle with this term and vote
         * has been persisted (raft_advance), never in a term it could
         * forget in a crash and then lead again with another log. */
        if (kind == CAMPAIGN_PRE)
            campaign(r, CAMPAIGN_ELECTION);
        else
            r->win_on_persist = true;
        return;
    }
    const struct raft_membership *c = core_conf(r);
    for (size_t i = 0; i < c->n; i++) {
        const struct raft_member *mb = &c->m[i];
        if (mb->id == r->opt.id || !(mb->flags & (RAFT_VOTER_IN | RAFT_VOTER_OUT)))
            continue;
        struct raft_msg m = {.type = type, .to = mb->id, .term = vterm,
                             .index = rlog_last_index(&r->log),
                             .log_term = rlog_last_term(&r->log),
                             .transfer = kind == CAMPAIGN_TRANSFER};
        /* A vote request carries a term and self-vote that must be durable
         * first; a pre-vote changes nothing. */
        core_send(r, &m, type == RAFT_MSG_VOTE);
    }
}

/* ---- ticks ---- */

static bool quorum_active(struct raft *r);

static void tick_election(struct raft *r)
{
    r->election_elapsed++;
    if (r->start_lease && r->election_elapsed >= r->opt.election_ticks)
        r->start_lease = false;
    if (r->start_lease)
        return; /* see check_term: no campaign inside the start-up lease either */
    if (core_promotable(r) && r->election_elapsed >= r->timeout) {
        r->election_elapsed = 0;
        campaign(r, r->opt.pre_vote ? CAMPAIGN_PRE : CAMPAIGN_ELECTION);
    }
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->transferee != RAFT_NONE && ++r->transfer_elapsed >= r->opt.election_ticks)
        r->transferee = RAFT_NONE; /* the target did not take over in time */
    if (r->election_elapsed >= r->opt.election_ticks) {
        r->election_elapsed = 0;
        if (r->opt.check_quorum) {
            if (!quorum_active(r)) {
                core_become_follower(r, r->term, RAFT_NONE);
                return;
            }
            for (size_t i = 0; i < r->nprs; i++)
                r->prs[i].recent_active = r->prs[i].id == r->opt.id;
        }
    }
    if (r->heartbeat_elapsed >= r->opt.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        repl_bcast_heartbeat(r, ++r->read_round);
    }
}

void raft_tick(struct raft *r)
{
    assert(!r->in_ready);
    r->ticks++;
    if (r->role == RAFT_LEADER)
        tick_leader(r);
    else
        tick_election(r);
}

static uint64_t active_of(void *arg, raft_id id)
{
    struct raft *r = arg;
    if (id == r->opt.id)
        return 1;
    struct progress *pr = core_progress(r, id);
    return pr && pr->recent_active ? 1 : 0;
}

static bool quorum_active(struct raft *r)
{
    return quorum_index(core_conf(r), active_of, r) >= 1;
}

/* ---- receiving ---- */

static bool valid_msg(const struct raft *r, const struct raft_msg *m)
{
    if (m->to != r->opt.id || m->from == RAFT_NONE || m->from == r->opt.id ||
        m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG__COUNT)
        return false;
    if (m->type == RAFT_MSG_SNAPSHOT && (!m->snap || m->snap->index == 0))
        return false;
    if (m->type != RAFT_MSG_APPEND)
        return m->n_entries == 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term > m->term ||
            (i > 0 && e->term < m->entries[i - 1].term) || (i == 0 && e->term < m->log_term) ||
            e->type < RAFT_ENTRY_COMMAND || e->type > RAFT_ENTRY_CONFIG)
            return false;
    }
    return true;
}

static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    uint8_t resp = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                    (pre && m->term > r->term);
    if (can_vote && rlog_is_up_to_date(&r->log, m->index, m->log_term)) {
        /* A granted vote is durable before it leaves (msgs_after). */
        reply(r, m, resp, m->term, false, !pre);
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else {
        reply(r, m, resp, r->term, true, !pre);
    }
}

/* Term bookkeeping common to every message. Returns false when the
 * message is to be dropped. */
static bool check_term(struct raft *r, const struct raft_msg *m)
{
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > r->term) {
        /* Someone who heard from a leader within the minimum election
         * timeout does not help depose it (check-quorum's lease, and the
         * defence against removed servers). A transfer is the exception. */
        /* A node just started does not remember whom it heard from: with
         * lease reads on it waits out one election timeout first, or a
         * leader's lease could rest on a vote it then gives away. */
        bool in_lease = r->opt.check_quorum &&
                        (r->leader != RAFT_NONE || r->start_lease) &&
                        r->election_elapsed < r->opt.election_ticks;
        if (vote_req && !m->transfer && in_lease)
            return false;
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject))
            return true; /* pre-votes never move terms */
        bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                           m->type == RAFT_MSG_SNAPSHOT;
        core_become_follower(r, m->term, from_leader ? m->from : RAFT_NONE);
        return true;
    }
    if (m->term < r->term) {
        if ((r->opt.check_quorum || r->opt.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* Tell a deposed leader the news, so it steps down. */
            reply(r, m, RAFT_MSG_APPEND_RESP, r->term, false, false);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            reply(r, m, RAFT_MSG_PREVOTE_RESP, r->term, true, false);
        }
        return false;
    }
    return true;
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->leader = m->from;
        if (m->type == RAFT_MSG_APPEND)
            repl_handle_append(r, m);
        else if (m->type == RAFT_MSG_HEARTBEAT)
            repl_handle_heartbeat(r, m);
        else
            repl_handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        campaign(r, CAMPAIGN_TRANSFER);
        break;
    default:
        break;
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint8_t mine = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        /* A leader of this term exists. */
        core_become_follower(r, m->term, m->from);
        step_follower(r, m);
        return;
    default:
        break;
    }
    if (m->type != mine)
        return;
    switch (record_vote(r, m->from, !m->reject)) {
    case QUORUM_WON:
        if (r->role == RAFT_PRE_CANDIDATE)
            campaign(r, CAMPAIGN_ELECTION);
        else
            become_leader(r);
        break;
    case QUORUM_LOST:
        core_become_follower(r, r->term, RAFT_NONE);
        break;
    case QUORUM_PENDING:
        break;
    }
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    assert(!r->in_ready);
    if (!valid_msg(r, m))
        return LKV_EINVAL;
    if (!check_term(r, m))
        return 0;
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
        handle_vote(r, m);
        return 0;
    }
    switch (r->role) {
    case RAFT_FOLLOWER: step_follower(r, m); break;
    case RAFT_PRE_CANDIDATE:
    case RAFT_CANDIDATE: step_candidate(r, m); break;
    case RAFT_LEADER: repl_step_leader(r, m); break;
    }
    return 0;
}

/* ---- client inputs ---- */

int raft_propose(struct raft *r, uint8_t type, struct lkv_blob *data, uint64_t *index,
                 uint64_t *term)
{
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return LKV_ENOTLEADER;
    if (r->transferee != RAFT_NONE)
        return LKV_ETRANSFER;
    if (type != RAFT_ENTRY_COMMAND && type != RAFT_ENTRY_NOOP)
        return LKV_EINVAL;
    int rc = repl_append_local(r, type, data, index);
    if (rc == 0)
        *term = r->term;
    return rc;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return LKV_ENOTLEADER;
    struct readvec *v = &r->reads_waiting;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct read_req *p = realloc(v->v, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (struct read_req){.ctx = ctx};
    read_on_commit(r);
    return 0;
}

int raft_transfer_leadership(struct raft *r, raft_id to)
{
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return LKV_ENOTLEADER;
    const struct raft_membership *c = core_conf(r);
    if (to == RAFT_NONE) {
        uint64_t best = 0;
        for (size_t i = 0; i < r->nprs; i++) {
            const struct raft_member *mb = raft_membership_find(c, r->prs[i].id);
            if (r->prs[i].id != r->opt.id && mb && (mb->flags & RAFT_VOTER_IN) &&
                (to == RAFT_NONE || r->prs[i].match > best)) {
                to = r->prs[i].id;
                best = r->prs[i].match;
            }
        }
    }
    const struct raft_member *target = raft_membership_find(c, to);
    if (to == RAFT_NONE || to == r->opt.id || !target || !(target->flags & RAFT_VOTER_IN))
        return LKV_EINVAL;
    if (r->transferee == to)
        return 0;
    r->transferee = to;
    r->transfer_elapsed = 0;
    struct progress *pr = core_progress(r, to);
    if (pr && pr->match == rlog_last_index(&r->log)) {
        struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to, .term = r->term};
        r->lease_void_term = r->term;
        core_send(r, &m, false);
    } else if (pr) {
        repl_send_append(r, pr, true);
    }
    return 0;
}

int raft_campaign(struct raft *r)
{
    assert(!r->in_ready);
    if (!core_promotable(r))
        return LKV_EINVAL;
    if (r->role != RAFT_LEADER)
        campaign(r, r->opt.pre_vote ? CAMPAIGN_PRE : CAMPAIGN_ELECTION);
    return 0;
}

void raft_report_unreachable(struct raft *r, raft_id peer)
{
    struct progress *pr = r->role == RAFT_LEADER ? core_progress(r, peer) : NULL;
    if (pr && pr->state == RAFT_PROGRESS_REPLICATE)
        progress_become_probe(pr);
}

void raft_report_snapshot(struct raft *r, raft_id peer, bool ok)
{
    struct progress *pr = r->role == RAFT_LEADER ? core_progress(r, peer) : NULL;
    if (!pr || pr->state != RAFT_PROGRESS_SNAPSHOT)
        return;
    if (!ok)
        pr->pending_snapshot = 0;
    progress_become_probe(pr);
    /* Wait for a heartbeat's answer before probing again. */
    pr->probe_sent = true;
}

int raft_drop_unstable(struct raft *r)
{
    const struct raft_membership *c = core_conf(r);
    if (r->role != RAFT_LEADER || c->n != 1 || c->m[0].id != r->opt.id)
        return LKV_EINVAL;
    rlog_drop_unstable(&r->log);
    conf_on_truncate(r, r->log.uoff);
    if (r->pending_conf_index > rlog_last_index(&r->log))
        r->pending_conf_index = rlog_last_index(&r->log);
    if (rlog_last_term(&r->log) != r->term) {
        /* Reads and configuration changes need an entry of this term. */
        uint64_t index;
        repl_append_local(r, RAFT_ENTRY_NOOP, NULL, &index);
    }
    return 0;
}

/* ---- ready / advance ---- */

static bool hs_differs(const struct raft *r)
{
    return r->term != r->prev_hs.term || r->vote != r->prev_hs.vote;
}

static uint64_t apply_from(const struct raft *r)
{
    uint64_t a = r->log.applied;
    if (r->log.usnap && r->log.usnap->index > a)
        a = r->log.usnap->index;
    return a + 1;
}

static uint64_t apply_to(const struct raft *r)
{
    uint64_t last = rlog_last_index(&r->log);
    return r->log.commit < last ? r->log.commit : last;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->in_ready)
        return false;
    bool leader_work = r->role == RAFT_LEADER && (r->bcast_pending || r->read_round_needed);
    return hs_differs(r) || r->log.un || r->log.usnap || r->out.n || r->out_after.n ||
           apply_from(r) <= apply_to(r) || r->reads_ready.n || leader_work ||
           !r->soft_reported || r->role != r->prev_role || r->leader != r->prev_leader;
}

/* Work the leader batches until the bundle is taken: every entry proposed
 * since the last one goes out in as few appends as possible, and every read
 * asked for shares one heartbeat round. */
static void flush_leader(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    if (r->bcast_pending) {
        r->bcast_pending = false;
        repl_bcast_append(r);
    }
    if (r->read_round_needed) {
        r->read_round_needed = false;
        repl_bcast_heartbeat(r, ++r->read_round);
    }
}

static void fill_reads(struct raft *r)
{
    free(r->reads_out);
    r->reads_out = NULL;
    r->n_reads_out = 0;
    if (r->reads_ready.n == 0)
        return;
    r->reads_out = malloc(r->reads_ready.n * sizeof *r->reads_out);
    if (!r->reads_out)
        return; /* served in a later bundle */
    for (size_t i = 0; i < r->reads_ready.n; i++)
        r->reads_out[i] = (struct raft_read){r->reads_ready.v[i].ctx, r->reads_ready.v[i].index};
    r->n_reads_out = r->reads_ready.n;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    assert(!r->in_ready);
    flush_leader(r);
    memset(rd, 0, sizeof *rd);
    rd->hs_changed = hs_differs(r);
    rd->hs = (struct raft_hard_state){r->term, r->vote, r->log.commit};
    rd->snapshot = r->log.usnap;
    rd->entries = r->log.u;
    rd->n_entries = r->log.un;
    rd->msgs = r->out.v;
    rd->n_msgs = r->out.n;
    rd->msgs_after = r->out_after.v;
    rd->n_msgs_after = r->out_after.n;
    r->committed = NULL;
    r->n_committed = 0;
    uint64_t lo = apply_from(r), hi = apply_to(r);
    if (lo <= hi && rlog_slice(&r->log, lo, hi + 1, r->opt.max_append_bytes * 16,
                               &r->committed, &r->n_committed) != 0) {
        r->committed = NULL; /* retried with the next bundle */
        r->n_committed = 0;
    }
    rd->committed = r->committed;
    rd->n_committed = r->n_committed;
    fill_reads(r);
    rd->reads = r->reads_out;
    rd->n_reads = r->n_reads_out;
    rd->role = r->role;
    rd->leader = r->leader;
    rd->term = r->term;
    rd->soft_changed = !r->soft_reported || r->role != r->prev_role || r->leader != r->prev_leader;
    r->in_ready = true;
}

void raft_advance(struct raft *r, const struct raft_ready *rd, int persist_status)
{
    assert(r->in_ready);
    r->in_ready = false;
    msgvec_clear(&r->out);
    msgvec_clear(&r->out_after);
    if (rd->soft_changed && rd->leader != RAFT_NONE && rd->leader != r->prev_leader)
        r->leader_changes++;
    r->prev_role = rd->role;
    r->prev_leader = rd->leader;
    r->soft_reported = true;
    if (persist_status != 0) {
        /* Nothing durable, nothing applied: the same work comes back. */
        rlog_free_entries(r->committed, r->n_committed);
        r->committed = NULL;
        r->n_committed = 0;
        return;
    }
    r->prev_hs = rd->hs;
    if (rd->snapshot && rd->snapshot->index > r->log.applied)
        r->log.applied = rd->snapshot->index;
    rlog_stable_all(&r->log);
    if (r->n_committed)
        r->log.applied = r->committed[r->n_committed - 1].index;
    rlog_applied_to(&r->log, r->log.applied);
    rlog_free_entries(r->committed, r->n_committed);
    r->committed = NULL;
    r->n_committed = 0;
    /* the reads handed out were served (or failed) by the caller */
    size_t served = r->n_reads_out;
    if (served) {
        memmove(r->reads_ready.v, r->reads_ready.v + served,
                (r->reads_ready.n - served) * sizeof *r->reads_ready.v);
        r->reads_ready.n -= served;
    }
    free(r->reads_out);
    r->reads_out = NULL;
    r->n_reads_out = 0;
    if (r->win_on_persist) {
        r->win_on_persist = false;
        if (r->role == RAFT_CANDIDATE && r->prev_hs.term == r->term && r->vote == r->opt.id)
            become_leader(r);
    }
    if (r->role == RAFT_LEADER) {
        struct progress *self = core_progress(r, r->opt.id);
        if (self)
            progress_maybe_update(self, rlog_stable_last(&r->log));
        repl_maybe_commit(r);
    }
}

/* ---- construction ---- */

static bool valid_options(const struct raft_options *o)
{
    return o->id != RAFT_NONE && o->election_ticks >= 2 && o->heartbeat_ticks >= 1 &&
           o->heartbeat_ticks < o->election_ticks && o->max_inflight >= 1 &&
           o->max_append_bytes >= 1 && o->storage && (!o->lease_reads || o->check_quorum);
}

static bool lone_voter(const struct raft *r)
{
    const struct raft_membership *c = core_conf(r);
    size_t voters = 0;
    for (size_t i = 0; i < c->n; i++)
        voters += (c->m[i].flags & (RAFT_VOTER_IN | RAFT_VOTER_OUT)) != 0;
    return voters == 1 && raft_membership_is_voter(c, r->opt.id);
}

int raft_new(const struct raft_options *opt, const struct raft_boot *boot, struct raft **out)
{
    if (!valid_options(opt) || boot->applied < boot->snap.index)
        return LKV_EINVAL;
    struct raft *r = calloc(1, sizeof *r);
    if (!r)
        return LKV_ENOMEM;
    r->opt = *opt;
    r->rng = opt->seed ^ (opt->id * 0xD6E8FEB86659FD93ull);
    rlog_init(&r->log, opt->storage, boot->hs.commit, boot->applied);
    r->term = boot->hs.term;
    r->vote = boot->hs.vote;
    r->prev_hs = boot->hs;
    r->confs.cap = 8 + boot->n_confs;
    r->confs.v = malloc(r->confs.cap * sizeof *r->confs.v);
    if (!r->confs.v) {
        rlog_free(&r->log);
        free(r);
        return LKV_ENOMEM;
    }
    r->confs.v[0] = (struct raft_conf_at){boot->snap.index, boot->snap.conf};
    r->confs.n = 1;
    for (size_t i = 0; i < boot->n_confs; i++)
        r->confs.v[r->confs.n++] = boot->confs[i];
    conf_on_commit(r); /* history older than the commit index goes */
    r->role = RAFT_FOLLOWER;
    core_reset_timeout(r);
    /* With lease reads even a lone voter waits: a leader of the previous
     * configuration may still be reading on a lease this node granted. */
    if (opt->lease_reads)
        r->start_lease = true;
    else if (lone_voter(r))
        campaign(r, CAMPAIGN_ELECTION);
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    msgvec_clear(&r->out);
    msgvec_clear(&r->out_after);
    free(r->out.v);
    free(r->out_after.v);
    rlog_free_entries(r->committed, r->n_committed);
    for (size_t i = 0; i < r->nprs; i++)
        progress_free(&r->prs[i]);
    rlog_free(&r->log);
    free(r->confs.v);
    free(r->reads_waiting.v);
    free(r->reads_queued.v);
    free(r->reads_ready.v);
    free(r->reads_out);
    free(r);
}

/* ---- status ---- */

void raft_status(const struct raft *r, struct raft_status *st)
{
    /* the peers past n_peers are left as they were: the array is large */
    memset(st, 0, offsetof(struct raft_status, peers));
    st->id = r->opt.id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->log.commit;
    st->applied = r->log.applied;
    st->first_index = rlog_first_index(&r->log);
    st->last_index = rlog_last_index(&r->log);
    st->last_term = rlog_last_term(&r->log);
    st->transferee = r->transferee;
    st->elections = r->elections;
    st->elections_won = r->elections_won;
    st->leader_changes = r->leader_changes;
    if (r->role != RAFT_LEADER)
        return;
    for (size_t i = 0; i < r->nprs; i++) {
        const struct progress *p = &r->prs[i];
        if (p->id == r->opt.id)
            continue;
        st->peers[st->n_peers++] = (struct raft_peer_status){
            .id = p->id, .match = p->match, .next = p->next, .state = p->state,
            .recent_active = p->recent_active, .inflight = p->in_count,
            .snapshot_index = p->pending_snapshot};
    }
}

const struct raft_membership *raft_membership_current(const struct raft *r)
{
    return core_conf(r);
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRE_CANDIDATE: return "pre-candidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    }
    return "unknown";
}

const char *raft_msg_type_name(int type)
{
    static const char *const names[RAFT_MSG__COUNT] = {
        [RAFT_MSG_APPEND] = "append",       [RAFT_MSG_APPEND_RESP] = "append_resp",
        [RAFT_MSG_VOTE] = "vote",           [RAFT_MSG_VOTE_RESP] = "vote_resp",
        [RAFT_MSG_PREVOTE] = "prevote",     [RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
        [RAFT_MSG_HEARTBEAT] = "heartbeat", [RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
        [RAFT_MSG_SNAPSHOT] = "snapshot",   [RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
    };
    if (type <= 0 || type >= RAFT_MSG__COUNT)
        return "unknown";
    return names[type];
}
