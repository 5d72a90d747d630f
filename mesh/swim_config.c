/*
 * swim_config.c - SWIM configuration (see swim.h): the defaults and the
 * check of a pm_swim_config_t, and the names of states, message types and
 * events. Pure.
 */
#include "swim_priv.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
pm_swim_config_defaults(pm_swim_config_t *cfg)
{
    assert(cfg);
    *cfg = (pm_swim_config_t) {
        /* See the detection-time math at the top of this file. */
        .probe_interval_ms = 200,
        /* Loopback RTT is ~60 us and a cross-node one well under 1 ms; 80 ms
         * tolerates a busy agent and leaves 120 ms of the period for the
         * indirect probe and its nacks (relays nack at 64 ms). */
        .probe_timeout_ms = 80,
        /* SWIM's k: three independent paths make a lost packet on one of
         * them an unlikely cause of suspicion (memberlist default). */
        .indirect_checks = 3,
        /* min suspicion 3 periods (600 ms): longer than a probe period plus
         * a gossip hop, so a live suspect hears and refutes in time; k = 1
         * confirmation to reach it. */
        .suspicion_mult = 3,
        /* With no confirmation a suspicion runs 6 x min = 3.6 s (memberlist's
         * default factor): a lone false suspicion under heavy loss has
         * seconds to be refuted. */
        .suspicion_max_mult = 6,
        /* 3 * ceil(log2(N+1)): 9 sends at N=5, 18 at N=32; with fan-out 3
         * that reaches everyone with overwhelming probability. */
        .retransmit_mult = 3,
        /* Updates go out at least every 100 ms while any are queued (and at
         * once when we originate one), not only on the 200 ms probes. */
        .gossip_interval_ms = 100,
        .gossip_nodes = 3,
        /* Full state exchange repairs whatever gossip missed; memberlist's
         * LAN default is 30 s, ours is smaller because the mesh is small. */
        .sync_interval_ms = 10000,
        .join_retry_ms = 1000,
        /* Long enough for a death or leave to reach everyone and for a
         * healed partition to be found again by reconnect syncs. */
        .gc_interval_ms = 30000,
        /* Lifeguard's default: a starved node stretches its period up to 9x. */
        .max_local_health = 8,
        .max_piggyback = 8,
        /* Room for two full 4 KiB metadata records plus small updates. */
        .piggyback_bytes = 16384,
        .leave_fanout = 6,
        .incarnation = 0,
    };
}

int
pm_swim_config_check(const pm_swim_config_t *cfg, const char **why)
{
    const char *reason = NULL;
    if (cfg == NULL)
        reason = "no configuration";
    else if (cfg->probe_interval_ms < 10 || cfg->probe_interval_ms > 60000)
        reason = "probe_interval must be 10 ms .. 60 s";
    else if (cfg->probe_timeout_ms < 1 || cfg->probe_timeout_ms >= cfg->probe_interval_ms)
        reason = "probe_timeout must be at least 1 ms and less than probe_interval";
    else if (cfg->indirect_checks > 16)
        reason = "indirect_checks must be 0 .. 16";
    else if (cfg->suspicion_mult < 2 || cfg->suspicion_mult > 16)
        reason = "suspicion_mult must be 2 .. 16";
    else if (cfg->suspicion_max_mult < 1 || cfg->suspicion_max_mult > 100)
        reason = "suspicion_max_mult must be 1 .. 100";
    else if (cfg->retransmit_mult < 1 || cfg->retransmit_mult > 100)
        reason = "retransmit_mult must be 1 .. 100";
    else if (cfg->gossip_interval_ms < 1 || cfg->gossip_nodes < 1 || cfg->gossip_nodes > 64)
        reason = "gossip_interval must be >= 1 ms and gossip_nodes 1 .. 64";
    else if (cfg->sync_interval_ms < 1 || cfg->join_retry_ms < 1 || cfg->gc_interval_ms < 1)
        reason = "sync_interval, join_retry and gc_interval must be >= 1 ms";
    else if (cfg->max_local_health > 100)
        reason = "max_local_health must be 0 .. 100";
    else if (cfg->max_piggyback < 1 || cfg->max_piggyback > PM_SWIM_MAX_PIGGYBACK - 1)
        reason = "max_piggyback must be 1 .. 63";
    else if (cfg->piggyback_bytes <
             PM_SWIM_META_MAX + PM_SWIM_ENDPOINT_MAX + 2 * PM_SWIM_NAME_MAX + PM_SWIM_UPDATE_OVERHEAD)
        reason = "piggyback_bytes must hold one full update (4,830 bytes)";
    else if (cfg->leave_fanout > 64)
        reason = "leave_fanout must be 0 .. 64";
    if (why)
        *why = reason;
    return reason ? -1 : 0;
}
/* ---------------------------------------------------------------- names */

const char *
pm_swim_state_name(int state)
{
    switch (state) {
    case PM_SWIM_ALIVE: return "alive";
    case PM_SWIM_SUSPECT: return "suspect";
    case PM_SWIM_DEAD: return "dead";
    case PM_SWIM_LEFT: return "left";
    default: return "unknown";
    }
}

const char *
pm_swim_msg_type_name(int type)
{
    switch (type) {
    case PM_SWIM_MSG_PING: return "ping";
    case PM_SWIM_MSG_ACK: return "ack";
    case PM_SWIM_MSG_PING_REQ: return "ping-req";
    case PM_SWIM_MSG_NACK: return "nack";
    case PM_SWIM_MSG_GOSSIP: return "gossip";
    case PM_SWIM_MSG_SYNC_REQ: return "sync-req";
    case PM_SWIM_MSG_SYNC_RESP: return "sync-resp";
    default: return "unknown";
    }
}

const char *
pm_swim_event_name(int event)
{
    switch (event) {
    case PM_SWIM_EV_JOINED: return "joined";
    case PM_SWIM_EV_ALIVE: return "alive";
    case PM_SWIM_EV_SUSPECT: return "suspect";
    case PM_SWIM_EV_DEAD: return "dead";
    case PM_SWIM_EV_LEFT: return "left";
    case PM_SWIM_EV_META: return "meta";
    case PM_SWIM_EV_REMOVED: return "removed";
    default: return "unknown";
    }
}

