/* raft/replicate: log replication. The leader's side (what to send each
 * member, acknowledgements, the commit index) and the follower's side
 * (appends, heartbeats, snapshots). */
#include "raft/core.h"

#include "util/err.h"

#include <assert.h>
#include <stdlib.h>

int repl_append_local(struct raft *r, uint8_t type, struct lkv_blob *data, uint64_t *index)
{
    uint64_t last = rlog_last_index(&r->log);
    struct raft_entry e = {.index = last + 1, .term = r->term, .type = type, .data = data};
    int rc = rlog_append(&r->log, last, &e, 1);
    if (rc != 0)
        return rc;
    if (type == RAFT_ENTRY_CONFIG && (rc = conf_on_append(r, &e, 1)) != 0)
        return rc;
    r->bcast_pending = true;
    *index = e.index;
    return 0;
}

static bool send_snapshot(struct raft *r, struct progress *pr)
{
    /* An unresponsive member is not worth a snapshot yet. */
    if (!pr->recent_active)
        return false;
    struct raft_snapshot *s = malloc(sizeof *s);
    if (!s)
        return false;
    if (r->opt.storage->snapshot(r->opt.storage->ctx, s) != 0) {
        free(s);
        return false;
    }
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .to = pr->id, .term = r->term, .snap = s};
    progress_become_snapshot(pr, s->index);
    core_send(r, &m, false);
    return true;
}

bool repl_send_append(struct raft *r, struct progress *pr, bool send_if_empty)
{
    if (pr->id == r->opt.id || progress_paused(pr))
        return false;
    uint64_t last = rlog_last_index(&r->log);
    uint64_t prev = pr->next - 1, prev_term = 0;
    int trc = rlog_term(&r->log, prev, &prev_term);
    struct raft_entry *ents = NULL;
    size_t n = 0;
    int erc = 0;
    if (trc == 0 && pr->next <= last)
        erc = rlog_slice(&r->log, pr->next, last + 1, r->opt.max_append_bytes, &ents, &n);
    if (trc == LKV_ECOMPACTED || erc == LKV_ECOMPACTED)
        return send_snapshot(r, pr);
    if (trc != 0 || erc != 0 || (n == 0 && !send_if_empty)) {
        rlog_free_entries(ents, n);
        return false;
    }
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .to = pr->id, .term = r->term, .index = prev,
                         .log_term = prev_term, .commit = r->log.commit, .entries = ents,
                         .n_entries = n};
    if (n > 0)
        progress_sent(pr, ents[n - 1].index);
    else if (pr->state == RAFT_PROGRESS_PROBE)
        pr->probe_sent = true;
    core_send(r, &m, false);
    return true;
}

/* Sends pr everything it can take: up to the window in REPLICATE, one
 * probe in PROBE. */
static void send_all(struct raft *r, struct progress *pr)
{
    bool probe = pr->state == RAFT_PROGRESS_PROBE;
    for (unsigned k = 0; k <= pr->in_cap; k++) {
        if (!repl_send_append(r, pr, probe))
            break;
    }
}

void repl_bcast_append(struct raft *r)
{
    for (size_t i = 0; i < r->nprs; i++)
        send_all(r, &r->prs[i]);
}

void repl_bcast_heartbeat(struct raft *r, uint64_t round)
{
    read_on_round_sent(r, round);
    for (size_t i = 0; i < r->nprs; i++) {
        struct progress *pr = &r->prs[i];
        if (pr->id == r->opt.id)
            continue;
        /* Never tell a member to commit past what is known to match its
         * log: its suffix may still be from an older term. */
        uint64_t commit = pr->match < r->log.commit ? pr->match : r->log.commit;
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = pr->id, .term = r->term,
                             .commit = commit, .ctx = round};
        core_send(r, &m, false);
    }
}

static uint64_t match_of(void *arg, raft_id id)
{
    struct progress *pr = core_progress(arg, id);
    return pr ? pr->match : 0;
}

bool repl_maybe_commit(struct raft *r)
{
    uint64_t idx = quorum_index(core_conf(r), match_of, r);
    /* Only an entry of this term is committed by counting replicas
     * (Figure 8); earlier ones commit with it. */
    if (idx <= r->log.commit || rlog_term_or_zero(&r->log, idx) != r->term)
        return false;
    rlog_commit_to(&r->log, idx);
    conf_on_commit(r);
    read_on_commit(r);
    return true;
}

static void maybe_timeout_now(struct raft *r, struct progress *pr)
{
    if (pr->id != r->transferee || pr->match != rlog_last_index(&r->log))
        return;
    struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = pr->id, .term = r->term};
    core_send(r, &m, false);
}

static void on_append_reject(struct raft *r, struct progress *pr, const struct raft_msg *m)
{
    uint64_t hint = m->hint;
    if (m->log_term > 0) {
        /* Skip the whole term the follower has there: the leader's last
         * index with a term no greater than the follower's. */
        uint64_t t;
        hint = rlog_find_conflict_by_term(&r->log, m->hint, m->log_term, &t);
    }
    if (!progress_maybe_decr_to(pr, m->index, hint))
        return;
    if (pr->state == RAFT_PROGRESS_REPLICATE)
        progress_become_probe(pr);
    repl_send_append(r, pr, true);
}

static void on_append_accept(struct raft *r, struct progress *pr, const struct raft_msg *m)
{
    /* An acknowledgement of more than the leader holds was never sent. */
    if (m->index > rlog_last_index(&r->log))
        return;
    if (pr->state == RAFT_PROGRESS_REPLICATE)
        progress_free_to(pr, m->index);
    bool moved = progress_maybe_update(pr, m->index);
    /* An old or duplicated answer changes nothing, except that a probe
     * answered at the known match point (nothing new to send back then)
     * still shows where the logs meet. */
    if (!moved && !(pr->state == RAFT_PROGRESS_PROBE && m->index == pr->match))
        return;
    if (pr->state == RAFT_PROGRESS_PROBE) {
        progress_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
               pr->match + 1 >= rlog_first_index(&r->log)) {
        progress_become_probe(pr);
        progress_become_replicate(pr);
    }
    /* Committing may append a configuration (leaving a joint one) that
     * rebuilds the progress table: pr is not valid past this call. */
    raft_id id = pr->id;
    repl_maybe_commit(r);
    if (r->role != RAFT_LEADER || !(pr = core_progress(r, id)))
        return; /* the leader, or that member, left the configuration */
    send_all(r, pr);
    maybe_timeout_now(r, pr);
}

void repl_step_leader(struct raft *r, const struct raft_msg *m)
{
    struct progress *pr = core_progress(r, m->from);
    if (!pr)
        return;
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        pr->recent_active = true;
        if (m->reject)
            on_append_reject(r, pr, m);
        else
            on_append_accept(r, pr, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        pr->recent_active = true;
        pr->probe_sent = false;
        /* Appends of a full window may all have been lost: free one slot
         * so that the next append finds out. */
        if (pr->state == RAFT_PROGRESS_REPLICATE && pr->in_count == pr->in_cap)
            progress_free_to(pr, pr->inflight[pr->in_start]);
        /* Behind: send something, even an empty append, so that a lost
         * one is found out (the member rejects what does not follow). */
        if (pr->match < rlog_last_index(&r->log))
            repl_send_append(r, pr, true);
        if (m->ctx)
            read_on_ack(r, pr, m->ctx);
        break;
    default:
        break;
    }
}

static void commit_from_leader(struct raft *r, uint64_t index)
{
    if (rlog_commit_to(&r->log, index))
        conf_on_commit(r);
}

void repl_handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
    if (m->index < r->log.commit) {
        /* Everything up to the commit index already matches. */
        resp.index = r->log.commit;
    } else if (rlog_match_term(&r->log, m->index, m->log_term)) {
        uint64_t lastnew = m->index + m->n_entries;
        /* Only a real conflict (same index, other term) cuts the log: a
         * stale or reordered append that is merely shorter removes nothing. */
        uint64_t ci = rlog_find_conflict(&r->log, m->entries, m->n_entries);
        if (ci != 0) {
            assert(ci > r->log.commit && "a committed entry conflicts with the leader's log");
            size_t off = (size_t)(ci - (m->index + 1));
            if (rlog_append(&r->log, ci - 1, m->entries + off, m->n_entries - off) != 0 ||
                conf_on_append(r, m->entries + off, m->n_entries - off) != 0)
                return; /* out of memory: no answer, the leader retries */
        }
        commit_from_leader(r, m->commit < lastnew ? m->commit : lastnew);
        resp.index = lastnew;
    } else {
        /* Say where the logs may agree, a term at a time. */
        uint64_t last = rlog_last_index(&r->log);
        uint64_t at = m->index < last ? m->index : last, term = 0;
        resp.reject = true;
        resp.index = m->index;
        resp.hint = rlog_find_conflict_by_term(&r->log, at, m->log_term, &term);
        resp.log_term = term;
    }
    /* An acknowledgement promises durability: it leaves after the write. */
    core_send(r, &resp, true);
}

void repl_handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    commit_from_leader(r, m->commit);
    struct raft_msg resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term,
                            .ctx = m->ctx};
    core_send(r, &resp, false);
}

void repl_handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot *s = m->snap;
    struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
    if (s->index <= r->log.commit) {
        resp.index = r->log.commit;
    } else if (rlog_match_term(&r->log, s->index, s->term)) {
        /* The log already holds it: keep the entries after it. */
        commit_from_leader(r, s->index);
        resp.index = s->index;
    } else {
        if (rlog_restore(&r->log, s) != 0)
            return;
        conf_on_restore(r, s);
        resp.index = s->index;
    }
    core_send(r, &resp, true);
}
