/*
 * agent_priv.h - the agent's state and the interface between its parts:
 * agent.c (the poll loop, dispatch, replies, wiring), session.c (client and
 * peer sessions), waiters.c (local and remote awaits), thens.c
 * (continuations), relay.c (requests relayed to, or parked for, other
 * owners), place.c (placement of invocations), takeover.c (the spaces we
 * serve: replication, takeover, fencing, probation, retirement) and
 * requests.c (create, settle, list, status). All of them run on the reactor
 * thread and share one pm_agent_t; nothing here is public.
 */
#ifndef PM_AGENT_PRIV_H
#define PM_AGENT_PRIV_H

#include "agent.h"
#include "base.h"
#include "clock.h"
#include "hist.h"
#include "ids.h"
#include "journal.h"
#include "log.h"
#include "mesh.h"
#include "records.h"
#include "backup.h"
#include "replica.h"
#include "spaces.h"
#include "store.h"
#include "timer.h"
#include "token.h"
#include "wire.h"
#include "workers.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* How often idle sessions are swept; a quarter of the shortest allowed
 * client_timeout keeps detection within ~1.25x the timeout. */
#define PM_AGENT_SWEEP_MS 50
/* A just-started agent has not heard every member's metadata: a join and the
 * first full sync take ~1 s. Until this long after its start, a request on a
 * space it has never heard of waits for that rather than failing NOT_FOUND. */
#define PM_AGENT_YOUNG_MS 3000
/* A space named after a live member that we have not heard of is most likely
 * its new primary (it restarted a moment ago), announced within a gossip
 * round or two: a request on it waits this long for the news. */
#define PM_AGENT_UNKNOWN_WAIT_MS 2000
/* A restarted agent that has heard no member's full state after this many
 * takeover_grace periods takes itself to be alone (the whole mesh went down)
 * and resumes its spaces from its own WAL. */
#define PM_AGENT_ALONE_GRACES 4
/* Messages handled per poll wake-up before timers get a turn. */
#define PM_AGENT_BATCH 512
/* Largest list page, whatever the client asks: bounds reply size. */
#define PM_AGENT_MAX_PAGE 10000
/* Outgoing queue per client: large, because a burst of async replies to one
 * client must not be dropped while it is merely busy. */
#define PM_AGENT_SNDHWM 1000000

/* The loop wakes at least every PM_AGENT_SWEEP_MS: a gap this long means the agent
 * itself did not run (SIGSTOP, a frozen VM, swapping). */
#define PM_AGENT_STALL_MS 1000

typedef struct pm_session pm_session_t;
typedef struct pm_waiter pm_waiter_t;
typedef struct pm_then pm_then_t;

struct pm_session {
    char key[2 * 256 + 1]; /* hex of the routing id */
    uint8_t rid[256];
    size_t rid_len;
    uint64_t id;
    char mint[PM_WIRE_MAX_NAME];
    size_t mint_len;
    int64_t last_seen; /* monotonic ms */
    int pinged;        /* has a keep-alive thread: silence means death */
    char *peer;        /* set for another agent's session: replies go over the mesh */
    pm_waiter_t *waiters;
    size_t n_waiters;
};

struct pm_waiter {
    pm_watch_t watch; /* on a local promise, or on an pm_rwait_t's list */
    pm_timer_t timer;
    pm_agent_t *agent;
    pm_session_t *session;
    uint64_t req_id;
    pm_waiter_t *next, *prev;
};

/* A continuation: watches p until p settles, then watches its target q until
 * q settles (so a snapshot can still name it while its invocation runs). */
struct pm_then {
    pm_watch_t watch;
    pm_agent_t *agent;
    pm_then_t *next, *prev;
    char *function;
    char *source;
    char target[];
};

/* A request relayed to the owner of its promise; answered when the owner's
 * reply comes back, the owner is lost, or forward_timeout passes. */
typedef enum { PM_RELAY_OP = 1, PM_RELAY_SUB, PM_RELAY_FIRE } pm_relay_kind_t;

typedef struct pm_relay {
    pm_timer_t timer;
    uint64_t id;      /* req_id on the mesh */
    pm_relay_kind_t kind;
    uint8_t *frame;   /* the request as sent, to send again to a new owner */
    size_t frame_len;
    int parked;       /* its owner died; waiting for a takeover to be announced */
    int unknown;      /* parked because, just started, we had not heard of its space */
    uint64_t session; /* PM_RELAY_OP: whom to answer */
    uint64_t req_id;  /* PM_RELAY_OP: the client's req_id */
    char node[PM_WIRE_MAX_NAME + 1];
    char pid[];       /* the promise it is about */
} pm_relay_t;

/* A continuation of a space we back up: revived if we take the space over. */
typedef struct pm_rthen {
    char *p;
    char *function;
    char q[];
} pm_rthen_t;

/* Local awaits of one remote promise: one subscription at the owner. */
typedef struct pm_rwait {
    pm_watch_t *watches; /* pm_waiter_t.watch */
    uint64_t relay;      /* the subscription's relay id */
    char id[];
} pm_rwait_t;

/* An invocation this agent placed on another member's workers; kept until
 * its target settles so it can be placed again if that member dies. */
typedef struct pm_deleg {
    pm_watch_t watch; /* on the target promise */
    pm_agent_t *agent;
    char node[PM_WIRE_MAX_NAME + 1];
    char *function;
    uint8_t *input;
    size_t input_len;
    char *inv_id;
    struct pm_deleg *next, *prev;
    char target[];
} pm_deleg_t;

typedef struct pm_op_counts {
    uint64_t ok, err;
} pm_op_counts_t;

struct pm_agent {
    char *node;
    char *socket_path;
    char space[128]; /* node (<= 63) + "-" + boot tag */
    size_t max_value_bytes;
    int64_t client_timeout;
    size_t max_waiters;
    uint32_t list_limit;
    void *ctx;
    void *router;
    int sigfd;
    pm_store_t *store;
    pm_workers_t *workers;
    pm_timers_t *timers; /* waiters' wait timeouts, monotonic ms */
    pm_mesh_t *mesh;     /* NULL: single node */
    pm_journal_t *journal; /* NULL: no data dir and no replication */
    pm_replica_t *replica; /* NULL: replicas == 1 or no mesh */
    pm_backup_t *backup;   /* what we hold of other owners' streams; NULL: no mesh */
    int replicas;
    zhashx_t *rthens;      /* q id -> pm_rthen_t: continuations of spaces we back up */
    /* Spaces we served before a restart (our old primary, and spaces we had
     * taken over or resumed), not yet resumed: each is served again at the
     * end of the grace period unless another agent serves it by then. */
    pm_claims_t probation;
    int64_t probation_until;
    int64_t probation_alone; /* resume without a sync after this (nobody came) */
    uint64_t takeovers, parked;
    uint8_t *token_key;    /* settle-token secret; NULL: none configured */
    size_t token_key_len;
    uint64_t generation;
    int64_t retention;
    int64_t next_expire, next_compact, next_retire, retire_interval;
    uint64_t retired;
    int64_t forward_timeout;
    zhashx_t *relays;    /* "%llx" relay id -> pm_relay_t (owned) */
    pm_timers_t *relay_timers;
    uint64_t next_relay;
    zhashx_t *rwaits;    /* promise id -> pm_rwait_t (owned) */
    pm_deleg_t *delegs;
    uint64_t next_deleg;
    uint64_t relayed, relay_timeouts, owner_lost;
    zhashx_t *sessions;  /* key -> pm_session_t (owned) */
    zhashx_t *by_id;     /* "%llx" session id -> pm_session_t (borrowed) */
    pm_then_t *thens;     /* every registered continuation, for cleanup */
    uint64_t next_session;
    uint64_t next_seq;
    int64_t started_mono;
    int64_t started_real;
    int64_t last_sweep;
    int64_t last_loop; /* monotonic ms of the last loop iteration (stall detection) */
    int stopping;
    pm_op_counts_t ops[PM_MSG_TYPE_COUNT];
    /* Receipt of a request to its reply leaving the agent (durability and
     * replication waits included), by type. */
    pm_hist_t op_ms[PM_MSG_TYPE_COUNT];
    /* The request being dispatched, so the reply to it can be timed. */
    pm_session_t *cur_session;
    uint64_t cur_req;
    int cur_type;
    int64_t cur_t0_us;
    uint64_t bad_frames;
    uint64_t replies_dropped;
    uint64_t replies_failed; /* held replies answered with an error instead */
    uint64_t sessions_expired;
    uint64_t waiters_timed_out;
};

/* What held replies that must not be sent are answered with. */
typedef struct pm_fail_ctx {
    pm_agent_t *self;
    int err;
    const char *message;
} pm_fail_ctx_t;

/* ---- agent.c ----------------------------------------------------------------- */
zlistx_t *pm_agent_xlist(void);
void pm_agent_bad_frame(pm_agent_t *self, const char *why);
void pm_agent_send(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);
void pm_agent_fail_held(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len);
void pm_agent_reply_err(pm_agent_t *self, pm_session_t *s, uint64_t req_id, int err,
                        const char *message);
void pm_agent_reply_promise(pm_agent_t *self, pm_session_t *s, uint64_t req_id, const pm_prom_t *p);
void pm_agent_reply_ok(pm_agent_t *self, pm_session_t *s, uint64_t req_id);
void pm_agent_dispatch(pm_agent_t *self, pm_session_t *s, pm_msg_t *m);

/* ---- session.c --------------------------------------------------------------- */
pm_session_t *pm_session_by_id(pm_agent_t *self, uint64_t id);
pm_session_t *pm_session_get(pm_agent_t *self, const uint8_t *rid, size_t len, int64_t now);
void pm_session_close(pm_agent_t *self, pm_session_t *s, const char *why);
void pm_session_destructor(void **item);
pm_session_t *pm_session_peer(pm_agent_t *self, const char *node);
void pm_session_sweep(pm_agent_t *self, int64_t now);
void pm_session_check_stall(pm_agent_t *self, int64_t mono);

/* ---- waiters.c --------------------------------------------------------------- */
void pm_waiter_free(pm_agent_t *self, pm_waiter_t *w);
void pm_waiter_fired(pm_watch_t *watch, pm_prom_t *p);
pm_waiter_t *pm_waiter_new(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono,
                           int *err);
int pm_waiter_do_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono);
void pm_waiter_rwait_destructor(void **item);
void pm_waiter_rwait_finish(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err);
int pm_waiter_remote_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node,
                           int64_t mono);
void pm_waiter_fire_timeouts(pm_agent_t *self, int64_t mono);
int pm_waiter_remote_add(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono,
                         uint64_t relay);

/* ---- thens.c ----------------------------------------------------------------- */
void pm_then_free(pm_then_t *t);
void pm_then_unlink(pm_agent_t *self, pm_then_t *t);
void pm_then_revive(pm_agent_t *self, const char *src, const char *function, const char *q);
size_t pm_then_restore(pm_agent_t *self, const pm_journal_state_t *st);
void pm_then_rthen_destructor(void **item);
void pm_then_rthen_add(pm_agent_t *self, const char *p, const char *function, const char *q);
int pm_then_do(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);

/* ---- relay.c ----------------------------------------------------------------- */
void pm_relay_destructor(void **item);
pm_relay_t *pm_relay_new(pm_agent_t *self, pm_relay_kind_t kind, const char *node,
                         const char *pid);
int pm_relay_send(pm_agent_t *self, pm_relay_t *r, const pm_msg_t *m);
int pm_relay_forward(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node);
void pm_relay_on_peer_reply(pm_agent_t *self, const char *from, pm_msg_t *m);
void pm_relay_fail(pm_agent_t *self, pm_relay_t *r, int err);
void pm_relay_expired(pm_agent_t *self, pm_relay_t *r);
void pm_relay_park(pm_agent_t *self, pm_relay_t *r);
void pm_relay_unpark(pm_agent_t *self);
int pm_relay_route(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono, int *err);

/* ---- place.c ----------------------------------------------------------------- */
int pm_place_settle_anywhere(void *arg, const char *target, int state, const void *data,
                             size_t len);
int pm_place_target_pending(void *arg, const char *target);
void pm_place_deleg_unlink(pm_agent_t *self, pm_deleg_t *d);
void pm_place_deleg_free(pm_deleg_t *d);
void pm_place_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
                     const char *target);
int pm_place_take_unserved(void *arg, const char *function, const uint8_t *input, size_t len,
                           const char *target);

/* ---- takeover.c -------------------------------------------------------------- */
void pm_takeover_housekeeping(pm_agent_t *self, int64_t mono);
void pm_takeover_on_record(void *arg, const pm_rec_t *rec, const uint8_t *buf, size_t len);
void pm_takeover_on_replicate(pm_agent_t *self, const char *from, const pm_msg_t *m);
void pm_takeover_full_state(void *arg, pm_replica_t *r, const char *only, pm_replica_add_fn *add);
void pm_takeover_on_fenced(void *arg, const char *space, uint64_t epoch, const char *fencer);
void pm_takeover_on_moved(void *arg, const char *space);
void pm_takeover_check_probation(pm_agent_t *self, int64_t mono);
void pm_takeover_on_member(void *arg, pm_mesh_event_t ev, const char *name);

/* ---- requests.c -------------------------------------------------------------- */
int pm_req_minted_by(const pm_session_t *s, const char *id);
int pm_req_owned_space(pm_agent_t *self, const char *id);
void pm_req_mint(pm_agent_t *self, char *out, size_t cap);
int pm_req_do_create(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);
int pm_req_do_settle(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);
int pm_req_do_list(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);
void pm_req_do_status(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);

#endif
