#!/usr/bin/env python3
"""Breaks one Raft rule at a time in src/raft and checks that the unit test
written for it fails (a test that cannot fail is a defect). Restores every
file afterwards. Run from the repository root:

    /usr/bin/python3 tests/unit/mutants/raft_mutants.py [name ...]
"""
import subprocess, sys, pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]

# name: (file, old, new, test that must fail)
MUTANTS = {
    "figure8": ("replicate.c", "if (idx <= r->log.commit || rlog_term_or_zero(&r->log, idx) != r->term)",
                "if (idx <= r->log.commit)", "figure8_old_term_entry_is_not_committed_by_counting_replicas"),
    "no_noop": ("raft.c", "    repl_append_local(r, RAFT_ENTRY_NOOP, NULL, &index);\n}",
                "    (void)index;\n}", "new_leader_appends_a_noop_of_its_term_at_once"),
    "vote_before_durable": ("raft.c", "reply(r, m, resp, m->term, false, !pre);",
                            "reply(r, m, resp, m->term, false, false);",
                            "vote_request_and_grant_leave_only_after_the_term_is_durable"),
    "request_before_durable": ("raft.c", "core_send(r, &m, type == RAFT_MSG_VOTE);",
                               "core_send(r, &m, false);",
                               "vote_request_and_grant_leave_only_after_the_term_is_durable"),
    "ack_before_durable": ("replicate.c", "    core_send(r, &resp, true);\n}\n\nvoid repl_handle_heartbeat",
                           "    core_send(r, &resp, false);\n}\n\nvoid repl_handle_heartbeat",
                           "follower_acknowledges_entries_only_after_persisting"),
    "leader_counts_itself_early": ("replicate.c", "    r->bcast_pending = true;\n    *index = e.index;",
                                   "    r->bcast_pending = true;\n    *index = e.index;\n"
                                   "    if (core_progress(r, r->opt.id)) progress_maybe_update(core_progress(r, r->opt.id), e.index);",
                                   "leader_sends_before_its_fsync_but_counts_itself_only_after"),
    "truncate_on_shorter": ("replicate.c", "uint64_t ci = rlog_find_conflict(&r->log, m->entries, m->n_entries);",
                            "uint64_t ci = m->n_entries ? m->index + 1 : 0;",
                            "stale_shorter_append_removes_nothing"),
    "match_moves_back": ("progress.c", "    if (p->match < n) {\n        p->match = n;",
                         "    if (p->match != n) {\n        p->match = n;",
                         "old_or_duplicated_acks_never_move_match_back_or_past_what_was_sent"),
    "ack_past_sent": ("replicate.c", "    if (m->index > rlog_last_index(&r->log))\n        return;",
                      "", "old_or_duplicated_acks_never_move_match_back_or_past_what_was_sent"),
    "stale_reject": ("progress.c", "        if (rejected <= p->match)\n            return false;", "",
                     "old_or_duplicated_acks_never_move_match_back_or_past_what_was_sent"),
    "no_prevote": ("raft.c", "    if (kind == CAMPAIGN_PRE) {\n        become_pre_candidate(r);",
                   "    if (0) {\n        become_pre_candidate(r);",
                   "isolated_node_does_not_raise_its_term_with_pre_vote"),
    "up_to_date_ignored": ("raft.c", "if (can_vote && rlog_is_up_to_date(&r->log, m->index, m->log_term)) {",
                           "if (can_vote) {", "votes_and_pre_votes_go_only_to_logs_at_least_as_up_to_date"),
    "no_check_quorum": ("raft.c", "            if (!quorum_active(r)) {\n                core_become_follower(r, r->term, RAFT_NONE);",
                        "            if (0) {\n                core_become_follower(r, r->term, RAFT_NONE);",
                        "leader_without_a_quorum_steps_down_within_an_election_timeout"),
    "no_vote_lease": ("raft.c", "        if (vote_req && !m->transfer && in_lease)", "        if (0)",
                      "node_that_hears_its_leader_ignores_vote_requests"),
    "read_before_term_commit": ("readindex.c", "    if (r->role != RAFT_LEADER || r->reads_waiting.n == 0 ||\n        rlog_term_or_zero(&r->log, r->log.commit) != r->term)",
                                "    if (r->role != RAFT_LEADER || r->reads_waiting.n == 0)",
                                "read_waits_for_an_entry_of_the_leaders_term_to_commit"),
    "read_on_old_round": ("readindex.c", "rq.round = r->read_round + 1;", "rq.round = r->read_round;",
                          "read_needs_a_heartbeat_round_sent_after_it_arrived"),
    "lease_never_expires": ("readindex.c", "    return r->ticks - sent < (uint64_t)(t - t / 4);", "    return true;",
                            "lease_read_is_served_without_a_round_while_the_lease_holds"),
    "conf_on_commit_only": ("replicate.c", "    if (type == RAFT_ENTRY_CONFIG && (rc = conf_on_append(r, &e, 1)) != 0)",
                            "    if (0)", "configuration_takes_effect_when_appended_not_when_committed"),
    "joint_one_majority": ("quorum.c", "    uint64_t out = set_index(c, RAFT_VOTER_OUT, fn, arg);",
                           "    uint64_t out = UINT64_MAX;", "joint_configuration_needs_the_old_majority_too"),
    "joint_new_ignored": ("quorum.c", "    uint64_t in = set_index(c, RAFT_VOTER_IN, fn, arg);",
                          "    uint64_t in = UINT64_MAX;", "joint_configuration_needs_both_majorities"),
    "removed_leader_stays": ("conf.c", "        core_become_follower(r, r->term, RAFT_NONE);\n    }\n}", "    }\n}",
                             "leader_that_removes_itself_steps_down_once_committed"),
    "cut_conf_stays": ("conf.c", "    conf_on_truncate(r, e[0].index);\n    bool changed", "    bool changed",
                       "removed_configuration_entry_is_undone_when_its_suffix_is_cut"),
    "learner_votes": ("raft.c", "        if (raft_membership_is_voter(&r->confs.v[i].conf, r->opt.id))",
                      "        if (raft_membership_find(&r->confs.v[i].conf, r->opt.id))",
                      "learner_never_counts_for_commit_or_votes"),
    "snapshot_drops_matching": ("replicate.c", "    } else if (rlog_match_term(&r->log, s->index, s->term)) {\n        /* The log already",
                                "    } else if (0) {\n        /* The log already",
                                "follower_keeps_entries_after_a_snapshot_it_already_matches"),
    "hint_ignored": ("replicate.c", "    uint64_t hint = m->hint;\n    if (m->log_term > 0) {",
                     "    uint64_t hint = m->index - 1;\n    if (0) {", "rejection_hint_backs_up_a_term_at_a_time"),
    "timeout_fixed": ("raft.c", "r->timeout = r->opt.election_ticks + (unsigned)(next_rand(r) % r->opt.election_ticks);",
                      "r->timeout = r->opt.election_ticks + 5;", "election_timeout_is_random_in_t_2t_and_redrawn_each_time"),
    "applied_twice": ("raft.c", "        r->log.applied = r->committed[r->n_committed - 1].index;", "",
                      "committed_entries_are_applied_once_in_order_and_again_after_restart"),
    "heartbeat_commit_uncapped": ("replicate.c", "uint64_t commit = pr->match < r->log.commit ? pr->match : r->log.commit;",
                                  "uint64_t commit = r->log.commit;", "heartbeat_never_commits_past_the_followers_match"),
    "propose_during_transfer": ("raft.c", "    if (r->transferee != RAFT_NONE)\n        return LKV_ETRANSFER;\n    if (type",
                                "    if (type", "transfer_hands_over_and_refuses_proposals_meanwhile"),
    "failed_persist_acks": ("raft.c", "        rlog_free_entries(r->committed, r->n_committed);\n        r->committed = NULL;\n        r->n_committed = 0;\n        return;",
                            "        rlog_free_entries(r->committed, r->n_committed);\n        r->committed = NULL;\n        r->n_committed = 0;\n        rlog_stable_all(&r->log);\n        return;",
                            "failed_persist_comes_back_in_the_next_bundle"),
    "lone_leads_early": ("raft.c", "            r->win_on_persist = true;", "            become_leader(r);",
                         "lone_voter_is_leader_after_its_first_bundle"),
    "lease_after_timeout_now": ("readindex.c", "    if (r->lease_void_term == r->term)\n        return false;", "",
                                "no_lease_reads_after_telling_a_member_to_campaign"),
    "no_start_lease": ("raft.c", "        r->start_lease = true;", "        r->start_lease = false;",
                       "restarted_voter_grants_no_vote_inside_the_start_lease"),
}


def run(cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def main(names):
    build = "build/mutants"
    failures = []
    for name in names or MUTANTS:
        fname, old, new, test = MUTANTS[name]
        path = ROOT / "src" / "raft" / fname
        orig = path.read_text()
        if orig.count(old) != 1:
            failures.append(f"{name}: pattern not found exactly once in {fname}")
            continue
        try:
            path.write_text(orig.replace(old, new))
            b = run(["make", "-s", "WARN=-w", f"BUILD={build}", f"{build}/tests/test_raft"])
            if b.returncode != 0:
                failures.append(f"{name}: does not build:\n{b.stderr[-2000:]}")
                continue
            t = run([f"{build}/tests/test_raft", "--jobs", "1", f"--filter=raft/{test}"])
            caught = t.returncode != 0
            print(f"{'caught ' if caught else 'MISSED '} {name:28s} by {test}")
            if not caught:
                failures.append(f"{name}: {test} still passes")
        finally:
            path.write_text(orig)
    run(["make", "-s", "WARN=-w", f"BUILD={build}", f"{build}/liblkv.a"])
    if failures:
        print("\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
