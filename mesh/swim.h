/*
 * swim.h - SWIM membership with Lifeguard, as a pure state machine.
 *
 * One pm_swim_t holds this agent's view of the mesh: which agents exist, at
 * which endpoint, at which incarnation, whether they are alive, suspect, dead
 * or gone, and the opaque metadata each one publishes. It does no I/O and
 * reads no clock: the caller feeds it time (`now_ms`, any monotonic
 * millisecond clock), decoded messages (pm_swim_receive) and timer ticks
 * (pm_swim_tick), and it answers through two callbacks: `send` for outgoing
 * messages and `event` for membership changes. Randomness comes from a PRNG
 * seeded at creation, so a run is reproducible from its seed.
 *
 * Ownership: the instance owns every member record. Strings and buffers handed
 * to the callbacks, and the pm_swim_member_t views returned by lookups, are
 * borrowed: valid until the callback returns, or until the next call that
 * takes a non-const pm_swim_t. Callbacks may call the const getters of the
 * instance but nothing that takes a non-const pm_swim_t. Messages passed to
 * pm_swim_receive are borrowed for the call.
 *
 * Not thread-safe: one owner (the agent's reactor thread) drives it.
 */
#ifndef PM_SWIM_H
#define PM_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits enforced on everything pm_swim_receive accepts. */
#define PM_SWIM_NAME_MAX 255     /* bytes in a node name, without the NUL */
#define PM_SWIM_ENDPOINT_MAX 255 /* bytes in an endpoint, without the NUL */
#define PM_SWIM_META_MAX 4096    /* bytes of metadata per member */
#define PM_SWIM_MAX_PIGGYBACK 64 /* updates on a ping/ack/ping-req/nack/gossip */
#define PM_SWIM_MAX_MEMBERS 4096 /* members tracked, and updates in a sync message */

typedef struct pm_swim pm_swim_t;

typedef enum pm_swim_state {
    PM_SWIM_ALIVE = 1,
    PM_SWIM_SUSPECT = 2,
    PM_SWIM_DEAD = 3,
    PM_SWIM_LEFT = 4,
} pm_swim_state_t;

typedef enum pm_swim_msg_type {
    PM_SWIM_MSG_PING = 1,      /* direct probe; target_name says whom the sender means */
    PM_SWIM_MSG_ACK = 2,       /* answer to a ping (or forwarded by a ping-req relay) */
    PM_SWIM_MSG_PING_REQ = 3,  /* "probe target for me" (indirect probe) */
    PM_SWIM_MSG_NACK = 4,      /* relay could not reach the target in time (Lifeguard) */
    PM_SWIM_MSG_GOSSIP = 5,    /* membership updates only, no answer expected */
    PM_SWIM_MSG_SYNC_REQ = 6,  /* push-pull: sender's full state, asks for ours */
    PM_SWIM_MSG_SYNC_RESP = 7, /* push-pull: answer with the full state */
} pm_swim_msg_type_t;

#define PM_SWIM_MSG_TYPES 8 /* size of per-type arrays; index 0 is unused */

/* One membership update ("X is <state> at incarnation i"), piggybacked or
 * synced. `from` names the member that raised a suspicion or declared a
 * death (Lifeguard counts distinct `from`s as independent confirmations);
 * NULL or "" otherwise. `meta` may be NULL when meta_len is 0. */
typedef struct pm_swim_update {
    const char *name;
    const char *endpoint;
    uint64_t incarnation;
    pm_swim_state_t state;
    const uint8_t *meta;
    size_t meta_len;
    const char *from;
} pm_swim_update_t;

/* One SWIM message. Every message carries its sender's name, endpoint and
 * incarnation. `seq` pairs pings, acks, nacks and ping-reqs. `target_*` is
 * set on a ping (target_name only: whom the sender means to probe) and on a
 * ping-req (both: whom to probe). Sync messages carry the full member table
 * in `updates` (up to PM_SWIM_MAX_MEMBERS); the others carry at most
 * PM_SWIM_MAX_PIGGYBACK piggybacked updates. */
typedef struct pm_swim_msg {
    pm_swim_msg_type_t type;
    const char *from_name;
    const char *from_endpoint;
    uint64_t from_incarnation;
    uint64_t seq;
    const char *target_name;
    const char *target_endpoint;
    size_t update_count;
    const pm_swim_update_t *updates;
} pm_swim_msg_t;

/* A read-only view of one member, borrowed from the instance. */
typedef struct pm_swim_member {
    const char *name;
    const char *endpoint;
    uint64_t incarnation;
    pm_swim_state_t state;
    const uint8_t *meta;
    size_t meta_len;
    uint64_t state_since_ms; /* when it entered its current state (our clock) */
    uint64_t last_heard_ms;  /* last message received from it; 0 if never */
    bool is_self;
} pm_swim_member_t;

typedef enum pm_swim_event {
    PM_SWIM_EV_JOINED = 1,  /* first heard of, alive */
    PM_SWIM_EV_ALIVE = 2,   /* was suspect, dead or left, is alive again */
    PM_SWIM_EV_SUSPECT = 3, /* suspected of having failed */
    PM_SWIM_EV_DEAD = 4,    /* declared dead */
    PM_SWIM_EV_LEFT = 5,    /* left gracefully */
    PM_SWIM_EV_META = 6,    /* its metadata or endpoint changed */
    PM_SWIM_EV_REMOVED = 7, /* dead or left for gc_interval: forgotten */
} pm_swim_event_t;

/* Called for every outgoing message; `endpoint` is where to deliver it. */
typedef void(pm_swim_send_fn)(const char *endpoint, const pm_swim_msg_t *msg, void *arg);
/* Called for every change to another member (never for self). */
typedef void(pm_swim_event_fn)(pm_swim_event_t event, const pm_swim_member_t *member, void *arg);

/* Protocol knobs. Defaults (pm_swim_config_defaults) and why they are what
 * they are are in swim.c, next to the detection-time math. Durations in ms. */
typedef struct pm_swim_config {
    uint32_t probe_interval_ms;  /* one probe per period */
    uint32_t probe_timeout_ms;   /* direct ack wait, then ping-req */
    uint32_t indirect_checks;    /* relays asked per failed direct probe */
    uint32_t suspicion_mult;     /* min suspicion = mult * max(1, log10 N) * interval */
    uint32_t suspicion_max_mult; /* max suspicion = this * min suspicion */
    uint32_t retransmit_mult;    /* each update sent mult * ceil(log2(N+1)) times */
    uint32_t gossip_interval_ms; /* pace of update-only gossip while updates are queued */
    uint32_t gossip_nodes;       /* fan-out of a gossip round */
    uint32_t sync_interval_ms;   /* push-pull with one random alive member */
    uint32_t join_retry_ms;      /* re-contact seeds while no peer is alive */
    uint32_t gc_interval_ms;     /* dead/left members are forgotten after this */
    uint32_t max_local_health;   /* Lifeguard health score ceiling */
    uint32_t max_piggyback;      /* updates per message */
    uint32_t piggyback_bytes;    /* approximate byte budget of updates per message */
    uint32_t leave_fanout;       /* members told directly on pm_swim_leave */
    uint64_t incarnation;        /* starting incarnation of self (the agent may pass
                                    wall-clock ms so a restart starts above its old one) */
} pm_swim_config_t;

/* Counters since creation. */
typedef struct pm_swim_stats {
    uint64_t sent[PM_SWIM_MSG_TYPES];     /* by pm_swim_msg_type_t */
    uint64_t received[PM_SWIM_MSG_TYPES]; /* accepted, by type */
    uint64_t dropped_invalid;             /* failed validation */
    uint64_t dropped_stale;               /* sender incarnation older than our record */
    uint64_t dropped_misdirected;         /* a ping meant for another name, or from our name */
    uint64_t stale_updates;               /* piggybacked updates older than our record */
    uint64_t refutations;                 /* times we raised our incarnation to refute */
    uint64_t probes;                      /* probes started */
    uint64_t probes_failed;               /* probes that got no ack by period end */
    uint64_t suspicions;                  /* suspicions raised by our own failed probes */
    uint64_t deaths;                      /* deaths declared by our own suspicion timers */
    uint64_t relays_dropped;              /* ping-reqs refused: too many in flight */
} pm_swim_stats_t;

/* Fills *cfg with the defaults. */
void pm_swim_config_defaults(pm_swim_config_t *cfg);
/* 0 if *cfg is usable; -1 otherwise, with a static reason in *why if why != NULL. */
int pm_swim_config_check(const pm_swim_config_t *cfg, const char **why);

/* Creates an instance for this node; cfg NULL means defaults. Returns NULL if
 * a name/endpoint is empty or too long or cfg fails pm_swim_config_check.
 * `send` is required, `event` may be NULL; both get `arg`. Caller owns the
 * result and frees it with pm_swim_destroy. */
pm_swim_t *pm_swim_new(const char *self_name, const char *self_endpoint,
                       const pm_swim_config_t *cfg, uint64_t seed, pm_swim_send_fn *send,
                       pm_swim_event_fn *event, void *arg);
/* Frees the instance and everything it owns; sets *self_p to NULL. */
void pm_swim_destroy(pm_swim_t **self_p);

/* Runs every timer due at now_ms: probes, suspicion expiry, gossip, sync,
 * join retries, garbage collection. Call it when pm_swim_next_deadline says. */
void pm_swim_tick(pm_swim_t *s, uint64_t now_ms);
/* Earliest now_ms at which pm_swim_tick has work; 0 before the first call
 * that passes a time (tick at once). */
uint64_t pm_swim_next_deadline(const pm_swim_t *s);
/* Feeds one decoded message. Validates it completely before touching any
 * state. Returns 0 if accepted, -1 if dropped (the reason is counted). */
int pm_swim_receive(pm_swim_t *s, const pm_swim_msg_t *msg, uint64_t now_ms);

/* Asks the node at `endpoint` (a seed; its name need not be known) for a full
 * state sync now, and remembers it as a seed to re-contact every
 * join_retry_ms while no other member is alive. Calling it again with the
 * same endpoint re-syncs. Returns 0, or -1 if the endpoint is empty/too long. */
int pm_swim_join(pm_swim_t *s, const char *endpoint, uint64_t now_ms);
/* Leaves gracefully: marks self left at a higher incarnation and sends that
 * directly to up to leave_fanout members; keep ticking a little while after
 * (a gossip_interval or two) so it spreads further. Stops probing. */
void pm_swim_leave(pm_swim_t *s, uint64_t now_ms);
/* Publishes new metadata for self (copied); bumps self's incarnation so it
 * spreads. Returns 0, or -1 if len > PM_SWIM_META_MAX (nothing changes). */
int pm_swim_set_meta(pm_swim_t *s, const void *meta, size_t len, uint64_t now_ms);

/* Number of members in the table, self and not-yet-forgotten dead/left included. */
size_t pm_swim_size(const pm_swim_t *s);
/* Fills *out with member i (0 <= i < pm_swim_size); the order is unspecified
 * and changes on any mutating call. Returns 0, or -1 if i is out of range. */
int pm_swim_member_at(const pm_swim_t *s, size_t i, pm_swim_member_t *out);
/* Fills *out with the member called `name`. Returns 0, or -1 if unknown. */
int pm_swim_lookup(const pm_swim_t *s, const char *name, pm_swim_member_t *out);
/* Number of members in `state`, self included. */
size_t pm_swim_count(const pm_swim_t *s, pm_swim_state_t state);

/* Self's current incarnation. */
uint64_t pm_swim_incarnation(const pm_swim_t *s);
/* Lifeguard local-health score, 0 (healthy) .. max_local_health. */
uint32_t pm_swim_health(const pm_swim_t *s);
/* Current probe period in ms: probe_interval_ms * (health + 1). */
uint64_t pm_swim_probe_period(const pm_swim_t *s);
/* Copies the counters into *out. */
void pm_swim_stats(const pm_swim_t *s, pm_swim_stats_t *out);

/* "alive", "suspect", "dead", "left"; "unknown" otherwise. Never NULL. */
const char *pm_swim_state_name(int state);
/* "ping", "ack", "ping-req", "nack", "gossip", "sync-req", "sync-resp";
 * "unknown" otherwise. Never NULL. */
const char *pm_swim_msg_type_name(int type);
/* "joined", "alive", "suspect", "dead", "left", "meta", "removed"; "unknown"
 * otherwise. Never NULL. */
const char *pm_swim_event_name(int event);

#ifdef __cplusplus
}
#endif

#endif
