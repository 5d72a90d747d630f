/*
 * isr.c - see isr.h: it states the rules R1-R8 (R8, the hand-back of a
 * space to its home node's restarted agent, with its drain, and why it is
 * safe and live) and this file applies them.
 */
#include "isr.h"

#include "base.h"
#include "ids.h"
#include "log.h"
#include "pmesh.h"
#include "stats.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A change the store could not make (down, or an unknown outcome) is tried
 * again after this, doubling up to the cap. */
#define S_BACKOFF_MS 100
#define S_BACKOFF_MAX_MS 2000
/* How often the spaces are looked at when nothing changed (a backup caught
 * up, a member died): far below failure detection, and off the hot loop. */
#define S_SCAN_MS 10
/* R8: a drain that has not finished in this long is abandoned (writes are
 * accepted again), and the space is not handed back again before this. */
#define S_OWNERS_SEEN 8
#define S_HANDBACK_MS 3000
#define S_HANDBACK_RETRY_MS 1000
/* R8: how often what depends on a space is counted while it waits (a scan
 * of the agent's promises). */
#define S_HANDBACK_DEPS_MS 100

/* ---- the coordinator ------------------------------------------------------------------ */

typedef enum {
    S_OP_NONE,
    S_OP_GET,
    S_OP_CREATE,
    S_OP_SET,
    S_OP_TAKEOVER,
    S_OP_FORCE,
    S_OP_DELETE,
    S_OP_CLOSE, /* rewrites the record as read, closing our failed takeover attempt */
    S_OP_HANDBACK /* R8: gives the space to its home node's process, after the drain */
} s_op_t;

static const char *const s_op_names[] = {"none", "get", "create", "set", "takeover", "force",
                                         "delete", "close", "handback"};

typedef struct s_space {
    pm_coord_record_t rec; /* the latest we know (rec.revision 0: none) */
    s_op_t op;             /* a request under way */
    uint64_t req;
    s_op_t confirm;        /* a GET re-reading after a write of unknown outcome */
    pm_coord_record_t proposed;
    int64_t retry_at;
    int64_t backoff;
    int waiting;           /* a change waits for the store (counted once) */
    uint64_t try_epoch;    /* our takeover attempt's epoch (0: none) ... */
    int64_t try_rev;       /* ... made from this revision of the record */
    int refresh;           /* re-read the record (something says it moved) */
    uint64_t base_lsn;     /* produced when we started serving it (a backup joins past it) */
    int retire;            /* R7: the agent retired it; delete our record of it */
    /* An operator's force-owner waiting for its answer (0: none): the
     * session and request to answer (pm_isr_force), and the record's owner
     * and epoch it replaces. */
    uint64_t force_session, force_req;
    char force_was[PM_COORD_NAME_MAX];
    uint64_t force_was_epoch;
    /* The record's owner process, not the one its node runs as far as we
     * know, since when (PM_ISR_OTHER_GRACE_MS). */
    uint64_t other_pid;
    int64_t other_since;
    /* R8: 0 no hand-back; 1 draining (writes refused) until the gate has
     * acknowledged hb_lsn; 2 its CAS is under way (or its outcome is being
     * read again). To (hb_node, hb_pid), since hb_since; not tried again
     * before hb_retry_at. */
    int hb;
    char hb_node[PM_COORD_NAME_MAX];
    uint64_t hb_pid, hb_lsn;
    /* The owner processes recorded for the space as far as we have seen
     * (the last S_OWNERS_SEEN, as the watch brought them): never the
     * target of a hand-back. Such a process may be alive (fenced, cut off)
     * and still serve the space at its old epoch with its own copy; named
     * owner at a newer epoch it went on serving that copy (pmesh-sim seeds
     * 4710, 5966: its writes refused by its backups for good, reads
     * silent), and its copy may hold writes it never had acknowledged. */
    pm_coord_member_t owners_seen[S_OWNERS_SEEN];
    size_t n_owners_seen;
    int64_t hb_since, hb_retry_at, hb_deps_at;
    /* A record naming us owner that we did not write (a hand-back, or an
     * operator's force) came while a change of ours was under way: served
     * once that change has settled (pm_isr_tick). */
    int given;
} s_space_t;

/* R7: what stays of a deleted record, for the rest of this process: the
 * epoch it fences (R4: a stale owner cut off before the deletion must still
 * find its records refused here) and the revision of the deletion (answers
 * older than it are not taken for the space coming back). */
typedef struct s_tomb {
    uint64_t epoch;
    int64_t rev;
} s_tomb_t;

struct pm_isr {
    pm_isr_env_t env;
    void *arg;
    char node[PM_COORD_NAME_MAX];
    char primary[PM_COORD_NAME_MAX];
    pm_coord_t *coord;
    char url[256];
    uint64_t pid;
    char prefix[256];
    uint64_t prev; /* the process whose WAL we replayed (0: none, or not durable) */
    char mint[PM_COORD_NAME_MAX]; /* mint.h: the space we mint in again ("": none) */
    uint64_t mint_prev; /* the last process of our data dir that served it (0: none) */
    int min_in_sync;
    zhashx_t *spaces; /* name -> s_space_t (owned) */
    zhashx_t *tombs;  /* name -> s_tomb_t (owned): records deleted (R7) */
    int primary_seen; /* our primary's record existed once: never created again (R7) */
    uint64_t list_req, watch_req;
    int listed, watching, store_up;
    int64_t list_retry_at, list_backoff;
    int64_t now;
    int64_t next_scan; /* the spaces are looked at every S_SCAN_MS, or at once on a change */
    int dirty;         /* a record or a request changed: scan and recompute the gate */
    uint64_t retries, waits, takeovers, forced, set_changes, refused_writes, moved, refreshes;
    uint64_t deleted; /* records of spaces we retired, deleted by us (R7) */
    /* R8: the space we are handing back ("": none; one at a time); spaces
     * handed back by us, given back to us, hand-backs abandoned. */
    char hb_space[PM_COORD_NAME_MAX];
    uint64_t handed_back, given_back, handbacks_abandoned;
};

static s_space_t *
s_space(pm_isr_t *self, const char *name)
{
    s_space_t *s = zhashx_lookup(self->spaces, name);
    if (!s) {
        s = pm_xcalloc(1, sizeof *s, "coordination");
        snprintf(s->rec.space, sizeof s->rec.space, "%s", name);
        s->backoff = S_BACKOFF_MS;
        zhashx_insert(self->spaces, name, s);
    }
    return s;
}

static void
s_space_free(void **item)
{
    free(*item);
    *item = NULL;
}

pm_isr_t *
pm_isr_new(const pm_isr_config_t *cfg, const pm_isr_env_t *env, void *arg, char *err,
           size_t errlen)
{
    pm_coord_config_t cc = {.url = cfg->url, .prefix = cfg->prefix, .zmq_ctx = cfg->zmq_ctx,
                            .mem = cfg->mem, .ca_file = cfg->ca_file,
                            .cert_file = cfg->cert_file, .key_file = cfg->key_file};
    pm_coord_t *c = pm_coord_new(&cc, err, errlen);
    if (!c)
        return NULL;
    const char *url = cfg->url, *prefix = cfg->prefix;
    pm_isr_t *self = pm_xcalloc(1, sizeof *self, "coordination");
    self->env = *env;
    self->arg = arg;
    snprintf(self->node, sizeof self->node, "%s", cfg->node);
    snprintf(self->primary, sizeof self->primary, "%s", cfg->primary);
    self->coord = c;
    self->pid = cfg->pid;
    self->prev = cfg->prev;
    if (cfg->mint && cfg->mint_prev) {
        snprintf(self->mint, sizeof self->mint, "%s", cfg->mint);
        self->mint_prev = cfg->mint_prev;
    }
    self->min_in_sync = cfg->min_in_sync;
    self->store_up = 1;
    self->list_backoff = S_BACKOFF_MS;
    snprintf(self->url, sizeof self->url, "%s", url);
    snprintf(self->prefix, sizeof self->prefix, "%s", prefix);
    self->spaces = zhashx_new();
    if (!self->spaces)
        pm_oom("coordination");
    zhashx_set_destructor(self->spaces, s_space_free);
    self->tombs = zhashx_new();
    if (!self->tombs)
        pm_oom("coordination");
    zhashx_set_destructor(self->tombs, s_space_free);
    return self;
}

void
pm_isr_destroy(pm_isr_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_isr_t *self = *self_p;
    pm_coord_destroy(&self->coord);
    zhashx_destroy(&self->spaces);
    zhashx_destroy(&self->tombs);
    free(self);
    *self_p = NULL;
}

pm_coord_t *
pm_isr_coord(pm_isr_t *self)
{
    return self->coord;
}

void *
pm_isr_socket(pm_isr_t *self)
{
    return pm_coord_socket(self->coord);
}

static int
s_ours(pm_isr_t *self, const pm_coord_record_t *r)
{
    return r->revision && r->owner_pid == self->pid && strcmp(r->owner, self->node) == 0;
}

/* Whether (node, pid) is the process alive there now, as far as we know. */
static int
s_proc_alive(pm_isr_t *self, const char *node, uint64_t pid)
{
    if (strcmp(node, self->node) == 0)
        return pid == self->pid;
    return self->env.alive(self->arg, node, pid) == PM_ISR_ALIVE;
}

/* Whether the owner recorded for s is the process alive there now. A
 * process we have not heard of on a node that runs another one may be its
 * successor, just started: it counts as alive for PM_ISR_OTHER_GRACE_MS from
 * when we first saw it recorded (taking its spaces would be safe, by CAS,
 * but would take a live agent's spaces from it). */
static int
s_alive(pm_isr_t *self, s_space_t *s)
{
    const char *node = s->rec.owner;
    uint64_t pid = s->rec.owner_pid;
    if (strcmp(node, self->node) == 0)
        return pid == self->pid;
    int k = self->env.alive(self->arg, node, pid);
    if (k != PM_ISR_OTHER)
        return k == PM_ISR_ALIVE;
    if (s->other_pid != pid) {
        s->other_pid = pid;
        s->other_since = self->now;
    }
    return self->now < s->other_since + PM_ISR_OTHER_GRACE_MS;
}

void
pm_isr_start(pm_isr_t *self)
{
    self->list_req = pm_coord_list(self->coord);
    /* Our new primary: nothing in it yet, so nobody else holds anything of
     * it; its record is created once the list has come back. */
    s_space(self, self->primary);
}

static void
s_wait(pm_isr_t *self, s_space_t *s, const char *what, const char *why)
{
    s->retry_at = self->now + s->backoff;
    if (!s->waiting) {
        s->waiting = 1;
        self->waits++;
        pm_log_warn("PM-COORD-WAIT", "id space %s: %s waits for the configuration store (%s); "
                    "retrying", s->rec.space, what, why);
    } else {
        self->retries++;
    }
    s->backoff = s->backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : s->backoff * 2;
}

/* A shrink the store cannot record: nothing is acknowledged until it is
 * (R2), so the replies held for changes not yet at every recorded member
 * end now with UNAVAILABLE ("may not have happened") rather than wait for
 * the store; new writes are refused meanwhile (pm_isr_write_check). */
static void
s_fail_held(pm_isr_t *self, s_space_t *s, s_op_t op)
{
    if (op != S_OP_SET || !s_ours(self, &s->rec))
        return;
    int shrinks = 0;
    for (size_t i = 0; i < s->rec.n_in_sync; i++)
        shrinks |= !pm_isr_rule_has(s->proposed.in_sync, s->proposed.n_in_sync, &s->rec.in_sync[i]);
    if (!shrinks)
        return;
    size_t n = self->env.fail_held(self->arg, PM_ERR_UNAVAILABLE,
                                   "a backup was lost and the configuration store cannot "
                                   "record the smaller in-sync set: this change is not "
                                   "acknowledged and may not have happened");
    if (n)
        pm_log_warn("PM-COORD-REPLIES-FAILED", "%zu held repl%s answered UNAVAILABLE: id space "
                    "%s lost a backup and the store cannot record it", n, n == 1 ? "y" : "ies",
                    s->rec.space);
}

static void
s_done_waiting(pm_isr_t *self, s_space_t *s)
{
    if (s->waiting)
        pm_log_info("PM-COORD-RETRY", "id space %s: the configuration store answered again",
                    s->rec.space);
    s->waiting = 0;
    s->backoff = S_BACKOFF_MS;
    (void) self;
}

/* Answers an operator's force-owner waiting on s (if any): err 0 with the
 * JSON of the outcome, or an error with its reason. */
static void
s_force_reply(pm_isr_t *self, s_space_t *s, int err, const char *text)
{
    if (!s->force_session)
        return;
    if (self->env.forced)
        self->env.forced(self->arg, s->force_session, s->force_req, err, text);
    s->force_session = s->force_req = 0;
}

/* R7: s's record was deleted (by us, or its owner) at revision rev: nobody
 * owns the space any more and nobody ever will (a record is created only
 * for a new primary, under a new name). We stop serving it if we did,
 * forget it, and keep its epoch as a fence for the rest of this process. */
static void
s_forget(pm_isr_t *self, s_space_t *s, int64_t rev)
{
    char name[PM_COORD_NAME_MAX];
    snprintf(name, sizeof name, "%s", s->rec.space);
    uint64_t epoch = s->rec.revision ? s->rec.epoch : 0, mine = 0;
    if (s->op == S_OP_DELETE || s->confirm == S_OP_DELETE || s->retire) {
        self->deleted++;
        pm_log_info("PM-COORD-DELETED", "id space %s retired: its record (epoch %llu) is "
                    "deleted from the configuration store", name, (unsigned long long) epoch);
    } else if (strcmp(name, self->primary) == 0) {
        pm_log_error("PM-COORD-DELETED", "the record of our primary id space %s was deleted "
                     "(another agent took it over and retired it while we were cut off): "
                     "we stop serving it", name);
    }
    if (self->env.serves(self->arg, name, &mine)) {
        self->moved++;
        pm_log_error("PM-COORD-MOVED", "id space %s: its record was deleted from the "
                     "configuration store (we served it at epoch %llu): we stop serving it",
                     name, (unsigned long long) mine);
        self->env.drop(self->arg, name);
    }
    char why[PM_COORD_NAME_MAX + 96];
    snprintf(why, sizeof why, "id space %s has no record in the configuration store (it was "
             "retired): nothing forced", name);
    s_force_reply(self, s, PM_ERR_NOT_FOUND, why);
    s_tomb_t *t = zhashx_lookup(self->tombs, name);
    if (!t) {
        t = pm_xcalloc(1, sizeof *t, "coordination");
        zhashx_insert(self->tombs, name, t);
    }
    if (epoch > t->epoch)
        t->epoch = epoch;
    if (rev > t->rev)
        t->rev = rev;
    if (strcmp(self->hb_space, name) == 0)
        self->hb_space[0] = 0;
    zhashx_delete(self->spaces, name); /* frees s */
    self->dirty = 1;
}

/* Remembers r's owner process among those s has had (R8). */
static void
s_owner_seen(s_space_t *s, const pm_coord_record_t *r)
{
    pm_coord_member_t m = {.pid = r->owner_pid};
    snprintf(m.node, sizeof m.node, "%s", r->owner);
    if (!r->owner[0] || pm_isr_rule_has(s->owners_seen, s->n_owners_seen, &m))
        return;
    if (s->n_owners_seen == S_OWNERS_SEEN) {
        memmove(s->owners_seen, s->owners_seen + 1, (S_OWNERS_SEEN - 1) * sizeof m);
        s->n_owners_seen--;
    }
    s->owners_seen[s->n_owners_seen++] = m;
}

/* A record of a space we did not know, or a newer one: R4. mine: it is
 * the answer to our own write (not an operator's force). */
static void
s_learn_ex(pm_isr_t *self, const pm_coord_record_t *r, int mine_op)
{
    s_tomb_t *t = zhashx_lookup(self->tombs, r->space);
    if (t) {
        /* An answer from before the deletion: the space is gone. (A record
         * after it would be a re-creation, which no agent makes: taken as
         * it comes, should an operator have put one.) */
        if (r->revision <= t->rev)
            return;
        zhashx_delete(self->tombs, r->space);
    }
    if (strcmp(r->space, self->primary) == 0)
        self->primary_seen = 1;
    s_space_t *s = s_space(self, r->space);
    if (s->rec.revision && r->revision && r->revision < s->rec.revision)
        return;
    uint64_t was = s->rec.revision ? s->rec.epoch : 0;
    s->rec = *r;
    s_owner_seen(s, r);
    int given = !mine_op && s_ours(self, r) && r->epoch > was && was &&
                !self->env.serves(self->arg, r->space, NULL);
    if (given && (s->op != S_OP_NONE || s->confirm != S_OP_NONE)) {
        /* Our own change is under way (a takeover attempt racing the
         * hand-back): once it has settled, the record decides (tick). */
        s->given = 1;
        return;
    }
    if (given && r->n_in_sync) {
        /* Not our CAS, and the old owner kept in sync: R8, the space's
         * owner (an heir) gave it back to us, its in-sync member. */
        self->given_back++;
        pm_log_info("PM-COORD-HANDED-BACK", "id space %s was given back to us by %s at epoch "
                    "%llu: we serve it from our copy (an in-sync member's)", r->space,
                    r->in_sync[r->n_in_sync - 1].node, (unsigned long long) r->epoch);
        self->env.take(self->arg, r->space, r->epoch, "given back by its owner (R8)");
        s->base_lsn = self->env.produced(self->arg);
        s->retire = 0;
        return;
    }
    if (given) {
        /* Not our CAS: an operator's `pmesh space force-owner`. */
        self->forced++;
        pm_log_error("PM-COORD-FORCED", "id space %s was forced to us at epoch %llu with an "
                     "empty in-sync set: we serve it from our copy, and what its lost owner "
                     "acknowledged that we lack is lost", r->space,
                     (unsigned long long) r->epoch);
        self->env.take(self->arg, r->space, r->epoch, "forced by an operator");
        s->base_lsn = self->env.produced(self->arg);
        return;
    }
    uint64_t mine = 0;
    if (!s_ours(self, r) && s->hb == 2 && r->owner_pid == s->hb_pid &&
        strcmp(r->owner, s->hb_node) == 0 && r->epoch == s->proposed.epoch &&
        self->env.serves(self->arg, r->space, NULL)) {
        /* R8: our hand-back happened (its answer, or the watch first). */
        self->handed_back++;
        pm_log_info("PM-COORD-HANDBACK", "id space %s given back to %s (its home, in sync) at "
                    "epoch %llu: we stop serving it", r->space, r->owner,
                    (unsigned long long) r->epoch);
        self->env.drop(self->arg, r->space);
    } else if (!s_ours(self, r) && self->env.serves(self->arg, r->space, &mine)) {
        self->moved++;
        pm_log_error("PM-COORD-MOVED", "id space %s is owned by %s at epoch %llu in the "
                     "configuration store (we served it at epoch %llu): we stop serving it",
                     r->space, r->owner, (unsigned long long) r->epoch,
                     (unsigned long long) mine);
        self->env.drop(self->arg, r->space);
    }
}

static void
s_learn(pm_isr_t *self, const pm_coord_record_t *r)
{
    s_learn_ex(self, r, 0);
}

static void
s_succeeded(pm_isr_t *self, s_space_t *s, s_op_t op, const pm_coord_record_t *r)
{
    s_learn_ex(self, r, 1);
    s_done_waiting(self, s);
    if (op == S_OP_SET) {
        self->set_changes++;
        pm_log_info("PM-COORD-INSYNC", "id space %s: %zu backup%s recorded in sync at epoch "
                    "%llu", r->space, r->n_in_sync, r->n_in_sync == 1 ? "" : "s",
                    (unsigned long long) r->epoch);
    } else if ((op == S_OP_TAKEOVER || op == S_OP_FORCE) &&
               !self->env.serves(self->arg, r->space, NULL)) {
        if (op == S_OP_TAKEOVER)
            self->takeovers++;
        else
            self->forced++;
        char why[160];
        snprintf(why, sizeof why, "%s by the configuration store",
                 op == S_OP_FORCE ? "forced by an operator" : "taken over");
        if (op == S_OP_FORCE)
            pm_log_error("PM-COORD-FORCED", "id space %s was forced to us at epoch %llu with "
                         "an empty in-sync set (pmesh space force-owner --accept-data-loss): "
                         "we serve it from our copy, and what its lost owner acknowledged "
                         "that we lack is lost", r->space, (unsigned long long) r->epoch);
        self->env.take(self->arg, r->space, r->epoch, why);
        s->base_lsn = self->env.produced(self->arg);
        s->retire = 0;
    }
    if (op == S_OP_FORCE && s->force_session) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I}", "space", r->space, "owner",
                              r->owner, "owner_pid", "", "epoch", (json_int_t) r->epoch,
                              "was_owner", s->force_was, "was_epoch",
                              (json_int_t) s->force_was_epoch);
        char pid[24];
        snprintf(pid, sizeof pid, "%llu", (unsigned long long) r->owner_pid);
        if (o)
            json_object_set_new(o, "owner_pid", json_string(pid));
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text)
            pm_oom("coordination");
        s_force_reply(self, s, 0, text);
        free(text);
    }
}

static void s_try_takeover(pm_isr_t *self, s_space_t *s, int force);

static void
s_on_result(pm_isr_t *self, pm_coord_result_t *res)
{
    if (res->req == self->list_req) {
        self->list_req = 0;
        if (res->status != PM_COORD_OK) {
            self->store_up = 0;
            self->list_retry_at = self->now + self->list_backoff;
            self->list_backoff = self->list_backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS
                                                                           : self->list_backoff * 2;
            self->retries++;
            pm_log_warn("PM-COORD-WAIT", "reading the configuration store at start: %s (%s); "
                        "retrying", pm_coord_status_name(res->status), res->message);
            return;
        }
        self->store_up = 1;
        self->listed = 1;
        for (size_t i = 0; i < res->n_records; i++)
            s_learn(self, &res->records[i]);
        if (!self->watching) {
            self->watch_req = pm_coord_watch(self->coord, res->revision + 1);
            self->watching = 1;
        }
        pm_log_info("PM-COORD-READY", "configuration store %s: %zu id space%s at revision "
                    "%lld", self->url, res->n_records, res->n_records == 1 ? "" : "s",
                    (long long) res->revision);
        return;
    }
    if (res->req == self->watch_req) {
        if (res->kind == PM_COORD_WATCH) {
            self->store_up = res->status == PM_COORD_OK;
        } else if (res->kind == PM_COORD_EVENT && res->n_records && !res->deleted) {
            s_learn(self, &res->records[0]);
        } else if (res->kind == PM_COORD_EVENT && res->n_records && res->deleted) {
            s_space_t *s = zhashx_lookup(self->spaces, res->records[0].space);
            if (s)
                s_forget(self, s, res->revision); /* R7 */
        } else if (res->kind == PM_COORD_RESYNC) {
            for (size_t i = 0; i < res->n_records; i++)
                s_learn(self, &res->records[i]);
            /* What the list no longer has was deleted meanwhile (R7). */
            zlistx_t *gone = zlistx_new();
            if (!gone)
                pm_oom("coordination");
            for (s_space_t *s = zhashx_first(self->spaces); s; s = zhashx_next(self->spaces)) {
                int listed = 0;
                for (size_t i = 0; i < res->n_records && !listed; i++)
                    listed = strcmp(res->records[i].space, s->rec.space) == 0;
                if (!listed && s->rec.revision && s->rec.revision <= res->revision)
                    zlistx_add_end(gone, s);
            }
            for (s_space_t *s = zlistx_first(gone); s; s = zlistx_next(gone))
                s_forget(self, s, res->revision);
            zlistx_destroy(&gone);
        }
        return;
    }
    s_space_t *s = NULL;
    for (s_space_t *x = zhashx_first(self->spaces); x; x = zhashx_next(self->spaces))
        if (x->req == res->req && x->op != S_OP_NONE)
            s = x;
    if (!s)
        return;
    s_op_t op = s->op;
    s->op = S_OP_NONE;
    s->req = 0;
    if (res->status == PM_COORD_OK)
        self->store_up = 1;
    if (op == S_OP_GET) {
        s_op_t confirm = s->confirm;
        s->confirm = S_OP_NONE;
        if (res->status == PM_COORD_OK && res->n_records) {
            if (confirm != S_OP_NONE && confirm != S_OP_DELETE &&
                pm_coord_record_same(&res->records[0], &s->proposed)) {
                s_succeeded(self, s, confirm, &res->records[0]); /* it had happened */
                return;
            }
            /* (A delete that did not happen leaves the record as it was:
             * R7 tries again from the revision it finds.) */
            s_done_waiting(self, s);
            s_learn(self, &res->records[0]);
            if (s->force_session && confirm == S_OP_NONE) {
                /* An operator's force, from the record just read. */
                if (s_ours(self, &s->rec) && self->env.serves(self->arg, s->rec.space, NULL)) {
                    char why[PM_COORD_NAME_MAX + 96];
                    snprintf(why, sizeof why, "id space %s is ours already (epoch %llu): "
                             "nothing forced", s->rec.space, (unsigned long long) s->rec.epoch);
                    s_force_reply(self, s, PM_ERR_BAD_REQUEST, why);
                    return;
                }
                snprintf(s->force_was, sizeof s->force_was, "%s", s->rec.owner);
                s->force_was_epoch = s->rec.epoch;
                s_try_takeover(self, s, 1);
                if (s->op != S_OP_FORCE)
                    s_force_reply(self, s, PM_ERR_INTERNAL, "cannot send the change");
            }
        } else if (res->status == PM_COORD_NOT_FOUND) {
            s_done_waiting(self, s);
            if (s->rec.revision || confirm == S_OP_DELETE) {
                if (confirm == S_OP_DELETE)
                    s->op = S_OP_DELETE; /* it had happened: ours */
                s_forget(self, s, res->revision); /* deleted (R7) */
                return;
            }
            memset(&s->rec, 0, sizeof s->rec);
            snprintf(s->rec.space, sizeof s->rec.space, "%s", s->proposed.space);
        } else {
            if (confirm == S_OP_NONE && s->force_session) {
                char why[640];
                snprintf(why, sizeof why, "reading the record of id space %s: the "
                         "configuration store answered %s (%.200s): nothing forced",
                         s->rec.space, pm_coord_status_name(res->status), res->message);
                s_force_reply(self, s, PM_ERR_UNAVAILABLE, why);
            }
            s->confirm = confirm;
            s->refresh = confirm == S_OP_NONE; /* a re-read that failed: again */
            s_wait(self, s, s_op_names[confirm ? confirm : S_OP_GET], res->message);
            s_fail_held(self, s, confirm);
        }
        return;
    }
    if (op == S_OP_CLOSE) {
        /* Either rewrite moved the record past the revision our attempt
         * compared against (it can never apply now), or the revision had
         * moved already: the record as it is now is what we learn. */
        if ((res->status == PM_COORD_OK || res->status == PM_COORD_CONFLICT) &&
            res->n_records) {
            s_done_waiting(self, s);
            if (res->status == PM_COORD_OK)
                pm_log_info("PM-COORD-CLOSED", "id space %s: our takeover attempt at epoch "
                            "%llu did not happen; closed (it no longer fences %s's records)",
                            s->rec.space, (unsigned long long) s->try_epoch, s->rec.owner);
            s_learn(self, &res->records[0]);
        } else if (res->status == PM_COORD_NOT_FOUND) {
            s->refresh = 1;
        } else {
            s_wait(self, s, s_op_names[op], res->message);
        }
        return;
    }
    char why[768];
    switch (res->status) {
    case PM_COORD_OK:
        if (op == S_OP_DELETE) {
            s->op = S_OP_DELETE; /* s_forget counts it as ours */
            s_done_waiting(self, s);
            s_forget(self, s, res->revision);
            break;
        }
        s_succeeded(self, s, op, &res->records[0]);
        break;
    case PM_COORD_CONFLICT:
        /* Decides nothing: re-read (the answer carries the current record)
         * and apply the rules again. */
        s_done_waiting(self, s);
        if (res->n_records)
            s_learn(self, &res->records[0]);
        if (op == S_OP_TAKEOVER)
            pm_log_info("PM-COORD-LOST-RACE", "id space %s: another agent changed its record "
                        "first (now %s at epoch %llu)", s->rec.space, s->rec.owner,
                        (unsigned long long) s->rec.epoch);
        if (op == S_OP_FORCE) {
            snprintf(why, sizeof why, "id space %s changed meanwhile (now %s at epoch %llu): "
                     "nothing forced; look again", s->rec.space, s->rec.owner,
                     (unsigned long long) s->rec.epoch);
            s_force_reply(self, s, PM_ERR_UNAVAILABLE, why);
        }
        break;
    case PM_COORD_NOT_FOUND:
        if (s->rec.revision || op == S_OP_DELETE) {
            if (op == S_OP_DELETE)
                s->op = S_OP_DELETE;
            s_forget(self, s, res->revision); /* deleted (R7) */
            break;
        }
        memset(&s->rec, 0, sizeof s->rec);
        snprintf(s->rec.space, sizeof s->rec.space, "%s", s->proposed.space);
        break;
    default:
        /* Unknown outcome: re-read before deciding. */
        self->store_up = res->status != PM_COORD_UNAVAILABLE ? self->store_up : 0;
        s->confirm = op;
        s_wait(self, s, s_op_names[op], res->message);
        s_fail_held(self, s, op);
        if (op == S_OP_FORCE) {
            snprintf(why, sizeof why, "the configuration store did not answer (%s %.200s): the "
                     "change may or may not have happened; this agent reads the record again "
                     "and serves id space %s if it did (pmesh status: coordination.spaces)",
                     pm_coord_status_name(res->status), res->message, s->rec.space);
            s_force_reply(self, s, PM_ERR_UNAVAILABLE, why);
        }
        break;
    }
}

void
pm_isr_readable(pm_isr_t *self, int64_t now)
{
    self->now = now;
    pm_coord_result_t *res;
    while (pm_coord_recv(self->coord, &res) == 0) {
        self->dirty = 1;
        s_on_result(self, res);
        pm_coord_result_destroy(&res);
    }
}

static void
s_cas(pm_isr_t *self, s_space_t *s, s_op_t op, const pm_coord_record_t *rec)
{
    s->proposed = *rec;
    s->op = op;
    s->req = op == S_OP_CREATE ? pm_coord_create(self->coord, rec)
                               : pm_coord_cas(self->coord, s->rec.revision, rec);
    if (!s->req)
        s->op = S_OP_NONE;
}

/* R2 for a space we own: the wanted set is the backups of ours (same
 * process) that are recorded or hold everything acknowledged and all of this
 * space. 1 if the set must change (dry: nothing is sent). */
static int
s_reconcile(pm_isr_t *self, s_space_t *s, int dry)
{
    pm_coord_member_t want[PM_COORD_MAX_INSYNC];
    size_t n = 0;
    uint64_t gate = self->env.acked(self->arg);
    uint64_t need = gate > s->base_lsn ? gate : s->base_lsn;
    const char *name;
    uint64_t pid, acked;
    int counted;
    for (size_t i = 0; n < PM_COORD_MAX_INSYNC &&
                       self->env.backup(self->arg, i, &name, &pid, &acked, &counted);
         i++) {
        pm_coord_member_t m = {.pid = pid};
        snprintf(m.node, sizeof m.node, "%s", name);
        if (!pid)
            continue;
        int member = pm_isr_rule_has(s->rec.in_sync, s->rec.n_in_sync, &m);
        if (member || (counted && acked >= need))
            want[n++] = m;
    }
    if (pm_isr_rule_same_set(want, n, s->rec.in_sync, s->rec.n_in_sync))
        return 0;
    if (dry)
        return 1;
    pm_coord_record_t next;
    pm_isr_rule_set(&s->rec, want, n, &next);
    s_cas(self, s, S_OP_SET, &next);
    return 1;
}

/* R8: the hand-back of s ends (done, failed or abandoned); why: logged when
 * it was abandoned while we still own the space. */
static void
s_hb_end(pm_isr_t *self, s_space_t *s, const char *why)
{
    if (why && s_ours(self, &s->rec)) {
        self->handbacks_abandoned++;
        pm_log_info("PM-COORD-HANDBACK-ABANDONED", "id space %s: not given back to %s now (%s); "
                    "writes accepted again, tried again later", s->rec.space, s->hb_node, why);
    }
    s->hb = 0;
    s->hb_retry_at = self->now + S_HANDBACK_RETRY_MS;
    if (strcmp(self->hb_space, s->rec.space) == 0)
        self->hb_space[0] = 0;
}

/* R8: a space we own whose home node's current process is a recorded
 * in-sync member starts its drain. 1 if it did. */
static int
s_hb_start(pm_isr_t *self, s_space_t *s)
{
    char home[PM_COORD_NAME_MAX];
    if (self->hb_space[0] || !self->store_up || s->retire || self->now < s->hb_retry_at ||
        strcmp(s->rec.space, self->primary) == 0 ||
        !pm_space_node(s->rec.space, home, sizeof home) || strcmp(home, self->node) == 0)
        return 0;
    const pm_coord_member_t *to = NULL;
    for (size_t i = 0; i < s->rec.n_in_sync && !to; i++)
        if (strcmp(s->rec.in_sync[i].node, home) == 0 &&
            !pm_isr_rule_has(s->owners_seen, s->n_owners_seen, &s->rec.in_sync[i]) &&
            s_proc_alive(self, s->rec.in_sync[i].node, s->rec.in_sync[i].pid))
            to = &s->rec.in_sync[i];
    if (!to || s_reconcile(self, s, 1))
        return 0; /* no home process in sync, or the set must change first (R2) */
    if (self->env.dependants && self->env.dependants(self->arg, s->rec.space)) {
        /* Something here would be orphaned by the move: not now. */
        s->hb_retry_at = self->now + S_HANDBACK_RETRY_MS;
        return 0;
    }
    s->hb = 1;
    snprintf(s->hb_node, sizeof s->hb_node, "%s", to->node);
    s->hb_pid = to->pid;
    s->hb_lsn = self->env.produced(self->arg);
    s->hb_since = self->now;
    snprintf(self->hb_space, sizeof self->hb_space, "%s", s->rec.space);
    pm_log_info("PM-COORD-HANDBACK-DRAIN", "id space %s: its home %s (process %llu) is in sync; "
                "refusing writes to it until everything produced for it is acknowledged, then "
                "giving it back", s->rec.space, to->node, (unsigned long long) to->pid);
    return 1;
}

/* R8: a draining space: CAS once the gate has acknowledged everything
 * produced before the drain; abandoned if it cannot finish. */
static void
s_hb_drain(pm_isr_t *self, s_space_t *s)
{
    const char *why = NULL;
    if (!self->store_up)
        why = "the configuration store is down";
    else if (!pm_isr_rule_member(&s->rec, s->hb_node, s->hb_pid))
        why = "its home process left the in-sync set";
    else if (!s_proc_alive(self, s->hb_node, s->hb_pid))
        why = "its home process is no longer alive";
    else if (s_reconcile(self, s, 1))
        why = "the in-sync set must change first";
    else if (self->now >= s->hb_since + S_HANDBACK_MS)
        why = "the drain did not finish in time";
    if (why) {
        s_hb_end(self, s, why);
        s_reconcile(self, s, 0);
        return;
    }
    if (self->env.acked(self->arg) < s->hb_lsn)
        return; /* the drain goes on */
    if (self->env.dependants && self->now < s->hb_deps_at)
        return;
    if (self->env.dependants && self->env.dependants(self->arg, s->rec.space)) {
        /* A continuation or placement on the space is still running (its
         * source settled before the drain): it finishes first. */
        s->hb_deps_at = self->now + S_HANDBACK_DEPS_MS;
        return;
    }
    pm_coord_record_t next;
    if (pm_isr_rule_handback(&s->rec, s->hb_node, s->hb_pid, self->node, self->pid, &next) != 0) {
        s_hb_end(self, s, "the rule refuses it");
        return;
    }
    pm_log_info("PM-COORD-HANDBACK-CAS", "id space %s: drained (everything produced for it is "
                "acknowledged by its in-sync set); giving it to %s at epoch %llu", s->rec.space,
                s->hb_node, (unsigned long long) next.epoch);
    s->hb = 2;
    s_cas(self, s, S_OP_HANDBACK, &next);
    if (s->op == S_OP_NONE)
        s_hb_end(self, s, "cannot send the change");
}

/* The gate (R1): every member recorded for a space we own, and every member
 * a change under way adds. */
static void
s_gate(pm_isr_t *self)
{
    const char *nodes[PM_COORD_MAX_INSYNC];
    uint64_t pids[PM_COORD_MAX_INSYNC];
    pm_coord_member_t all[PM_COORD_MAX_INSYNC];
    size_t n = 0;
    for (s_space_t *s = zhashx_first(self->spaces); s; s = zhashx_next(self->spaces)) {
        /* A retired space (R7) holds nothing and is served no more: no
         * acknowledgement depends on its members. */
        if (!s_ours(self, &s->rec) || s->retire)
            continue;
        for (int pass = 0; pass < 2; pass++) {
            const pm_coord_record_t *r = pass ? &s->proposed : &s->rec;
            if (pass && !(s->op == S_OP_SET || s->confirm == S_OP_SET))
                continue;
            for (size_t i = 0; i < r->n_in_sync && n < PM_COORD_MAX_INSYNC; i++)
                if (!pm_isr_rule_has(all, n, &r->in_sync[i]))
                    all[n++] = r->in_sync[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        nodes[i] = all[i].node;
        pids[i] = all[i].pid;
    }
    self->env.gate(self->arg, nodes, pids, n);
}

/* R3 for us: the process before us on our data dir stands in for us; for
 * the space we mint in again (mint.h), so does the last process of our data
 * dir that served it (its WAL is in ours: the processes between us resumed
 * and replayed it, none of them served the space). */
static int
s_rule_takeover(pm_isr_t *self, const s_space_t *s, pm_coord_record_t *next)
{
    if (pm_isr_rule_takeover(&s->rec, self->node, self->pid, self->prev, next) == 0)
        return 0;
    return self->mint_prev && strcmp(s->rec.space, self->mint) == 0
               ? pm_isr_rule_takeover(&s->rec, self->node, self->pid, self->mint_prev, next)
               : -1;
}

static void
s_try_takeover(pm_isr_t *self, s_space_t *s, int force)
{
    pm_coord_record_t next;
    if (force)
        pm_isr_rule_force(&s->rec, self->node, self->pid, &next);
    else if (s_rule_takeover(self, s, &next) != 0)
        return;
    /* From this attempt on, the old epoch's records are refused here, until
     * the record moves past the revision the attempt was made from. */
    s->try_epoch = next.epoch;
    s->try_rev = s->rec.revision;
    if (force)
        pm_log_warn("PM-COORD-FORCE", "id space %s: an operator forces us to own it (was %s at "
                    "epoch %llu); taking it at epoch %llu with an empty in-sync set",
                    s->rec.space, s->rec.owner, (unsigned long long) s->rec.epoch,
                    (unsigned long long) next.epoch);
    else
        pm_log_warn("PM-COORD-TAKEOVER", "id space %s: owner %s is gone; taking it over at "
                    "epoch %llu", s->rec.space, s->rec.owner, (unsigned long long) next.epoch);
    s_cas(self, s, force ? S_OP_FORCE : S_OP_TAKEOVER, &next);
}

void
pm_isr_tick(pm_isr_t *self, int64_t mono)
{
    self->now = mono;
    if (!self->listed) {
        if (!self->list_req && mono >= self->list_retry_at)
            self->list_req = pm_coord_list(self->coord);
        s_gate(self);
        return;
    }
    if (!self->dirty && mono < self->next_scan)
        return;
    self->dirty = 0;
    self->next_scan = mono + S_SCAN_MS;
    for (s_space_t *s = zhashx_first(self->spaces); s; s = zhashx_next(self->spaces)) {
        if (s->op != S_OP_NONE)
            continue;
        /* R8: a hand-back whose CAS settled (given, or failed), or a drain
         * of a space no longer ours, is over. */
        if (s->hb && s->confirm == S_OP_NONE && (s->hb == 2 || !s_ours(self, &s->rec)))
            s_hb_end(self, s, s->hb == 2 ? "its record changed meanwhile" : NULL);
        if (mono < s->retry_at)
            continue;
        if (s->given && s->confirm == S_OP_NONE) {
            /* A record naming us owner, not ours, came while our own change
             * was under way (R8 racing our takeover attempt): serve it. */
            s->given = 0;
            if (s_ours(self, &s->rec) && !self->env.serves(self->arg, s->rec.space, NULL)) {
                if (s->rec.n_in_sync) {
                    self->given_back++;
                    pm_log_info("PM-COORD-HANDED-BACK", "id space %s was given back to us at "
                                "epoch %llu: we serve it from our copy (an in-sync member's)",
                                s->rec.space, (unsigned long long) s->rec.epoch);
                } else {
                    self->forced++;
                    pm_log_error("PM-COORD-FORCED", "id space %s was forced to us at epoch %llu "
                                 "with an empty in-sync set: we serve it from our copy, and what "
                                 "its lost owner acknowledged that we lack is lost", s->rec.space,
                                 (unsigned long long) s->rec.epoch);
                }
                self->env.take(self->arg, s->rec.space, s->rec.epoch,
                               s->rec.n_in_sync ? "given back by its owner (R8)"
                                                : "forced by an operator");
                s->base_lsn = self->env.produced(self->arg);
                s->retire = 0;
            }
        }
        if (s->confirm != S_OP_NONE) { /* re-read after an unknown outcome */
            s->op = S_OP_GET;
            s->req = pm_coord_get(self->coord, s->rec.space);
            continue;
        }
        if (!s->rec.revision) {
            /* R5: our new primary, once: a record that existed and was
             * deleted is never created again (R7). */
            if (strcmp(s->rec.space, self->primary) == 0 && !self->primary_seen) {
                pm_coord_record_t rec = {.owner_pid = self->pid, .epoch = 1};
                snprintf(rec.space, sizeof rec.space, "%s", self->primary);
                snprintf(rec.owner, sizeof rec.owner, "%s", self->node);
                s_cas(self, s, S_OP_CREATE, &rec);
            }
            continue;
        }
        if (s->retire) { /* R7: delete our record, at the revision we know */
            if (!s_ours(self, &s->rec)) {
                s->retire = 0; /* not ours any more: not ours to delete */
                continue;
            }
            s->proposed = s->rec;
            s->op = S_OP_DELETE;
            s->req = pm_coord_delete(self->coord, s->rec.space, s->rec.revision);
            if (!s->req)
                s->op = S_OP_NONE;
            continue;
        }
        if (s->refresh) { /* something says it moved: R4 re-reads */
            s->refresh = 0;
            s->op = S_OP_GET;
            s->req = pm_coord_get(self->coord, s->rec.space);
            if (!s->req)
                s->op = S_OP_NONE;
            continue;
        }
        if (s->try_epoch && s->rec.revision == s->try_rev && !s_ours(self, &s->rec) &&
            s_alive(self, s)) {
            /* Our takeover attempt's outcome was unknown and the record
             * still reads as it was when we made it, with its owner alive
             * again: the attempt fences that owner's records here (R4)
             * until the record moves past that revision, and nothing else
             * may ever move it (a stalled owner waits on us, its in-sync
             * member). Rewriting the record as read, by CAS at that very
             * revision, settles it: at most one of the two compares can
             * hold, so once the rewrite applies the attempt never can. */
            s->proposed = s->rec;
            s->op = S_OP_CLOSE;
            s->req = pm_coord_cas(self->coord, s->rec.revision, &s->rec);
            if (!s->req)
                s->op = S_OP_NONE;
            continue;
        }
        if (s_ours(self, &s->rec)) {
            if (s->hb)
                s_hb_drain(self, s);
            else if (!s_reconcile(self, s, 0))
                s_hb_start(self, s);
        } else if (!s_alive(self, s)) {
            pm_coord_record_t next;
            if (s_rule_takeover(self, s, &next) == 0)
                s_try_takeover(self, s, 0);
        }
    }
    s_gate(self);
}

void
pm_isr_member_down(pm_isr_t *self, int64_t now)
{
    self->dirty = 1;
    pm_isr_tick(self, now);
}

uint64_t
pm_isr_fence_epoch(pm_isr_t *self, const char *space)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s) {
        /* R7: a deleted record still fences what a stale owner sends. */
        s_tomb_t *t = zhashx_lookup(self->tombs, space);
        return t ? t->epoch : 0;
    }
    uint64_t e = s->rec.revision ? s->rec.epoch : 0;
    /* Our attempt may still win while the record is at the revision it was
     * made from (revisions only rise: once moved past it, its compare can
     * never hold again). */
    if (s->try_epoch > e && s->rec.revision <= s->try_rev)
        e = s->try_epoch;
    return e;
}

void
pm_isr_retire(pm_isr_t *self, const char *space)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || s->retire || !s_ours(self, &s->rec) || strcmp(space, self->primary) == 0)
        return;
    s->retire = 1;
    self->dirty = 1;
    pm_log_info("PM-COORD-RETIRE", "id space %s retired: deleting its record (epoch %llu) from "
                "the configuration store", space, (unsigned long long) s->rec.epoch);
}

int
pm_isr_force(pm_isr_t *self, const char *space, uint64_t session, uint64_t req, char *msg,
             size_t msglen)
{
    if (!pm_coord_space_ok(space)) {
        snprintf(msg, msglen, "'%.200s' is not an id space name", space ? space : "");
        return PM_ERR_BAD_REQUEST;
    }
    if (!self->listed) {
        snprintf(msg, msglen, "the configuration store has not been read yet (%s): nothing "
                 "forced; try again", self->store_up ? "reading it" : "it is down");
        return PM_ERR_UNAVAILABLE;
    }
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s->rec.revision) {
        snprintf(msg, msglen, "id space %s has no record in the configuration store: nothing "
                 "forced", space);
        return PM_ERR_NOT_FOUND;
    }
    if (s->op != S_OP_NONE || s->confirm != S_OP_NONE || s->force_session) {
        snprintf(msg, msglen, "id space %s: a change of its record is under way (%s): nothing "
                 "forced; try again", space,
                 s_op_names[s->op != S_OP_NONE ? s->op : s->confirm ? s->confirm : S_OP_FORCE]);
        return PM_ERR_UNAVAILABLE;
    }
    /* Read the record first, then CAS from that revision: the force
     * replaces exactly what the operator's agent saw, never a change it
     * did not see. */
    s->force_session = session ? session : 1;
    s->force_req = req;
    s->retire = 0;
    s->op = S_OP_GET;
    s->req = pm_coord_get(self->coord, space);
    if (!s->req) {
        s->op = S_OP_NONE;
        s->force_session = s->force_req = 0;
        snprintf(msg, msglen, "cannot send the request");
        return PM_ERR_INTERNAL;
    }
    pm_log_warn("PM-COORD-FORCE", "id space %s: an operator asks us to own it, accepting the "
                "loss of what its lost owner acknowledged and we lack (pmesh space "
                "force-owner); reading its record", space);
    return 0;
}

void
pm_isr_refresh(pm_isr_t *self, const char *space, const char *why)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s->rec.revision || s->refresh || s->op == S_OP_GET)
        return;
    s->refresh = 1;
    self->dirty = 1;
    self->refreshes++;
    pm_log_info("PM-COORD-CHECK", "id space %s: %s; asking the configuration store who owns it",
                space, why);
}

const char *
pm_isr_live_owner(pm_isr_t *self, const char *space, uint64_t *epoch)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s->rec.revision || !s->rec.owner[0] || !s_alive(self, s))
        return NULL;
    if (epoch)
        *epoch = s->rec.epoch;
    return s->rec.owner;
}

int
pm_isr_resumable(pm_isr_t *self, const char *space)
{
    if (!self->listed)
        return -1;
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s->rec.revision)
        return 0;
    if (s_ours(self, &s->rec))
        return 1;
    if (s->op == S_OP_TAKEOVER || s->confirm == S_OP_TAKEOVER)
        return 2;
    if (s_alive(self, s))
        return 3;
    pm_coord_record_t next;
    return s_rule_takeover(self, s, &next) == 0 ? 2 : 0;
}

const char *
pm_isr_handing_back(pm_isr_t *self)
{
    return self->hb_space[0] ? self->hb_space : NULL;
}

int
pm_isr_write_check(pm_isr_t *self, const char *space, char *msg, size_t msglen)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s_ours(self, &s->rec)) {
        snprintf(msg, msglen, "id space %s: its ownership is not recorded in the configuration "
                 "store yet (%s)", space, self->store_up ? "reading it" : "the store is down");
        self->refused_writes++;
        return PM_ERR_UNAVAILABLE;
    }
    if (s->hb) {
        /* R8: draining; a write now is refused rather than accepted and
         * then lost with the move. */
        snprintf(msg, msglen, "id space %s is being given back to its home agent %s: nothing "
                 "was done; try again (its new owner serves it in a moment)", space, s->hb_node);
        self->refused_writes++;
        return PM_ERR_UNAVAILABLE;
    }
    /* A recorded member that is no longer our backup (dead, restarted, cut
     * off): nothing is acknowledged until the smaller set is recorded (R2),
     * so a write now is refused rather than held (a minority side of a
     * split, cut off from the store, refuses writes this way). */
    for (size_t i = 0; i < s->rec.n_in_sync; i++) {
        const char *name;
        uint64_t pid, acked;
        int counted, found = 0;
        for (size_t j = 0;
             !found && self->env.backup(self->arg, j, &name, &pid, &acked, &counted); j++)
            found = pid == s->rec.in_sync[i].pid && strcmp(name, s->rec.in_sync[i].node) == 0;
        if (!found) {
            snprintf(msg, msglen, "id space %s: backup %s is lost and the smaller in-sync set "
                     "is not recorded yet (%s): writes wait for it", space,
                     s->rec.in_sync[i].node,
                     self->store_up ? "recording it" : "the configuration store is down");
            self->refused_writes++;
            return PM_ERR_UNAVAILABLE;
        }
    }
    if ((int64_t) s->rec.n_in_sync < self->min_in_sync) {
        snprintf(msg, msglen, "id space %s: %zu backup%s recorded in sync, min_in_sync is %d: "
                 "writes wait until a backup has caught up", space, s->rec.n_in_sync,
                 s->rec.n_in_sync == 1 ? "" : "s", self->min_in_sync);
        self->refused_writes++;
        return PM_ERR_UNAVAILABLE;
    }
    return 0;
}

int
pm_isr_route_check(pm_isr_t *self, const char *space, char *msg, size_t msglen)
{
    s_space_t *s = zhashx_lookup(self->spaces, space);
    if (!s || !s->rec.revision || s_alive(self, s))
        return 0;
    for (size_t i = 0; i < s->rec.n_in_sync; i++)
        if (s_proc_alive(self, s->rec.in_sync[i].node, s->rec.in_sync[i].pid))
            return 0; /* it takes over: wait for it */
    snprintf(msg, msglen, "id space %s: its owner %s is down and no member of its in-sync set "
             "(%zu recorded) is alive; it waits for one to come back (or pmesh space "
             "force-owner)", space, s->rec.owner, s->rec.n_in_sync);
    return PM_ERR_UNAVAILABLE;
}

void
pm_isr_stats_fill(pm_isr_t *self, pm_stats_t *out)
{
    pm_coord_stats_t cs;
    pm_coord_stats(self->coord, &cs);
    size_t waiting = 0;
    for (s_space_t *s = zhashx_first(self->spaces); s; s = zhashx_next(self->spaces)) {
        waiting += s->waiting;
        if (!s->rec.revision)
            continue;
        pm_stats_space_t *sp = pm_stats_add_space(out, s->rec.space, s->rec.owner);
        sp->in_sync = pm_xcalloc(s->rec.n_in_sync + 1, sizeof *sp->in_sync, "stats in_sync");
        for (size_t i = 0; i < s->rec.n_in_sync; i++)
            sp->in_sync[i] = pm_stats_str(s->rec.in_sync[i].node);
        sp->n_in_sync = s->rec.n_in_sync;
        sp->epoch = s->rec.epoch;
        sp->ours = s_ours(self, &s->rec) != 0;
    }
    char pid[24];
    snprintf(pid, sizeof pid, "%llu", (unsigned long long) self->pid);
    out->parts |= PM_STATS_COORD;
    out->co_store = pm_stats_str(self->url);
    out->co_prefix = pm_stats_str(self->prefix);
    out->co_node = pm_stats_str(self->node);
    out->co_pid = pm_stats_str(pid);
    out->co_store_up = self->store_up != 0;
    out->co_ready = self->listed != 0;
    out->co_waiting = waiting;
    out->co_retries = self->retries;
    out->co_takeovers = self->takeovers;
    out->co_forced = self->forced;
    out->co_set_changes = self->set_changes;
    out->co_refused_writes = self->refused_writes;
    out->co_refreshes = self->refreshes;
    out->co_requests = cs.requests;
    out->co_min_in_sync = (uint64_t) self->min_in_sync;
}
