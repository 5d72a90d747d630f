/*
 * agent_priv.h - the agent's state (pm_agent_t and the records its parts
 * keep) and what agent.c offers the parts: sending replies, dispatch. The
 * parts, each with its own header: session.h (client and peer sessions),
 * waiters.h (local and remote awaits), thens.h (continuations), relay.h
 * (requests relayed to, or parked for, other owners), place.h (placement of
 * invocations), takeover.h (the spaces we serve: replication, takeover,
 * fencing, probation, retirement) and requests.h (create, settle, list,
 * status). The rules they apply live in pure modules: ids.h, spaces.h,
 * records.h, backup.h. Everything here runs on the reactor thread; nothing
 * here is public.
 */
#ifndef PM_AGENT_PRIV_H
#define PM_AGENT_PRIV_H

#include "agent.h"
#include "base.h"
#include "clock.h"
#include "frameq.h"
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

/* A placed invocation whose target is still pending is sent to its member
 * again this often (place.c); the member runs one per target at a time. */
#define PM_PLACE_RESEND_MS 5000

typedef struct pm_session pm_session_t;
/* One session's frames held for the end of the turn (localbatch.c). */
typedef struct pm_localq {
    uint64_t session;
    pm_frameq_t q;
} pm_localq_t;
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
    int batches;       /* said in its hello: takes Batch envelopes (localbatch.c) */
    pm_waiter_t *waiters;
    size_t n_waiters;
};

struct pm_waiter {
    pm_watch_t watch; /* on a local promise, or on an pm_rwait_t's list */
    pm_timer_t timer;
    pm_agent_t *agent;
    pm_session_t *session;
    uint64_t req_id;
    unsigned tentative; /* a combinator's subscription: early answers wanted for these
                         * outcomes (1 << state; fanin.h, waiters.c) */
    pm_waiter_t *next, *prev;
};

/* A continuation: watches p until p settles, then watches its target q until
 * q settles (so a snapshot can still name it while its invocation runs). */
struct pm_then {
    pm_watch_t watch;
    pm_agent_t *agent;
    pm_then_t *next, *prev;
    char *function;
    char *on_reject; /* NULL, or run with the source's reason when it fails */
    char *source;
    char target[];
};

/* A request relayed to the owner of its promise; answered when the owner's
 * reply comes back, the owner is lost, or forward_timeout passes. */
typedef enum { PM_RELAY_OP = 1, PM_RELAY_SUB } pm_relay_kind_t;

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
    int64_t born;     /* mono ms it was made */
    char node[PM_WIRE_MAX_NAME + 1];
    char pid[];       /* the promise it is about */
} pm_relay_t;

/* A continuation or combinator of a space we back up: revived if we take
 * the space over. Keyed by c.q. */
typedef struct pm_rthen {
    pm_cont_t c;
} pm_rthen_t;

/* A combinator we own (fanins.c): its rules' state (fanin.h), one
 * subscription per input, and a watch on q itself (its own timeout, or its
 * settlement, ends it). */
typedef struct pm_comb pm_comb_t;

/* Local awaits of one remote promise: one subscription at the owner. */
typedef struct pm_rwait {
    pm_watch_t *watches; /* pm_waiter_t.watch */
    uint64_t relay;      /* the subscription's relay id */
    char id[];
} pm_rwait_t;

/* An invocation this agent placed (on a local worker, or on another
 * member's: placed again if that member dies); kept until its target
 * settles. Its result settles the target only through it (place.c). */
typedef struct pm_deleg {
    pm_watch_t watch; /* on the target promise */
    pm_agent_t *agent;
    char node[PM_WIRE_MAX_NAME + 1]; /* the member it runs on; "": here */
    char *function;
    uint8_t *input;
    size_t input_len;
    char *inv_id;
    int64_t sent_at; /* mono ms it was last sent */
    /* The guard of its result: everything appended when it was placed (the
     * input's settle record among it), and the epochs of the target's and
     * the source's id spaces then (src_space NULL: the same space). */
    pm_journal_pos_t pos;
    uint64_t epoch, src_epoch;
    char *src_space;
    /* Its source is in its target's space (R6, place.c): the result needs
     * no hold, the target's settle record follows the source's. */
    int same_space;
    /* Started early (place.c, pm_place_early): its source, a combinator, is
     * not settled yet; pos is not set. A result that comes meanwhile is kept
     * here (has_res) until the source settles as expected or otherwise. */
    int early, has_res, res_state;
    /* Started early by the member it was placed on (chain forwarding,
     * place.c): the source is the target of an invocation placed there, and
     * the input is that invocation's result, not known here (input_known 0)
     * until the member says it started it. */
    int chained, input_known;
    uint8_t *res;
    size_t res_len;
    struct pm_deleg *next, *prev;
    char target[];
} pm_deleg_t;

typedef struct pm_op_counts {
    uint64_t ok, err;
} pm_op_counts_t;

struct pm_agent {
    /* The clocks as agent.c last read them (once per loop iteration, request
     * and mesh message): the parts read these, never the clock itself, so a
     * simulation can hand them any time (clock.h). */
    int64_t now_mono, now_real;
    char *node;
    char *socket_path;
    char space[128]; /* our primary: node (<= 63) + "-" + boot tag */
    char mint[128];  /* where new ids go: space, or a resumed one (mint.h) */
    int mint_pending;   /* mint is not ours yet: resumed once the store says so */
    uint64_t mint_prev; /* the last process of our data dir that served mint (0: us/none) */
    int64_t mint_until; /* ... or given up at this time; once ours, checked again then */
    char mint_back[128]; /* a resumed mint space given up: minted in again if it becomes ours */
    size_t max_value_bytes;
    int64_t client_timeout;
    size_t max_waiters;
    uint32_t list_limit;
    void *ctx;
    int sim;      /* driven by the simulator (agent_step.h): ctx is borrowed, no socket */
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
    zhashx_t *stale_tail;  /* owner node -> pm_bytes_t: the create record a message of
                            * its ended with, of a promise our copy holds settled
                            * (takeover.c: decided by its next message) */
    zhashx_t *then_rsrcs;  /* source id -> thens on it whose source is served elsewhere (thens.c) */
    pm_timers_t *then_timers; /* ... their subscriptions made again after an error (thens.c) */
    zhashx_t *combs;       /* q id -> pm_comb_t (owned): combinators we own (fanins.c) */
    zhashx_t *comb_subs;   /* input id -> pm_fanin_sub_t list: inputs heard over the mesh */
    size_t max_fanin;      /* inputs per combinator (max_fanin_inputs) */
    pm_timers_t *fanin_timers; /* combinator inputs not found yet, asked again (fanins.c) */
    /* Spaces we served before a restart (our old primary, and spaces we had
     * taken over or resumed), not yet resumed: each is served again at the
     * end of the grace period unless another agent serves it by then. */
    pm_claims_t probation;
    /* The spaces our previous process served (its WAL's claims) and their
     * epochs: records of them from an owner at an older epoch are stale,
     * even before the store or the gossip tell us of a newer one. */
    pm_claims_t served_before;
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
    int64_t held_reply_timeout; /* a held reply without an await's deadline fails after this */
    int64_t sub_resend; /* ms: PM_RELAY_SUB_RESEND_MS unless configured (sub_resend) */
    int64_t fanin_not_found_wait; /* ms (fanin_not_found_wait; 0: the default, fanins.c) */
    int fanin_early;              /* fanin_early: combinators take tentative answers */
    int fanin_early_every;        /* fanin_early_copies=every: of every outcome of every input */
    int chain_forward;            /* chain_forward: continuations ride with invocations */
    int mesh_batch;               /* mesh_batch: the mesh corked for each turn of the loop */
    /* In a turn of the loop (agent.c s_turn_begin/end): what goes to a
     * client that takes batches waits in lq, one queue per session, and
     * leaves at the turn's end as one frame (localbatch.c). */
    int turn_open;
    struct pm_localq *lq;
    size_t n_lq, cap_lq;
    zhashx_t *relays;    /* "%llx" relay id -> pm_relay_t (owned) */
    pm_timers_t *relay_timers;
    uint64_t next_relay;
    zhashx_t *rwaits;    /* promise id -> pm_rwait_t (owned) */
    pm_deleg_t *delegs;
    uint64_t next_deleg;
    uint64_t relayed, relay_timeouts, owner_lost, inv_resent;
    uint64_t sub_resends;        /* subscriptions sent again (relay.c) */
    uint64_t sub_repeats_dropped; /* repeats of a subscription answered just before (waiters.c) */
    zhashx_t *sub_answers;       /* subscriptions answered lately (waiters.c; NULL: none yet) */
    int64_t sub_answers_prune;   /* mono ms of the next sweep of sub_answers */
    uint64_t results_refused; /* invocation results refused or dropped (place.c) */
    uint64_t fanin_tentative_sent; /* early answers to combinators' subscriptions (waiters.c) */
    uint64_t fanin_early_starts;   /* continuations of combinators started early (place.c) */
    uint64_t fanin_early_kept;     /* ... kept when the combinator settled as expected */
    uint64_t fanin_early_dropped;  /* ... dropped: it settled otherwise, or never here */
    uint64_t fanin_last_asked;     /* inputs waited for last: every early copy asked (fanins.c) */
    uint64_t chain_forwarded; /* continuations handed on with an invocation (place.c) */
    uint64_t chain_started;   /* ... started here on a result, for the member that placed them */
    uint64_t chain_kept;      /* ... kept when their source settled with that result */
    uint64_t chain_dropped;   /* ... dropped: not started, or the source settled otherwise */
    uint64_t refused_not_served; /* peer requests on spaces we do not serve */
    uint64_t held_expired;       /* held replies answered at their await's timeout */
    zhashx_t *sessions;  /* key -> pm_session_t (owned) */
    zhashx_t *by_id;     /* "%llx" session id -> pm_session_t (borrowed) */
    pm_then_t *thens;     /* every registered continuation, for cleanup */
    uint64_t next_session;
    uint64_t next_seq;
    int64_t started_mono;
    int64_t started_real;
    int64_t last_sweep;
    int64_t place_scan; /* mono ms placed invocations were last looked at (place.c) */
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
    /* The monotonic ms after which the asker of the reply being sent stops
     * waiting (an await's timeout; 0: none): a reply held for durability
     * past it is answered without its content (pm_journal_expire). */
    int64_t send_deadline;
    uint64_t bad_frames;
    uint64_t replies_dropped;
    uint64_t replies_failed; /* held replies answered with an error instead */
    uint64_t sessions_expired;
    uint64_t waiters_timed_out;
    /* Issue 11: what decides ownership, as `pmesh status` shows it
     * ("etcd://...", "none (...)", "" for a single agent or replicas 1). */
    char coord_desc[160];
    struct pm_isr *isr; /* NULL: no configuration store (isr.h) */
};

/* What held replies that must not be sent are answered with. */
typedef struct pm_fail_ctx {
    pm_agent_t *self;
    int err;
    const char *message;
} pm_fail_ctx_t;

/* ---- localbatch.c -------------------------------------------------------------- */
/* A frame (buf malloc'd, handed over) to local session s: held for the end of
 * the turn if s takes batches and a turn is open, else sent now. 0, or -1 if
 * it was dropped (counted by the caller). */
int pm_local_out(pm_agent_t *self, pm_session_t *s, uint8_t *buf, size_t len);
/* Sends what the turn held, a frame per session (several as a Batch). */
void pm_local_flush(pm_agent_t *self);
/* The same for one session (it is closing: what it was sent goes first). */
void pm_local_flush_session(pm_agent_t *self, uint64_t session);
/* Frees the queues, dropping what they hold (the agent is going). */
void pm_local_queues_free(pm_agent_t *self);

/* ---- agent.c ----------------------------------------------------------------- */
/* The shared in-memory configuration store of mem:// (tests); NULL: none. */
extern struct pm_coord_mem *pm_agent_coord_mem;
zlistx_t *pm_agent_xlist(void);
void pm_agent_bad_frame(pm_agent_t *self, const char *why);
void pm_agent_send(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);
void pm_agent_fail_held(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len);
/* The reactor's callbacks (agent.c), wired in by the setup (agent_new.c). */
void pm_agent_clock(pm_agent_t *self);
void pm_agent_journal_send(void *arg, uint64_t session, const char *peer, uint8_t *buf,
                           size_t len, int tag, int64_t t0_us);
void pm_agent_on_peer_message(void *arg, const char *from, pm_msg_t *m);
void pm_agent_store_changed(void *arg, pm_store_event_t ev, const pm_prom_t *p);
void pm_agent_workers_send(void *arg, void *who, const pm_msg_t *m);
void pm_agent_reply_err(pm_agent_t *self, pm_session_t *s, uint64_t req_id, int err,
                        const char *message);
void pm_agent_reply_promise(pm_agent_t *self, pm_session_t *s, uint64_t req_id, const pm_prom_t *p);
void pm_agent_reply_ok(pm_agent_t *self, pm_session_t *s, uint64_t req_id);
void pm_agent_dispatch(pm_agent_t *self, pm_session_t *s, pm_msg_t *m);

#endif
