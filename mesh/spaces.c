/*
 * spaces.c - see spaces.h.
 */
#include "spaces.h"

#include "base.h"

#include <stdlib.h>
#include <string.h>

int
pm_epoch_wins(uint64_t a, const char *na, uint64_t b, const char *nb)
{
    return a > b || (a == b && strcmp(na, nb) < 0);
}

int
pm_spaces_fence(const char *self_node, int owned, uint64_t mine, uint64_t known, const char *from,
                uint64_t epoch, uint64_t *refuse_at)
{
    /* Our own claim refuses a sender that loses to it (records we sent
     * ourselves are never refused by our claim); any higher epoch announced
     * refuses it too. */
    int ours = owned && strcmp(from, self_node) != 0 && pm_epoch_wins(mine, self_node, epoch, from);
    if (!ours && known <= epoch)
        return 0;
    *refuse_at = known > mine ? known : mine;
    return 1;
}

int
pm_spaces_fence_is_stale(uint64_t mine, const char *self_node, uint64_t epoch, const char *fencer)
{
    return pm_epoch_wins(mine, self_node, epoch, fencer);
}

uint64_t
pm_spaces_takeover_epoch(uint64_t listed, uint64_t known)
{
    if (known > listed)
        return 0;
    return listed + 1;
}

uint64_t
pm_spaces_resume_epoch(uint64_t ours, uint64_t known)
{
    if (known > ours)
        return 0;
    return ours + 1;
}

int
pm_spaces_heir(pm_heir_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c[i].restarted = 0;
        if (!c[i].up)
            continue;
        if (*c[i].space_then && c[i].space_now && strcmp(c[i].space_now, c[i].space_then) != 0) {
            c[i].restarted = 1;
            continue;
        }
        return (int) i;
    }
    return -1;
}

int
pm_spaces_retire(int is_our_primary, int holds_promises, int is_live_primary)
{
    return !is_our_primary && !holds_promises && !is_live_primary;
}

void
pm_claims_add(pm_claims_t *c, const char *space, uint64_t epoch)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].space, space) == 0) {
            if (epoch > c->v[i].epoch)
                c->v[i].epoch = epoch;
            return;
        }
    c->v = pm_xrealloc(c->v, (c->n + 1) * sizeof *c->v, "probation list");
    c->v[c->n].space = pm_xstrdup(space, "probation list");
    c->v[c->n++].epoch = epoch;
}

int
pm_claims_has(const pm_claims_t *c, const char *space)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].space, space) == 0)
            return 1;
    return 0;
}

int
pm_claims_drop(pm_claims_t *c, const char *space)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].space, space) == 0) {
            free(c->v[i].space);
            c->v[i] = c->v[--c->n];
            return 1;
        }
    return 0;
}

int
pm_claims_pop(pm_claims_t *c, pm_claim_t *out)
{
    if (!c->n)
        return 0;
    *out = c->v[--c->n];
    return 1;
}

void
pm_claims_free(pm_claims_t *c)
{
    while (c->n)
        free(c->v[--c->n].space);
    free(c->v);
    c->v = NULL;
}
