/*
 * isr_rules.c - the pure rules of isr.h (pm_isr_rule_*): no I/O, no agent,
 * so the CLI (pmesh space force-owner) and the unit tests link them alone.
 */
#include "isr.h"

#include <stdio.h>
#include <string.h>

/* ---- the rules --------------------------------------------------------------------- */

int
pm_isr_rule_member(const pm_coord_record_t *r, const char *node, uint64_t pid)
{
    for (size_t i = 0; i < r->n_in_sync; i++)
        if (r->in_sync[i].pid == pid && strcmp(r->in_sync[i].node, node) == 0)
            return 1;
    return 0;
}

int
pm_isr_rule_takeover(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                     uint64_t prev, pm_coord_record_t *out)
{
    int was_owner = prev && cur->owner_pid == prev && strcmp(cur->owner, node) == 0;
    if (!pm_isr_rule_member(cur, node, pid) && !(prev && pm_isr_rule_member(cur, node, prev)) &&
        !was_owner)
        return -1;
    *out = *cur;
    snprintf(out->owner, sizeof out->owner, "%s", node);
    out->owner_pid = pid;
    out->epoch = cur->epoch + 1;
    out->n_in_sync = 0;
    /* The other members hold every acknowledged record too: they stay, and
     * the new owner's set changes (R2) drop those that do not follow it. */
    for (size_t i = 0; i < cur->n_in_sync; i++) {
        const pm_coord_member_t *m = &cur->in_sync[i];
        if (((m->pid == pid || (prev && m->pid == prev)) && strcmp(m->node, node) == 0) ||
            (m->pid == cur->owner_pid && strcmp(m->node, cur->owner) == 0))
            continue;
        out->in_sync[out->n_in_sync++] = *m;
    }
    return 0;
}

void
pm_isr_rule_force(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                  pm_coord_record_t *out)
{
    *out = *cur;
    snprintf(out->owner, sizeof out->owner, "%s", node);
    out->owner_pid = pid;
    out->epoch = cur->epoch + 1;
    out->n_in_sync = 0;
}

void
pm_isr_rule_set(const pm_coord_record_t *cur, const pm_coord_member_t *want, size_t n,
                pm_coord_record_t *out)
{
    *out = *cur;
    out->n_in_sync = n < PM_COORD_MAX_INSYNC ? n : PM_COORD_MAX_INSYNC;
    for (size_t i = 0; i < out->n_in_sync; i++)
        out->in_sync[i] = want[i];
}

int
pm_isr_rule_has(const pm_coord_member_t *v, size_t n, const pm_coord_member_t *m)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].pid == m->pid && strcmp(v[i].node, m->node) == 0)
            return 1;
    return 0;
}

int
pm_isr_rule_same_set(const pm_coord_member_t *a, size_t na, const pm_coord_member_t *b,
                     size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (!pm_isr_rule_has(b, nb, &a[i]))
            return 0;
    return 1;
}


int
pm_isr_rule_handback(const pm_coord_record_t *cur, const char *node, uint64_t pid,
                     const char *me, uint64_t me_pid, pm_coord_record_t *out)
{
    /* Only the owner gives its space away, and only to a recorded in-sync
     * member of the space that is another process than the owner. */
    if (cur->owner_pid != me_pid || strcmp(cur->owner, me) != 0 ||
        (pid == me_pid && strcmp(node, me) == 0) || !pm_isr_rule_member(cur, node, pid))
        return -1;
    if (pm_isr_rule_takeover(cur, node, pid, 0, out) != 0)
        return -1;
    /* We hold every record of the space (we owned it): we stay in sync,
     * until the new owner's set changes (R2) drop us if we do not follow. */
    if (out->n_in_sync < PM_COORD_MAX_INSYNC) {
        pm_coord_member_t *m = &out->in_sync[out->n_in_sync++];
        memset(m, 0, sizeof *m);
        snprintf(m->node, sizeof m->node, "%s", me);
        m->pid = me_pid;
    }
    return 0;
}
