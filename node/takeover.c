/*
 * takeover.c - the id spaces this agent serves (rules in spaces.h): records
 * to the backups, an owner's records applied to our copy (fenced in
 * backup.c), a dead member's spaces taken over by its heir, our spaces
 * moving away, spaces resumed after a restart, empty spaces retired.
 */

#include "takeover.h"

#include "isr.h"

#include "fanins.h"
#include "mint.h"
#include "place.h"
#include "relay.h"
#include "session.h"
#include "thens.h"
#include "waiters.h"

/* What a snapshot keeps besides the promises: continuations (ours and those
 * of spaces we back up) and the spaces we serve or may resume. */
static int
s_snapshot_extra(void *arg, pm_journal_t *j)
{
    pm_agent_t *self = arg;
    for (pm_then_t *t = self->thens; t; t = t->next) {
        pm_rec_t rec = pm_then_rec(t);
        pm_journal_snapshot_cont(j, &rec);
    }
    pm_fanins_snapshot(self, j);
    for (pm_rthen_t *t = zhashx_first(self->rthens); t; t = zhashx_next(self->rthens)) {
        pm_rec_t rec = pm_cont_rec(&t->c);
        pm_journal_snapshot_cont(j, &rec);
    }
    for (size_t i = 0; i < self->probation.n; i++)
        pm_journal_snapshot_claim(j, self->probation.v[i].space, self->probation.v[i].epoch);
    if (self->mesh) {
        const char *const *spaces;
        const uint64_t *epochs;
        size_t n = pm_mesh_served(self->mesh, &spaces, &epochs);
        for (size_t i = 0; i < n; i++)
            if (strcmp(spaces[i], self->space) != 0 || epochs[i] > 1)
                pm_journal_snapshot_claim(j, spaces[i], epochs[i]);
    }
    return 0;
}

/* Whether space is the primary a live member announces: one that lost it
 * while cut off still mints there, sending creates to whoever serves it. */
static int
s_space_is_live_primary(pm_agent_t *self, const char *space)
{
    char node[PM_WIRE_MAX_NAME + 1];
    if (!pm_space_node(space, node, sizeof node))
        return 0;
    const char *primary = pm_mesh_primary_of(self->mesh, node);
    return pm_mesh_is_up(self->mesh, node) && primary && strcmp(primary, space) == 0;
}

/* Spaces we serve besides our primary that hold no promise any more are
 * given up: every restart leaves a space behind for its heir, and without
 * this they would pile up in the metadata we gossip. Nothing new is ever
 * minted in them (new ids go to primaries), so an empty one stays empty. */
static void
s_retire_empty(pm_agent_t *self)
{
    const char *const *spaces;
    const uint64_t *epochs;
    size_t n = pm_mesh_served(self->mesh, &spaces, &epochs);
    if (n <= 1)
        return;
    zhashx_t *used = zhashx_new();
    if (!used)
        pm_oom("retiring spaces");
    /* Neighbours in the store mostly share a space: hash only on a change. */
    char space[PM_WIRE_MAX_NAME + 1] = "";
    size_t slen = 0;
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (slen && pm_id_in_space(p->id, space, slen))
            continue;
        slen = pm_id_space(p->id, space, sizeof space);
        if (slen)
            zhashx_insert(used, space, (void *) "");
    }
    /* Continuations count too (a then's source or target, a backed-up
     * one): a space one of them names is not empty. */
    for (pm_then_t *t = self->thens; t; t = t->next) {
        if (pm_id_space(t->source, space, sizeof space))
            zhashx_insert(used, space, (void *) "");
        if (pm_id_space(t->target, space, sizeof space))
            zhashx_insert(used, space, (void *) "");
    }
    for (pm_rthen_t *t = zhashx_first(self->rthens); t; t = zhashx_next(self->rthens))
        if (pm_id_space(zhashx_cursor(self->rthens), space, sizeof space))
            zhashx_insert(used, space, (void *) "");
    zlistx_t *empty = pm_agent_xlist();
    for (size_t i = 0; i < n; i++)
        if (pm_spaces_retire(pm_mint_is_ours(self, spaces[i]),
                             zhashx_lookup(used, spaces[i]) != NULL,
                             s_space_is_live_primary(self, spaces[i])))
            zlistx_add_end(empty, pm_xstrdup(spaces[i], "retiring spaces"));
    zhashx_destroy(&used);
    for (char *sp = zlistx_first(empty); sp; sp = zlistx_next(empty)) {
        pm_log_info("PM-SPACE-RETIRED", "id space %s holds no promise any more: no longer "
                    "served", sp);
        pm_mesh_unclaim(self->mesh, sp);
        pm_claims_drop(&self->probation, sp);
        if (self->journal)
            pm_journal_release(self->journal, sp);
        if (self->isr) /* R7: its record leaves the configuration store */
            pm_isr_retire(self->isr, sp);
        self->retired++;
        free(sp);
    }
    zlistx_destroy(&empty);
}

/* Once a second: drop promises past retention; now and then, compact; every
 * retire_interval, give up served spaces left empty. */
void
pm_takeover_housekeeping(pm_agent_t *self, int64_t mono)
{
    if (mono < self->next_expire)
        return;
    self->next_expire = mono + 1000;
    /* Bounded per pass so a large backlog never stalls the reactor. */
    pm_store_expire(self->store, self->now_real - self->retention, 100000);
    if (self->journal && mono >= self->next_compact) {
        self->next_compact = mono + 5000;
        pm_journal_maybe_compact(self->journal, self->store, s_snapshot_extra, self);
    }
    if (self->mesh && mono >= self->next_retire) {
        self->next_retire = mono + self->retire_interval;
        s_retire_empty(self);
    }
}

/* Journal hook: a record was written; records of spaces we serve go to the
 * backups too. */
void
pm_takeover_on_record(void *arg, const pm_rec_t *rec, const uint8_t *buf, size_t len)
{
    pm_agent_t *self = arg;
    if (!self->replica || rec->kind == PM_REC_GENERATION || !rec->promise.id)
        return;
    char space[PM_WIRE_MAX_NAME + 1];
    if (pm_id_space(rec->promise.id, space, sizeof space) &&
        pm_mesh_owns(self->mesh, space, NULL)) {
        pm_replica_record(self->replica, space, buf, len);
        /* A reply held from now on waits for this record at the backups. */
        pm_journal_repl(self->journal, pm_replica_produced(self->replica), 0);
    }
}

/* Whether next (the record after a create of id in the same message; NULL:
 * none) shows that the owner holds id pending: an owner streams a promise's
 * create and, if it has it settled, its settle right after it. */
static int
s_pending_at_owner(const char *id, const pm_bytes_t *next)
{
    pm_rec_t n;
    if (!next || pm_wire_rec_decode(next->data, next->len, &n) != PM_OK) {
        if (next)
            pm_wire_rec_release(&n);
        return 0;
    }
    int pending = !(n.kind == PM_REC_SETTLE && n.promise.id && strcmp(n.promise.id, id) == 0);
    pm_wire_rec_release(&n);
    return pending;
}

/* A create record a message ended with (agent->stale_tail). */
typedef struct s_tail {
    uint64_t stream, xfer; /* the message's */
    size_t len;
    uint8_t buf[];
} s_tail_t;

void
pm_takeover_stale_destructor(void **item)
{
    free(*item);
    *item = NULL;
}

/* Applies one replicated record to our (passive) copy; next: the record
 * after it in the same message (NULL: none). */
static void
s_apply_record(pm_agent_t *self, const pm_msg_t *msg, const uint8_t *buf, size_t len,
               const pm_bytes_t *next)
{
    pm_rec_t rec;
    if (pm_wire_rec_decode(buf, len, &rec) != PM_OK) {
        pm_wire_rec_release(&rec);
        pm_agent_bad_frame(self, "replicated record does not decode");
        return;
    }
    const pm_wire_promise_t *p = &rec.promise;
    if (rec.kind == PM_REC_THEN || rec.kind == PM_REC_COMBINE) {
        pm_cont_t c;
        pm_cont_init(&c, &rec);
        pm_then_rthen_add(self, &c);
        pm_cont_clear(&c);
        if (self->journal) /* so a restart of ours still knows it */
            pm_journal_cont(self->journal, &rec);
    } else {
        /* A record that does not apply leaves the copy as it is, as the WAL
         * replay does, but for a stale outcome of our copy (records.h). */
        pm_prom_t *q = rec.kind == PM_REC_CREATE ? pm_store_get(self->store, p->id) : NULL;
        int stale = q && q->passive && q->state != PM_STATE_PENDING;
        if (stale && !next && msg) {
            /* The message ends here: its owner's next message of the same
             * stream says whether a settle follows (on_replicate). */
            s_tail_t *t = pm_xmalloc(sizeof *t + len, "replicated record");
            t->stream = msg->stream;
            t->xfer = msg->full ? msg->xfer : 0;
            t->len = len;
            memcpy(t->buf, buf, len);
            zhashx_update(self->stale_tail, msg->from ? msg->from : "", t);
        }
        int mode = stale && s_pending_at_owner(p->id, next) ? PM_RECORDS_PENDING_AT_OWNER : 1;
        pm_records_apply(self->store, &rec, mode);
        if (rec.kind == PM_REC_SETTLE)
            zhashx_delete(self->rthens, p->id); /* its continuation is done */
    }
    pm_wire_rec_release(&rec);
}

/* An owner's records for us to keep. */
void
pm_takeover_on_replicate(pm_agent_t *self, const char *from, const pm_msg_t *m)
{
    uint64_t mine = 0, known = pm_mesh_epoch(self->mesh, m->space);
    /* R4: the epoch the configuration store has (or that we try to take
     * over at) fences older records too. */
    if (self->isr && pm_isr_fence_epoch(self->isr, m->space) > known)
        known = pm_isr_fence_epoch(self->isr, m->space);
    /* So does the epoch our previous process served it at (its WAL): a
     * restarted owner that does not know yet of the newer epoch must not
     * take a stale owner's state over the newer copy it holds (tests/sim
     * seed 5943 --fsync batch: an acknowledged settle replaced). */
    for (size_t i = 0; i < self->served_before.n; i++)
        if (!strcmp(self->served_before.v[i].space, m->space) &&
            self->served_before.v[i].epoch > known)
            known = self->served_before.v[i].epoch;
    int owned = pm_mesh_owns(self->mesh, m->space, &mine);
    pm_session_t *peer = pm_session_peer(self, from);
    /* Fenced (its sender lost the space), or only what follows on what we
     * hold, with no hole before it, is applied and acknowledged (backup.h). */
    pm_backup_claims_t claims = {.self_node = self->node, .owned = owned, .mine = mine,
                                 .known = known};
    pm_backup_verdict_t v;
    pm_backup_check(self->backup, from, m, &claims, self->now_mono, &v);
    if (v.fenced) {
        pm_msg_t nack = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .fenced = 1,
                         .epoch = v.fence_epoch, .stream = m->stream};
        if (peer)
            pm_agent_send(self, peer, &nack);
        pm_log_warn("PM-REPL-FENCED", "refused records of %s from %s at epoch %llu (we know "
                    "epoch %llu)", m->space, from, (unsigned long long) m->epoch,
                    (unsigned long long) nack.epoch);
        return;
    }
    size_t first = v.apply ? v.skip : m->record_count;
    /* The create the owner's last message ended with: stale in our copy if
     * this message, which follows it, does not start with its settle. */
    s_tail_t *tail = zhashx_lookup(self->stale_tail, from);
    if (tail) {
        int same = tail->stream == m->stream && tail->xfer == (m->full ? m->xfer : 0);
        if (same && first < m->record_count) {
            s_apply_record(self, NULL, tail->buf, tail->len, &m->records[first]);
        } else if (same && m->full && !m->record_count && v.ack) {
            /* The transfer's end, complete: nothing follows it. */
            pm_rec_t rec;
            if (pm_wire_rec_decode(tail->buf, tail->len, &rec) == PM_OK &&
                rec.kind == PM_REC_CREATE)
                pm_records_apply(self->store, &rec, PM_RECORDS_PENDING_AT_OWNER);
            pm_wire_rec_release(&rec);
        }
        zhashx_delete(self->stale_tail, from);
    }
    pm_msg_t src = *m;
    src.from = from;
    for (size_t i = first; i < m->record_count; i++)
        s_apply_record(self, &src, m->records[i].data, m->records[i].len,
                       i + 1 < m->record_count ? &m->records[i + 1] : NULL);
    if (!peer)
        return;
    if (v.resync) {
        pm_log_warn("PM-REPL-GAP", "records of %s from %s: %s; asking for its whole state",
                    m->space, from, v.why);
        pm_msg_t req = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .resync = 1,
                        .stream = m->stream};
        pm_agent_send(self, peer, &req);
    } else if (v.ack) {
        pm_msg_t ack = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .lsn = v.lsn,
                        .stream = m->stream};
        pm_agent_send(self, peer, &ack); /* held by the journal until durable here */
    }
}

/* records.h emitter: one record of a full state, to the replica. */
typedef struct s_full_ctx {
    pm_replica_t *r;
    pm_replica_add_fn *add;
    const char *space;
} s_full_ctx_t;

static void
s_full_emit(void *arg, const pm_rec_t *rec)
{
    s_full_ctx_t *ctx = arg;
    size_t len;
    uint8_t *buf = pm_wire_rec_encode(rec, &len);
    if (!buf) /* a transfer missing a record would be counted as a whole copy */
        pm_oom("encoding a record of a state transfer");
    ctx->add(ctx->r, ctx->space, buf, len);
    free(buf);
}

/* Replica hook: every record of `only` (a space just claimed) or, NULL, of
 * every space we serve, for a new backup or after a takeover. */
void
pm_takeover_full_state(void *arg, pm_replica_t *r, const char *only, pm_replica_add_fn *add)
{
    pm_agent_t *self = arg;
    char space[PM_WIRE_MAX_NAME + 1];
    s_full_ctx_t ctx = {r, add, space};
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (!pm_id_space(p->id, space, sizeof space) ||
            (only ? strcmp(space, only) != 0 : !pm_mesh_owns(self->mesh, space, NULL)))
            continue;
        pm_records_of_promise(p, s_full_emit, &ctx);
    }
    for (pm_then_t *t = self->thens; t; t = t->next) {
        if (!pm_id_space(t->target, space, sizeof space) ||
            (only ? strcmp(space, only) != 0 : !pm_mesh_owns(self->mesh, space, NULL)))
            continue;
        pm_rec_t rec = pm_then_rec(t);
        s_full_emit(&ctx, &rec);
    }
    for (pm_comb_t *c = self->combs ? zhashx_first(self->combs) : NULL; c;
         c = zhashx_next(self->combs)) {
        pm_rec_t rec = pm_fanins_rec(c);
        if (!pm_id_space(rec.promise.id, space, sizeof space) ||
            (only ? strcmp(space, only) != 0 : !pm_mesh_owns(self->mesh, space, NULL)))
            continue;
        s_full_emit(&ctx, &rec);
    }
}

/* We serve space from now on: its promises' timers run, its continuations
 * are ours, its state goes to our backups. */
void
pm_takeover_take_space(pm_agent_t *self, const char *space, uint64_t epoch, const char *why)
{
    int64_t t0 = pm_mono_ms(); /* (for the log line only) */
    pm_mesh_claim(self->mesh, space, epoch);
    char prefix[PM_WIRE_MAX_NAME + 2];
    pm_id_space_prefix(prefix, sizeof prefix, space);
    size_t n = pm_store_activate(self->store, prefix);
    size_t nthen = 0;
    zlistx_t *mine = pm_agent_xlist();
    for (pm_rthen_t *t = zhashx_first(self->rthens); t; t = zhashx_next(self->rthens))
        if (strncmp(t->c.q, prefix, strlen(prefix)) == 0)
            zlistx_add_end(mine, t);
    for (pm_rthen_t *t = zlistx_first(mine); t; t = zlistx_next(mine)) {
        pm_then_revive(self, &t->c);
        zhashx_delete(self->rthens, t->c.q);
        nthen++;
    }
    zlistx_destroy(&mine);
    self->takeovers++;
    pm_claims_drop(&self->probation, space);
    /* So a restart of ours serves it again, unless somebody else does. */
    if (self->journal)
        pm_journal_claim(self->journal, space, epoch);
    /* Our backups hold everything else we serve: the new space goes to them
     * in the ordinary stream, so they stay counted (and heirs) meanwhile,
     * and replies on it wait until they have it. */
    if (self->replica) {
        pm_replica_add_space(self->replica, space);
        pm_journal_repl(self->journal, pm_replica_produced(self->replica), 0);
    }
    pm_log_warn("PM-TAKEOVER", "serving id space %s at epoch %llu (%s): %zu promises, %zu "
                "continuations, in %lld ms", space, (unsigned long long) epoch, why, n, nthen,
                (long long) (pm_mono_ms() - t0));
}

/* A member died or left: if we are the first alive backup of its spaces,
 * they are ours now. */
static void
s_maybe_take_over(pm_agent_t *self, const char *name)
{
    const char *primary;
    const char *const *spaces;
    const uint64_t *epochs;
    size_t n = pm_mesh_spaces_of(self->mesh, name, &primary, &spaces, &epochs);
    if (!n)
        return;
    /* The heir (spaces.h): the first announced backup still the same process. */
    const char *heirs[16], *heir_spaces[16];
    size_t nh = pm_mesh_backups_of(self->mesh, name, heirs, heir_spaces, 16);
    pm_heir_t c[16];
    for (size_t i = 0; i < nh; i++)
        c[i] = (pm_heir_t){.name = heirs[i], .space_then = heir_spaces[i],
                           .space_now = pm_mesh_primary_of(self->mesh, heirs[i]),
                           .up = strcmp(heirs[i], self->node) == 0 ||
                                 pm_mesh_is_up(self->mesh, heirs[i])};
    int h = pm_spaces_heir(c, nh);
    for (size_t i = 0; i < nh; i++)
        if (c[i].restarted)
            pm_log_warn("PM-TAKEOVER-SKIP", "%s's backup %s restarted since it got the copy; "
                        "it cannot take over", name, c[i].name);
    const char *heir = h >= 0 ? c[h].name : NULL;
    if (!heir) {
        pm_log_warn("PM-TAKEOVER-NONE", "%s has no backup that holds its state (%zu announced): "
                    "its spaces wait for it to restart on its data dir", name, nh);
        return;
    }
    if (strcmp(heir, self->node) != 0)
        return;
    /* Copy: claiming publishes metadata, which may rebuild the peer table. */
    char **copy = pm_xcalloc(n, sizeof *copy, "takeover");
    uint64_t *ep = pm_xcalloc(n, sizeof *ep, "takeover");
    for (size_t i = 0; i < n; i++) {
        copy[i] = pm_xstrdup(spaces[i], "takeover");
        ep[i] = epochs[i];
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t e = pm_mesh_epoch(self->mesh, copy[i]);
        uint64_t claim = pm_spaces_takeover_epoch(ep[i], e);
        if (!claim) {
            /* It had moved on from name already (name was fenced, and its
             * metadata still listed it): its current owner keeps it. */
            pm_log_info("PM-TAKEOVER-STALE", "%s listed id space %s at epoch %llu, served at "
                        "epoch %llu since: not taking it over", name, copy[i],
                        (unsigned long long) ep[i], (unsigned long long) e);
            continue;
        }
        char why[PM_WIRE_MAX_NAME + 32];
        snprintf(why, sizeof why, "%s is down", name);
        pm_takeover_take_space(self, copy[i], claim, why);
    }
    for (size_t i = 0; i < n; i++)
        free(copy[i]);
    free(copy);
    free(ep);
}

/* Replica hook: a backup told us a space of ours moved on. */
void
pm_takeover_on_fenced(void *arg, const char *space, uint64_t epoch, const char *fencer)
{
    pm_agent_t *self = arg;
    uint64_t mine = 0;
    /* A refusal that loses to our claim is stale (meant for an earlier
     * holder, or our previous process). */
    if (!pm_mesh_owns(self->mesh, space, &mine) ||
        pm_spaces_fence_is_stale(mine, self->node, epoch, fencer))
        return;
    if (self->isr) {
        /* A refusal decides nothing with a store: the fencer may only be
         * trying to take the space over (R3), and its attempt may fail. It
         * holds back our acknowledgements meanwhile (it does not
         * acknowledge), and the store tells us whether we lost the space
         * (R4). Dropping it here would leave it served by nobody while the
         * store still names us. */
        pm_isr_refresh(self->isr, space, "a backup refused our records");
        return;
    }
    pm_log_error("PM-FENCED", "id space %s is served elsewhere at epoch %llu: we stop "
                 "serving it and acknowledge nothing more for it", space,
                 (unsigned long long) epoch);
    pm_mesh_unclaim(self->mesh, space);
    pm_takeover_on_moved(self, space);
}

/* Mesh hook (with a store): another member gossips a newer claim on a
 * space we serve; the store decides (R4). */
void
pm_takeover_on_contested(void *arg, const char *space)
{
    pm_agent_t *self = arg;
    if (self->isr)
        pm_isr_refresh(self->isr, space, "another member claims it at a newer epoch");
}

/* Mesh hook: a space we served is served elsewhere at a newer epoch. */
void
pm_takeover_on_moved(void *arg, const char *space)
{
    pm_agent_t *self = arg;
    char prefix[PM_WIRE_MAX_NAME + 2];
    pm_id_space_prefix(prefix, sizeof prefix, space);
    pm_store_passivate(self->store, prefix, 0);
    pm_claims_drop(&self->probation, space);
    size_t plen = strlen(prefix);
    /* Its continuations are the new owner's now (it revived them from its
     * copy): ours would only run them a second time. */
    for (pm_then_t *t = self->thens, *next; t; t = next) {
        next = t->next;
        if (strncmp(t->target, prefix, plen) != 0)
            continue;
        pm_watch_cancel(&t->watch);
        pm_then_unlink(self, t);
        pm_then_free(t);
    }
    pm_fanins_drop_space(self, prefix);
    /* Ours whose source is in it hear the source from its new owner. */
    pm_then_source_moved(self, prefix);
    if (self->journal) {
        pm_journal_release(self->journal, space);
        /* Changes the backups have not acknowledged may not be at the new
         * owner: their replies become errors, never acknowledgements. */
        pm_fail_ctx_t ctx = {self, PM_ERR_UNREACHABLE,
                            "the id space moved to another agent before this change reached "
                            "its backups: it may not have happened"};
        size_t n = pm_journal_fail_unreplicated(self->journal, pm_agent_fail_held, &ctx);
        if (n)
            pm_log_warn("PM-REPLIES-FAILED", "%zu held repl%s answered UNREACHABLE: id space "
                        "%s moved before their changes were replicated", n, n == 1 ? "y" : "ies",
                        space);
    }
    /* Awaits of its promises here would never be answered (their settles go
     * to the new owner): another agent's subscription hears OWNER_LOST and
     * subscribes again where the space went; a local client hears
     * UNREACHABLE and may await again. */
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (p->state != PM_STATE_PENDING || strncmp(p->id, prefix, plen) != 0)
            continue;
        for (pm_watch_t *w = p->watches, *next; w; w = next) {
            next = w->next;
            if (w->fn != pm_waiter_fired)
                continue;
            pm_waiter_t *wt = (pm_waiter_t *) w;
            pm_agent_reply_err(self, wt->session, wt->req_id,
                        wt->session->peer ? PM_ERR_OWNER_LOST : PM_ERR_UNREACHABLE,
                        "the promise's id space moved to another agent: await it again");
            pm_waiter_free(self, wt);
        }
    }
    /* The backups refused (or will refuse) what we had of that space: they
     * get what we still serve afresh, so acknowledgements flow again. */
    if (self->replica)
        pm_replica_resync(self->replica);
}

/* A restarted agent resumes a space it served before only if nobody took it
 * over, and nobody served it at a newer epoch than ours meanwhile (then its
 * WAL would be stale: that server's own restart resumes it). */
void
pm_takeover_check_probation(pm_agent_t *self, int64_t mono)
{
    if (!self->probation.n || mono < self->probation_until)
        return;
    /* Not before another member's full state has told us who serves what
     * (a restarted seed hears of the others late), unless nobody has come
     * for long enough that we must be alone. */
    if (!pm_mesh_synced(self->mesh) && mono < self->probation_alone)
        return;
    pm_claim_t c;
    while (pm_claims_pop(&self->probation, &c)) {
        const char *node = NULL;
        pm_route_t r = pm_mesh_route_space(self->mesh, c.space, &node);
        uint64_t known = pm_mesh_epoch(self->mesh, c.space);
        uint64_t resume = pm_spaces_resume_epoch(c.epoch, known);
        if (r == PM_ROUTE_REMOTE) {
            pm_log_info("PM-SPACE-MOVED", "id space %s was taken over by %s while we were "
                        "down; new promises go to %s", c.space, node, self->space);
            if (self->journal)
                pm_journal_release(self->journal, c.space);
        } else if (r == PM_ROUTE_LOCAL) {
            /* served already */
        } else if (!resume) {
            pm_log_warn("PM-SPACE-SUPERSEDED", "id space %s was served at epoch %llu after "
                        "ours (%llu); not resuming it from our older copy", c.space,
                        (unsigned long long) known, (unsigned long long) c.epoch);
            if (self->journal)
                pm_journal_release(self->journal, c.space);
        } else {
            pm_takeover_take_space(self, c.space, resume, "nobody took it over while we were down");
        }
        free(c.space);
    }
}

/* Mesh hook: a member came, changed or went. */
void
pm_takeover_on_member(void *arg, pm_mesh_event_t ev, const char *name)
{
    pm_agent_t *self = arg;
    if (ev != PM_MESH_DOWN) {
        pm_workers_offer_unserved(self->workers, pm_place_take_unserved, self);
        if (self->replica)
            pm_relay_unpark(self);
        return;
    }
    if (self->isr)
        pm_isr_member_down(self->isr, self->now_mono); /* R3: the store decides */
    else if (self->replica)
        s_maybe_take_over(self, name);
    /* Its channel is gone, and what was queued on it: whatever comes from
     * that name next must start with a state transfer. */
    if (self->backup)
        pm_backup_forget(self->backup, name);
    /* Everything that waited on that member: with backups, it waits for
     * the takeover; without, it ends now with a typed error. */
    zlistx_t *gone = pm_agent_xlist();
    for (pm_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays))
        if (!r->parked && strcmp(r->node, name) == 0)
            zlistx_add_end(gone, r);
    size_t n = zlistx_size(gone), lost = 0;
    for (pm_relay_t *r = zlistx_first(gone); r; r = zlistx_next(gone)) {
        if (self->replica && r->frame) {
            pm_relay_park(self, r);
            continue;
        }
        lost++;
        pm_relay_fail(self, r, PM_ERR_OWNER_LOST);
    }
    zlistx_destroy(&gone);
    self->owner_lost += lost;
    char key[PM_WIRE_MAX_NAME + 8];
    snprintf(key, sizeof key, "peer:%s", name);
    pm_session_t *peer = zhashx_lookup(self->sessions, key);
    if (peer)
        pm_session_close(self, peer, "member down");
    /* Invocations placed there run again elsewhere (at-least-once; the target
     * still settles once). */
    pm_deleg_t *redo = NULL;
    for (pm_deleg_t *d = self->delegs, *next; d; d = next) {
        next = d->next;
        if (strcmp(d->node, name) != 0)
            continue;
        pm_place_deleg_unlink(self, d);
        d->next = redo;
        redo = d;
    }
    while (redo) {
        pm_deleg_t *d = redo;
        redo = d->next;
        if (d->early) {
            /* Started early on its source's expected outcome (place.c): not
             * placed again here, as that would make the guess a placement
             * of its own, settling the target even when the source settles
             * otherwise (pmesh-sim seed 8685, V6: g ran on a combinator's
             * guessed rejection, the combinator timed out). Its then places
             * it when the source settles. */
            if (d->chained)
                self->chain_dropped++;
            else
                self->fanin_early_dropped++;
            pm_log(PM_LOG_DEBUG, "PM-EARLY-DROPPED", d->target, "%s was started early on %s, "
                   "which is down: placed when its source settles", d->function, name);
            pm_place_deleg_free(d);
            continue;
        }
        pm_log(PM_LOG_WARN, "PM-INVOKE-RETRY", d->target, "%s was placed on %s, which is down; "
               "placing it again", d->function, name);
        pm_place_invoke(self, d->function, d->input, d->input_len, d->target);
        pm_place_deleg_free(d);
    }
    if (lost)
        pm_log_warn("PM-OWNER-LOST", "%zu request(s) waiting on %s failed with OWNER_LOST", lost,
                    name);
    if (n > lost)
        pm_log_info("PM-RELAY-PARKED", "%zu request(s) waiting on %s wait for its takeover",
                    n - lost, name);
    if (self->replica)
        pm_relay_unpark(self); /* we may have taken it over ourselves */
}
