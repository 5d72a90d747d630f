/*
 * requests.c - the requests served from our own store: create (ids minted
 * here or under a client's lease), settle, list and status.
 */

#include "requests.h"

#include "fanins.h"
#include "isr.h"

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
    return self->mesh && pm_id_space(id, space, sizeof space) &&
           strcmp(space, self->space) != 0 && pm_mesh_owns(self->mesh, space, NULL);
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
    pm_id_mint(out, cap, self->space, self->generation, ++self->next_seq);
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
pm_req_do_status(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    json_t *promises = json_object();
    for (int st = PM_STATE_PENDING; st <= PM_STATE_TIMEDOUT; st++)
        json_object_set_new(promises, pm_state_name(st),
                            json_integer((json_int_t) pm_store_count(self->store, st)));
    json_object_set_new(promises, "total",
                        json_integer((json_int_t) pm_store_count(self->store, 0)));
    json_t *ops = json_object();
    for (int t = PM_MSG_HELLO; t < PM_MSG_TYPE_COUNT; t++) {
        if (t == PM_MSG_REPLY || t == PM_MSG_INVOKE)
            continue;
        json_object_set_new(ops, pm_wire_type_name(t),
                            json_pack("{s:I,s:I}", "ok", (json_int_t) self->ops[t].ok, "error",
                                      (json_int_t) self->ops[t].err));
    }
    pm_workers_stats_t ws;
    pm_workers_stats(self->workers, &ws);
    size_t waiters = 0;
    for (pm_session_t *x = zhashx_first(self->sessions); x; x = zhashx_next(self->sessions))
        waiters += x->n_waiters;
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:o,s:o,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I}}",
        "node", self->node, "version", PMESH_VERSION, "id_space", self->space, "uptime_ms",
        (json_int_t) (self->now_mono - self->started_mono), "promises", promises, "ops", ops,
        "clients", "sessions", (json_int_t) zhashx_size(self->sessions), "waiters",
        (json_int_t) waiters, "workers", (json_int_t) ws.workers, "expired",
        (json_int_t) self->sessions_expired, "invocations", "queued", (json_int_t) ws.queued,
        "inflight", (json_int_t) ws.inflight, "invoked", (json_int_t) ws.invoked, "dispatched",
        (json_int_t) ws.dispatched, "completed", (json_int_t) ws.completed, "failed",
        (json_int_t) ws.failed, "retried", (json_int_t) ws.retried, "dropped",
        (json_int_t) ws.dropped, "not_holder", (json_int_t) ws.not_holder, "errors",
        "bad_frames", (json_int_t) self->bad_frames, "replies_dropped",
        (json_int_t) self->replies_dropped, "replies_failed", (json_int_t) self->replies_failed);
    if (o && self->isr) {
        char *cs = pm_isr_stats_json(self->isr);
        json_t *cj = cs ? json_loads(cs, 0, NULL) : NULL;
        free(cs);
        if (cj)
            json_object_set_new(o, "coordination", cj);
    } else if (o && self->coord_desc[0]) {
        json_object_set_new(o, "coordination", json_string(self->coord_desc));
    }
    if (o && self->mesh) {
        char *ms = pm_mesh_stats_json(self->mesh);
        json_t *mj = ms ? json_loads(ms, 0, NULL) : NULL;
        free(ms);
        if (mj) {
            json_object_set_new(mj, "relayed", json_integer((json_int_t) self->relayed));
            json_object_set_new(mj, "relay_timeouts",
                                json_integer((json_int_t) self->relay_timeouts));
            json_object_set_new(mj, "owner_lost", json_integer((json_int_t) self->owner_lost));
            json_object_set_new(mj, "refused_not_served",
                                json_integer((json_int_t) self->refused_not_served));
            json_object_set_new(o, "mesh", mj);
        }
    }
    if (o && self->journal) {
        char *ws = pm_journal_stats_json(self->journal);
        json_t *wj = ws ? json_loads(ws, 0, NULL) : NULL;
        free(ws);
        if (wj)
            json_object_set_new(o, "wal", wj);
    }
    if (o && self->replica) {
        char *rs = pm_replica_stats_json(self->replica);
        json_t *rj = rs ? json_loads(rs, 0, NULL) : NULL;
        free(rs);
        if (rj) {
            json_object_set_new(rj, "takeovers", json_integer((json_int_t) self->takeovers));
            json_object_set_new(rj, "spaces_retired", json_integer((json_int_t) self->retired));
            json_object_set_new(rj, "parked", json_integer((json_int_t) self->parked));
            json_object_set_new(rj, "replica_continuations",
                                json_integer((json_int_t) zhashx_size(self->rthens)));
            json_object_set_new(rj, "owners_in_sync",
                                json_integer((json_int_t) pm_backup_synced(self->backup)));
            json_object_set_new(rj, "resyncs_asked",
                                json_integer((json_int_t) pm_backup_resyncs(self->backup)));
            json_object_set_new(o, "replication", rj);
        }
    }
    if (o) {
        json_object_set_new(o, "generation", json_integer((json_int_t) self->generation));
        json_t *lat = json_object();
        for (int t = PM_MSG_HELLO; t < PM_MSG_TYPE_COUNT; t++)
            if (self->op_ms[t].count)
                json_object_set_new(lat, pm_wire_type_name(t), pm_hist_json(&self->op_ms[t]));
        json_object_set_new(o, "latency_ms", lat);
        json_object_set_new(o, "functions", pm_workers_functions_json(self->workers));
    }
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .json = json ? json : "{}"};
    pm_agent_send(self, s, &r);
    free(json);
}
