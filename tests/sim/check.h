/* check: the safety invariants, over the whole history of one run. Each
 * check_* records what it is shown and compares it with everything shown
 * before; a contradiction ends the run through check_fail, naming the
 * invariant, the node, the index and the term. */
#ifndef LKV_TESTS_SIM_CHECK_H
#define LKV_TESTS_SIM_CHECK_H

#include "raft/raft.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What is known of the entry committed at one index. */
struct committed {
    bool set;
    bool payload_known;   /* false when only a snapshot's chain vouched for it */
    uint64_t term, chain, payload;
    uint64_t commit_term; /* lowest term in which a node was seen to know it committed */
    raft_id by;           /* first node seen to know it */
};

struct lm_slot {
    uint64_t index, term, chain; /* index 0: empty slot */
    raft_id node;
};

struct write_rec {
    raft_id node;
    uint64_t index, term, payload, at;
};

struct read_rec {
    raft_id node;
    unsigned inc;
    uint64_t watermark; /* highest commit index any node knew when it was asked */
    uint64_t at;
    bool released;
};

struct check {
    jmp_buf *out;            /* where check_fail jumps */
    char invariant[64];
    char detail[1024];

    raft_id *leader_of;      /* by term */
    size_t n_terms;

    struct committed *c;     /* by index */
    size_t n_c;
    uint64_t max_commit;     /* highest commit index any node has reported */

    struct lm_slot *lm;      /* open addressing on (index, term) */
    size_t lm_cap, lm_n;

    struct write_rec *w;
    size_t n_w, cap_w;
    struct read_rec *r;      /* by ctx - 1 */
    size_t n_r, cap_r;

    uint64_t leaders_checked, reads_served, entries_applied;
};

void check_init(struct check *c, jmp_buf *out);
void check_free(struct check *c);

/* Records the invariant and detail, then longjmps to c->out. */
_Noreturn void check_fail(struct check *c, const char *invariant, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* At most one leader per term, over the whole run. */
void check_leader(struct check *c, uint64_t term, raft_id id);

/* Log matching: (index, term) names one entry and one history before it,
 * on every node, at every time. chain hashes that history. */
void check_log_entry(struct check *c, raft_id node, uint64_t index, uint64_t term, uint64_t chain);

/* `node`, in `term`, knows index committed with (entry term, chain); the
 * payload hash too when payload_known. Fails when another entry was seen
 * committed at index. True when this lowered (or set) its commit term. */
bool check_commit(struct check *c, raft_id node, uint64_t term, uint64_t index,
                  uint64_t entry_term, uint64_t chain, bool payload_known, uint64_t payload);

const struct committed *check_committed(const struct check *c, uint64_t index);

/* The highest index known committed in a term before `term` (0: none). */
uint64_t check_committed_before(const struct check *c, uint64_t term);

void check_note_commit_index(struct check *c, uint64_t commit);

/* A proposal accepted at (index, term) carrying payload. */
void check_write(struct check *c, raft_id node, uint64_t index, uint64_t term, uint64_t payload,
                 uint64_t now);

/* The highest index of an acknowledged (committed) write; fails when a
 * write's (index, term) committed with another payload. */
uint64_t check_acked_max(struct check *c, size_t *n_acked);

/* A read asked of node (incarnation inc); returns its ctx (>= 1). */
uint64_t check_read_asked(struct check *c, raft_id node, unsigned inc, uint64_t now);

/* The core released read ctx at index: it must have been asked of this
 * incarnation, be released once, and index must cover every write
 * committed before it was asked. */
void check_read_released(struct check *c, raft_id node, unsigned inc, uint64_t ctx,
                         uint64_t index);

#endif
