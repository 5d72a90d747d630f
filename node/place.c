/*
 * place.c - placement of invocations: on a local worker if one serves the
 * function, else on the member with the most free capacity for it; an
 * invocation placed elsewhere is kept until its target settles so it can be
 * placed again if that member dies. Results settle targets wherever they live.
 */

#include "place.h"

#include "relay.h"
#include "requests.h"
#include "steptrace.h"

/* Settles a target wherever it lives (invocation results). */
int
pm_place_settle_anywhere(void *arg, const char *target, int state, const void *data, size_t len)
{
    pm_agent_t *self = arg;
    const char *node = NULL;
    pm_route_t route = self->mesh ? pm_relay_route_of(self, target, &node) : PM_ROUTE_LOCAL;
    if (route == PM_ROUTE_LOCAL)
        return pm_store_settle(self->store, target, state, data, len, self->now_real, NULL);
    if (route == PM_ROUTE_UNKNOWN)
        return PM_ERR_NOT_FOUND;
    /* Its owner is dead and nobody took over yet: the result is parked
     * (relay.c) until somebody serves the space. */
    pm_relay_t *r = pm_relay_new(self, PM_RELAY_FIRE, route == PM_ROUTE_REMOTE ? node : "", target);
    pm_msg_t m = {.type = PM_MSG_SETTLE, .id = target, .state = state};
    if (state == PM_STATE_RESOLVED) {
        m.value = data;
        m.value_len = len;
    } else {
        m.reason = data; /* reasons are NUL-terminated text */
    }
    PM_STEPTRACE_MARK("settle_send", data, len);
    char reason[1024];
    if (state != PM_STATE_RESOLVED) {
        snprintf(reason, sizeof reason, "%.*s", (int) len, (const char *) data);
        m.reason = reason;
    }
    if (route == PM_ROUTE_REMOTE)
        return pm_relay_send(self, r, &m);
    pm_relay_park_msg(self, r, &m);
    return PM_OK;
}

int
pm_place_target_pending(void *arg, const char *target)
{
    pm_agent_t *self = arg;
    /* Only the space's owner knows: a copy kept here as a backup, or left
     * from when we served the space, may show a settle that was never
     * acknowledged (seed 153: every invocation the new owner sent was
     * dropped here, the chain never ran). Its owner refuses a late result. */
    if (!pm_req_serves(self, target))
        return 1;
    pm_prom_t *p = pm_store_get(self->store, target);
    return !p || p->state == PM_STATE_PENDING;
}

void
pm_place_deleg_unlink(pm_agent_t *self, pm_deleg_t *d)
{
    pm_watch_cancel(&d->watch);
    if (d->prev)
        d->prev->next = d->next;
    else
        self->delegs = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

void
pm_place_deleg_free(pm_deleg_t *d)
{
    free(d->function);
    free(d->input);
    free(d->inv_id);
    free(d);
}

static void
s_deleg_done(pm_watch_t *watch, pm_prom_t *p)
{
    (void) p;
    pm_deleg_t *d = (pm_deleg_t *) watch;
    pm_place_deleg_unlink(d->agent, d);
    pm_place_deleg_free(d);
}

/* Places an invocation on member `node`; kept until its target settles. */
static int
s_delegate(pm_agent_t *self, const char *node, const char *function, const uint8_t *input,
           size_t len, const char *target)
{
    pm_prom_t *q = pm_store_get(self->store, target);
    if (!q || q->state != PM_STATE_PENDING)
        return -1; /* only the owner of the target places; others queue */
    size_t tlen = strlen(target);
    pm_deleg_t *d = pm_xcalloc(1, sizeof *d + tlen + 1, "placed invocation");
    memcpy(d->target, target, tlen + 1);
    d->agent = self;
    snprintf(d->node, sizeof d->node, "%s", node);
    d->function = pm_xstrdup(function, "placed invocation");
    d->input = pm_xmalloc(len, "placed invocation");
    char iid[PM_WIRE_MAX_NAME + 32];
    pm_id_tagged(iid, sizeof iid, self->space, 'd', ++self->next_deleg);
    d->inv_id = pm_xstrdup(iid, "placed invocation");
    if (len)
        memcpy(d->input, input, len);
    d->input_len = len;
    pm_msg_t m = {.type = PM_MSG_INVOKE, .invocation_id = iid, .function = function,
                  .value = input, .value_len = len, .target_id = target, .attempt = 1};
    PM_STEPTRACE_MARK("inv_send", input, len);
    if (pm_mesh_send(self->mesh, node, &m) != 0) {
        pm_place_deleg_free(d);
        return -1;
    }
    PM_STEPTRACE_MARK("inv_sent", input, len);
    d->sent_at = self->now_mono;
    pm_store_watch(q, &d->watch, s_deleg_done);
    d->next = self->delegs;
    if (self->delegs)
        self->delegs->prev = d;
    self->delegs = d;
    pm_log_debug("PM-INVOKE-PLACED", "%s for %s placed on %s", function, target, node);
    return 0;
}

/* Once a second: placed invocations whose targets are still pending, sent again to their
 * member every PM_PLACE_RESEND_MS: the invocation or its result may have
 * been lost on the way (a connection reset, a member that dropped frames of
 * one it had just declared dead), and the member's death, which places it
 * again, may never come. The member ignores it while it holds one for that
 * target (workers.c); a result that is on its way makes it moot. */
void
pm_place_tick(pm_agent_t *self, int64_t mono)
{
    if (!self->mesh || mono - self->place_scan < 1000)
        return;
    self->place_scan = mono;
    /* Queued here for a function nobody here serves (its worker died and
     * none came back): to a member with room for it, once one has. */
    pm_workers_offer_unserved(self->workers, pm_place_take_unserved, self);
    for (pm_deleg_t *d = self->delegs; d; d = d->next) {
        if (mono - d->sent_at < PM_PLACE_RESEND_MS || !pm_mesh_is_up(self->mesh, d->node))
            continue;
        pm_msg_t m = {.type = PM_MSG_INVOKE, .invocation_id = d->inv_id, .function = d->function,
                      .value = d->input, .value_len = d->input_len, .target_id = d->target,
                      .attempt = 1};
        if (pm_mesh_send(self->mesh, d->node, &m) == 0)
            self->inv_resent++;
        d->sent_at = mono;
    }
}

/* Runs function on input to settle target: on a local worker if one serves
 * it, else on the member with the most free capacity for it, else queued
 * here until some worker serves it. */
void
pm_place_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
         const char *target)
{
    PM_STEPTRACE_MARK("place", input, len);
    if (self->mesh && !pm_workers_serves(self->workers, function)) {
        const char *node = pm_mesh_place(self->mesh, function);
        if (node && s_delegate(self, node, function, input, len, target) == 0)
            return;
    }
    int err = pm_workers_invoke(self->workers, function, input, len, target);
    if (err != PM_OK)
        pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", target, "%s", pm_err_name(err));
}

int
pm_place_take_unserved(void *arg, const char *function, const uint8_t *input, size_t len,
                const char *target)
{
    pm_agent_t *self = arg;
    const char *node = pm_mesh_place(self->mesh, function);
    return node && s_delegate(self, node, function, input, len, target) == 0;
}
