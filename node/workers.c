/*
 * workers.c - see workers.h.
 *
 * Tables: functions by name (each with its FIFO of queued invocations and the
 * workers serving it), workers by session handle, invocations by id. Counts
 * are small (functions and workers per node), so worker lists are arrays.
 */
#include "workers.h"

#include "base.h"
#include "ids.h"
#include "log.h"
#include "stats.h"
#include "steptrace.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_inv s_inv_t;
typedef struct s_worker s_worker_t;

typedef struct s_func {
    char *name;
    s_worker_t **workers;
    size_t n_workers;
    size_t rr; /* round-robin cursor over workers */
    s_inv_t *head, *tail;
    uint64_t invoked, completed, failed, retried;
    size_t queued;
} s_func_t;

struct s_worker {
    void *who;
    uint32_t concurrency;
    uint32_t inflight;
    s_func_t **funcs;
    size_t n_funcs;
    s_inv_t *held; /* invocations sent to this worker */
};

struct s_inv {
    char *id;
    s_func_t *func;
    uint8_t *input;
    size_t input_len;
    char *target;
    char *origin_node; /* NULL: placed here */
    char *origin_inv;  /* NULL: none */
    char *key;         /* in pm_workers.targets: origin (node/id), or the target */
    pm_wire_step_t *steps; /* the origin's chained continuations (one block) */
    size_t n_steps;
    uint32_t attempt;
    s_worker_t *worker; /* NULL while queued */
    s_inv_t *next, *prev; /* queue or worker's held list */
};

struct pm_workers {
    char *space;
    uint64_t next_inv;
    pm_workers_hooks_t hooks;
    void *arg;
    zhashx_t *funcs;   /* name -> s_func_t */
    zhashx_t *workers; /* "%p" of who -> s_worker_t */
    zhashx_t *invs;    /* id -> s_inv_t */
    zhashx_t *targets; /* s_inv_t.key -> s_inv_t: one invocation per origin id (or
                        * target) at a time */
    pm_workers_stats_t stats;
};

static void
s_inv_free(s_inv_t **inv_p)
{
    s_inv_t *inv = *inv_p;
    if (!inv)
        return;
    free(inv->id);
    free(inv->input);
    free(inv->target);
    free(inv->origin_node);
    free(inv->origin_inv);
    free(inv->key);
    free(inv->steps);
    free(inv);
    *inv_p = NULL;
}

static void
s_func_destroy(void **item)
{
    s_func_t *f = *item;
    while (f->head) {
        s_inv_t *inv = f->head;
        f->head = inv->next;
        s_inv_free(&inv);
    }
    free(f->workers);
    free(f->name);
    free(f);
    *item = NULL;
}

static void
s_worker_destroy(void **item)
{
    s_worker_t *w = *item;
    while (w->held) {
        s_inv_t *inv = w->held;
        w->held = inv->next;
        s_inv_free(&inv);
    }
    free(w->funcs);
    free(w);
    *item = NULL;
}

pm_workers_t *
pm_workers_new(const char *id_space, const pm_workers_hooks_t *hooks, void *arg)
{
    pm_workers_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->space = strdup(id_space);
    self->hooks = *hooks;
    self->arg = arg;
    self->funcs = zhashx_new();
    self->workers = zhashx_new();
    self->invs = zhashx_new(); /* borrows: invocations are owned by queues / workers */
    self->targets = zhashx_new(); /* borrows too */
    zhashx_set_destructor(self->funcs, s_func_destroy);
    zhashx_set_destructor(self->workers, s_worker_destroy);
    return self;
}

void
pm_workers_destroy(pm_workers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_workers_t *self = *self_p;
    zhashx_destroy(&self->invs);
    zhashx_destroy(&self->targets);
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->funcs);
    free(self->space);
    free(self);
    *self_p = NULL;
}

static void
s_key(void *who, char *buf, size_t cap)
{
    snprintf(buf, cap, "%p", who);
}

static s_worker_t *
s_worker_of(pm_workers_t *self, void *who)
{
    char k[32];
    s_key(who, k, sizeof k);
    return zhashx_lookup(self->workers, k);
}

static s_func_t *
s_func_get(pm_workers_t *self, const char *name, int create)
{
    s_func_t *f = zhashx_lookup(self->funcs, name);
    if (f || !create)
        return f;
    f = pm_xcalloc(1, sizeof *f, "function");
    f->name = pm_xstrdup(name, "function");
    zhashx_insert(self->funcs, name, f);
    return f;
}

/* ---- queues --------------------------------------------------------------- */

static void
s_push(s_inv_t **head, s_inv_t **tail, s_inv_t *inv, int front)
{
    inv->prev = inv->next = NULL;
    if (!tail) { /* a list without a tail: push at the front */
        inv->next = *head;
        if (*head)
            (*head)->prev = inv;
        *head = inv;
    } else if (!*head) {
        *head = *tail = inv;
    } else if (front) {
        inv->next = *head;
        (*head)->prev = inv;
        *head = inv;
    } else {
        inv->prev = *tail;
        (*tail)->next = inv;
        *tail = inv;
    }
}

static void
s_unlink(s_inv_t **head, s_inv_t **tail, s_inv_t *inv)
{
    if (inv->prev)
        inv->prev->next = inv->next;
    else
        *head = inv->next;
    if (inv->next)
        inv->next->prev = inv->prev;
    else if (tail)
        *tail = inv->prev;
    inv->next = inv->prev = NULL;
}

static void
s_forget_inv(pm_workers_t *self, s_inv_t *inv)
{
    if (zhashx_lookup(self->targets, inv->key) == inv)
        zhashx_delete(self->targets, inv->key);
    zhashx_delete(self->invs, inv->id);
    s_inv_free(&inv);
}

/* Hands queued invocations of f to workers with free slots. */
static void
s_dispatch(pm_workers_t *self, s_func_t *f)
{
    while (f->head && f->n_workers) {
        s_inv_t *inv = f->head;
        if (!self->hooks.pending(self->arg, inv->target)) {
            s_unlink(&f->head, &f->tail, inv);
            self->stats.queued--;
            self->stats.dropped++;
            s_forget_inv(self, inv);
            continue;
        }
        s_worker_t *w = NULL;
        for (size_t i = 0; i < f->n_workers; i++) {
            s_worker_t *c = f->workers[(f->rr + i) % f->n_workers];
            if (c->inflight < c->concurrency) {
                w = c;
                f->rr = (f->rr + i + 1) % f->n_workers;
                break;
            }
        }
        if (!w)
            return;
        s_unlink(&f->head, &f->tail, inv);
        self->stats.queued--;
        s_push(&w->held, NULL, inv, 1);
        inv->worker = w;
        w->inflight++;
        self->stats.inflight++;
        self->stats.dispatched++;
        inv->attempt++;
        pm_msg_t m = {.type = PM_MSG_INVOKE,
                      .invocation_id = inv->id,
                      .function = f->name,
                      .value = inv->input,
                      .value_len = inv->input_len,
                      .target_id = inv->target,
                      .attempt = inv->attempt,
                      .steps = inv->steps,
                      .step_count = inv->n_steps};
        PM_STEPTRACE_MARK("wk_dispatch", inv->input, inv->input_len);
        self->hooks.send(self->arg, w->who, &m);
        PM_STEPTRACE_MARK("wk_sent", inv->input, inv->input_len);
    }
}

static void
s_dispatch_worker(pm_workers_t *self, s_worker_t *w)
{
    for (size_t i = 0; i < w->n_funcs && w->inflight < w->concurrency; i++)
        s_dispatch(self, w->funcs[i]);
}

/* ---- operations ----------------------------------------------------------- */

int
pm_workers_register(pm_workers_t *self, void *who, const char *const *functions, size_t n,
                    uint32_t concurrency)
{
    if (n == 0 || concurrency == 0)
        return PM_ERR_BAD_REQUEST;
    for (size_t i = 0; i < n; i++)
        if (!functions[i][0])
            return PM_ERR_BAD_REQUEST;
    s_worker_t *w = s_worker_of(self, who);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return PM_ERR_INTERNAL;
        w->who = who;
        char k[32];
        s_key(who, k, sizeof k);
        zhashx_insert(self->workers, k, w);
        self->stats.workers++;
    }
    w->concurrency = concurrency;
    for (size_t i = 0; i < n; i++) {
        s_func_t *f = s_func_get(self, functions[i], 1);
        int known = 0;
        for (size_t j = 0; j < w->n_funcs; j++)
            known |= w->funcs[j] == f;
        if (known)
            continue;
        s_func_t **fs = realloc(w->funcs, (w->n_funcs + 1) * sizeof *fs);
        s_worker_t **ws = realloc(f->workers, (f->n_workers + 1) * sizeof *ws);
        if (fs)
            w->funcs = fs;
        if (ws)
            f->workers = ws;
        if (!fs || !ws)
            return PM_ERR_INTERNAL;
        w->funcs[w->n_funcs++] = f;
        f->workers[f->n_workers++] = w;
        pm_log_info("PM-WORKER-REGISTERED", "function %s concurrency %u", f->name, concurrency);
    }
    s_dispatch_worker(self, w);
    return PM_OK;
}

int
pm_workers_invoke(pm_workers_t *self, const char *function, const uint8_t *input, size_t len,
                  const char *target_id, const pm_workers_origin_t *origin)
{
    PM_STEPTRACE_MARK("wk_invoke", input, len);
    /* The placer sends a placed invocation again when it has heard nothing
     * for a while (place.c): one already queued or running here for that
     * placement is enough. Another placement for the same target (an heir
     * placing the continuation from its own copy) runs too: its result goes
     * to its own placer, and the target settles once. */
    const char *onode = origin ? origin->node : NULL;
    const char *oinv = origin ? origin->inv_id : NULL;
    char *key;
    if (oinv) {
        size_t n = (onode ? strlen(onode) : 0) + strlen(oinv) + 2;
        key = pm_xmalloc(n, "invocation");
        snprintf(key, n, "%s/%s", onode ? onode : "", oinv);
    } else {
        key = pm_xstrdup(target_id, "invocation");
    }
    if (zhashx_lookup(self->targets, key)) {
        free(key);
        self->stats.duplicates++;
        return PM_OK;
    }
    /* An invocation dropped here would leave its target pending for ever. */
    s_inv_t *inv = pm_xcalloc(1, sizeof *inv, "invocation");
    char id[PM_WIRE_MAX_NAME + 32];
    pm_id_tagged(id, sizeof id, self->space, 'i', ++self->next_inv);
    inv->id = pm_xstrdup(id, "invocation");
    inv->target = pm_xstrdup(target_id, "invocation");
    inv->key = key;
    if (onode)
        inv->origin_node = pm_xstrdup(onode, "invocation");
    if (oinv)
        inv->origin_inv = pm_xstrdup(oinv, "invocation");
    if (origin && origin->n_next) {
        inv->steps = pm_wire_steps_copy(origin->next, origin->n_next);
        if (!inv->steps)
            pm_oom("chained continuations");
        inv->n_steps = origin->n_next;
    }
    inv->input = pm_xmalloc(len, "invocation");
    if (len)
        memcpy(inv->input, input, len);
    inv->input_len = len;
    inv->func = s_func_get(self, function, 1);
    zhashx_insert(self->invs, inv->id, inv);
    zhashx_insert(self->targets, inv->key, inv);
    s_push(&inv->func->head, &inv->func->tail, inv, 0);
    self->stats.queued++;
    self->stats.invoked++;
    inv->func->invoked++;
    if (!inv->func->n_workers)
        pm_log(PM_LOG_DEBUG, "PM-INVOKE-WAITING", target_id, "no worker serves %s yet",
               function);
    s_dispatch(self, inv->func);
    return PM_OK;
}

static void
s_release(pm_workers_t *self, s_inv_t *inv)
{
    s_worker_t *w = inv->worker;
    s_unlink(&w->held, NULL, inv);
    inv->worker = NULL;
    w->inflight--;
    self->stats.inflight--;
}

/* Whether worker w registered function. */
static int
s_worker_serves(const s_worker_t *w, const char *function)
{
    for (size_t i = 0; i < w->n_funcs; i++)
        if (strcmp(w->funcs[i]->name, function) == 0)
            return 1;
    return 0;
}

/* Worker w answered inv with value r->value and started, itself, some of
 * the continuations chained after inv's target (r->steps: libpmesh runs a
 * step it serves at once, PROTOCOL.md 7a). Each one that was handed on
 * with inv (same invocation id, source inv's target) and that w serves
 * becomes an invocation w holds, under the placer's invocation id, as if it
 * had been dispatched to w in the slot inv leaves. */
static void
s_adopt_started(pm_workers_t *self, const s_inv_t *inv, s_worker_t *w, const pm_msg_t *r)
{
    for (size_t k = 0; k < r->step_count && inv->origin_inv; k++) {
        size_t i = 0;
        while (i < inv->n_steps &&
               strcmp(inv->steps[i].invocation_id, r->steps[k].invocation_id) != 0)
            i++;
        if (i == inv->n_steps)
            continue;
        const pm_wire_step_t *st = &inv->steps[i];
        const char *onode = inv->origin_node ? inv->origin_node : "";
        size_t n = strlen(onode) + strlen(st->invocation_id) + 2;
        char *key = pm_xmalloc(n, "invocation");
        snprintf(key, n, "%s/%s", onode, st->invocation_id);
        if (strcmp(st->source, inv->target) != 0 || !s_worker_serves(w, st->function) ||
            zhashx_lookup(self->targets, key) || zhashx_lookup(self->invs, st->invocation_id)) {
            free(key);
            continue;
        }
        s_inv_t *x = pm_xcalloc(1, sizeof *x, "invocation");
        x->id = pm_xstrdup(st->invocation_id, "invocation");
        x->target = pm_xstrdup(st->target_id, "invocation");
        x->key = key;
        if (inv->origin_node)
            x->origin_node = pm_xstrdup(inv->origin_node, "invocation");
        x->origin_inv = pm_xstrdup(st->invocation_id, "invocation");
        x->input = pm_xmalloc(r->value_len, "invocation");
        if (r->value_len)
            memcpy(x->input, r->value, r->value_len);
        x->input_len = r->value_len;
        if (i + 1 < inv->n_steps) {
            x->steps = pm_wire_steps_copy(inv->steps + i + 1, inv->n_steps - i - 1);
            if (!x->steps)
                pm_oom("chained continuations");
            x->n_steps = inv->n_steps - i - 1;
        }
        x->func = s_func_get(self, st->function, 1);
        x->attempt = 1;
        zhashx_insert(self->invs, x->id, x);
        zhashx_insert(self->targets, x->key, x);
        s_push(&w->held, NULL, x, 1);
        x->worker = w;
        w->inflight++;
        self->stats.inflight++;
        self->stats.invoked++;
        self->stats.dispatched++;
        x->func->invoked++;
        PM_STEPTRACE_MARK("wk_adopt", r->value, r->value_len);
    }
}

int
pm_workers_result(pm_workers_t *self, void *who, const pm_msg_t *r)
{
    PM_STEPTRACE_MARK("wk_result", r->value, r->value_len);
    s_inv_t *inv = zhashx_lookup(self->invs, r->invocation_id);
    if (!inv || !inv->worker || inv->worker->who != who) {
        self->stats.not_holder++;
        return PM_ERR_NOT_HOLDER;
    }
    s_worker_t *w = inv->worker;
    s_release(self, inv);
    if (r->ok && r->step_count)
        s_adopt_started(self, inv, w, r);
    int err;
    pm_workers_origin_t o = {.node = inv->origin_node, .inv_id = inv->origin_inv,
                             .next = inv->steps, .n_next = inv->n_steps};
    const char *fn = inv->func->name;
    if (r->ok) {
        self->stats.completed++;
        inv->func->completed++;
        err = self->hooks.settle(self->arg, &o, fn, inv->target, PM_STATE_RESOLVED, r->value,
                                 r->value_len);
        if (err == PM_ERR_VALUE_TOO_LARGE) {
            char why[160];
            snprintf(why, sizeof why, "VALUE_TOO_LARGE: %s returned %zu bytes",
                     inv->func->name, r->value_len);
            err = self->hooks.settle(self->arg, &o, fn, inv->target, PM_STATE_REJECTED, why,
                                     strlen(why));
        }
    } else {
        self->stats.failed++;
        inv->func->failed++;
        const char *why = r->reason && *r->reason ? r->reason : "worker failed";
        err = self->hooks.settle(self->arg, &o, fn, inv->target, PM_STATE_REJECTED, why,
                                 strlen(why));
    }
    if (err != PM_OK && err != PM_ERR_ALREADY_SETTLED && err != PM_ERR_TIMED_OUT &&
        err != PM_ERR_NOT_FOUND)
        pm_log(PM_LOG_WARN, "PM-INVOKE-SETTLE-FAILED", inv->target, "%s", pm_err_name(err));
    s_forget_inv(self, inv);
    s_dispatch_worker(self, w);
    return PM_OK;
}

void
pm_workers_forget(pm_workers_t *self, void *who)
{
    s_worker_t *w = s_worker_of(self, who);
    if (!w)
        return;
    for (size_t i = 0; i < w->n_funcs; i++) {
        s_func_t *f = w->funcs[i];
        for (size_t j = 0; j < f->n_workers; j++)
            if (f->workers[j] == w) {
                f->workers[j] = f->workers[--f->n_workers];
                break;
            }
        f->rr = 0;
    }
    while (w->held) {
        s_inv_t *inv = w->held;
        s_release(self, inv);
        s_push(&inv->func->head, &inv->func->tail, inv, 1);
        self->stats.queued++;
        self->stats.retried++;
        inv->func->retried++;
        pm_log(PM_LOG_WARN, "PM-INVOKE-RETRY", inv->target,
               "worker gone mid-invocation of %s; re-queued (attempt %u)", inv->func->name,
               inv->attempt);
    }
    s_func_t **funcs = w->funcs;
    size_t n = w->n_funcs;
    w->funcs = NULL;
    w->n_funcs = 0;
    char k[32];
    s_key(who, k, sizeof k);
    zhashx_delete(self->workers, k);
    self->stats.workers--;
    for (size_t i = 0; i < n; i++)
        s_dispatch(self, funcs[i]);
    free(funcs);
}

int
pm_workers_is_worker(pm_workers_t *self, void *who)
{
    return s_worker_of(self, who) != NULL;
}

void
pm_workers_stats(pm_workers_t *self, pm_workers_stats_t *out)
{
    *out = self->stats;
}

int
pm_workers_serves(pm_workers_t *self, const char *function)
{
    s_func_t *f = s_func_get(self, function, 0);
    return f && f->n_workers > 0;
}

void
pm_workers_offer_unserved(pm_workers_t *self, pm_workers_take_fn *take, void *arg)
{
    for (s_func_t *f = zhashx_first(self->funcs); f; f = zhashx_next(self->funcs)) {
        if (f->n_workers)
            continue;
        for (s_inv_t *inv = f->head; inv;) {
            s_inv_t *next = inv->next;
            /* Only what this agent placed: a member's invocation waits here
             * for a worker (its placer sends it again, and places it anew
             * if we die). */
            pm_workers_origin_t o = {.node = inv->origin_node, .inv_id = inv->origin_inv};
            if (!inv->origin_node &&
                take(arg, &o, f->name, inv->input, inv->input_len, inv->target)) {
                s_unlink(&f->head, &f->tail, inv);
                self->stats.queued--;
                s_forget_inv(self, inv);
            }
            inv = next;
        }
    }
}

size_t
pm_workers_caps(pm_workers_t *self, pm_fn_cap_t *out, size_t cap)
{
    size_t n = 0;
    for (s_func_t *f = zhashx_first(self->funcs); f && n < cap; f = zhashx_next(self->funcs)) {
        if (!f->n_workers)
            continue;
        uint32_t total = 0, used = 0;
        for (size_t i = 0; i < f->n_workers; i++) {
            total += f->workers[i]->concurrency;
            used += f->workers[i]->inflight;
        }
        out[n++] = (pm_fn_cap_t){.name = f->name, .free = used < total ? total - used : 0,
                                 .total = total};
    }
    return n;
}

void
pm_workers_functions_fill(pm_workers_t *self, pm_stats_t *out)
{
    for (s_func_t *f = zhashx_first(self->funcs); f; f = zhashx_next(self->funcs)) {
        size_t queued = 0;
        for (s_inv_t *i = f->head; i; i = i->next)
            queued++;
        pm_stats_fn_t *fn = pm_stats_add_fn(out, f->name);
        fn->invoked = f->invoked;
        fn->completed = f->completed;
        fn->failed = f->failed;
        fn->retried = f->retried;
        fn->queued = queued;
        fn->workers = f->n_workers;
    }
}
