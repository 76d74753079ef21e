/* Unit tests for the Raft core alone: one test (at least) per trap in
 * RAFT.md, each built so that breaking the rule makes it fail. The cores
 * run on in-memory disks; the test delivers every message by hand. */
#include "raft_fixture.h"

#include "raft/log.h"

static void teardown(void)
{
    fx_free();
}

TestSuite(raft, .fini = teardown);

/* ---- 1. Figure 8: commit only by counting entries of the current term ---- */

Test(raft, figure8_old_term_entry_is_not_committed_by_counting_replicas)
{
    fx_init(3);
    /* Node 1 and 2 hold an entry of term 2 at index 2 that was never
     * committed; node 3 holds only index 1. */
    uint64_t t12[] = {1, 2}, t1[] = {1};
    for (size_t i = 1; i <= 3; i++)
        fx_crash(i);
    fx_disk_term(1, 2, 0);
    fx_disk_term(2, 2, 0);
    fx_disk_term(3, 2, 0);
    fx_disk_log(1, 1, t12, 2);
    fx_disk_log(2, 1, t12, 2);
    fx_disk_log(3, 1, t1, 1);
    for (size_t i = 1; i <= 3; i++)
        fx_restart(i);
    FX.mute_appends[1] = true; /* node 1's appends get nowhere */
    cr_assert_eq(raft_campaign(FX.node[1].r), 0);
    fx_settle();
    cr_assert_eq(fx_status(1).role, RAFT_LEADER);
    cr_assert_eq(fx_status(1).term, 3);
    /* Node 2 answers as if it matched through index 2 (it does). */
    struct raft_msg ack = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .index = 2};
    raft_step(FX.node[1].r, &ack);
    fx_ready_all();
    /* A majority holds index 2, but it is of term 2: no commit. */
    cr_assert_lt(fx_status(1).commit, 2, "an entry of an older term was committed by counting");
    /* Once the term-3 no-op (index 3) is on a majority, both commit. */
    ack.index = 3;
    raft_step(FX.node[1].r, &ack);
    fx_ready_all();
    cr_assert_eq(fx_status(1).commit, 3);
}

Test(raft, new_leader_appends_a_noop_of_its_term_at_once)
{
    fx_init(3);
    fx_elect(1);
    struct raft_status st = fx_status(1);
    const struct raft_entry *last = memstore_entry(FX.node[1].ms, st.last_index);
    cr_assert_not_null(last);
    cr_assert_eq(last->type, RAFT_ENTRY_NOOP);
    cr_assert_eq(last->term, st.term);
    /* ... and it commits everywhere without any client write */
    fx_tick_all(3);
    for (size_t i = 1; i <= 3; i++)
        cr_assert_eq(fx_status(i).commit, st.last_index, "node %zu", i);
}

/* ---- 2. durability before anything leaves ---- */

Test(raft, vote_request_and_grant_leave_only_after_the_term_is_durable)
{
    fx_init(3);
    raft_campaign(FX.node[1].r); /* pre-vote first */
    fx_ready(1);
    cr_assert(seen_type(SEEN[1].msg_types, SEEN[1].n_msgs, RAFT_MSG_PREVOTE));
    cr_assert_not(SEEN[1].hs_changed, "a pre-vote must not change the term");
    /* deliver the pre-votes, let the voters answer */
    while (FX.nq)
        fx_deliver_at(0);
    fx_ready(2);
    fx_ready(3);
    while (FX.nq)
        fx_deliver_at(0);
    /* node 1 is now a real candidate: term and self-vote to persist, and
     * the vote requests may only leave after that */
    fx_ready(1);
    cr_assert(SEEN[1].hs_changed);
    cr_assert_eq(SEEN[1].hs.vote, 1);
    cr_assert_not(seen_type(SEEN[1].msg_types, SEEN[1].n_msgs, RAFT_MSG_VOTE),
                  "a vote request left before the term was durable");
    cr_assert(seen_type(SEEN[1].after_types, SEEN[1].n_msgs_after, RAFT_MSG_VOTE));
    while (FX.nq)
        fx_deliver_at(0);
    fx_ready(2);
    cr_assert(SEEN[2].hs_changed);
    cr_assert_eq(SEEN[2].hs.vote, 1);
    cr_assert_not(seen_type(SEEN[2].msg_types, SEEN[2].n_msgs, RAFT_MSG_VOTE_RESP),
                  "a vote was granted before it was durable");
    cr_assert(seen_type(SEEN[2].after_types, SEEN[2].n_msgs_after, RAFT_MSG_VOTE_RESP));
}

Test(raft, follower_acknowledges_entries_only_after_persisting)
{
    fx_init(3);
    fx_elect(1);
    fx_propose(1, "x");
    fx_ready(1);
    while (FX.nq)
        fx_deliver_at(0);
    fx_ready(2);
    cr_assert_gt(SEEN[2].n_entries, 0);
    cr_assert_not(seen_type(SEEN[2].msg_types, SEEN[2].n_msgs, RAFT_MSG_APPEND_RESP));
    cr_assert(seen_type(SEEN[2].after_types, SEEN[2].n_msgs_after, RAFT_MSG_APPEND_RESP));
}

Test(raft, leader_sends_before_its_fsync_but_counts_itself_only_after)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    uint64_t idx = fx_propose(1, "x");
    /* The leader's bundle carries the appends (sent before the write) ... */
    FX.persist_fail = 1; /* ... but its own write does not become durable */
    fx_ready(1);
    cr_assert(seen_type(SEEN[1].msg_types, SEEN[1].n_msgs, RAFT_MSG_APPEND));
    FX.cut[3][1] = true; /* only node 2's answer arrives */
    while (FX.nq)
        fx_deliver_at(0);
    fx_ready(2);
    fx_ready(3);
    while (FX.nq)
        fx_deliver_at(0);
    /* node 2 + a leader that is not durable is not a majority */
    cr_assert_lt(fx_status(1).commit, idx, "the leader counted an entry it had not persisted");
    fx_ready(1); /* the write is retried and succeeds */
    cr_assert_geq(fx_status(1).commit, idx);
}

/* ---- 3. a follower truncates only at a real conflict ---- */

Test(raft, stale_shorter_append_removes_nothing)
{
    fx_init(3);
    fx_elect(1);
    for (int k = 0; k < 4; k++)
        fx_propose(1, "v");
    fx_settle();
    struct raft_status st = fx_status(2);
    uint64_t last = st.last_index;
    cr_assert_geq(last, 5);
    /* a delayed copy of an early append: same term, fewer entries */
    const struct raft_entry *e2 = memstore_entry(FX.node[2].ms, 2);
    struct raft_entry copy = *e2;
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = st.term,
                         .index = 1, .log_term = memstore_term(FX.node[2].ms, 1),
                         .entries = &copy, .n_entries = 1, .commit = 0};
    raft_step(FX.node[2].r, &m);
    fx_ready_all();
    cr_assert_eq(fx_status(2).last_index, last, "a stale append cut the log");
    cr_assert_eq(memstore_last_index(FX.node[2].ms), last);
}

Test(raft, conflicting_entry_replaces_the_suffix_from_there)
{
    fx_init(3);
    uint64_t t[] = {1, 1, 1, 1};
    fx_crash(2);
    fx_disk_term(2, 1, 0);
    fx_disk_log(2, 1, t, 4);
    fx_restart(2);
    struct raft_entry e = {.index = 3, .term = 2, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 2,
                         .log_term = 1, .entries = &e, .n_entries = 1};
    raft_step(FX.node[2].r, &m);
    fx_ready_all();
    cr_assert_eq(memstore_last_index(FX.node[2].ms), 3);
    cr_assert_eq(memstore_term(FX.node[2].ms, 3), 2);
    cr_assert_eq(memstore_term(FX.node[2].ms, 2), 1);
}

/* ---- 4. stale, duplicated and reordered answers ---- */

Test(raft, old_or_duplicated_acks_never_move_match_back_or_past_what_was_sent)
{
    fx_init(3);
    fx_elect(1);
    for (int k = 0; k < 5; k++)
        fx_propose(1, "v");
    fx_settle();
    struct raft_status st = fx_status(1);
    uint64_t last = st.last_index;
    uint64_t term = st.term;
    struct raft_msg ack = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = term,
                           .index = 2};
    raft_step(FX.node[1].r, &ack); /* an old one, arriving late */
    raft_step(FX.node[1].r, &ack); /* twice */
    ack.index = last + 50; /* more than was ever sent */
    raft_step(FX.node[1].r, &ack);
    st = fx_status(1);
    for (size_t k = 0; k < st.n_peers; k++) {
        if (st.peers[k].id == 2) {
            cr_assert_eq(st.peers[k].match, last, "match moved to %llu",
                         (unsigned long long)st.peers[k].match);
            cr_assert_eq(st.peers[k].state, RAFT_PROGRESS_REPLICATE);
        }
    }
    /* a rejection of something older than the match point is stale too */
    struct raft_msg rej = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = term,
                           .index = 1, .reject = true, .hint = 0};
    raft_step(FX.node[1].r, &rej);
    st = fx_status(1);
    for (size_t k = 0; k < st.n_peers; k++) {
        if (st.peers[k].id == 2) {
            cr_assert_eq(st.peers[k].state, RAFT_PROGRESS_REPLICATE);
            cr_assert_eq(st.peers[k].next, last + 1);
        }
    }
}

Test(raft, answers_from_an_older_term_are_ignored)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    uint64_t term = fx_status(1).term;
    struct raft_msg rej = {.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = term - 1,
                           .reject = true};
    raft_step(FX.node[1].r, &rej);
    struct raft_msg ack = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = term - 1,
                           .index = 99};
    raft_step(FX.node[1].r, &ack);
    struct raft_status st = fx_status(1);
    cr_assert_eq(st.role, RAFT_LEADER);
    for (size_t k = 0; k < st.n_peers; k++)
        cr_assert_leq(st.peers[k].match, st.last_index);
}

/* ---- 5. pre-vote ---- */

Test(raft, isolated_node_does_not_raise_its_term_with_pre_vote)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    uint64_t term = fx_status(1).term;
    fx_isolate(3, true);
    fx_tick_all(100); /* many election timeouts for node 3 */
    cr_assert_eq(fx_status(3).term, term, "pre-vote let an isolated node raise its term");
    fx_isolate(3, false);
    fx_tick_all(20);
    cr_assert_eq(fx_status(1).role, RAFT_LEADER, "a healed minority deposed the leader");
    cr_assert_eq(fx_status(1).term, term);
    cr_assert_eq(fx_status(3).leader, 1);
}

/* The answer node 2 gives to a (pre-)vote request for a log ending at
 * (index, term): true for a grant. */
static bool answer_to(uint8_t type, uint64_t term, uint64_t index, uint64_t log_term)
{
    struct raft_msg v = {.type = type, .from = 3, .to = 2, .term = term, .index = index,
                         .log_term = log_term};
    raft_step(FX.node[2].r, &v);
    fx_ready(2);
    bool granted = false, answered = false;
    for (size_t q = 0; q < FX.nq; q++) {
        if (FX.q[q].to == 3 && FX.q[q].from == 2) {
            answered = true;
            granted = !FX.q[q].reject;
        }
    }
    fx_drop_queue();
    cr_assert(answered, "no answer to a vote request");
    return granted;
}

Test(raft, votes_and_pre_votes_go_only_to_logs_at_least_as_up_to_date)
{
    fx_init(3);
    uint64_t t[] = {1, 1, 2, 2};
    fx_crash(2);
    fx_disk_term(2, 2, 0);
    fx_disk_log(2, 1, t, 4); /* node 2 ends at (4, term 2); knows no leader */
    fx_restart(2);
    cr_assert_not(answer_to(RAFT_MSG_PREVOTE, 3, 3, 2), "pre-vote granted to a shorter log");
    cr_assert_not(answer_to(RAFT_MSG_PREVOTE, 3, 9, 1), "pre-vote granted to an older last term");
    cr_assert(answer_to(RAFT_MSG_PREVOTE, 3, 4, 2));
    cr_assert_eq(fx_status(2).term, 2, "a pre-vote moved the term");
    cr_assert_not(answer_to(RAFT_MSG_VOTE, 3, 3, 2), "vote granted to a shorter log");
    cr_assert(answer_to(RAFT_MSG_VOTE, 4, 5, 2));
    cr_assert_eq(fx_status(2).vote, 3);
}

/* ---- 6. check-quorum and the lease on votes ---- */

Test(raft, leader_without_a_quorum_steps_down_within_an_election_timeout)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    fx_isolate(1, true);
    for (int k = 0; k < 25; k++) {
        raft_tick(FX.node[1].r);
        fx_ready_all();
        fx_drop_queue();
    }
    cr_assert_neq(fx_status(1).role, RAFT_LEADER, "a partitioned leader kept leading");
}

Test(raft, node_that_hears_its_leader_ignores_vote_requests)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    uint64_t term = fx_status(1).term;
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = term + 5,
                         .index = 1000, .log_term = term + 4};
    raft_step(FX.node[2].r, &v);
    cr_assert_eq(fx_status(2).term, term, "a vote request inside the lease moved the term");
    cr_assert_eq(fx_status(2).leader, 1);
    fx_ready(2);
    cr_assert_not(seen_type(SEEN[2].after_types, SEEN[2].n_msgs_after, RAFT_MSG_VOTE_RESP));
    /* a transfer's vote request is the exception */
    v.transfer = true;
    raft_step(FX.node[2].r, &v);
    cr_assert_eq(fx_status(2).term, term + 5);
}

/* ---- 7. ReadIndex ---- */

Test(raft, read_waits_for_an_entry_of_the_leaders_term_to_commit)
{
    fx_init(3);
    FX.mute_appends[1] = true; /* votes and heartbeats go, the no-op does not */
    fx_elect(1);
    struct raft_status st = fx_status(1);
    cr_assert_lt(st.commit, st.last_index);
    cr_assert_eq(raft_read_index(FX.node[1].r, 7), 0);
    fx_tick_all(4); /* heartbeat rounds are acknowledged meanwhile */
    cr_assert_eq(FX.node[1].nreads, 0, "a read was served before the term's first commit");
    FX.mute_appends[1] = false;
    fx_tick_all(4);
    cr_assert_eq(FX.node[1].nreads, 1);
    cr_assert_eq(FX.node[1].reads[0].ctx, 7);
    cr_assert_geq(FX.node[1].reads[0].index, st.last_index);
}

Test(raft, read_needs_a_heartbeat_round_sent_after_it_arrived)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(3);
    /* A heartbeat round goes out; its answers are held back. */
    fx_tick(1, 2);
    fx_ready(1);
    struct raft_msg held[8];
    size_t nheld = 0;
    while (FX.nq) {
        msg_copy(&held[nheld++], &FX.q[0]);
        fx_deliver_at(0);
    }
    fx_ready(2);
    fx_ready(3);
    struct raft_msg answers[8];
    size_t nans = 0;
    while (FX.nq) {
        msg_copy(&answers[nans++], &FX.q[0]);
        msg_release(&FX.q[0]);
        memmove(&FX.q[0], &FX.q[1], (FX.nq - 1) * sizeof *FX.q);
        FX.nq--;
    }
    /* The read arrives now, after that round was sent. */
    cr_assert_eq(raft_read_index(FX.node[1].r, 11), 0);
    for (size_t k = 0; k < nans; k++)
        raft_step(FX.node[1].r, &answers[k]);
    fx_ready(1);
    cr_assert_eq(FX.node[1].nreads, 0, "an older round's answers confirmed a newer read");
    fx_settle(); /* the read's own round */
    cr_assert_eq(FX.node[1].nreads, 1);
    for (size_t k = 0; k < nheld; k++)
        msg_release(&held[k]);
    for (size_t k = 0; k < nans; k++)
        msg_release(&answers[k]);
}

Test(raft, one_round_confirms_every_read_queued_before_it)
{
    fx_init(5);
    fx_elect(1);
    fx_tick_all(3);
    for (uint64_t c = 1; c <= 20; c++)
        cr_assert_eq(raft_read_index(FX.node[1].r, c), 0);
    fx_ready(1);
    size_t heartbeats = 0;
    for (size_t k = 0; k < FX.nq; k++)
        heartbeats += FX.q[k].type == RAFT_MSG_HEARTBEAT;
    cr_assert_eq(heartbeats, 4, "one round (one heartbeat per follower) for 20 reads");
    fx_settle();
    cr_assert_eq(FX.node[1].nreads, 20);
}

Test(raft, read_on_a_follower_is_refused)
{
    fx_init(3);
    fx_elect(1);
    cr_assert_eq(raft_read_index(FX.node[2].r, 1), LKV_ENOTLEADER);
}

Test(raft, lease_read_is_served_without_a_round_while_the_lease_holds)
{
    struct raft_options o = fx_default_options();
    o.lease_reads = true;
    struct raft_membership c = fx_conf(3, 0);
    fx_init_conf(3, &c, &o);
    fx_elect(1);
    fx_tick_all(4);
    cr_assert_eq(raft_read_index(FX.node[1].r, 3), 0);
    fx_ready(1);
    cr_assert_eq(FX.node[1].nreads, 1, "a valid lease still needed a round");
    /* once the followers stop answering, the lease runs out */
    fx_isolate(1, true);
    for (int k = 0; k < 9; k++) {
        raft_tick(FX.node[1].r);
        fx_ready(1);
        fx_drop_queue();
    }
    cr_assert_eq(raft_read_index(FX.node[1].r, 4), 0);
    fx_ready(1);
    fx_drop_queue();
    cr_assert_eq(FX.node[1].nreads, 1, "a read was served on an expired lease");
}

/* ---- 8. configurations ---- */

static uint64_t propose_conf(size_t leader, const struct raft_membership *c, int want)
{
    uint64_t index = 0;
    cr_assert_eq(raft_propose_conf(FX.node[leader].r, c, &index), want);
    return index;
}

Test(raft, configuration_takes_effect_when_appended_not_when_committed)
{
    struct raft_membership c3 = fx_conf(3, 0);
    struct raft_membership c4 = fx_conf(3, 1); /* node 4 as a learner */
    fx_init_conf(4, &c3, NULL);
    fx_elect(1);
    fx_tick_all(2);
    fx_isolate(1, true);
    propose_conf(1, &c4, 0);
    /* not committed (isolated), yet in force on the leader */
    const struct raft_membership *now = raft_membership_current(FX.node[1].r);
    cr_assert_eq(now->n, 4);
    struct raft_status st = fx_status(1);
    bool has4 = false;
    for (size_t k = 0; k < st.n_peers; k++)
        has4 |= st.peers[k].id == 4;
    cr_assert(has4, "the leader does not track the member it just added");
    /* one change at a time */
    struct raft_membership c5 = c4;
    c5.m[3].flags = RAFT_VOTER_IN;
    propose_conf(1, &c5, LKV_EBUSY);
}

Test(raft, learner_never_counts_for_commit_or_votes)
{
    struct raft_membership c = fx_conf(2, 1); /* voters 1, 2; learner 3 */
    fx_init_conf(3, &c, NULL);
    fx_elect(1);
    fx_tick_all(2);
    FX.cut[2][1] = true; /* the only other voter's answers are lost */
    uint64_t idx = fx_propose(1, "x");
    fx_tick_all(3);
    cr_assert_lt(fx_status(1).commit, idx, "a learner's copy counted toward commit");
    cr_assert_eq(raft_campaign(FX.node[3].r), LKV_EINVAL, "a learner campaigned");
}

/* Old voters {1,2,3}, learners 4 and 5; returns the joint configuration
 * old {1,2,3} -> new {1,4,5}, with node 1 leading. */
static struct raft_membership joint_setup(void)
{
    struct raft_membership c = fx_conf(3, 2);
    fx_init_conf(5, &c, NULL);
    fx_elect(1);
    fx_tick_all(3);
    struct raft_membership j = c;
    for (size_t k = 0; k < j.n; k++) {
        raft_id id = j.m[k].id;
        j.m[k].flags = (uint8_t)((id <= 3 ? RAFT_VOTER_OUT : 0) |
                                 (id == 1 || id >= 4 ? RAFT_VOTER_IN : 0));
    }
    return j;
}

Test(raft, joint_configuration_needs_the_old_majority_too)
{
    struct raft_membership j = joint_setup();
    FX.cut[2][1] = FX.cut[3][1] = true; /* only 1, 4, 5 answer */
    uint64_t ji = propose_conf(1, &j, 0);
    fx_tick_all(4);
    cr_assert_lt(fx_status(1).commit, ji, "joint entry committed with the new majority only");
}

Test(raft, joint_configuration_needs_both_majorities)
{
    struct raft_membership j = joint_setup();
    FX.cut[4][1] = FX.cut[5][1] = true; /* only 1, 2, 3 answer */
    uint64_t ji = propose_conf(1, &j, 0);
    fx_tick_all(4);
    cr_assert_lt(fx_status(1).commit, ji, "joint entry committed with the old majority only");
    FX.cut[4][1] = false; /* now {1,4} of new and {1,2,3} of old */
    fx_tick_all(6);
    cr_assert_geq(fx_status(1).commit, ji);
    /* the leader then leaves the joint configuration on its own */
    fx_tick_all(6);
    const struct raft_membership *now = raft_membership_current(FX.node[1].r);
    cr_assert_not(raft_membership_joint(now), "the leader did not leave the joint configuration");
    cr_assert_eq(now->n, 3);
    cr_assert_not_null(raft_membership_find(now, 4));
    cr_assert_null(raft_membership_find(now, 2));
}

Test(raft, leader_that_removes_itself_steps_down_once_committed)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    struct raft_membership c = fx_conf(3, 0);
    struct raft_membership without1 = {0};
    for (size_t k = 0; k < c.n; k++) {
        if (c.m[k].id != 1)
            without1.m[without1.n++] = c.m[k];
    }
    propose_conf(1, &without1, 0);
    cr_assert_eq(fx_status(1).role, RAFT_LEADER, "stepped down before the removal committed");
    fx_tick_all(4);
    cr_assert_neq(fx_status(1).role, RAFT_LEADER);
    fx_tick_all(40);
    cr_assert(fx_status(2).role == RAFT_LEADER || fx_status(3).role == RAFT_LEADER);
    cr_assert_neq(fx_status(1).role, RAFT_LEADER, "a removed server took leadership");
}

Test(raft, removed_configuration_entry_is_undone_when_its_suffix_is_cut)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    fx_isolate(1, true);
    struct raft_membership c = fx_conf(3, 0);
    c.m[2].flags = 0; /* demote 3 */
    propose_conf(1, &c, 0);
    fx_ready(1);
    fx_drop_queue();
    /* 2 and 3 elect 2; node 1's uncommitted entry is overwritten */
    fx_tick_all(40);
    cr_assert(fx_status(2).role == RAFT_LEADER || fx_status(3).role == RAFT_LEADER);
    fx_isolate(1, false);
    fx_tick_all(20);
    const struct raft_membership *now = raft_membership_current(FX.node[1].r);
    cr_assert_eq(raft_membership_find(now, 3)->flags, RAFT_VOTER_IN,
                 "a cut configuration entry stayed in force");
}

/* Found by the simulator (seed 12): the acknowledgement that commits a
 * joint configuration makes the leader leave it, which rebuilt the
 * progress table under the handler's feet; the member that acknowledged
 * (only in the old set) was then written through a freed progress. */
Test(raft, ack_that_completes_a_joint_commit_from_a_leaving_member)
{
    struct raft_membership c = fx_conf(3, 1); /* voters 1,2,3; learner 4 */
    fx_init_conf(4, &c, NULL);
    fx_elect(1);
    fx_tick_all(3);
    struct raft_membership j = c; /* old {1,2,3} -> new {1,4} */
    for (size_t k = 0; k < j.n; k++) {
        raft_id id = j.m[k].id;
        j.m[k].flags = (uint8_t)((id <= 3 ? RAFT_VOTER_OUT : 0) |
                                 (id == 1 || id == 4 ? RAFT_VOTER_IN : 0));
    }
    FX.cut[2][1] = FX.cut[3][1] = true;
    uint64_t ji = propose_conf(1, &j, 0);
    fx_settle(); /* node 4 has acknowledged; the old set has not */
    cr_assert_lt(fx_status(1).commit, ji);
    FX.cut[3][1] = false; /* node 3's answer completes the old majority */
    fx_tick_all(4);
    cr_assert_geq(fx_status(1).commit, ji);
    fx_tick_all(6);
    const struct raft_membership *now = raft_membership_current(FX.node[1].r);
    cr_assert_not(raft_membership_joint(now));
    cr_assert_null(raft_membership_find(now, 3));
    cr_assert_eq(fx_status(1).role, RAFT_LEADER);
}

/* Found by the simulator (seed 95): a leader demoted itself, lost
 * leadership before that committed, and was then the only one holding the
 * entry; it would not campaign (not a voter in its newest configuration)
 * and the other voter could not win its vote (shorter log). */
Test(raft, leader_demoted_by_an_uncommitted_entry_can_still_restore_a_leader)
{
    fx_init(2);
    fx_elect(1);
    fx_tick_all(3);
    struct raft_membership c = fx_conf(2, 0);
    c.m[0].flags = 0; /* node 1 becomes a learner */
    FX.cut[1][2] = true; /* node 2 never receives the demotion */
    propose_conf(1, &c, 0);
    for (int k = 0; k < 30; k++) {
        raft_tick(FX.node[1].r);
        fx_settle();
    }
    cr_assert_neq(fx_status(1).role, RAFT_LEADER, "check-quorum should have deposed node 1");
    FX.cut[1][2] = false;
    bool led = false;
    for (int k = 0; k < 400 && !led; k++) {
        fx_tick_all(1);
        const struct raft_membership *on2 = raft_membership_current(FX.node[2].r);
        led = fx_status(2).role == RAFT_LEADER && raft_membership_find(on2, 1)->flags == 0 &&
              fx_status(2).commit == fx_status(2).last_index;
    }
    cr_assert(led, "no leader after the heal: the cluster is stuck");
}

Test(raft, invalid_changes_are_refused)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    struct raft_membership two = fx_conf(5, 0); /* adds 4 and 5 at once */
    propose_conf(1, &two, LKV_EINVAL);
    struct raft_membership none = fx_conf(3, 0);
    for (size_t k = 0; k < none.n; k++)
        none.m[k].flags = 0;
    propose_conf(1, &none, LKV_EINVAL);
    cr_assert_eq(raft_propose_conf(FX.node[2].r, &two, &(uint64_t){0}), LKV_ENOTLEADER);
}

/* ---- 9. snapshots ---- */

Test(raft, follower_keeps_entries_after_a_snapshot_it_already_matches)
{
    fx_init(3);
    fx_elect(1);
    for (int k = 0; k < 6; k++)
        fx_propose(1, "v");
    fx_settle();
    uint64_t last = fx_status(2).last_index;
    uint64_t term = fx_status(2).term;
    struct raft_snapshot s = {.index = 3, .term = memstore_term(FX.node[2].ms, 3),
                              .conf = fx_conf(3, 0)};
    fx_isolate(2, false);
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = term, .snap = &s};
    /* make node 2 believe its commit is below 3 (a new incarnation) */
    fx_crash(2);
    fx_restart(2);
    raft_step(FX.node[2].r, &m);
    fx_ready(2);
    cr_assert_eq(fx_status(2).last_index, last, "matching entries after the snapshot were dropped");
    cr_assert_eq(memstore_last_index(FX.node[2].ms), last);
    cr_assert_geq(fx_status(2).commit, 3);
}

Test(raft, follower_restores_a_snapshot_that_its_log_does_not_match)
{
    fx_init(3);
    uint64_t t[] = {1, 1, 1};
    fx_crash(2);
    fx_disk_term(2, 1, 0);
    fx_disk_log(2, 1, t, 3);
    fx_restart(2);
    struct lkv_blob *data = lkv_blob_copy("state", 5);
    struct raft_snapshot s = {.index = 10, .term = 3, .conf = fx_conf(3, 0), .data = data};
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 3, .snap = &s};
    raft_step(FX.node[2].r, &m);
    fx_ready(2);
    lkv_blob_unref(data);
    cr_assert_eq(memstore_snapshot(FX.node[2].ms)->index, 10);
    cr_assert_eq(memstore_last_index(FX.node[2].ms), 10);
    struct raft_status st = fx_status(2);
    cr_assert_eq(st.commit, 10);
    cr_assert_eq(st.applied, 10);
    cr_assert(seen_type(SEEN[2].after_types, SEEN[2].n_msgs_after, RAFT_MSG_APPEND_RESP));
}

Test(raft, slow_follower_is_caught_up_from_the_trailing_window_not_a_snapshot)
{
    fx_init(3);
    fx_elect(1);
    fx_isolate(3, true);
    for (int k = 0; k < 10; k++)
        fx_propose(1, "v");
    fx_settle();
    uint64_t commit = fx_status(1).commit;
    /* the leader snapshots at its commit index but keeps 20 entries */
    memstore_compact(FX.node[1].ms, commit, raft_membership_current(FX.node[1].r), NULL, 20);
    fx_isolate(3, false);
    size_t snaps = 0;
    for (int k = 0; k < 10; k++) {
        fx_tick(1, 1);
        fx_ready_all();
        for (size_t q = 0; q < FX.nq; q++)
            snaps += FX.q[q].type == RAFT_MSG_SNAPSHOT;
        fx_settle();
    }
    cr_assert_eq(snaps, 0, "a snapshot was sent although the entries were still there");
    cr_assert_eq(fx_status(3).commit, commit);
}

Test(raft, follower_behind_the_window_gets_a_snapshot)
{
    fx_init(3);
    fx_elect(1);
    fx_isolate(3, true);
    for (int k = 0; k < 10; k++)
        fx_propose(1, "v");
    fx_settle();
    uint64_t commit = fx_status(1).commit;
    struct lkv_blob *data = lkv_blob_copy("s", 1);
    memstore_compact(FX.node[1].ms, commit, raft_membership_current(FX.node[1].r), data, 0);
    lkv_blob_unref(data);
    fx_isolate(3, false);
    fx_tick_all(6);
    cr_assert_eq(memstore_snapshot(FX.node[3].ms)->index, commit);
    cr_assert_eq(fx_status(3).commit, commit);
}

/* ---- 10. rejection hints ---- */

Test(raft, rejection_hint_backs_up_a_term_at_a_time)
{
    fx_init(3);
    /* Indexes 2..41: term 3 on nodes 1 and 3, term 2 on node 2 (which
     * never got the term-3 entries). */
    uint64_t t1[] = {1}, t2[40], t3[40];
    for (int k = 0; k < 40; k++) {
        t2[k] = 2;
        t3[k] = 3;
    }
    for (size_t i = 1; i <= 3; i++) {
        fx_crash(i);
        fx_disk_term(i, 3, 0);
        fx_disk_log(i, 1, t1, 1);
        fx_disk_log(i, 2, i == 2 ? t2 : t3, 40);
    }
    for (size_t i = 1; i <= 3; i++)
        fx_restart(i);
    FX.cut[1][2] = FX.cut[2][1] = true;
    fx_elect(1);
    FX.cut[1][2] = FX.cut[2][1] = false;
    size_t appends = 0;
    for (int round = 0; round < 60; round++) {
        fx_tick(1, 2); /* a heartbeat prompts a probe */
        fx_ready_all();
        while (FX.nq) {
            appends += FX.q[0].type == RAFT_MSG_APPEND && FX.q[0].to == 2;
            fx_deliver_at(0);
            fx_ready_all();
        }
        if (fx_status(2).last_index == fx_status(1).last_index &&
            memstore_term(FX.node[2].ms, 41) == 3)
            break;
    }
    cr_assert_eq(memstore_term(FX.node[2].ms, 41), 3, "node 2 never caught up");
    cr_assert_leq(appends, 6, "took %zu appends to find where the logs meet", appends);
}

/* ---- 11. election timeouts ---- */

Test(raft, election_timeout_is_random_in_t_2t_and_redrawn_each_time)
{
    fx_init(3);
    fx_isolate(1, true);
    unsigned seen_min = 1000, seen_max = 0;
    unsigned counts[21] = {0};
    for (int round = 0; round < 40; round++) {
        uint64_t before = fx_status(1).elections;
        unsigned k = 0;
        while (fx_status(1).elections == before && k < 100) {
            raft_tick(FX.node[1].r);
            k++;
        }
        fx_ready(1);
        fx_drop_queue();
        cr_assert_lt(k, 100);
        if (k < seen_min)
            seen_min = k;
        if (k > seen_max)
            seen_max = k;
        if (k <= 20)
            counts[k]++;
    }
    cr_assert_geq(seen_min, 10, "timeout below T");
    cr_assert_lt(seen_max, 20, "timeout at or above 2T");
    cr_assert_gt(seen_max - seen_min, 3, "timeouts are not re-drawn");
}

/* ---- 12. applied in order, exactly once, across restarts ---- */

Test(raft, committed_entries_are_applied_once_in_order_and_again_after_restart)
{
    fx_init(3);
    fx_elect(1);
    for (int k = 0; k < 8; k++)
        fx_propose(1, "v");
    fx_settle();
    fx_tick_all(3);
    uint64_t commit = fx_status(2).commit;
    cr_assert_eq(FX.node[2].napplied, commit, "node 2 applied %zu of %llu", FX.node[2].napplied,
                 (unsigned long long)commit);
    for (size_t k = 0; k < FX.node[2].napplied; k++)
        cr_assert_eq(FX.node[2].applied[k], k + 1);
    /* a restart knows nothing was applied beyond its snapshot (none) and
     * applies the committed log again, once, once the leader says so */
    fx_crash(2);
    fx_restart(2);
    fx_tick_all(4);
    cr_assert_eq(FX.node[2].napplied, commit);
}

/* ---- leadership transfer ---- */

Test(raft, transfer_hands_over_and_refuses_proposals_meanwhile)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    cr_assert_eq(raft_transfer_leadership(FX.node[1].r, 3), 0);
    struct lkv_blob *b = lkv_blob_copy("x", 1);
    uint64_t i, t;
    cr_assert_eq(raft_propose(FX.node[1].r, RAFT_ENTRY_COMMAND, b, &i, &t), LKV_ETRANSFER);
    lkv_blob_unref(b);
    fx_settle();
    cr_assert_eq(fx_status(3).role, RAFT_LEADER, "the target did not take over");
    cr_assert_eq(fx_status(1).role, RAFT_FOLLOWER);
}

Test(raft, transfer_to_a_lagging_member_catches_it_up_first)
{
    fx_init(3);
    fx_elect(1);
    FX.cut[1][3] = true;
    for (int k = 0; k < 5; k++)
        fx_propose(1, "v");
    fx_settle();
    FX.cut[1][3] = false;
    cr_assert_eq(raft_transfer_leadership(FX.node[1].r, RAFT_NONE), 0);
    fx_settle();
    fx_tick_all(4);
    /* the most up-to-date member was node 2 */
    cr_assert_eq(fx_status(2).role, RAFT_LEADER);
}

/* ---- a lone voter ---- */

Test(raft, lone_voter_is_leader_after_its_first_bundle)
{
    fx_init(1);
    fx_ready(1);
    cr_assert_eq(SEEN[1].role, RAFT_LEADER);
    cr_assert(SEEN[1].hs_changed);
    uint64_t idx = fx_propose(1, "x");
    fx_ready(1);
    cr_assert_eq(fx_status(1).commit, idx, "a lone voter's durable write is committed");
    cr_assert_eq(raft_read_index(FX.node[1].r, 5), 0);
    fx_ready(1);
    cr_assert_eq(FX.node[1].nreads, 1);
}

Test(raft, lone_voter_drops_what_a_full_disk_refused)
{
    fx_init(1);
    fx_ready(1);
    uint64_t last = fx_status(1).last_index;
    fx_propose(1, "x");
    FX.persist_fail = 1;
    fx_ready(1);
    cr_assert_eq(raft_drop_unstable(FX.node[1].r), 0);
    cr_assert_eq(fx_status(1).last_index, last);
    uint64_t again = fx_propose(1, "y");
    cr_assert_eq(again, last + 1, "the index was not reused");
    fx_ready(1);
    cr_assert_eq(fx_status(1).commit, again);
    fx_free();
    fx_init(3);
    fx_elect(1);
    cr_assert_eq(raft_drop_unstable(FX.node[1].r), LKV_EINVAL);
}

Test(raft, failed_persist_comes_back_in_the_next_bundle)
{
    fx_init(3);
    fx_elect(1);
    fx_tick_all(2);
    fx_propose(1, "x");
    fx_ready(1);
    while (FX.nq)
        fx_deliver_at(0);
    FX.persist_fail = 1;
    fx_ready(2);
    cr_assert_eq(FX.nq, 0, "an acknowledgement left although nothing was persisted");
    size_t before = SEEN[2].n_entries;
    cr_assert(fx_ready(2), "the unpersisted work did not come back");
    cr_assert_eq(SEEN[2].n_entries, before);
    cr_assert(seen_type(SEEN[2].after_types, SEEN[2].n_msgs_after, RAFT_MSG_APPEND_RESP) ||
                  SEEN[2].n_msgs_after == 0);
}

/* ---- messages that are not for us ---- */

Test(raft, malformed_messages_are_refused)
{
    fx_init(3);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 3, .term = 1};
    cr_assert_eq(raft_step(FX.node[1].r, &m), LKV_EINVAL);
    m.to = 1;
    m.type = 99;
    cr_assert_eq(raft_step(FX.node[1].r, &m), LKV_EINVAL);
    struct raft_entry e = {.index = 5, .term = 1, .type = RAFT_ENTRY_NOOP};
    struct raft_msg a = {.type = RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 1, .index = 1,
                         .entries = &e, .n_entries = 1};
    cr_assert_eq(raft_step(FX.node[1].r, &a), LKV_EINVAL, "entries not following index");
    e.index = 2;
    e.term = 7;
    cr_assert_eq(raft_step(FX.node[1].r, &a), LKV_EINVAL, "an entry newer than the message");
}

Test(raft, heartbeat_never_commits_past_the_followers_match)
{
    fx_init(3);
    uint64_t t[] = {1, 1, 1, 1, 1};
    fx_crash(3);
    fx_disk_term(3, 1, 0);
    fx_disk_log(3, 1, t, 5); /* entries 2..5 the new leader does not have */
    fx_restart(3);
    FX.cut[1][3] = true;
    fx_elect(1);
    for (int k = 0; k < 6; k++)
        fx_propose(1, "v");
    fx_settle();
    cr_assert_geq(fx_status(1).commit, 5);
    /* a heartbeat to node 3, whose match is 0, carries commit 0 */
    FX.cut[1][3] = false;
    fx_tick(1, 2);
    fx_ready(1);
    for (size_t q = 0; q < FX.nq; q++) {
        if (FX.q[q].to == 3 && FX.q[q].type == RAFT_MSG_HEARTBEAT)
            cr_assert_eq(FX.q[q].commit, 0, "commit %llu sent to a member matching nothing",
                         (unsigned long long)FX.q[q].commit);
    }
}

Test(raft, membership_codec_round_trips_and_refuses_damage)
{
    struct raft_membership c = fx_conf(3, 1);
    c.m[1].flags = RAFT_VOTER_IN | RAFT_VOTER_OUT;
    uint8_t buf[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(&c, buf, sizeof buf);
    cr_assert_gt(len, 0);
    struct raft_membership d;
    cr_assert_eq(raft_membership_decode(buf, len, &d), 0);
    cr_assert_eq(d.n, 4);
    cr_assert_str_eq(d.m[2].addr, "10.0.0.3:8080");
    cr_assert_eq(d.m[1].flags, RAFT_VOTER_IN | RAFT_VOTER_OUT);
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_eq(raft_membership_decode(buf, cut, &d), LKV_ECORRUPT, "cut at %zu", cut);
    buf[0] = 9;
    cr_assert_eq(raft_membership_decode(buf, len, &d), LKV_ECORRUPT);
    struct raft_membership dup = fx_conf(2, 0);
    dup.m[1].id = 1;
    cr_assert_eq(raft_membership_encode(&dup, buf, sizeof buf), 0);
}
