/* shadow: the simulator's copy of what one core believes its log is: the
 * snapshot it stands on and, for every later index, the entry's term,
 * payload hash and the hash chain through it. It follows every ready
 * bundle whether or not the bundle is then persisted, and is rebuilt from
 * the disk at a restart. */
#ifndef LKV_TESTS_SIM_SHADOW_H
#define LKV_TESTS_SIM_SHADOW_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shadow_entry {
    uint64_t term, payload, chain;
    uint8_t type;
};

struct shadow {
    uint64_t base, base_term, base_chain; /* the snapshot: index, term, chain */
    struct shadow_entry *e;               /* e[i] is index base + 1 + i */
    size_t n, cap;
};

void shadow_reset(struct shadow *sh, uint64_t base, uint64_t base_term, uint64_t base_chain);
void shadow_free(struct shadow *sh);

uint64_t shadow_last(const struct shadow *sh);

/* The entry at index (base < index <= last), or NULL. */
const struct shadow_entry *shadow_at(const struct shadow *sh, uint64_t index);

/* Term and chain at index, the base included. False when not held. */
bool shadow_get(const struct shadow *sh, uint64_t index, uint64_t *term, uint64_t *chain);

/* Replaces the log from e[0].index on with e[0..n). Returns false (and
 * changes nothing) when e[0].index is not in base+1 .. last+1 or the
 * entries are not consecutive. */
bool shadow_append(struct shadow *sh, const struct raft_entry *e, size_t n);

/* Installs a snapshot at (index, term) whose chain is `chain`: the entries
 * after it stay when the log agrees at index, as memstore keeps them. */
void shadow_install(struct shadow *sh, uint64_t index, uint64_t term, uint64_t chain);

#endif
