/*
 * isr_agent.c - the coordinator's environment (isr.h, pm_isr_env_t) bound
 * to the agent: liveness from the mesh (SWIM, and the process id in a
 * member's primary space), serving and dropping spaces through takeover.c,
 * backups and the reply gate through the replica, held replies through the
 * journal.
 */
#include "isr_agent.h"

#include "place.h"
#include "relay.h"
#include "session.h"
#include "takeover.h"

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

/* R8: we gave space back, drained: results of invocations whose source is
 * in it still settle their targets here. */
static void
s_handed_back(void *arg, const char *space)
{
    pm_place_source_moved(arg, space);
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
    .handed_back = s_handed_back,
};
