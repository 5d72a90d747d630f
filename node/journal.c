/*
 * journal.c - see journal.h.
 */
#include "clock.h"
#include "journal.h"

#include "base.h"
#include "hist.h"
#include "log.h"
#include "records.h"
#include "stats.h"
#include "steptrace.h"
#include "wal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Compact when the log since the last snapshot passes this and is several
 * times what a snapshot of the live state would take: bounded disk, and the
 * snapshot's cost is paid rarely. */
#define S_COMPACT_MIN_BYTES (64ull * 1024 * 1024)
#define S_COMPACT_FACTOR 4
#define S_RECORD_ESTIMATE 128 /* bytes of a typical promise record */

typedef struct s_held s_held_t;
typedef struct s_queue {
    s_held_t *head, *tail;
} s_queue_t;

typedef struct s_held {
    struct s_held *next;
    uint64_t lsn;
    uint64_t rseq; /* replication sequence the message waits for (0: none) */
    int64_t deadline; /* monotonic ms after which its asker no longer waits (0: none) */
    int bound;        /* the deadline is the agent's bound on holding, not the asker's */
    int tag;
    int64_t t0_us;
    pm_journal_hold_fn *fn; /* an own hold (queue 2): fn(item, how) instead of a send */
    void *item;
    uint64_t session;
    char *peer;
    uint8_t *buf;
    size_t len;
} s_held_t;

struct pm_journal {
    pm_wal_t *wal; /* NULL: no data dir; only replication gates */
    char *gen_space, *gen_mint; /* the last generation record (a snapshot repeats it) */
    uint64_t generation, gen_mint_pid;
    uint64_t mem_lsn; /* records "appended" without a WAL */
    uint64_t repl_produced, repl_acked;
    int snapshot_failed;
    pm_journal_record_fn *record_hook;
    void *record_arg;
    pm_journal_send_fn *send;
    void *arg;
    /* Two queues, one per release condition, each in LSN order: replies
     * wait for the WAL and the backups; a backup's own acknowledgements wait
     * for its WAL only. One FIFO for both would put acknowledgements behind
     * replies that wait for other agents' acknowledgements: a circle. A
     * third holds the owner's own holds (pm_journal_hold_at), in position
     * order: nothing is sent for them, so they need not wait behind replies. */
    s_queue_t q[3];
    size_t held;
    int64_t next_deadline; /* the earliest deadline held (0: none, or not known to be) */
    int failed;
    uint64_t released, snapshots;
    int64_t recovery_ms;
};

static uint64_t
s_appended(const pm_journal_t *self)
{
    return self->wal ? pm_wal_appended(self->wal) : self->mem_lsn;
}

static uint64_t
s_durable(const pm_journal_t *self)
{
    return self->wal ? pm_wal_durable(self->wal) : self->mem_lsn;
}

pm_journal_t *
pm_journal_open(const char *dir, int fsync_mode, void *zmq_ctx, pm_journal_send_fn *send,
                void *arg, char *err, size_t errlen)
{
    pm_journal_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->send = send;
    self->arg = arg;
    if (!dir)
        return self;
    self->wal = pm_wal_open(dir, (pm_fsync_mode_t) fsync_mode, zmq_ctx, err, errlen);
    if (!self->wal) {
        free(self);
        return NULL;
    }
    return self;
}

static void
s_release(pm_journal_t *self, uint64_t durable)
{
    /* (UINT64_MAX: closing, after the WAL made everything appended durable.) */
    PM_INVARIANT(durable == UINT64_MAX || durable <= s_durable(self),
                 "a reply is released only when its records are durable locally");
    PM_INVARIANT(self->repl_acked <= self->repl_produced,
                 "a reply is released only when its records are on the counted backups");
    for (int k = 0; k < 3; k++) {
        s_queue_t *q = &self->q[k];
        while (q->head && q->head->lsn <= durable && q->head->rseq <= self->repl_acked) {
            s_held_t *h = q->head;
            q->head = h->next;
            if (!q->head)
                q->tail = NULL;
            self->held--;
            self->released++;
            if (h->fn) {
                /* fn may hold again or append records: h is off the queue. */
                PM_STEPTRACE_MARK("j_release_own", "", 0);
                h->fn(h->item, PM_JOURNAL_RELEASED);
                free(h);
                continue;
            }
            PM_STEPTRACE_MARK(k ? "j_release_ack" : "j_release", "", 0);
            self->send(self->arg, h->session, h->peer, h->buf, h->len, h->tag, h->t0_us);
            free(h->peer);
            free(h);
        }
    }
}

void
pm_journal_close(pm_journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_journal_t *self = *self_p;
    pm_wal_close(&self->wal); /* flushes and fsyncs what was appended */
    /* Going: deliver what is durable here and (for replies) at the backups;
     * replies the backups have not acknowledged are not acknowledgements
     * (pm_journal_fail_unreplicated answers them first). */
    /* Own holds are not released while closing: their owner is going. */
    for (s_held_t *h = self->q[2].head, *next; h; h = next) {
        next = h->next;
        h->fn(h->item, PM_JOURNAL_CLOSED);
        free(h);
    }
    self->q[2].head = self->q[2].tail = NULL;
    if (!self->failed)
        s_release(self, UINT64_MAX);
    for (int k = 0; k < 2; k++)
        while (self->q[k].head) {
            s_held_t *h = self->q[k].head;
            self->q[k].head = h->next;
            free(h->peer);
            free(h->buf);
            free(h);
        }
    free(self->gen_space);
    free(self->gen_mint);
    free(self);
    *self_p = NULL;
}

/* ---- records -------------------------------------------------------------- */

static void
s_append(pm_journal_t *self, const pm_rec_t *rec, int snapshot)
{
    size_t len;
    uint8_t *buf = pm_wire_rec_encode(rec, &len);
    if (!buf)
        pm_oom("encoding a WAL record");
    if (self->record_hook && !snapshot)
        self->record_hook(self->record_arg, rec, buf, len);
    if (!snapshot && rec->promise.id)
        PM_STEPTRACE_MARK(rec->kind == PM_REC_SETTLE ? "j_settle" : "j_rec", rec->promise.id,
                          strlen(rec->promise.id));
    if (!self->wal) {
        self->mem_lsn++;
        free(buf);
        return;
    }
    if (snapshot) {
        /* A failed snapshot is abandoned; the log it would replace is intact. */
        if (pm_wal_snapshot_add(self->wal, buf, len) != 0)
            self->snapshot_failed = 1;
        free(buf);
        return;
    }
    int bad = pm_wal_append(self->wal, buf, len) == 0;
    if (bad && !self->failed) {
        self->failed = 1;
        pm_log_error("PM-WAL-IO", "cannot append to the WAL: %s; acknowledgements stop",
                     pm_wal_error(self->wal));
    }
    free(buf);
}

/* records.h emitter: a record into the snapshot being written. */
static void
s_snapshot_record(void *arg, const pm_rec_t *rec)
{
    s_append(arg, rec, 1);
}

void
pm_journal_store_event(pm_journal_t *self, pm_store_event_t ev, const pm_prom_t *p)
{
    pm_rec_t rec = {0};
    switch (ev) {
    case PM_STORE_CREATED:
        rec.kind = PM_REC_CREATE;
        break;
    case PM_STORE_SETTLED:
        rec.kind = PM_REC_SETTLE;
        break;
    case PM_STORE_HEARTBEAT:
        rec.kind = PM_REC_HEARTBEAT;
        break;
    case PM_STORE_DROPPED:
        rec.kind = PM_REC_DROP;
        break;
    }
    pm_records_view(p, &rec.promise);
    if (ev == PM_STORE_DROPPED || ev == PM_STORE_HEARTBEAT) {
        /* Only what the record needs: the id (and the new deadline). */
        pm_wire_promise_t v = {.id = p->id, .state = p->state,
                               .heartbeat_at_ms = rec.promise.heartbeat_at_ms};
        rec.promise = v;
    }
    s_append(self, &rec, 0);
}

void
pm_journal_then(pm_journal_t *self, const char *p, const char *function, const char *q)
{
    pm_rec_t rec = pm_records_then(p, function, q);
    s_append(self, &rec, 0);
}

void
pm_journal_cont(pm_journal_t *self, const pm_rec_t *rec)
{
    s_append(self, rec, 0);
}

void
pm_journal_snapshot_cont(pm_journal_t *self, const pm_rec_t *rec)
{
    s_append(self, rec, 1);
}

/* A generation record: target names the mint space when it is not space,
 * and epoch then the last process of this data dir that served it. */
static pm_rec_t
s_generation_rec(const char *space, const char *mint, uint64_t mint_pid, uint64_t generation)
{
    int other = mint && strcmp(mint, space) != 0;
    return (pm_rec_t){.kind = PM_REC_GENERATION, .space = space, .generation = generation,
                      .target = other ? mint : NULL, .epoch = other ? mint_pid : 0};
}

void
pm_journal_generation(pm_journal_t *self, const char *space, const char *mint,
                      uint64_t mint_pid, uint64_t generation)
{
    free(self->gen_space);
    free(self->gen_mint);
    self->gen_space = pm_xstrdup(space, "generation");
    self->gen_mint = pm_xstrdup(mint ? mint : space, "generation");
    self->generation = generation;
    self->gen_mint_pid = mint_pid;
    pm_rec_t rec = s_generation_rec(space, mint, mint_pid, generation);
    s_append(self, &rec, 0);
}

/* A WAL call's outcome rc: on an error the journal fails for good (the
 * kernel may have dropped what it had not written): logged, -1. */
static int
s_wal_io(pm_journal_t *self, int rc)
{
    if (rc == 0)
        return 0;
    self->failed = 1;
    pm_log_error("PM-WAL-IO", "cannot write the WAL: %s; acknowledgements stop",
                 pm_wal_error(self->wal));
    return -1;
}

int
pm_journal_sync(pm_journal_t *self)
{
    if (self->failed)
        return -1;
    return self->wal ? s_wal_io(self, pm_wal_sync(self->wal)) : 0;
}

void
pm_journal_claim(pm_journal_t *self, const char *space, uint64_t epoch)
{
    pm_rec_t rec = {.kind = PM_REC_GENERATION, .space = space, .generation = 0, .epoch = epoch};
    s_append(self, &rec, 0);
}

void
pm_journal_release(pm_journal_t *self, const char *space)
{
    pm_rec_t rec = {.kind = PM_REC_RELEASE, .space = space};
    s_append(self, &rec, 0);
}

void
pm_journal_snapshot_claim(pm_journal_t *self, const char *space, uint64_t epoch)
{
    pm_rec_t rec = {.kind = PM_REC_GENERATION, .space = space, .generation = 0, .epoch = epoch};
    s_append(self, &rec, 1);
}

void
pm_journal_snapshot_then(pm_journal_t *self, const char *p, const char *function, const char *q)
{
    pm_rec_t rec = pm_records_then(p, function, q);
    s_append(self, &rec, 1);
}

/* ---- replay --------------------------------------------------------------- */

typedef struct s_replay {
    pm_store_t *store;
    pm_journal_state_t *st;
    size_t then_cap;
    uint64_t refused;
} s_replay_t;

static void
s_then_add(s_replay_t *r, const pm_rec_t *rec)
{
    pm_journal_state_t *st = r->st;
    if (st->then_count == r->then_cap) {
        r->then_cap = r->then_cap ? r->then_cap * 2 : 64;
        st->thens =
            pm_xrealloc(st->thens, r->then_cap * sizeof *st->thens, "replayed continuations");
    }
    pm_cont_init(&st->thens[st->then_count++], rec);
}

/* A claim replaces an earlier one of the same space; a release removes it. */
static void
s_claim_set(pm_journal_state_t *st, const char *space, uint64_t epoch, int release)
{
    for (size_t i = 0; i < st->claimed_count; i++) {
        if (strcmp(st->claimed[i].space, space) != 0)
            continue;
        if (release) {
            free(st->claimed[i].space);
            st->claimed[i] = st->claimed[--st->claimed_count];
        } else {
            st->claimed[i].epoch = epoch;
        }
        return;
    }
    if (release)
        return;
    st->claimed = pm_xrealloc(st->claimed, (st->claimed_count + 1) * sizeof *st->claimed,
                              "replayed claims");
    st->claimed[st->claimed_count].space = pm_xstrdup(space, "replayed claim");
    st->claimed[st->claimed_count++].epoch = epoch ? epoch : 1;
}

static int
s_replay_one(void *arg, uint64_t lsn, const uint8_t *buf, size_t len)
{
    (void) lsn;
    s_replay_t *r = arg;
    pm_rec_t rec;
    int err = pm_wire_rec_decode(buf, len, &rec);
    if (err) {
        pm_wire_rec_release(&rec);
        pm_log_error("PM-WAL-BAD-RECORD", "record at LSN %llu does not decode",
                     (unsigned long long) lsn);
        return -1;
    }
    r->st->records++;
    switch (rec.kind) {
    case PM_REC_GENERATION:
        if (rec.space && rec.generation == 0) {
            s_claim_set(r->st, rec.space, rec.epoch, 0);
            break;
        }
        if (rec.space) {
            snprintf(r->st->space, sizeof r->st->space, "%s", rec.space);
            int other = rec.target && *rec.target;
            snprintf(r->st->mint, sizeof r->st->mint, "%s", other ? rec.target : rec.space);
            r->st->mint_pid = other ? rec.epoch : 0;
        }
        if (rec.generation > r->st->generation)
            r->st->generation = rec.generation;
        break;
    case PM_REC_CREATE:
    case PM_REC_SETTLE:
    case PM_REC_HEARTBEAT:
    case PM_REC_DROP:
        /* Promises come back as they are restored from a backup's copy
         * (records.c), active: the agent passivates what it does not serve. */
        err = pm_records_apply(r->store, &rec, 0);
        break;
    case PM_REC_THEN:
    case PM_REC_COMBINE:
        s_then_add(r, &rec);
        break;
    case PM_REC_RELEASE:
        s_claim_set(r->st, rec.space, 0, 1);
        break;
    }
    if (err) {
        /* A record that does not apply (a create of an id that exists, a
         * settle of a dropped promise) means the log says something twice;
         * count it, keep the state that is there. */
        r->refused++;
    }
    pm_wire_rec_release(&rec);
    return 0;
}

int
pm_journal_replay(pm_journal_t *self, pm_store_t *store, pm_journal_state_t *st, char *err,
                  size_t errlen)
{
    memset(st, 0, sizeof *st);
    s_replay_t r = {.store = store, .st = st};
    int64_t t0 = pm_mono_ms();
    if (self->wal && pm_wal_replay(self->wal, s_replay_one, &r, err, errlen) != 0)
        return -1;
    /* Keep only the continuations whose new promise still waits. */
    size_t keep = 0;
    for (size_t i = 0; i < st->then_count; i++) {
        pm_prom_t *q = pm_store_get(store, st->thens[i].q);
        if (q && q->state == PM_STATE_PENDING) {
            st->thens[keep++] = st->thens[i];
        } else {
            pm_cont_clear(&st->thens[i]);
        }
    }
    st->then_count = keep;
    st->recovery_ms = pm_mono_ms() - t0;
    self->recovery_ms = st->recovery_ms;
    if (r.refused)
        pm_log_warn("PM-WAL-REDUNDANT", "%llu record(s) did not apply (already applied)",
                    (unsigned long long) r.refused);
    return 0;
}

void
pm_journal_state_free(pm_journal_state_t *st)
{
    for (size_t i = 0; i < st->claimed_count; i++)
        free(st->claimed[i].space);
    free(st->claimed);
    st->claimed = NULL;
    st->claimed_count = 0;
    for (size_t i = 0; i < st->then_count; i++)
        pm_cont_clear(&st->thens[i]);
    free(st->thens);
    st->thens = NULL;
    st->then_count = 0;
}

/* ---- the gate ------------------------------------------------------------- */

int
pm_journal_must_hold(const pm_journal_t *self)
{
    return self->q[0].head || self->q[1].head || s_durable(self) < s_appended(self) ||
           self->repl_acked < self->repl_produced || self->failed;
}

/* Whether a is at or before b. */
static int
s_before(const s_held_t *a, const s_held_t *b)
{
    return a->lsn < b->lsn || (a->lsn == b->lsn && a->rseq <= b->rseq);
}

pm_journal_pos_t
pm_journal_pos(const pm_journal_t *self)
{
    return (pm_journal_pos_t){.lsn = s_appended(self), .rseq = self->repl_produced};
}

int
pm_journal_covered(const pm_journal_t *self, pm_journal_pos_t pos)
{
    return !self->failed && pos.lsn <= s_durable(self) && pos.rseq <= self->repl_acked;
}

void
pm_journal_hold_at(pm_journal_t *self, pm_journal_pos_t pos, pm_journal_hold_fn *fn, void *item)
{
    s_held_t *h = pm_xcalloc(1, sizeof *h, "held result");
    h->lsn = pos.lsn;
    h->rseq = pos.rseq;
    h->fn = fn;
    h->item = item;
    /* In position order (both coordinates only grow, so one order serves
     * both): usually at the tail, as positions are taken as time goes. */
    s_queue_t *q = &self->q[2];
    if (!q->tail || s_before(q->tail, h)) {
        if (q->tail)
            q->tail->next = h;
        else
            q->head = h;
        q->tail = h;
    } else {
        s_held_t **at = &q->head;
        while (s_before(*at, h)) /* stops at the tail at the latest */
            at = &(*at)->next;
        h->next = *at;
        *at = h;
    }
    self->held++;
    PM_STEPTRACE_MARK("j_hold_own", "", 0);
}

void
pm_journal_repl(pm_journal_t *self, uint64_t produced, uint64_t acked)
{
    self->repl_produced = produced;
    if (acked > self->repl_acked) {
        self->repl_acked = acked;
        if (!self->failed)
            s_release(self, s_durable(self));
    }
}

void
pm_journal_set_record_hook(pm_journal_t *self, pm_journal_record_fn *fn, void *arg)
{
    self->record_hook = fn;
    self->record_arg = arg;
}

void
pm_journal_hold(pm_journal_t *self, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    pm_journal_hold_ex(self, session, peer, buf, len, 0, 0, 0, 0);
}

void
pm_journal_hold_ex(pm_journal_t *self, uint64_t session, const char *peer, uint8_t *buf,
                   size_t len, int wal_only, int tag, int64_t t0_us, int64_t deadline)
{
    /* A held reply dropped here would leave its request unanswered. */
    s_held_t *h = pm_xcalloc(1, sizeof *h, "held reply");
    if (peer)
        h->peer = pm_xstrdup(peer, "held reply");
    h->lsn = s_appended(self);
    h->rseq = wal_only ? 0 : self->repl_produced;
    h->tag = tag;
    h->t0_us = t0_us;
    /* A negative deadline is a bound (held_reply_timeout) at -deadline. */
    h->bound = deadline < 0;
    if (deadline < 0)
        deadline = -deadline;
    h->deadline = deadline;
    if (deadline && (!self->next_deadline || deadline < self->next_deadline))
        self->next_deadline = deadline;
    h->session = session;
    h->buf = buf;
    h->len = len;
    PM_STEPTRACE_MARK(wal_only ? "j_hold_ack" : "j_hold", "", 0);
    s_queue_t *q = &self->q[wal_only ? 1 : 0];
    if (q->tail)
        q->tail->next = h;
    else
        q->head = h;
    q->tail = h;
    self->held++;
}

/* Takes off queue q its tail not covered by the backups' acknowledgements
 * (q is in replication order). */
static s_held_t *
s_unreplicated_tail(pm_journal_t *self, s_queue_t *q)
{
    s_held_t **at = &q->head, *last = NULL;
    while (*at && (*at)->rseq <= self->repl_acked) {
        last = *at;
        at = &(*at)->next;
    }
    s_held_t *h = *at;
    *at = NULL;
    q->tail = last;
    return h;
}

size_t
pm_journal_fail_unreplicated(pm_journal_t *self, pm_journal_fail_fn *fail, void *arg)
{
    /* Queue 0 is in replication order: the replies not yet covered by the
     * backups' acknowledgements are its tail. */
    s_held_t *h = s_unreplicated_tail(self, &self->q[0]);
    size_t n = 0;
    while (h) {
        s_held_t *next = h->next;
        self->held--;
        n++;
        fail(arg, h->session, h->peer, h->buf, h->len);
        free(h->peer);
        free(h);
        h = next;
    }
    /* The own holds likewise (their fn may hold again: the tail is off the
     * queue first). */
    h = s_unreplicated_tail(self, &self->q[2]);
    while (h) {
        s_held_t *next = h->next;
        self->held--;
        n++;
        h->fn(h->item, PM_JOURNAL_FAILED);
        free(h);
        h = next;
    }
    return n;
}

size_t
pm_journal_expire(pm_journal_t *self, int64_t now, pm_journal_fail_fn *fail,
                  pm_journal_fail_fn *fail_bound, void *arg)
{
    if (!self->next_deadline || now < self->next_deadline)
        return 0;
    size_t n = 0;
    int64_t next = 0;
    for (int i = 0; i < 2; i++) {
        s_queue_t *q = &self->q[i];
        s_held_t **at = &q->head, *last = NULL;
        while (*at) {
            s_held_t *h = *at;
            if (!h->deadline || h->deadline > now) {
                if (h->deadline && (!next || h->deadline < next))
                    next = h->deadline;
                last = h;
                at = &h->next;
                continue;
            }
            *at = h->next;
            self->held--;
            n++;
            (h->bound ? fail_bound : fail)(arg, h->session, h->peer, h->buf, h->len);
            free(h->peer);
            free(h);
        }
        q->tail = last;
    }
    self->next_deadline = next;
    return n;
}

int
pm_journal_flush(pm_journal_t *self)
{
    if (self->failed)
        return -1;
    if (self->wal && s_wal_io(self, pm_wal_flush(self->wal)) != 0)
        return -1;
    uint64_t before = s_appended(self);
    s_release(self, s_durable(self));
    if (s_appended(self) == before)
        return 0;
    /* What it released appended records (an own hold: a result settling
     * its target): written now rather than at the next wake-up, which may
     * be far (the next step of a chain waits for them). */
    if (self->wal && s_wal_io(self, pm_wal_flush(self->wal)) != 0)
        return -1;
    return 1;
}

void *
pm_journal_socket(pm_journal_t *self)
{
    return self->wal ? pm_wal_socket(self->wal) : NULL;
}

void
pm_journal_readable(pm_journal_t *self)
{
    pm_wal_readable(self->wal);
    if (!self->failed)
        s_release(self, s_durable(self));
}

/* ---- compaction ----------------------------------------------------------- */

int
pm_journal_maybe_compact(pm_journal_t *self, pm_store_t *store, pm_journal_extra_fn *extra,
                         void *arg)
{
    if (!self->wal || !self->gen_space)
        return 0;
    uint64_t log = pm_wal_log_bytes(self->wal);
    uint64_t live = (uint64_t) pm_store_count(store, 0) * S_RECORD_ESTIMATE;
    if (self->failed || log < S_COMPACT_MIN_BYTES || log < live * S_COMPACT_FACTOR)
        return 0;
    int64_t t0 = pm_mono_ms();
    self->snapshot_failed = 0;
    if (pm_wal_snapshot_begin(self->wal) != 0)
        goto fail;
    pm_rec_t gen =
        s_generation_rec(self->gen_space, self->gen_mint, self->gen_mint_pid, self->generation);
    s_append(self, &gen, 1);
    for (pm_prom_t *p = pm_store_oldest(store); p; p = p->newer)
        pm_records_of_promise(p, s_snapshot_record, self);
    if (extra(arg, self) != 0 || self->snapshot_failed ||
        pm_wal_snapshot_commit(self->wal) != 0) {
        pm_wal_snapshot_abort(self->wal);
        goto fail;
    }
    self->snapshots++;
    pm_log_info("PM-WAL-SNAPSHOT", "compacted %llu log bytes into a snapshot of %zu promises "
                "in %lld ms", (unsigned long long) log, pm_store_count(store, 0),
                (long long) (pm_mono_ms() - t0));
    return 1;
fail:
    pm_log_error("PM-WAL-SNAPSHOT", "snapshot failed: %s", pm_wal_error(self->wal));
    return -1;
}

void
pm_journal_stats_fill(pm_journal_t *self, pm_stats_t *out)
{
    pm_wal_stats_t ws = {0};
    if (self->wal)
        pm_wal_stats(self->wal, &ws);
    out->parts |= PM_STATS_WAL;
    out->wal_appended = s_appended(self);
    out->wal_durable = s_durable(self);
    out->wal_fsyncs = ws.fsyncs;
    out->wal_log_bytes = self->wal ? pm_wal_log_bytes(self->wal) : 0;
    out->wal_held = self->held;
    out->wal_snapshots = self->snapshots;
    out->wal_recovery_ms = (uint64_t) self->recovery_ms;
    out->wal_recovered_records = ws.records;
    out->wal_failed = self->failed != 0;
    if (self->wal) {
        out->parts |= PM_STATS_FSYNC;
        out->wal_fsync = *pm_wal_fsync_hist(self->wal);
    }
}
