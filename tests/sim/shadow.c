#include "shadow.h"

#include "sm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void shadow_reset(struct shadow *sh, uint64_t base, uint64_t base_term, uint64_t base_chain)
{
    sh->base = base;
    sh->base_term = base_term;
    sh->base_chain = base_chain;
    sh->n = 0;
}

void shadow_free(struct shadow *sh)
{
    free(sh->e);
    *sh = (struct shadow){0};
}

uint64_t shadow_last(const struct shadow *sh)
{
    return sh->base + sh->n;
}

const struct shadow_entry *shadow_at(const struct shadow *sh, uint64_t index)
{
    if (index <= sh->base || index > shadow_last(sh))
        return NULL;
    return &sh->e[index - sh->base - 1];
}

bool shadow_get(const struct shadow *sh, uint64_t index, uint64_t *term, uint64_t *chain)
{
    if (index == sh->base) {
        *term = sh->base_term;
        *chain = sh->base_chain;
        return true;
    }
    const struct shadow_entry *se = shadow_at(sh, index);
    if (!se)
        return false;
    *term = se->term;
    *chain = se->chain;
    return true;
}

static void reserve(struct shadow *sh, size_t n)
{
    if (n <= sh->cap)
        return;
    size_t cap = sh->cap ? sh->cap : 64;
    while (cap < n)
        cap *= 2;
    sh->e = realloc(sh->e, cap * sizeof *sh->e);
    assert(sh->e);
    sh->cap = cap;
}

bool shadow_append(struct shadow *sh, const struct raft_entry *e, size_t n)
{
    if (n == 0)
        return true;
    uint64_t from = e[0].index;
    if (from <= sh->base || from > shadow_last(sh) + 1)
        return false;
    for (size_t i = 1; i < n; i++)
        if (e[i].index != from + i)
            return false;
    uint64_t t, chain;
    shadow_get(sh, from - 1, &t, &chain);
    sh->n = (size_t)(from - 1 - sh->base);
    reserve(sh, sh->n + n);
    for (size_t i = 0; i < n; i++) {
        chain = sm_chain_next(chain, &e[i]);
        sh->e[sh->n++] = (struct shadow_entry){.term = e[i].term, .payload = sm_payload_hash(&e[i]),
                                               .chain = chain, .type = e[i].type};
    }
    return true;
}

void shadow_install(struct shadow *sh, uint64_t index, uint64_t term, uint64_t chain)
{
    if (index == sh->base && term == sh->base_term)
        return; /* the same snapshot again: memstore keeps the log too */
    const struct shadow_entry *se = shadow_at(sh, index);
    if (se && se->term == term && index < shadow_last(sh)) {
        size_t cut = (size_t)(index - sh->base);
        memmove(sh->e, sh->e + cut, (sh->n - cut) * sizeof *sh->e);
        sh->n -= cut;
    } else {
        sh->n = 0;
    }
    sh->base = index;
    sh->base_term = term;
    sh->base_chain = chain;
}
