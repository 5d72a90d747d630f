/*
 * store.c - see store.h.
 *
 * Memory is the point of most choices here (target: < 300 bytes per pending
 * promise): the id lives inside the promise allocation, labels and keys sit
 * behind one optional pointer, the id index is an open-addressing table of
 * pointers beside their ids' hashes (a probe reads the table, not the
 * promise: under load a large store would otherwise cost a cache miss per
 * probe), and each promise has at most one heap entry (its earliest
 * deadline).
 *
 * Settled promises also sit on a second list, in the order they settled, so
 * retention (pm_store_expire) visits only those it drops, not the store.
 *
 * Settling fires watches, and watches may settle further promises (a then
 * chain rejecting link after link). To keep the stack flat however long the
 * chain is, settled promises go on a queue that the outermost call drains.
 */
#include "store.h"

#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest timeout or heartbeat accepted: 100 years. Beyond it "now + d"
 * could wrap, and no promise needs it. */
#define S_MAX_DURATION (100LL * 365 * 24 * 3600 * 1000)

typedef struct s_slot {
    uint64_t h; /* s_hash of p's key */
    pm_prom_t *p;
} s_slot_t;

typedef struct s_index {
    s_slot_t *slots;
    size_t cap; /* power of two */
    size_t n;
} s_index_t;

struct pm_store {
    pm_store_limits_t limits;
    s_index_t by_id;
    s_index_t by_key;
    pm_timers_t *timers;
    pm_prom_t *oldest, *newest;
    pm_prom_t *settled_oldest, *settled_newest; /* settled, in the order they did */
    uint64_t next_seq;
    size_t counts[PM_STATE_TIMEDOUT + 1];
    size_t total;
    pm_prom_t **fired; /* settled, watches not yet run */
    size_t fired_n, fired_cap, fired_head;
    int draining;
    pm_store_listener_fn *listener;
    void *listener_arg;
};

/* ---- index ---------------------------------------------------------------- */

static uint64_t
s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t) *s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

typedef const char *(s_keyof_fn)(const pm_prom_t *p);

static const char *
s_id_of(const pm_prom_t *p)
{
    return p->id;
}

const char *
pm_prom_key(const pm_prom_t *p)
{
    return p->extra && p->extra->key ? p->extra->key : NULL;
}

static pm_prom_t *
s_index_find(const s_index_t *ix, const char *key, s_keyof_fn *keyof)
{
    if (!ix->cap)
        return NULL;
    size_t mask = ix->cap - 1;
    uint64_t h = s_hash(key);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const s_slot_t *s = &ix->slots[i];
        if (!s->p)
            return NULL;
        if (s->h == h && strcmp(keyof(s->p), key) == 0)
            return s->p;
    }
}

static int
s_index_put(s_index_t *ix, pm_prom_t *p, s_keyof_fn *keyof)
{
    /* Grow at 70% load: linear probing degrades fast beyond that. */
    if ((ix->n + 1) * 10 > ix->cap * 7) {
        size_t cap = ix->cap ? ix->cap * 2 : 1024;
        s_slot_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < ix->cap; i++) {
            if (!ix->slots[i].p)
                continue;
            size_t j = ix->slots[i].h & (cap - 1);
            while (slots[j].p)
                j = (j + 1) & (cap - 1);
            slots[j] = ix->slots[i];
        }
        free(ix->slots);
        ix->slots = slots;
        ix->cap = cap;
    }
    size_t mask = ix->cap - 1;
    uint64_t h = s_hash(keyof(p));
    size_t i = h & mask;
    while (ix->slots[i].p)
        i = (i + 1) & mask;
    ix->slots[i] = (s_slot_t){.h = h, .p = p};
    ix->n++;
    return 0;
}

/* Backward-shift deletion keeps linear probing free of tombstones. */
static void
s_index_del(s_index_t *ix, const pm_prom_t *p, s_keyof_fn *keyof)
{
    if (!ix->cap)
        return;
    size_t mask = ix->cap - 1;
    size_t i = s_hash(keyof(p)) & mask;
    while (ix->slots[i].p && ix->slots[i].p != p)
        i = (i + 1) & mask;
    if (!ix->slots[i].p)
        return;
    ix->slots[i] = (s_slot_t){0};
    ix->n--;
    for (size_t j = (i + 1) & mask; ix->slots[j].p; j = (j + 1) & mask) {
        size_t home = ix->slots[j].h & mask;
        /* Move slot j back to i if its home is not in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            ix->slots[i] = ix->slots[j];
            ix->slots[j] = (s_slot_t){0};
            i = j;
        }
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

pm_store_t *
pm_store_new(const pm_store_limits_t *limits)
{
    pm_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->limits = *limits;
    self->timers = pm_timers_new();
    if (!self->timers) {
        free(self);
        return NULL;
    }
    self->next_seq = 1;
    return self;
}

static void
s_prom_free(pm_prom_t *p)
{
    if (p->extra) {
        free(p->extra->key);
        for (size_t i = 0; i < p->extra->label_count; i++) {
            free((char *) p->extra->labels[i].key);
            free((char *) p->extra->labels[i].value);
        }
        free(p->extra->labels);
        free(p->extra);
    }
    for (pm_watch_t *w = p->watches; w;) {
        pm_watch_t *next = w->next;
        w->next = NULL;
        w->pprev = NULL;
        w = next;
    }
    free(p->data);
    free(p);
}

void
pm_store_destroy(pm_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_store_t *self = *self_p;
    /* The heap points into the promises (their armed deadlines): it goes
     * first, while they still exist. */
    pm_timers_destroy(&self->timers);
    for (pm_prom_t *p = self->oldest; p;) {
        pm_prom_t *next = p->newer;
        s_prom_free(p);
        p = next;
    }
    free(self->by_id.slots);
    free(self->by_key.slots);
    free(self->fired);
    free(self);
    *self_p = NULL;
}

void
pm_store_set_listener(pm_store_t *self, pm_store_listener_fn *fn, void *arg)
{
    self->listener = fn;
    self->listener_arg = arg;
}

static void
s_tell(pm_store_t *self, pm_store_event_t ev, const pm_prom_t *p)
{
    if (self->listener)
        self->listener(self->listener_arg, ev, p);
}

/* ---- watches and settling ------------------------------------------------- */

void
pm_watch_link(pm_watch_t **head, pm_watch_t *w, pm_watch_fn *fn)
{
    w->fn = fn;
    w->next = *head;
    if (*head)
        (*head)->pprev = &w->next;
    w->pprev = head;
    *head = w;
}

void
pm_store_watch(pm_prom_t *p, pm_watch_t *w, pm_watch_fn *fn)
{
    pm_watch_link(&p->watches, w, fn);
}

void
pm_watch_cancel(pm_watch_t *w)
{
    if (!w->pprev)
        return;
    *w->pprev = w->next;
    if (w->next)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

static void
s_drain(pm_store_t *self)
{
    if (self->draining)
        return;
    self->draining = 1;
    while (self->fired_head < self->fired_n) {
        pm_prom_t *p = self->fired[self->fired_head++];
        while (p->watches) {
            pm_watch_t *w = p->watches;
            pm_watch_cancel(w);
            w->fn(w, p);
        }
    }
    self->fired_head = self->fired_n = 0;
    self->draining = 0;
}

static void
s_fire(pm_store_t *self, pm_prom_t *p)
{
    if (p->watches) {
        if (self->fired_n == self->fired_cap) {
            size_t cap = self->fired_cap ? self->fired_cap * 2 : 64;
            self->fired = pm_xrealloc(self->fired, cap * sizeof *self->fired, "settling");
            self->fired_cap = cap;
        }
        self->fired[self->fired_n++] = p;
    }
    s_drain(self);
}

/* Moves p to a settled state; data is copied. Caller validated everything. */
static int
s_settle(pm_store_t *self, pm_prom_t *p, int state, const void *data, size_t len, int64_t now)
{
    PM_INVARIANT(p->state == PM_STATE_PENDING && state != PM_STATE_PENDING,
                 "single assignment: a promise settles once");
    uint8_t *copy = NULL;
    if (data && (len || state != PM_STATE_RESOLVED)) {
        copy = pm_xmalloc(len + 1, "settled value");
        memcpy(copy, data, len);
        copy[len] = 0;
    }
    pm_timers_cancel(self->timers, &p->timer);
    self->counts[p->state]--;
    p->state = (uint8_t) state;
    self->counts[state]++;
    p->settled_ms = now;
    p->data = copy;
    p->data_len = (uint32_t) len;
    p->settled_older = self->settled_newest;
    if (self->settled_newest)
        self->settled_newest->settled_newer = p;
    else
        self->settled_oldest = p;
    self->settled_newest = p;
    s_tell(self, PM_STORE_SETTLED, p);
    s_fire(self, p);
    return PM_OK;
}

static int
s_same_outcome(const pm_prom_t *p, int state, const void *data, size_t len)
{
    if (p->state != state || p->data_len != len)
        return 0;
    return len == 0 || memcmp(p->data, data, len) == 0;
}

int
pm_store_settle(pm_store_t *self, const char *id, int state, const void *data, size_t len,
                int64_t now, pm_prom_t **out)
{
    if (state != PM_STATE_RESOLVED && state != PM_STATE_REJECTED && state != PM_STATE_CANCELED)
        return PM_ERR_BAD_REQUEST;
    if (len > self->limits.max_value_bytes)
        return PM_ERR_VALUE_TOO_LARGE;
    if (state != PM_STATE_RESOLVED && data && memchr(data, 0, len))
        return PM_ERR_BAD_REQUEST; /* reasons are text */
    pm_prom_t *p = pm_store_get(self, id);
    if (out)
        *out = p;
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state == PM_STATE_PENDING)
        return s_settle(self, p, state, data, len, now);
    if (s_same_outcome(p, state, data, len))
        return PM_OK;
    return p->state == PM_STATE_TIMEDOUT ? PM_ERR_TIMED_OUT : PM_ERR_ALREADY_SETTLED;
}

/* ---- create --------------------------------------------------------------- */

static char *
s_strdup_limited(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return NULL;
    return strdup(s);
}

static int
s_arm(pm_store_t *self, pm_prom_t *p)
{
    if (p->passive)
        return 0;
    int64_t at = p->timeout_at;
    if (p->heartbeat_at && (!at || p->heartbeat_at < at))
        at = p->heartbeat_at;
    if (!at) {
        pm_timers_cancel(self->timers, &p->timer);
        return 0;
    }
    return pm_timers_set(self->timers, &p->timer, at);
}

static int
s_valid_text(const char *s, size_t max)
{
    return s && *s && strlen(s) <= max;
}

int
pm_store_create(pm_store_t *self, const pm_create_args_t *a, int64_t now, pm_prom_t **out,
                int *created)
{
    size_t max = self->limits.max_id_bytes;
    if (!s_valid_text(a->id, max) || a->timeout_ms < 0 || a->heartbeat_ms < 0 ||
        a->timeout_ms > S_MAX_DURATION || a->heartbeat_ms > S_MAX_DURATION)
        return PM_ERR_BAD_REQUEST;
    if (a->key && *a->key) {
        if (strlen(a->key) > max)
            return PM_ERR_BAD_REQUEST;
        pm_prom_t *existing = s_index_find(&self->by_key, a->key, pm_prom_key);
        if (existing) {
            *out = existing;
            if (created)
                *created = 0;
            return PM_OK;
        }
    }
    if (a->label_count > self->limits.max_labels)
        return PM_ERR_LIMIT;
    for (size_t i = 0; i < a->label_count; i++)
        if (!s_valid_text(a->labels[i].key, max) || !a->labels[i].value ||
            strlen(a->labels[i].value) > max || strchr(a->labels[i].key, '='))
            return PM_ERR_BAD_REQUEST;
    if (s_index_find(&self->by_id, a->id, s_id_of))
        return PM_ERR_BAD_REQUEST; /* ids are minted unique: a clash is a forged id */

    size_t id_len = strlen(a->id);
    pm_prom_t *p = calloc(1, sizeof *p + id_len + 1);
    if (!p)
        return PM_ERR_INTERNAL;
    memcpy(p->id, a->id, id_len + 1);
    p->id_len = (uint16_t) id_len;
    p->state = PM_STATE_PENDING;
    p->passive = a->passive != 0;
    p->created_ms = a->created_ms ? a->created_ms : now;
    p->seq = self->next_seq++;
    if (a->timeout_at)
        p->timeout_at = a->timeout_at;
    else if (a->timeout_ms)
        p->timeout_at = now + a->timeout_ms;
    if (a->heartbeat_ms) {
        p->heartbeat_ms = a->heartbeat_ms;
        p->heartbeat_at = a->heartbeat_at ? a->heartbeat_at : now + a->heartbeat_ms;
    }
    if ((a->key && *a->key) || a->label_count) {
        p->extra = calloc(1, sizeof *p->extra);
        if (!p->extra)
            goto fail;
        if (a->key && *a->key && !(p->extra->key = s_strdup_limited(a->key, max)))
            goto fail;
        if (a->label_count) {
            p->extra->labels = calloc(a->label_count, sizeof(pm_label_t));
            if (!p->extra->labels)
                goto fail;
            for (size_t i = 0; i < a->label_count; i++) {
                p->extra->labels[i].key = strdup(a->labels[i].key);
                p->extra->labels[i].value = strdup(a->labels[i].value);
                p->extra->label_count++;
                if (!p->extra->labels[i].key || !p->extra->labels[i].value)
                    goto fail;
            }
        }
    }
    if (s_index_put(&self->by_id, p, s_id_of) != 0)
        goto fail;
    if (pm_prom_key(p) && s_index_put(&self->by_key, p, pm_prom_key) != 0)
        abort(); /* cannot undo the id insert without deletion; OOM here is fatal */
    if (s_arm(self, p) != 0)
        abort();
    p->older = self->newest;
    if (self->newest)
        self->newest->newer = p;
    else
        self->oldest = p;
    self->newest = p;
    self->counts[PM_STATE_PENDING]++;
    self->total++;
    *out = p;
    if (created)
        *created = 1;
    s_tell(self, PM_STORE_CREATED, p);
    return PM_OK;
fail:
    s_prom_free(p);
    return PM_ERR_INTERNAL;
}

int
pm_store_heartbeat(pm_store_t *self, const char *id, int64_t now, pm_prom_t **out)
{
    pm_prom_t *p = pm_store_get(self, id);
    if (out)
        *out = p;
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state == PM_STATE_TIMEDOUT)
        return PM_ERR_TIMED_OUT;
    if (p->state != PM_STATE_PENDING)
        return PM_ERR_ALREADY_SETTLED;
    if (p->heartbeat_ms) {
        p->heartbeat_at = now + p->heartbeat_ms;
        if (s_arm(self, p) != 0)
            return PM_ERR_INTERNAL;
    }
    s_tell(self, PM_STORE_HEARTBEAT, p);
    return PM_OK;
}

pm_prom_t *
pm_store_get(pm_store_t *self, const char *id)
{
    return s_index_find(&self->by_id, id, s_id_of);
}

/* ---- time ----------------------------------------------------------------- */

void
pm_store_tick(pm_store_t *self, int64_t now)
{
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->timers, now))) {
        pm_prom_t *p = pm_container_of(t, pm_prom_t, timer);
        const char *why = p->timeout_at && p->timeout_at <= now ? "timeout elapsed"
                                                                : "heartbeat missed";
        s_settle(self, p, PM_STATE_TIMEDOUT, why, strlen(why), now);
    }
}

int64_t
pm_store_next_deadline(const pm_store_t *self)
{
    pm_timer_t *t = pm_timers_peek(self->timers);
    return t ? t->at : INT64_MAX;
}

/* ---- queries -------------------------------------------------------------- */

static int
s_matches(const pm_prom_t *p, const pm_list_filter_t *f)
{
    if (p->passive) /* another owner's promise we only keep a copy of */
        return 0;
    if (f->state && p->state != f->state)
        return 0;
    if (f->prefix && *f->prefix && strncmp(p->id, f->prefix, strlen(f->prefix)) != 0)
        return 0;
    if (f->label_key && *f->label_key) {
        if (!p->extra)
            return 0;
        for (size_t i = 0; i < p->extra->label_count; i++)
            if (strcmp(p->extra->labels[i].key, f->label_key) == 0 &&
                (!f->label_value || strcmp(p->extra->labels[i].value, f->label_value) == 0))
                return 1;
        return 0;
    }
    return 1;
}

/* The cursor is "<seq>:<id>" of the last promise returned: resume right after
 * it if it still exists, else after the first promise with a larger seq. */
size_t
pm_store_list(pm_store_t *self, const pm_list_filter_t *f, const pm_prom_t **out,
              char *next_cursor, size_t cursor_cap)
{
    next_cursor[0] = 0;
    if (f->limit == 0)
        return 0;
    pm_prom_t *p = self->oldest;
    if (f->cursor && *f->cursor) {
        char *end;
        unsigned long long seq = strtoull(f->cursor, &end, 10);
        pm_prom_t *at = *end == ':' ? pm_store_get(self, end + 1) : NULL;
        if (at && at->seq == seq)
            p = at->newer;
        else
            while (p && p->seq <= seq)
                p = p->newer;
    }
    size_t n = 0;
    const pm_prom_t *last = NULL;
    for (; p && n < f->limit; p = p->newer)
        if (s_matches(p, f))
            out[n++] = last = p;
    next_cursor[0] = 0;
    if (n == f->limit) {
        while (p && !s_matches(p, f))
            p = p->newer;
        if (p)
            snprintf(next_cursor, cursor_cap, "%llu:%s", (unsigned long long) last->seq,
                     last->id);
    }
    return n;
}

size_t
pm_store_count(const pm_store_t *self, int state)
{
    return state ? self->counts[state] : self->total;
}

/* ---- restoring, activation, retention ------------------------------------- */

int
pm_store_apply_settle(pm_store_t *self, const char *id, int state, const void *data, size_t len,
                      int64_t at)
{
    if (state < PM_STATE_RESOLVED || state > PM_STATE_TIMEDOUT)
        return PM_ERR_BAD_REQUEST;
    pm_prom_t *p = pm_store_get(self, id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state == PM_STATE_PENDING)
        return s_settle(self, p, state, data, len, at);
    return s_same_outcome(p, state, data, len) ? PM_OK : PM_ERR_ALREADY_SETTLED;
}

int
pm_store_apply_heartbeat(pm_store_t *self, const char *id, int64_t at)
{
    pm_prom_t *p = pm_store_get(self, id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state != PM_STATE_PENDING)
        return PM_ERR_ALREADY_SETTLED;
    p->heartbeat_at = at;
    if (s_arm(self, p) != 0)
        return PM_ERR_INTERNAL;
    s_tell(self, PM_STORE_HEARTBEAT, p);
    return PM_OK;
}

size_t
pm_store_activate(pm_store_t *self, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (pm_prom_t *p = self->oldest; p; p = p->newer) {
        if (!p->passive || strncmp(p->id, prefix, plen) != 0)
            continue;
        p->passive = 0;
        if (p->state == PM_STATE_PENDING && s_arm(self, p) != 0)
            abort(); /* out of memory while taking over: nothing sane remains */
        n++;
    }
    return n;
}

size_t
pm_store_passivate(pm_store_t *self, const char *prefix, int keep)
{
    size_t n = 0, plen = strlen(prefix);
    for (pm_prom_t *p = self->oldest; p; p = p->newer) {
        if (p->passive || (strncmp(p->id, prefix, plen) == 0) == (keep != 0))
            continue;
        p->passive = 1;
        pm_timers_cancel(self->timers, &p->timer);
        n++;
    }
    return n;
}

static void
s_drop(pm_store_t *self, pm_prom_t *p)
{
    s_tell(self, PM_STORE_DROPPED, p);
    s_index_del(&self->by_id, p, s_id_of);
    if (pm_prom_key(p))
        s_index_del(&self->by_key, p, pm_prom_key);
    if (p->older)
        p->older->newer = p->newer;
    else
        self->oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        self->newest = p->older;
    if (p->state != PM_STATE_PENDING) {
        if (p->settled_older)
            p->settled_older->settled_newer = p->settled_newer;
        else
            self->settled_oldest = p->settled_newer;
        if (p->settled_newer)
            p->settled_newer->settled_older = p->settled_older;
        else
            self->settled_newest = p->settled_older;
    }
    self->counts[p->state]--;
    self->total--;
    s_prom_free(p);
}

int
pm_store_drop(pm_store_t *self, const char *id)
{
    pm_prom_t *p = pm_store_get(self, id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state == PM_STATE_PENDING)
        return PM_ERR_BAD_REQUEST;
    s_drop(self, p);
    return PM_OK;
}

size_t
pm_store_expire(pm_store_t *self, int64_t before, size_t max)
{
    size_t n = 0;
    for (pm_prom_t *p = self->settled_oldest, *next; p && n < max; p = next) {
        next = p->settled_newer;
        if (p->settled_ms >= before)
            break; /* those after it settled later (or were restored with their time) */
        if (!p->watches) {
            s_drop(self, p);
            n++;
        }
    }
    return n;
}

pm_prom_t *
pm_store_oldest(pm_store_t *self)
{
    return self->oldest;
}
