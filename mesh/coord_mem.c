/*
 * coord_mem.c - the configuration store in memory, with etcd's semantics
 * (see coord.h): one store shared by several clients, a revision per change
 * counting up from 1, create-if-absent, CAS on the record's revision, a
 * history that watches replay and that compaction cuts. Deterministic and
 * single-threaded: requests are applied when made; answers wait in a FIFO
 * per client until the store's virtual clock reaches their delivery time, and
 * are then put on the client's socket. Test hooks cut a client off, delay
 * its answers, write behind its back, and crash the store (below).
 *
 * The store's crash (the simulator, issue 14). etcd is replicated: a crash
 * of its leader loses no acknowledged write, and a write the leader applied
 * stays applied even when its answer never left. So a crash is modelled as:
 * a hang (pm_coord_mem_hang: requests are applied, or with one chance in two
 * not, but nothing is answered), then the crash itself (pm_coord_mem_crash):
 * every answer not yet delivered is replaced by UNAVAILABLE, at once (the
 * connection was reset) or after the client's request timeout (it hung and
 * the client gave up), never both and never the original; the state is kept
 * (a restart with its data). The caller then takes the clients off the store
 * (pm_coord_mem_set_available) for the outage and back on at the restart.
 * The dangerous case is an applied CAS whose answer was lost: its client sees
 * UNAVAILABLE and must re-read, not assume that it failed.
 */
#include "coord.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_kv {
    char space[PM_COORD_NAME_MAX];
    char *value;
    int64_t mod_rev;
} s_kv_t;

typedef struct s_change {
    int64_t rev;
    char space[PM_COORD_NAME_MAX];
    char *value; /* NULL: deleted */
} s_change_t;

typedef struct s_pending {
    pm_coord_result_t *r;
    int64_t due;
    int oob; /* a timeout's answer: later answers do not wait for it */
    struct s_pending *next;
} s_pending_t;

typedef struct s_watch {
    uint64_t id;
    int64_t next_rev; /* the first revision not yet delivered */
    int broken;       /* told the client it broke; re-established when up */
} s_watch_t;

typedef struct s_client {
    pm_coord_t *c;
    pm_coord_mem_t *store;
    int up;
    int64_t delay;
    int64_t stall_until; /* its watches deliver nothing before this (virtual ms) */
    s_pending_t *head, *tail;
    s_watch_t *watches;
    size_t n_watches;
    uint64_t asked, answered; /* requests (not watches), answers delivered */
} s_client_t;

struct pm_coord_mem {
    s_kv_t *kv;
    size_t n_kv;
    s_change_t *hist; /* every change after `compacted`, oldest first */
    size_t n_hist;
    int64_t compacted; /* history at or below this revision is gone */
    int64_t rev;
    int64_t now;
    s_client_t **clients;
    size_t n_clients;
    int hung;         /* crashing: requests applied (or not), answers held */
    int armed;        /* hangs at the next write */
    uint64_t rng;     /* the hang's coin (pm_coord_mem_seed) */
    pm_coord_mem_crash_stats_t crash;
};

static void
s_oom(void)
{
    /* House rule: out of memory stops the process (coord.h callers never
     * see a half-applied change). */
    abort();
}

static void *
s_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        s_oom();
    return p;
}

pm_coord_mem_t *
pm_coord_mem_new(void)
{
    return calloc(1, sizeof(pm_coord_mem_t));
}

void
pm_coord_mem_destroy(pm_coord_mem_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_coord_mem_t *self = *self_p;
    for (size_t i = 0; i < self->n_kv; i++)
        free(self->kv[i].value);
    for (size_t i = 0; i < self->n_hist; i++)
        free(self->hist[i].value);
    free(self->kv);
    free(self->hist);
    free(self->clients);
    free(self);
    *self_p = NULL;
}

int64_t
pm_coord_mem_revision(const pm_coord_mem_t *self)
{
    return self->rev;
}

size_t
pm_coord_mem_keys(const pm_coord_mem_t *self, const char *prefix)
{
    size_t n = 0, len = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < self->n_kv; i++)
        n += strncmp(self->kv[i].space, prefix ? prefix : "", len) == 0;
    return n;
}

static s_kv_t *
s_find(pm_coord_mem_t *self, const char *space)
{
    for (size_t i = 0; i < self->n_kv; i++)
        if (strcmp(self->kv[i].space, space) == 0)
            return &self->kv[i];
    return NULL;
}

/* Applies one change (value NULL: delete) and records it. Its revision. */
static int64_t
s_write(pm_coord_mem_t *self, const char *space, const char *value)
{
    s_kv_t *kv = s_find(self, space);
    if (!value && !kv)
        return 0;
    int64_t rev = ++self->rev;
    if (value) {
        if (!kv) {
            self->kv = s_xrealloc(self->kv, (self->n_kv + 1) * sizeof *self->kv);
            kv = &self->kv[self->n_kv++];
            memset(kv, 0, sizeof *kv);
            snprintf(kv->space, sizeof kv->space, "%s", space);
        }
        free(kv->value);
        kv->value = strdup(value);
        if (!kv->value)
            s_oom();
        kv->mod_rev = rev;
    } else {
        free(kv->value);
        *kv = self->kv[--self->n_kv];
    }
    self->hist = s_xrealloc(self->hist, (self->n_hist + 1) * sizeof *self->hist);
    s_change_t *ch = &self->hist[self->n_hist++];
    ch->rev = rev;
    snprintf(ch->space, sizeof ch->space, "%s", space);
    ch->value = value ? strdup(value) : NULL;
    if (value && !ch->value)
        s_oom();
    return rev;
}

/* Decodes a stored value into rec (with revision): 0, or -1 and a message. */
static int
s_decode(const char *space, const char *value, int64_t rev, pm_coord_record_t *rec,
         pm_coord_result_t *r)
{
    char err[200];
    if (pm_coord_record_decode(space, value, strlen(value), rec, err, sizeof err) != 0) {
        pm_coord_result_msg(r, "%s", err);
        return -1;
    }
    rec->revision = rev;
    return 0;
}

/* ---- delivery ------------------------------------------------------------- */

static int s_is_answer(pm_coord_kind_t k);

/* Delivers what is due, in order; only a timeout's answer (oob) that is not
 * due yet lets the answers behind it pass. */
static void
s_flush(s_client_t *cl)
{
    s_pending_t **pp = &cl->head, *prev = NULL;
    while (*pp) {
        s_pending_t *p = *pp;
        if (p->due > cl->store->now) {
            if (!p->oob)
                break;
            prev = p;
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (cl->tail == p)
            cl->tail = prev;
        cl->answered += (uint64_t) s_is_answer(p->r->kind);
        pm_coord_deliver(cl->c, p->r);
        free(p);
    }
}

static void
s_enqueue(s_client_t *cl, pm_coord_result_t *r)
{
    if (!r)
        s_oom();
    s_pending_t *p = calloc(1, sizeof *p);
    if (!p)
        s_oom();
    p->r = r;
    p->due = cl->store->hung ? INT64_MAX : cl->store->now + cl->delay;
    if (cl->tail)
        cl->tail->next = p;
    else
        cl->head = p;
    cl->tail = p;
    s_flush(cl);
}

/* Every record, at the current revision: OK, or BAD naming the first record
 * that does not decode (the others are still there). */
static pm_coord_result_t *
s_list(pm_coord_mem_t *self, uint64_t id, pm_coord_kind_t kind)
{
    pm_coord_result_t *r = pm_coord_result_new(id, kind, PM_COORD_OK);
    if (!r)
        s_oom();
    r->revision = self->rev;
    for (size_t i = 0; i < self->n_kv; i++) {
        pm_coord_record_t rec;
        pm_coord_result_t scratch = {0};
        if (s_decode(self->kv[i].space, self->kv[i].value, self->kv[i].mod_rev, &rec, &scratch)) {
            if (r->status == PM_COORD_OK) {
                r->status = PM_COORD_BAD;
                memcpy(r->message, scratch.message, sizeof r->message);
            }
            continue;
        }
        if (pm_coord_result_add(r, &rec))
            s_oom();
    }
    return r;
}

/* Brings one watch up to date: every change from next_rev on, or a resync
 * when the history it needs was compacted away. */
static void
s_pump(s_client_t *cl, s_watch_t *w)
{
    pm_coord_mem_t *st = cl->store;
    if (!cl->up || w->broken || st->now < cl->stall_until)
        return;
    if (w->next_rev <= st->compacted) {
        s_enqueue(cl, s_list(st, w->id, PM_COORD_RESYNC));
        w->next_rev = st->rev + 1;
        return;
    }
    /* The history is in revision order: start at the first change not yet
     * delivered (a scan from the start made every pump O(history)). */
    size_t lo = 0, hi = st->n_hist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->hist[mid].rev < w->next_rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < st->n_hist; i++) {
        s_change_t *ch = &st->hist[i];
        pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_EVENT, PM_COORD_OK);
        if (!r)
            s_oom();
        r->revision = ch->rev;
        pm_coord_record_t rec;
        memset(&rec, 0, sizeof rec);
        snprintf(rec.space, sizeof rec.space, "%s", ch->space);
        rec.revision = ch->rev;
        if (!ch->value)
            r->deleted = 1;
        else if (s_decode(ch->space, ch->value, ch->rev, &rec, r))
            r->status = PM_COORD_BAD;
        if (pm_coord_result_add(r, &rec))
            s_oom();
        s_enqueue(cl, r);
        w->next_rev = ch->rev + 1;
    }
}

static void
s_pump_all(pm_coord_mem_t *self)
{
    for (size_t i = 0; i < self->n_clients; i++)
        for (size_t j = 0; j < self->clients[i]->n_watches; j++)
            s_pump(self->clients[i], &self->clients[i]->watches[j]);
}

/* ---- the backend ---------------------------------------------------------- */

static int
s_open(pm_coord_t *c, const pm_coord_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->mem) {
        snprintf(err, errlen, "coordination: mem:// needs a store (cfg.mem)");
        return -1;
    }
    s_client_t *cl = calloc(1, sizeof *cl);
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cl->c = c;
    cl->store = cfg->mem;
    cl->up = 1;
    pm_coord_mem_t *st = cfg->mem;
    st->clients = s_xrealloc(st->clients, (st->n_clients + 1) * sizeof *st->clients);
    st->clients[st->n_clients++] = cl;
    c->impl = cl;
    return 0;
}

static void
s_close(pm_coord_t *c)
{
    s_client_t *cl = c->impl;
    if (!cl)
        return;
    pm_coord_mem_t *st = cl->store;
    for (size_t i = 0; i < st->n_clients; i++)
        if (st->clients[i] == cl) {
            st->clients[i] = st->clients[--st->n_clients];
            break;
        }
    while (cl->head) {
        s_pending_t *p = cl->head;
        cl->head = p->next;
        pm_coord_result_destroy(&p->r);
        free(p);
    }
    free(cl->watches);
    free(cl);
    c->impl = NULL;
}

static void
s_submit(pm_coord_t *c, pm_coord_req_t *req)
{
    s_client_t *cl = c->impl;
    pm_coord_mem_t *st = cl->store;
    pm_coord_kind_t kind = req->kind;
    cl->asked += (uint64_t) s_is_answer(kind);
    if (st->armed && (kind == PM_COORD_CREATE || kind == PM_COORD_CAS || kind == PM_COORD_DELETE)) {
        st->armed = 0;
        st->hung = 1;
    }
    if (kind == PM_COORD_WATCH) {
        cl->watches = s_xrealloc(cl->watches, (cl->n_watches + 1) * sizeof *cl->watches);
        s_watch_t *w = &cl->watches[cl->n_watches++];
        w->id = req->id;
        w->next_rev = req->from_rev ? req->from_rev : st->rev + 1;
        w->broken = !cl->up;
        pm_coord_result_t *r =
            pm_coord_result_new(req->id, kind, cl->up ? PM_COORD_OK : PM_COORD_UNAVAILABLE);
        if (!r)
            s_oom();
        r->revision = st->rev;
        if (!cl->up)
            pm_coord_result_msg(r, "store unavailable (test hook)");
        s_enqueue(cl, r);
        s_pump(cl, w);
        free(req);
        return;
    }
    if (!cl->up) {
        pm_coord_result_t *r = pm_coord_result_new(req->id, kind, PM_COORD_UNAVAILABLE);
        if (!r)
            s_oom();
        pm_coord_result_msg(r, "store unavailable (test hook)");
        s_enqueue(cl, r);
        free(req);
        return;
    }
    if (st->hung && kind != PM_COORD_GET && kind != PM_COORD_LIST) {
        /* The crashing leader may never commit it (one chance in two). */
        st->rng = st->rng * 6364136223846793005ULL + 1442695040888963407ULL;
        if ((st->rng >> 33) & 1) {
            pm_coord_result_t *r = pm_coord_result_new(req->id, kind, PM_COORD_UNAVAILABLE);
            if (!r)
                s_oom();
            pm_coord_result_msg(r, "store crashed (not applied)");
            s_enqueue(cl, r); /* held; the crash answers it */
            free(req);
            return;
        }
    }
    if (kind == PM_COORD_LIST) {
        s_enqueue(cl, s_list(st, req->id, kind));
        free(req);
        return;
    }
    pm_coord_result_t *r = pm_coord_result_new(req->id, kind, PM_COORD_OK);
    if (!r)
        s_oom();
    s_kv_t *kv = s_find(st, req->space);
    pm_coord_record_t cur;
    int wrote = 0;
    if (kv && s_decode(kv->space, kv->value, kv->mod_rev, &cur, r)) {
        r->status = PM_COORD_BAD;
    } else if (kind == PM_COORD_GET) {
        if (!kv)
            r->status = PM_COORD_NOT_FOUND;
        else if (pm_coord_result_add(r, &cur))
            s_oom();
    } else if (kind == PM_COORD_DELETE) {
        if (!kv) {
            r->status = PM_COORD_NOT_FOUND;
        } else if (kv->mod_rev != req->expected) {
            r->status = PM_COORD_CONFLICT;
            if (pm_coord_result_add(r, &cur))
                s_oom();
        } else {
            s_write(st, req->space, NULL);
            wrote = 1;
        }
    } else if ((kind == PM_COORD_CREATE && kv) ||
               (kind == PM_COORD_CAS && kv && kv->mod_rev != req->expected)) {
        r->status = PM_COORD_CONFLICT;
        if (pm_coord_result_add(r, &cur))
            s_oom();
    } else if (kind == PM_COORD_CAS && !kv) {
        r->status = PM_COORD_NOT_FOUND;
    } else {
        char *value = pm_coord_record_encode(&req->rec);
        if (!value)
            s_oom();
        pm_coord_record_t stored = req->rec;
        stored.revision = s_write(st, req->space, value);
        free(value);
        if (pm_coord_result_add(r, &stored))
            s_oom();
        wrote = 1;
    }
    r->revision = st->rev;
    s_enqueue(cl, r);
    free(req);
    if (wrote)
        s_pump_all(st);
}

const pm_coord_backend_t pm_coord_mem_backend = {s_open, s_submit, s_close};

/* ---- test hooks ----------------------------------------------------------- */

void
pm_coord_mem_advance(pm_coord_mem_t *self, int64_t ms)
{
    self->now += ms;
    for (size_t i = 0; i < self->n_clients; i++) {
        s_client_t *cl = self->clients[i];
        if (cl->stall_until && self->now >= cl->stall_until) {
            cl->stall_until = 0; /* the stream moves again: what it held comes now */
            for (size_t j = 0; j < cl->n_watches; j++)
                s_pump(cl, &cl->watches[j]);
        }
        s_flush(cl);
    }
}

void
pm_coord_mem_set_available(pm_coord_t *client, int up)
{
    s_client_t *cl = client->impl;
    up = !!up;
    if (cl->up == up)
        return;
    cl->up = up;
    for (size_t i = 0; i < cl->n_watches; i++) {
        s_watch_t *w = &cl->watches[i];
        if (!up) {
            /* Like a broken etcd watch stream: said once, then silence. */
            pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_WATCH, PM_COORD_UNAVAILABLE);
            if (!r)
                s_oom();
            pm_coord_result_msg(r, "store unavailable (test hook)");
            s_enqueue(cl, r);
            w->broken = 1;
        } else {
            pm_coord_result_t *r = pm_coord_result_new(w->id, PM_COORD_WATCH, PM_COORD_OK);
            if (!r)
                s_oom();
            r->revision = cl->store->rev;
            s_enqueue(cl, r);
            w->broken = 0;
            s_pump(cl, w);
        }
    }
}

void
pm_coord_mem_stall_watch(pm_coord_t *client, int64_t ms)
{
    s_client_t *cl = client->impl;
    cl->stall_until = cl->store->now + (ms < 1 ? 1 : ms);
}

void
pm_coord_mem_set_delay(pm_coord_t *client, int64_t ms)
{
    s_client_t *cl = client->impl;
    cl->delay = ms < 0 ? 0 : ms;
}

int64_t
pm_coord_mem_put(pm_coord_mem_t *self, const pm_coord_record_t *rec)
{
    char *value = pm_coord_record_encode(rec);
    if (!value)
        s_oom();
    int64_t rev = s_write(self, rec->space, value);
    free(value);
    s_pump_all(self);
    return rev;
}

int64_t
pm_coord_mem_put_raw(pm_coord_mem_t *self, const char *space, const char *value)
{
    int64_t rev = s_write(self, space, value);
    s_pump_all(self);
    return rev;
}

int64_t
pm_coord_mem_delete(pm_coord_mem_t *self, const char *space)
{
    int64_t rev = s_write(self, space, NULL);
    if (rev)
        s_pump_all(self);
    return rev;
}

void
pm_coord_mem_compact(pm_coord_mem_t *self, int64_t rev)
{
    if (rev > self->rev)
        rev = self->rev;
    if (rev <= self->compacted)
        return;
    size_t keep = 0;
    for (size_t i = 0; i < self->n_hist; i++) {
        if (self->hist[i].rev <= rev)
            free(self->hist[i].value);
        else
            self->hist[keep++] = self->hist[i];
    }
    self->n_hist = keep;
    self->compacted = rev;
}

/* ---- the store's crash ------------------------------------------------------ */

void
pm_coord_mem_seed(pm_coord_mem_t *self, uint64_t seed)
{
    self->rng = seed;
}

void
pm_coord_mem_hang(pm_coord_mem_t *self)
{
    self->hung = 1;
}

void
pm_coord_mem_arm(pm_coord_mem_t *self)
{
    self->armed = 1;
}

int
pm_coord_mem_hung(const pm_coord_mem_t *self)
{
    return self->hung;
}

static int
s_is_answer(pm_coord_kind_t k)
{
    return k == PM_COORD_GET || k == PM_COORD_CREATE || k == PM_COORD_CAS ||
           k == PM_COORD_DELETE || k == PM_COORD_LIST;
}

void
pm_coord_mem_crash(pm_coord_mem_t *self, int64_t timeout_ms)
{
    self->hung = 0;
    self->armed = 0;
    self->crash.crashes++;
    for (size_t i = 0; i < self->n_clients; i++) {
        s_client_t *cl = self->clients[i];
        for (s_pending_t *p = cl->head; p; p = p->next) {
            if (!s_is_answer(p->r->kind)) {
                /* Watch news of what was committed: it got out first. */
                if (p->due == INT64_MAX)
                    p->due = self->now;
                continue;
            }
            if (p->r->status == PM_COORD_UNAVAILABLE && p->oob)
                continue; /* already a failure */
            int applied = p->r->status == PM_COORD_OK && p->r->kind != PM_COORD_GET &&
                          p->r->kind != PM_COORD_LIST;
            self->crash.answers_lost++;
            self->crash.writes_lost += (uint64_t) applied;
            pm_coord_result_t *r = pm_coord_result_new(p->r->req, p->r->kind, PM_COORD_UNAVAILABLE);
            if (!r)
                s_oom();
            pm_coord_result_msg(r, "store crashed%s", applied ? "" : " (not applied)");
            pm_coord_result_destroy(&p->r);
            p->r = r;
            self->rng = self->rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int reset = (self->rng >> 33) & 1;
            self->crash.timed_out += (uint64_t) !reset;
            p->due = self->now + (reset ? 0 : (timeout_ms > 0 ? timeout_ms : 2000));
            p->oob = 1;
        }
        s_flush(cl);
    }
}

void
pm_coord_mem_crash_stats(const pm_coord_mem_t *self, pm_coord_mem_crash_stats_t *out)
{
    *out = self->crash;
}

int64_t
pm_coord_mem_unbalanced(const pm_coord_t *client)
{
    const s_client_t *cl = client->impl;
    if (!cl)
        return 0;
    int64_t queued = 0;
    for (const s_pending_t *p = cl->head; p; p = p->next)
        queued += s_is_answer(p->r->kind);
    return (int64_t) cl->asked - (int64_t) cl->answered - queued;
}
