/*
 * isr_agent.c - the coordinator's environment (isr.h, pm_isr_env_t) bound
 * to the agent: liveness from the mesh (SWIM, and the process id in a
 * member's primary space), serving and dropping spaces through takeover.c,
 * backups and the reply gate through the replica, held replies through the
 * journal.
 */
#include "isr_agent.h"

#include "relay.h"
#include "session.h"
#include "takeover.h"
#include "waiters.h"

static int
s_alive(void *arg, const char *node, uint64_t pid)
{
    pm_agent_t *self = arg;
    if (!pm_mesh_is_up(self->mesh, node)) {
        /* Just started, a member we have not heard of is not known to be
         * dead (gossip reaches a restarted agent late): until another
         * member's full state has reached us, or we have waited long enough
         * to be alone. Taking its spaces over now would be safe (CAS) but
         * would take a live agent's primary from it. */
        return !pm_mesh_knows(self->mesh, node) && !pm_mesh_synced(self->mesh) &&
                       self->now_mono < self->started_mono + PM_AGENT_YOUNG_MS
                   ? PM_ISR_ALIVE
                   : PM_ISR_GONE;
    }
    const char *primary = pm_mesh_primary_of(self->mesh, node);
    if (!primary || !*primary)
        return PM_ISR_ALIVE; /* its metadata has not reached us yet: take it to be that process */
    return pm_replica_pid_of(primary) == pid ? PM_ISR_ALIVE : PM_ISR_OTHER;
}

static int
s_serves(void *arg, const char *space, uint64_t *epoch)
{
    pm_agent_t *self = arg;
    return pm_mesh_owns(self->mesh, space, epoch);
}

static void
s_take(void *arg, const char *space, uint64_t epoch, const char *why)
{
    pm_agent_t *self = arg;
    pm_takeover_take_space(self, space, epoch, why);
    pm_relay_unpark(self); /* requests parked here for it run now */
    /* A space taken over is often empty (a restarted predecessor's primary,
     * mint.h): look at once, not a retire_interval later, so that an agent
     * that restarts often does not gather them. */
    self->next_retire = self->now_mono;
}

static void
s_drop(void *arg, const char *space)
{
    pm_agent_t *self = arg;
    pm_mesh_unclaim(self->mesh, space);
    pm_takeover_on_moved(self, space);
    pm_relay_unpark(self); /* requests parked here for it go where it went */
}

/* R8: what here depends on space and would be orphaned by its move (isr.h
 * env.dependants): placements on a source in it, continuations whose
 * source is in it and whose target is not, and watches on its pending
 * promises other than awaits and the space's own continuations and
 * placements (a combinator elsewhere watching an input in it). */
static size_t
s_dependants(void *arg, const char *space)
{
    pm_agent_t *self = arg;
    char prefix[PM_WIRE_MAX_NAME + 2];
    pm_id_space_prefix(prefix, sizeof prefix, space);
    size_t plen = strlen(prefix), n = 0;
    zhashx_t *own = zhashx_new(); /* watches that follow the space: key = pointer */
    if (!own)
        pm_oom("hand-back");
    char key[32];
    for (pm_deleg_t *d = self->delegs; d; d = d->next) {
        if (d->src_space && strcmp(d->src_space, space) == 0)
            n++;
        if (strncmp(d->target, prefix, plen) == 0) {
            snprintf(key, sizeof key, "%p", (void *) &d->watch);
            zhashx_insert(own, key, d);
        }
    }
    for (pm_then_t *t = self->thens; t; t = t->next) {
        int src_in = strncmp(t->source, prefix, plen) == 0;
        int tgt_in = strncmp(t->target, prefix, plen) == 0;
        if (src_in && !tgt_in)
            n++;
        else if (src_in || tgt_in) {
            snprintf(key, sizeof key, "%p", (void *) &t->watch);
            zhashx_insert(own, key, t);
        }
    }
    for (pm_prom_t *p = n ? NULL : pm_store_oldest(self->store); p && !n; p = p->newer) {
        if (p->state != PM_STATE_PENDING || !p->watches || strncmp(p->id, prefix, plen) != 0)
            continue;
        for (pm_watch_t *w = p->watches; w && !n; w = w->next) {
            snprintf(key, sizeof key, "%p", (void *) w);
            if (w->fn != pm_waiter_fired && !zhashx_lookup(own, key))
                n++;
        }
    }
    zhashx_destroy(&own);
    return n;
}

static int
s_backup(void *arg, size_t i, const char **node, uint64_t *pid, uint64_t *acked, int *counted)
{
    pm_agent_t *self = arg;
    return self->replica ? pm_replica_backup(self->replica, i, node, pid, acked, counted) : 0;
}

static uint64_t
s_produced(void *arg)
{
    pm_agent_t *self = arg;
    return self->replica ? pm_replica_produced(self->replica) : 0;
}

static uint64_t
s_acked(void *arg)
{
    pm_agent_t *self = arg;
    return self->replica ? pm_replica_acked(self->replica) : 0;
}

static void
s_gate(void *arg, const char *const *nodes, const uint64_t *pids, size_t n)
{
    pm_agent_t *self = arg;
    if (self->replica)
        pm_replica_set_gate(self->replica, nodes, pids, n);
}

static size_t
s_fail_held(void *arg, int err, const char *why)
{
    pm_agent_t *self = arg;
    if (!self->journal)
        return 0;
    pm_fail_ctx_t ctx = {self, err, why};
    return pm_journal_fail_unreplicated(self->journal, pm_agent_fail_held, &ctx);
}

/* The answer to an operator's force-owner, to its session if still there. */
static void
s_forced(void *arg, uint64_t session, uint64_t req, int err, const char *text)
{
    pm_agent_t *self = arg;
    pm_session_t *s = pm_session_by_id(self, session);
    if (!s)
        return;
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req, .err = err,
                  .message = err ? text : NULL, .json = err ? NULL : text};
    pm_agent_send(self, s, &r);
}

int
pm_isr_agent_force(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    /* The operator's interface: the local socket only, never a peer. */
    if (s->peer)
        return PM_ERR_BAD_REQUEST;
    if (!m->accept_data_loss) {
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_BAD_REQUEST,
                           "force-owner loses what the space's lost owner acknowledged and "
                           "this agent lacks: it needs accept_data_loss");
        return PM_OK;
    }
    if (!self->isr) {
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_BAD_REQUEST,
                           "this agent runs without a configuration store");
        return PM_OK;
    }
    char msg[512];
    int err = pm_isr_force(self->isr, m->space, s->id, m->req_id, msg, sizeof msg);
    if (err)
        pm_agent_reply_err(self, s, m->req_id, err, msg);
    return PM_OK;
}

const pm_isr_env_t pm_isr_agent_env = {
    .alive = s_alive,
    .serves = s_serves,
    .take = s_take,
    .drop = s_drop,
    .backup = s_backup,
    .produced = s_produced,
    .acked = s_acked,
    .gate = s_gate,
    .fail_held = s_fail_held,
    .forced = s_forced,
    .dependants = s_dependants,
};
