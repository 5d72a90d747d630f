/*
 * swim_table.c - the SWIM state machine's tables (see swim_priv.h): members
 * and their lookup and random picks, suspicion timers with Lifeguard's
 * confirmations and local health (the probe period and timeout it scales),
 * the queue of updates waiting to be piggybacked, and the read-only queries
 * of swim.h. Pure: no I/O, no clock.
 */
#include "swim_priv.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- members */

pm_swim_rec_t *
pm_swim_find(const pm_swim_t *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++)
        if (pm_swim_streq(s->members[i]->name, name))
            return s->members[i];
    return NULL;
}

bool
pm_swim_live(const pm_swim_rec_t *m)
{
    return m->state == PM_SWIM_ALIVE || m->state == PM_SWIM_SUSPECT;
}

/* Members not known to have failed or left, self included: the N of the
 * formulas. */
size_t
pm_swim_live_count(const pm_swim_t *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        if (s->members[i]->is_self || pm_swim_live(s->members[i]))
            n++;
    return n;
}

bool
pm_swim_has_live_peer(const pm_swim_t *s)
{
    for (size_t i = 0; i < s->count; i++)
        if (!s->members[i]->is_self && pm_swim_live(s->members[i]))
            return true;
    return false;
}

static void
s_view(const pm_swim_rec_t *m, pm_swim_member_t *out)
{
    out->name = m->name;
    out->endpoint = m->endpoint;
    out->incarnation = m->incarnation;
    out->state = m->state;
    out->meta = m->meta;
    out->meta_len = m->meta_len;
    out->state_since_ms = m->state_since;
    out->last_heard_ms = m->last_heard;
    out->is_self = m->is_self;
}

void
pm_swim_emit(pm_swim_t *s, pm_swim_event_t ev, const pm_swim_rec_t *m)
{
    if (s->event == NULL || m->is_self)
        return;
    pm_swim_member_t view;
    s_view(m, &view);
    s->event(ev, &view, s->arg);
}

void
pm_swim_susp_free(pm_swim_susp_t **susp_p)
{
    pm_swim_susp_t *susp = *susp_p;
    if (susp == NULL)
        return;
    for (uint32_t i = 0; i < susp->from_count; i++)
        free(susp->from[i]);
    free(susp->from);
    free(susp);
    *susp_p = NULL;
}

void
pm_swim_member_free(pm_swim_rec_t **m_p)
{
    pm_swim_rec_t *m = *m_p;
    if (m == NULL)
        return;
    pm_swim_susp_free(&m->susp);
    free(m->name);
    free(m->endpoint);
    free(m->meta);
    free(m);
    *m_p = NULL;
}

static void
s_reserve(pm_swim_t *s, size_t want)
{
    if (want <= s->cap)
        return;
    size_t cap = s->cap ? s->cap * 2 : 16;
    while (cap < want)
        cap *= 2;
    s->members = pm_xrealloc(s->members, cap * sizeof *s->members, "membership");
    s->pick = pm_xrealloc(s->pick, cap * sizeof *s->pick, "membership");
    s->cap = cap;
}

/* Adds a member at a random place in the probe order (as memberlist does),
 * so a newcomer is probed within one round wherever the round is. */
pm_swim_rec_t *
pm_swim_member_add(pm_swim_t *s, const char *name, const char *endpoint, uint64_t inc,
             const uint8_t *meta, size_t meta_len)
{
    s_reserve(s, s->count + 1);
    pm_swim_rec_t *m = pm_swim_xalloc(sizeof *m);
    m->name = pm_swim_xstrdup(name);
    m->endpoint = pm_swim_xstrdup(endpoint);
    m->incarnation = inc;
    m->state = PM_SWIM_ALIVE;
    m->meta = pm_swim_xmemdup(meta, meta_len);
    m->meta_len = meta_len;
    m->state_since = s->now;
    size_t at = pm_swim_rand_below(s, s->count + 1);
    s->members[s->count] = s->members[at];
    s->members[at] = m;
    s->count++;
    return m;
}

void
pm_swim_member_remove(pm_swim_t *s, size_t i)
{
    pm_swim_rec_t *m = s->members[i];
    memmove(&s->members[i], &s->members[i + 1], (s->count - i - 1) * sizeof *s->members);
    s->count--;
    if (i < s->probe_index)
        s->probe_index--;
    pm_swim_member_free(&m);
}

/* Fills s->pick with up to k distinct random members (never self, never
 * `exclude`) of the kind asked for; returns how many. */
size_t
pm_swim_pick_random(pm_swim_t *s, size_t k, const char *exclude, pm_swim_pick_t kind)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++) {
        pm_swim_rec_t *m = s->members[i];
        if (m->is_self || (exclude && pm_swim_streq(m->name, exclude)))
            continue;
        bool ok = kind == PM_SWIM_PICK_LIVE    ? pm_swim_live(m)
                  : kind == PM_SWIM_PICK_ALIVE ? m->state == PM_SWIM_ALIVE
                                         : m->state == PM_SWIM_DEAD;
        if (ok)
            s->pick[n++] = m;
    }
    if (k > n)
        k = n;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + pm_swim_rand_below(s, n - i);
        pm_swim_rec_t *tmp = s->pick[i];
        s->pick[i] = s->pick[j];
        s->pick[j] = tmp;
    }
    return k;
}

/* ---------------------------------------------------------------- timing */

uint64_t
pm_swim_period_scaled(const pm_swim_t *s)
{
    return (uint64_t) s->cfg.probe_interval_ms * (s->health + 1);
}

uint64_t
pm_swim_probe_timeout(const pm_swim_t *s)
{
    return (uint64_t) s->cfg.probe_timeout_ms * (s->health + 1);
}

void
pm_swim_health_add(pm_swim_t *s, int delta)
{
    int64_t h = (int64_t) s->health + delta;
    if (h < 0)
        h = 0;
    if (h > (int64_t) s->cfg.max_local_health)
        h = s->cfg.max_local_health;
    s->health = (uint32_t) h;
}

/* Lifeguard: the timeout runs from max down to min as confirmations come in,
 * following log(n + 1) / log(k + 1) (memberlist's remainingSuspicionTime). */
uint64_t
pm_swim_susp_deadline(const pm_swim_susp_t *susp)
{
    uint64_t timeout = susp->min;
    if (susp->k > 0 && susp->n < susp->k) {
        double frac = log((double) susp->n + 1.0) / log((double) susp->k + 1.0);
        double raw = (double) susp->max - frac * (double) (susp->max - susp->min);
        timeout = (uint64_t) floor(raw);
        if (timeout < susp->min)
            timeout = susp->min;
    }
    return susp->start + timeout;
}

pm_swim_susp_t *
pm_swim_susp_new(pm_swim_t *s, const char *from)
{
    pm_swim_susp_t *susp = pm_swim_xalloc(sizeof *susp);
    size_t n = pm_swim_live_count(s);
    uint32_t k = s->cfg.suspicion_mult - 2;
    /* n counts self and the suspect, who cannot confirm. */
    if (n < 2 || n - 2 < k)
        k = 0;
    double scale = n > 10 ? log10((double) n) : 1.0;
    susp->min = (uint64_t) (s->cfg.suspicion_mult * scale * s->cfg.probe_interval_ms);
    susp->max = (uint64_t) s->cfg.suspicion_max_mult * susp->min;
    susp->k = k;
    susp->start = s->now;
    susp->from = pm_swim_xalloc((k + 1) * sizeof *susp->from);
    susp->from[0] = pm_swim_xstrdup(from);
    susp->from_count = 1;
    return susp;
}

/* Counts `from` as an independent confirmation; true if it was new. */
bool
pm_swim_susp_confirm(pm_swim_susp_t *susp, const char *from)
{
    if (susp->n >= susp->k)
        return false;
    for (uint32_t i = 0; i < susp->from_count; i++)
        if (pm_swim_streq(susp->from[i], from))
            return false;
    susp->from[susp->from_count++] = pm_swim_xstrdup(from);
    susp->n++;
    return true;
}

/* ---------------------------------------------------------------- broadcast queue */

void
pm_swim_bcast_free(pm_swim_bcast_t **b_p)
{
    pm_swim_bcast_t *b = *b_p;
    if (b == NULL)
        return;
    free(b->name);
    free(b->endpoint);
    free(b->from);
    free(b->meta);
    free(b);
    *b_p = NULL;
}

void
pm_swim_bcast_remove(pm_swim_t *s, size_t i)
{
    pm_swim_bcast_free(&s->bcasts[i]);
    s->bcasts[i] = s->bcasts[--s->bcast_count];
}

/* Queues the member's current record for dissemination, replacing any older
 * queued update about the same member (newest wins, as in memberlist). */
void
pm_swim_enqueue(pm_swim_t *s, const pm_swim_rec_t *m, const char *from)
{
    for (size_t i = 0; i < s->bcast_count; i++)
        if (pm_swim_streq(s->bcasts[i]->name, m->name)) {
            pm_swim_bcast_remove(s, i);
            break;
        }
    if (s->bcast_count == s->bcast_cap) {
        s->bcast_cap = s->bcast_cap ? s->bcast_cap * 2 : 16;
        s->bcasts = pm_xrealloc(s->bcasts, s->bcast_cap * sizeof *s->bcasts, "gossip");
    }
    pm_swim_bcast_t *b = pm_swim_xalloc(sizeof *b);
    b->name = pm_swim_xstrdup(m->name);
    b->endpoint = pm_swim_xstrdup(m->endpoint);
    b->from = from ? pm_swim_xstrdup(from) : NULL;
    b->incarnation = m->incarnation;
    b->state = m->state;
    /* Only an alive record's meta means anything to a receiver. */
    if (m->state == PM_SWIM_ALIVE) {
        b->meta = pm_swim_xmemdup(m->meta, m->meta_len);
        b->meta_len = m->meta_len;
    }
    b->id = ++s->bcast_id;
    s->bcasts[s->bcast_count++] = b;
}

size_t
pm_swim_update_size(const pm_swim_update_t *u)
{
    return strlen(u->name) + strlen(u->endpoint) + (u->from ? strlen(u->from) : 0) + u->meta_len +
           PM_SWIM_UPDATE_OVERHEAD;
}

void
pm_swim_bcast_view(const pm_swim_bcast_t *b, pm_swim_update_t *u)
{
    u->name = b->name;
    u->endpoint = b->endpoint;
    u->incarnation = b->incarnation;
    u->state = b->state;
    u->meta = b->meta;
    u->meta_len = b->meta_len;
    u->from = b->from;
}

void
pm_swim_record_view(const pm_swim_rec_t *m, pm_swim_update_t *u, const char *from)
{
    u->name = m->name;
    u->endpoint = m->endpoint;
    u->incarnation = m->incarnation;
    u->state = m->state;
    u->meta = m->state == PM_SWIM_ALIVE ? m->meta : NULL;
    u->meta_len = m->state == PM_SWIM_ALIVE ? m->meta_len : 0;
    u->from = from;
}

int
pm_swim_bcast_cmp(const void *a, const void *b)
{
    const pm_swim_bcast_t *x = *(pm_swim_bcast_t *const *) a;
    const pm_swim_bcast_t *y = *(pm_swim_bcast_t *const *) b;
    /* least transmitted first; among equals, newest first */
    if (x->transmits != y->transmits)
        return x->transmits < y->transmits ? -1 : 1;
    return x->id > y->id ? -1 : x->id < y->id ? 1 : 0;
}

void
pm_swim_scratch_reserve(pm_swim_t *s, size_t want)
{
    if (want <= s->scratch_cap)
        return;
    size_t cap = s->scratch_cap ? s->scratch_cap : 16;
    while (cap < want)
        cap *= 2;
    s->scratch = pm_xrealloc(s->scratch, cap * sizeof *s->scratch, "membership");
    s->scratch_cap = cap;
}

/* ---------------------------------------------------------------- what the table shows */

size_t
pm_swim_size(const pm_swim_t *s)
{
    assert(s);
    return s->count;
}

int
pm_swim_member_at(const pm_swim_t *s, size_t i, pm_swim_member_t *out)
{
    assert(s && out);
    if (i >= s->count)
        return -1;
    s_view(s->members[i], out);
    return 0;
}

int
pm_swim_lookup(const pm_swim_t *s, const char *name, pm_swim_member_t *out)
{
    assert(s && out);
    const pm_swim_rec_t *m = name ? pm_swim_find(s, name) : NULL;
    if (m == NULL)
        return -1;
    s_view(m, out);
    return 0;
}

size_t
pm_swim_count(const pm_swim_t *s, pm_swim_state_t state)
{
    assert(s);
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        if (s->members[i]->state == state)
            n++;
    return n;
}

uint64_t
pm_swim_incarnation(const pm_swim_t *s)
{
    assert(s);
    return s->self->incarnation;
}

uint32_t
pm_swim_health(const pm_swim_t *s)
{
    assert(s);
    return s->health;
}

uint64_t
pm_swim_probe_period(const pm_swim_t *s)
{
    assert(s);
    return pm_swim_period_scaled(s);
}

void
pm_swim_stats(const pm_swim_t *s, pm_swim_stats_t *out)
{
    assert(s && out);
    *out = s->stats;
}
