/*
 * session.c - client and peer sessions: one per ZeroMQ routing id (its id-mint
 * lease, its waiters), one per peer agent (replies go back over the mesh);
 * idle sessions are swept, and a stall of the agent itself forgives them.
 */

#include "session.h"

#include "waiters.h"

/* The key of session id in by_id. */
static void
s_idkey(uint64_t id, char *out, size_t cap)
{
    snprintf(out, cap, "%llx", (unsigned long long) id);
}

/* Gives s (its key set) the next session id and files it in both tables. */
static void
s_register(pm_agent_t *self, pm_session_t *s)
{
    char idk[24];
    s->id = ++self->next_session;
    zhashx_insert(self->sessions, s->key, s);
    s_idkey(s->id, idk, sizeof idk);
    zhashx_insert(self->by_id, idk, s);
}

/* The session with this id, or NULL if it is gone. */
pm_session_t *
pm_session_by_id(pm_agent_t *self, uint64_t id)
{
    char idk[24];
    s_idkey(id, idk, sizeof idk);
    return zhashx_lookup(self->by_id, idk);
}

pm_session_t *
pm_session_get(pm_agent_t *self, const uint8_t *rid, size_t len, int64_t now)
{
    char key[2 * 256 + 1];
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        key[2 * i] = hex[rid[i] >> 4];
        key[2 * i + 1] = hex[rid[i] & 15];
    }
    key[2 * len] = 0;
    pm_session_t *s = zhashx_lookup(self->sessions, key);
    if (s) {
        s->last_seen = now;
        return s;
    }
    s = pm_xcalloc(1, sizeof *s, "session");
    memcpy(s->key, key, 2 * len + 1);
    memcpy(s->rid, rid, len);
    s->rid_len = len;
    s_register(self, s);
    /* The generation keeps leases of this run apart from the last run's. */
    s->mint_len = (size_t) pm_id_lease(s->mint, sizeof s->mint, self->mint, self->generation,
                                       s->id);
    s->last_seen = now;
    return s;
}

void
pm_session_close(pm_agent_t *self, pm_session_t *s, const char *why)
{
    pm_local_flush_session(self, s->id); /* what it was sent leaves first */
    while (s->waiters)
        pm_waiter_free(self, s->waiters);
    if (pm_workers_is_worker(self->workers, s)) {
        pm_log_info("PM-WORKER-GONE", "worker session %llu closed: %s",
                    (unsigned long long) s->id, why);
        pm_workers_forget(self->workers, s);
    }
    char idk[24];
    s_idkey(s->id, idk, sizeof idk);
    zhashx_delete(self->by_id, idk);
    zhashx_delete(self->sessions, s->key); /* frees s */
}

void
pm_session_destructor(void **item)
{
    pm_session_t *s = *item;
    free(s->peer);
    free(s);
    *item = NULL;
}

/* The session standing for another agent: its requests are served like a
 * client's, its replies go back over the mesh. */
pm_session_t *
pm_session_peer(pm_agent_t *self, const char *node)
{
    char key[PM_WIRE_MAX_NAME + 8];
    snprintf(key, sizeof key, "peer:%s", node);
    pm_session_t *s = zhashx_lookup(self->sessions, key);
    if (s)
        return s;
    s = pm_xcalloc(1, sizeof *s, "peer session");
    s->peer = pm_xstrdup(node, "peer session");
    snprintf(s->key, sizeof s->key, "%s", key);
    s_register(self, s);
    return s;
}

/* Closes sessions silent for client_timeout. A session without a keep-alive
 * thread that still has waiters is kept: its awaits end by their own timeout
 * or by settlement. */
void
pm_session_sweep(pm_agent_t *self, int64_t now)
{
    zlistx_t *dead = NULL;
    for (pm_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions)) {
        if (s->peer || now - s->last_seen < self->client_timeout)
            continue;
        if (!s->pinged && (s->n_waiters || pm_workers_is_worker(self->workers, s)))
            continue;
        if (!dead)
            dead = pm_agent_xlist();
        zlistx_add_end(dead, s);
    }
    if (!dead)
        return;
    for (pm_session_t *s = zlistx_first(dead); s; s = zlistx_next(dead)) {
        if (s->pinged || s->n_waiters)
            pm_log_info("PM-CLIENT-EXPIRED", "session %llu silent for %lld ms; closed",
                        (unsigned long long) s->id, (long long) (now - s->last_seen));
        self->sessions_expired++;
        pm_session_close(self, s, "expired");
    }
    zlistx_destroy(&dead);
}

/* After a stall, the silence was ours, not the clients': every session gets
 * a full client_timeout again (a worker expired for it would never hear
 * that its registration is gone). */
void
pm_session_check_stall(pm_agent_t *self, int64_t mono)
{
    int64_t gap = self->last_loop ? mono - self->last_loop : 0;
    self->last_loop = mono;
    if (gap < PM_AGENT_STALL_MS)
        return;
    pm_log_warn("PM-AGENT-STALLED", "the agent did not run for %lld ms (paused?); its clients "
                "get a full client_timeout again", (long long) gap);
    for (pm_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        if (s->last_seen < mono)
            s->last_seen = mono;
}
