/*
 * requests.c - the requests served from our own store: create (ids minted
 * here or under a client's lease), settle, list and status.
 */

#include "requests.h"

#include "fanins.h"
#include "isr.h"
#include "mint.h"
#include "stats.h"

int
pm_req_minted_by(const pm_session_t *s, const char *id)
{
    return pm_id_under_lease(id, s->mint, s->mint_len);
}

/* Whether the space of id is one this agent took over (serves, and is not
 * its primary): the agent that lost it, and that agent's clients, still mint
 * there, and only they do. */
int
pm_req_owned_space(pm_agent_t *self, const char *id)
{
    char space[PM_WIRE_MAX_NAME + 1];
    return self->mesh && pm_id_space(id, space, sizeof space) && !pm_mint_is_ours(self, space) &&
           pm_mesh_owns(self->mesh, space, NULL);
}

int
pm_req_serves(pm_agent_t *self, const char *id)
{
    char space[PM_WIRE_MAX_NAME + 1];
    return !self->mesh ||
           (pm_id_space(id, space, sizeof space) && pm_mesh_owns(self->mesh, space, NULL));
}

void
pm_req_mint(pm_agent_t *self, char *out, size_t cap)
{
    /* (An id a combinator gave up on before we minted it was recorded as
     * never made, fanins.c: skipped, never minted onto.) */
    do
        pm_id_mint(out, cap, self->mint, self->generation, ++self->next_seq);
    while (pm_store_get(self->store, out));
}

int
pm_req_create_new(pm_agent_t *self, const char *new_id, int allowed, int64_t timeout_ms,
                  int64_t now, char *id, size_t cap, pm_prom_t **q)
{
    if (new_id) {
        if (!allowed)
            return PM_ERR_BAD_REQUEST;
        snprintf(id, cap, "%s", new_id);
    } else {
        pm_req_mint(self, id, cap);
    }
    pm_create_args_t a = {.id = id, .timeout_ms = timeout_ms};
    return pm_store_create(self->store, &a, now, q, NULL);
}

int
pm_req_do_create(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now)
{
    char id[PM_WIRE_MAX_NAME + 1];
    if (m->id) {
        /* A peer relays creates in a space it lost to us (its clients still
         * mint there); a client mints under its lease. */
        if (s->peer && !pm_req_serves(self, m->id))
            return PM_ERR_OWNER_LOST; /* it moved on from us too: not the caller's fault */
        if (!(s->peer ? pm_req_owned_space(self, m->id) : pm_req_minted_by(s, m->id)))
            return PM_ERR_BAD_REQUEST;
        snprintf(id, sizeof id, "%s", m->id);
    } else {
        pm_req_mint(self, id, sizeof id);
    }
    pm_create_args_t a = {.id = id,
                          .timeout_ms = m->timeout_ms,
                          .heartbeat_ms = m->heartbeat_ms,
                          .key = m->key,
                          .label_count = m->label_count,
                          .labels = m->labels};
    pm_prom_t *p;
    int created;
    int err = pm_store_create(self->store, &a, now, &p, &created);
    if (err)
        return err;
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .id = p->id, .created = created};
    char token[128];
    int64_t exp_s = pm_token_expiry_s(now, m->token_ttl_ms);
    if (m->want_token && self->token_key &&
        pm_token_make_exp(self->token_key, self->token_key_len, p->id, exp_s, token,
                          sizeof token) == 0)
        r.token = token;
    pm_agent_send(self, s, &r);
    return PM_OK;
}

int
pm_req_do_settle(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now)
{
    int err = pm_req_settle(self, m, now);
    if (err)
        return err;
    pm_agent_reply_ok(self, s, m->req_id);
    return PM_OK;
}

int
pm_req_settle(pm_agent_t *self, const pm_msg_t *m, int64_t now)
{
    const void *data;
    size_t len;
    if (m->state == PM_STATE_RESOLVED) {
        data = m->value;
        len = m->value_len;
    } else if (m->state == PM_STATE_REJECTED || m->state == PM_STATE_CANCELED) {
        data = m->reason && *m->reason ? m->reason
                                       : (m->state == PM_STATE_CANCELED ? "canceled" : "rejected");
        len = strlen(data);
    } else {
        return PM_ERR_BAD_REQUEST;
    }
    if (len > self->max_value_bytes)
        return PM_ERR_VALUE_TOO_LARGE;
    if (pm_fanins_is_combinator(self, m->id))
        return PM_ERR_NOT_SETTLEABLE; /* only its inputs settle it */
    return pm_store_settle(self->store, m->id, m->state, data, len, now, NULL);
}

int
pm_req_do_list(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    if (m->state < 0 || m->state > PM_STATE_TIMEDOUT)
        return PM_ERR_BAD_REQUEST;
    pm_list_filter_t f = {.state = m->state,
                          .prefix = m->prefix,
                          .limit = m->limit ? m->limit : self->list_limit,
                          .cursor = m->cursor};
    if (f.limit > PM_AGENT_MAX_PAGE)
        f.limit = PM_AGENT_MAX_PAGE;
    if (m->label_count) {
        f.label_key = m->labels[0].key;
        f.label_value = *m->labels[0].value ? m->labels[0].value : NULL;
    }
    const pm_prom_t **found = pm_xmalloc(f.limit * sizeof *found, "list page");
    pm_wire_promise_t *views = pm_xmalloc(f.limit * sizeof *views, "list page");
    char cursor[PM_WIRE_MAX_NAME + 32];
    size_t n = pm_store_list(self->store, &f, found, cursor, sizeof cursor);
    for (size_t i = 0; i < n; i++)
        pm_records_view(found[i], &views[i]);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .promises = views,
                  .promise_count = n, .cursor = cursor};
    pm_agent_send(self, s, &r);
    free(found);
    free(views);
    return PM_OK;
}

void
pm_req_stats(pm_agent_t *self, pm_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->parts = PM_STATS_CORE;
    out->node = pm_stats_str(self->node);
    out->version = pm_stats_str(PMESH_VERSION);
    out->id_space = pm_stats_str(self->space);
    out->coord_desc = pm_stats_str(self->coord_desc);
    out->uptime_ms = (uint64_t) (self->now_mono - self->started_mono);
    out->generation = self->generation;
    for (int st = PM_STATE_PENDING; st <= PM_STATE_TIMEDOUT; st++)
        out->promises[st - PM_STATE_PENDING] = pm_store_count(self->store, st);
    out->promises_total = pm_store_count(self->store, 0);
    for (int t = 0; t < PM_MSG_TYPE_COUNT; t++) {
        out->ops_ok[t] = self->ops[t].ok;
        out->ops_error[t] = self->ops[t].err;
        out->op_ms[t] = self->op_ms[t];
    }
    pm_workers_stats_t ws;
    pm_workers_stats(self->workers, &ws);
    for (pm_session_t *x = zhashx_first(self->sessions); x; x = zhashx_next(self->sessions))
        out->clients_waiters += x->n_waiters;
    out->clients_sessions = zhashx_size(self->sessions);
    out->clients_workers = ws.workers;
    out->clients_expired = self->sessions_expired;
    out->clients_waiters_timed_out = self->waiters_timed_out;
    out->clients_held_expired = self->held_expired;
    out->inv_queued = ws.queued;
    out->inv_inflight = ws.inflight;
    out->inv_invoked = ws.invoked;
    out->inv_dispatched = ws.dispatched;
    out->inv_completed = ws.completed;
    out->inv_failed = ws.failed;
    out->inv_retried = ws.retried;
    out->inv_dropped = ws.dropped;
    out->inv_duplicates = ws.duplicates;
    out->inv_resent = self->inv_resent;
    out->fanin_tentative_sent = self->fanin_tentative_sent;
    out->fanin_early_starts = self->fanin_early_starts;
    out->fanin_early_kept = self->fanin_early_kept;
    out->fanin_early_dropped = self->fanin_early_dropped;
    out->fanin_last_asked = self->fanin_last_asked;
    out->chain_forwarded = self->chain_forwarded;
    out->chain_started = self->chain_started;
    out->chain_kept = self->chain_kept;
    out->chain_dropped = self->chain_dropped;
    out->inv_not_holder = ws.not_holder;
    out->err_bad_frames = self->bad_frames;
    out->err_replies_dropped = self->replies_dropped;
    out->err_replies_failed = self->replies_failed;
    if (self->isr)
        pm_isr_stats_fill(self->isr, out);
    if (self->mesh) {
        pm_mesh_stats_fill(self->mesh, out);
        out->mesh_relayed = self->relayed;
        out->mesh_relay_timeouts = self->relay_timeouts;
        out->mesh_owner_lost = self->owner_lost;
        out->mesh_sub_resends = self->sub_resends;
        out->mesh_sub_repeats_dropped = self->sub_repeats_dropped;
        out->mesh_refused_not_served = self->refused_not_served;
    }
    if (self->journal)
        pm_journal_stats_fill(self->journal, out);
    if (self->replica) {
        pm_replica_stats_fill(self->replica, out);
        out->repl_takeovers = self->takeovers;
        out->repl_spaces_retired = self->retired;
        out->repl_parked = self->parked;
        out->repl_replica_continuations = zhashx_size(self->rthens);
        out->repl_owners_in_sync = pm_backup_synced(self->backup);
        out->repl_resyncs_asked = pm_backup_resyncs(self->backup);
    }
    pm_workers_functions_fill(self->workers, out);
}

void
pm_req_do_status(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    pm_stats_t st;
    pm_req_stats(self, &st);
    json_t *o = pm_stats_json(&st);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    size_t len = 0;
    uint8_t *packed = pm_stats_pack(&st, &len);
    pm_stats_clear(&st);
    pm_msg_t r = {.type = PM_MSG_REPLY,
                  .req_id = m->req_id,
                  .json = json ? json : "{}",
                  .stats = {.data = packed, .len = packed ? len : 0}};
    pm_agent_send(self, s, &r);
    free(json);
    free(packed);
}
