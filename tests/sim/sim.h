/* sim: one simulated cluster run from one seed: the world (nodes, network,
 * checker, clock), the node driver that carries out each core's ready
 * bundles (node.c), and the scheduler that picks every step (sim.c). */
#ifndef LKV_TESTS_SIM_SIM_H
#define LKV_TESTS_SIM_SIM_H

#include "check.h"
#include "memstore.h"
#include "net.h"
#include "raft/raft.h"
#include "rng.h"
#include "shadow.h"
#include "sm.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

/* What the command line sets; everything else is drawn from the seed. */
struct sim_config {
    uint64_t seed;
    unsigned nodes;   /* 3, 5 or 7; 0: drawn from the seed */
    uint64_t steps;   /* steps of the fault phase; 0: the default */
    bool verbose;
};

/* The result of one run. */
struct sim_result {
    bool failed;
    char invariant[64];
    char detail[1024];
    uint64_t step, tick;
    unsigned nodes;
    uint64_t elections, commits, reads, crashes, snapshots_sent, conf_changes, liveness_ticks;
};

int sim_run(const struct sim_config *cfg, struct sim_result *res);

/* ---- internals shared by sim.c and node.c ---- */

enum node_state { NODE_UNUSED, NODE_UP, NODE_DOWN, NODE_GONE };

struct pending_read {
    uint64_t ctx, index;
};

struct node {
    raft_id id;
    enum node_state state;
    unsigned inc;             /* incarnation: bumped at every start */
    unsigned slow;            /* per mille of ticks its clock misses (drift) */
    struct raft *r;           /* NULL unless UP */
    struct memstore *ms;      /* the disk; survives crashes */
    struct sm sm;             /* volatile */
    struct shadow sh;         /* the core's log as the simulator sees it */
    bool input_since_ready;   /* the shadow may lag the core */
    uint64_t seen_commit;     /* commit indexes up to here were checked */
    uint64_t leading;         /* term it leads as last seen, 0 when not leader */
    uint64_t lead_checked;    /* term whose leader completeness was checked */
    uint64_t lead_commit;     /* commit index last seen while leading `leading` */
    uint64_t lead_commit_term;
    uint64_t iso_since;       /* tick it was cut off from every other node (0: it is not) */
    uint64_t iso_term;        /* its term then */
    struct pending_read *reads;
    size_t n_reads, cap_reads;
};

/* Per-seed knobs: which faults happen and how often (per mille per step,
 * unless said otherwise). */
struct weather {
    unsigned crash, restart, partition, heal, compact, conf, transfer, campaign;
    unsigned propose, read, decommission;
    unsigned eager_ready;     /* chance that a node's ready is carried out at once */
    unsigned crash_in_ready;  /* chance that a ready bundle is cut short by a crash */
    unsigned disk_full;       /* chance that a persist fails with ENOSPC */
    uint64_t retain;          /* trailing log window kept at compaction */
    unsigned drift;           /* a node's clock misses up to this per mille of ticks */
};

#define SIM_MAX_IDS NET_MAX_IDS

struct sim {
    struct sim_config cfg;
    struct rng rng;
    uint64_t now, step;
    bool calm;                /* liveness phase: no faults */
    struct weather w;
    struct raft_options opt;  /* template; id, seed and storage per node */
    struct raft_membership initial;
    struct node nodes[SIM_MAX_IDS];
    raft_id next_id;
    struct net net;
    struct packet hand;       /* the packet being delivered (freed on failure) */
    bool holding;
    bool removed[SIM_MAX_IDS]; /* a committed configuration dropped this member */
    uint64_t writes;          /* client writes proposed */
    struct check chk;
    jmp_buf fail;
    struct sim_result *res;
};

/* Trace line, only with --verbose. */
void sim_trace(const struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- node.c ---- */

/* Starts node id from its disk (a fresh one if it has none). */
void node_start(struct sim *s, raft_id id);
/* Loses everything not on the disk. */
void node_crash(struct sim *s, struct node *n, const char *where);
/* Frees the node for good, disk included. */
void node_destroy(struct node *n);
/* Carries out ready bundles while the core has any (or until a crash). */
void node_drain(struct sim *s, struct node *n);
/* Hands a delivered packet to its node. */
void node_deliver(struct sim *s, struct packet *p);
/* Per-step checks of one node: leadership, commit knowledge, shadow == core. */
void node_check(struct sim *s, struct node *n);
/* Compacts the disk at the applied index. */
void node_compact(struct sim *s, struct node *n);

/* After an input: carry the ready out now, or leave it for later. */
void node_after_input(struct sim *s, struct node *n);

#endif
