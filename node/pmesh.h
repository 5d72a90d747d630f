/*
 * pmesh.h - the C client library of pmesh (libpmesh).
 *
 * A function talks to the pmesh agent on its node over a ZeroMQ socket at a
 * filesystem path. This header is everything a function, a worker or the
 * `pmesh` CLI needs: blocking calls, an asynchronous interface that keeps many
 * requests in flight on one connection, and the worker API.
 *
 * Ownership: every `**` out-argument hands the caller a value it must free
 * with the matching *_destroy or free(); `const` arguments are borrowed for
 * the duration of the call only.
 */
#ifndef PMESH_H
#define PMESH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMESH_VERSION "0.1.0"

/* Where clients connect when neither an explicit path nor $PMESH_SOCKET is set. */
#define PMESH_DEFAULT_SOCKET "/run/pmesh/agent.sock"

/* One error enum for agent, library, CLI and wire. 0 is success; every error is
 * negative so functions can return "int: 0 ok, negative pm_err". */
typedef enum pm_err {
    PM_OK = 0,
    PM_ERR_INTERNAL = -1,            /* unexpected failure (a bug or a failed syscall) */
    PM_ERR_NOT_FOUND = -2,           /* no promise with that id */
    PM_ERR_ALREADY_SETTLED = -3,     /* settled before with a different outcome */
    PM_ERR_TIMED_OUT = -4,           /* the promise timed out; it cannot be settled now */
    PM_ERR_VALUE_TOO_LARGE = -5,     /* value over the agent's max_value_bytes */
    PM_ERR_BAD_REQUEST = -6,         /* malformed or invalid request */
    PM_ERR_AGENT_SHUTTING_DOWN = -7, /* the agent is stopping */
    PM_ERR_WAIT_TIMEOUT = -8,        /* a wait ended while the promise is still pending */
    PM_ERR_UNREACHABLE = -9,         /* the agent cannot be reached */
    PM_ERR_BAD_VERSION = -10,        /* envelope version not spoken by the receiver */
    PM_ERR_NOT_HOLDER = -11,         /* worker answered an invocation it does not hold */
    PM_ERR_LIMIT = -12,              /* a per-client or per-promise limit was reached */
    PM_ERR_OWNER_LOST = -13,         /* the promise's owner died and nobody took over */
    PM_ERR_NO_SESSION = -14,         /* request needs a session (hello) first */
    PM_ERR_UNAVAILABLE = -15,        /* the id space's in-sync copies cannot be reached, or too
                                        few are in sync to accept a write (the message says
                                        which); try again later */
    PM_ERR_NOT_SETTLEABLE = -16,     /* the promise is a combinator: only its inputs settle it */
} pm_err;

/* Stable upper-case name of an error ("NOT_FOUND"); never NULL. */
const char *pm_err_name(int err);
/* Human message for an error; never NULL. */
const char *pm_strerror(int err);

typedef enum pm_state {
    PM_STATE_PENDING = 1,
    PM_STATE_RESOLVED = 2,
    PM_STATE_REJECTED = 3,
    PM_STATE_CANCELED = 4,
    PM_STATE_TIMEDOUT = 5,
} pm_state_t;

/* "pending", "resolved", ...; "unknown" for anything else. */
const char *pm_state_name(int state);
/* Parses a state name; returns the state or 0 if the name is unknown. */
int pm_state_parse(const char *name);

/* Combinators: a new promise settled by the outcomes of its inputs (which
 * may live on any agents). proto/PROTOCOL.md says how lists are encoded. */
typedef enum pm_combinator {
    PM_COMBINE_ALL = 1,         /* every input resolved: JSON array of values; else the first failure */
    PM_COMBINE_ANY = 2,         /* the first input to resolve; else (all failed) every reason */
    PM_COMBINE_RACE = 3,        /* the first input to settle, as it settled */
    PM_COMBINE_ALL_SETTLED = 4, /* every input settled: JSON array of outcomes */
} pm_combinator_t;

/* "all", "any", "race", "all-settled"; "unknown" for anything else. */
const char *pm_combinator_name(int kind);
/* Parses a combinator name ("all-settled" or "all_settled"); 0 if unknown. */
int pm_combinator_parse(const char *name);

/* Parses a duration: "250ms", "30s", "5m", "2h" (also a bare number of
 * milliseconds). Returns 0 and sets *ms, or -1 on malformed input. */
int pm_parse_duration(const char *text, int64_t *ms);

typedef struct pm_label {
    const char *key;
    const char *value;
} pm_label_t;

/* A promise as the agent reports it. Owned by whoever received it; free with
 * pm_promise_destroy, which frees every string and buffer inside. */
typedef struct pm_promise {
    char *id;
    pm_state_t state;
    uint8_t *value; /* resolved value (NUL-terminated copy for convenience) */
    size_t value_len;
    char *reason;            /* why it was rejected / canceled / timed out; "" otherwise */
    int64_t created_ms;      /* unix milliseconds */
    int64_t settled_ms;      /* 0 while pending */
    int64_t timeout_at_ms;   /* 0: no timeout */
    int64_t heartbeat_ms;    /* 0: no heartbeat required */
    int64_t heartbeat_at_ms; /* next heartbeat deadline, 0 if none */
    char *idempotency_key;   /* "" if none */
    size_t label_count;
    pm_label_t *labels; /* strings owned by the promise */
} pm_promise_t;

void pm_promise_destroy(pm_promise_t **self_p);

typedef struct pm_promise_list {
    size_t count;
    pm_promise_t **items;
    char *cursor; /* pass to the next pm_list for the next page; "" on the last page */
} pm_promise_list_t;

void pm_promise_list_destroy(pm_promise_list_t **self_p);

typedef struct pm_create_opts {
    int64_t timeout_ms;          /* 0: none */
    int64_t heartbeat_ms;        /* 0: none */
    const char *idempotency_key; /* NULL: none */
    size_t label_count;
    const pm_label_t *labels;
    /* pm_create only: if not NULL, *token_p gets the promise's settle token
     * for an outside system (caller frees), or NULL when the agent has no
     * token secret configured. */
    char **token_p;
    /* With token_p: the token is refused this many ms after the create
     * (rounded up to whole seconds); 0: it never expires. */
    int64_t token_ttl_ms;
} pm_create_opts_t;

typedef struct pm_list_opts {
    int state;                 /* 0: any */
    const char *prefix;        /* NULL: any */
    const char *label_key;     /* NULL: any; with label_value */
    const char *label_value;
    uint32_t limit;            /* 0: the agent's default page */
    const char *cursor;        /* NULL or "": first page */
} pm_list_opts_t;

/* ---- connection ---------------------------------------------------------- */

typedef struct pm_client pm_client_t;

/* Connects to the agent at socket_path (NULL: $PMESH_SOCKET, else
 * PMESH_DEFAULT_SOCKET) and opens a session. Returns PM_ERR_UNREACHABLE at
 * once if nothing listens there, or if the agent does not answer within a
 * few seconds.
 *
 * Losing the agent (it crashed, was killed or restarted): every call in
 * flight fails with PM_ERR_UNREACHABLE (its effect unknown: a settle sent
 * just before may have been applied; settles are idempotent, so retry), and
 * so does every reply pm_recv still owes. The next call connects again by
 * itself with a new session (a new id lease: ids minted before stay valid
 * promise ids); if no agent listens yet, that call fails with
 * PM_ERR_UNREACHABLE at once and the one after tries again. See
 * proto/PROTOCOL.md, "Losing the agent". */
int pm_client_connect(const char *socket_path, pm_client_t **client_p);
/* Closes the session (outstanding awaits are dropped by the agent) and frees. */
void pm_client_destroy(pm_client_t **self_p);
/* The agent's node name; borrowed. */
const char *pm_client_node(pm_client_t *self);
/* Message of the last failed call on this client (the agent's words); borrowed. */
const char *pm_client_last_error(pm_client_t *self);
/* The agent's id of the current session; 0 while disconnected. It changes
 * when the library connected again (after the agent restarted). */
uint64_t pm_client_session(pm_client_t *self);

/* ---- blocking calls: each returns PM_OK or a pm_err ----------------------- */

/* Creates a promise; *id_p gets its id (caller frees). With an idempotency key
 * that matches an existing promise, *id_p is that promise's id and
 * *created_p (if not NULL) is set to 0. */
int pm_create(pm_client_t *self, const pm_create_opts_t *opts, char **id_p, int *created_p);
int pm_resolve(pm_client_t *self, const char *id, const void *value, size_t len);
int pm_reject(pm_client_t *self, const char *id, const char *reason);
int pm_cancel(pm_client_t *self, const char *id);
int pm_heartbeat(pm_client_t *self, const char *id);
int pm_get(pm_client_t *self, const char *id, pm_promise_t **promise_p);
/* Waits until the promise settles (any state) and returns it in *promise_p.
 * timeout_ms < 0 waits forever; PM_ERR_WAIT_TIMEOUT if it is still pending. */
int pm_await(pm_client_t *self, const char *id, int64_t timeout_ms, pm_promise_t **promise_p);
/* Chains `function` on promise id: returns the new promise's id at once in
 * *new_id_p (caller frees). timeout_ms (0: none) bounds the new promise. */
int pm_then(pm_client_t *self, const char *id, const char *function, int64_t timeout_ms,
            char **new_id_p);
/* pm_then with a rejection handler: if the source fails (rejected, canceled,
 * timed out), on_reject (NULL: none) is invoked with its reason as input and
 * its result settles the new promise. */
int pm_then_catch(pm_client_t *self, const char *id, const char *function, const char *on_reject,
                  int64_t timeout_ms, char **new_id_p);
/* A combinator (pm_combinator_t) over ids[0..n-1] (duplicates count once
 * each): returns the new promise's id at once in *new_id_p (caller frees),
 * before any input settled or even exists at its owner. timeout_ms (0: none)
 * bounds the new promise. PM_ERR_LIMIT above the agent's max_fanin_inputs. */
int pm_combine(pm_client_t *self, int kind, const char *const *ids, size_t n, int64_t timeout_ms,
               char **new_id_p);
int pm_list(pm_client_t *self, const pm_list_opts_t *opts, pm_promise_list_t **list_p);
/* One line of JSON describing the agent; caller frees *json_p. */
int pm_status(pm_client_t *self, char **json_p);
/* The mesh members as the agent sees them: a JSON array of objects with
 * node, endpoint, state, incarnation, last_heard_ms_ago, self, functions
 * ([{name, free, total}]). Caller frees *json_p. */
int pm_members(pm_client_t *self, char **json_p);
/* An operator's request (`pmesh space force-owner`), with a configuration
 * store: the agent makes itself the owner of id space `space` at the next
 * epoch with an empty in-sync set, by a compare-and-swap with its own store
 * client (its TLS settings), and serves the space from its own copy: what
 * the space's lost owner acknowledged and this agent lacks is lost, so
 * accept_data_loss must be 1 (else PM_ERR_BAD_REQUEST, nothing sent).
 * *json_p (caller frees): {"space", "owner", "owner_pid", "epoch",
 * "was_owner", "was_epoch"}. Errors, with the agent's reason in
 * pm_client_last_error: PM_ERR_NOT_FOUND (no record of that space),
 * PM_ERR_UNAVAILABLE (the record changed meanwhile, or the store did not
 * answer: look again), PM_ERR_BAD_REQUEST (no store, or it is ours). */
int pm_space_force_owner(pm_client_t *self, const char *space, int accept_data_loss,
                         char **json_p);

/* ---- asynchronous interface ------------------------------------------------
 * pm_send_* queue a request and return at once with its request id; replies
 * come back from pm_recv in any order. Blocking calls may be mixed in: they
 * leave other replies queued for pm_recv. */

typedef enum pm_op {
    PM_OP_CREATE = 1,
    PM_OP_RESOLVE,
    PM_OP_REJECT,
    PM_OP_CANCEL,
    PM_OP_HEARTBEAT,
    PM_OP_GET,
    PM_OP_AWAIT,
    PM_OP_THEN,
    PM_OP_LIST,
    PM_OP_STATUS,
    PM_OP_COMBINE,
} pm_op_t;

typedef struct pm_result {
    uint64_t req_id;
    pm_op_t op;
    int err;               /* PM_OK or a pm_err */
    char *message;         /* "" on success */
    char *id;              /* create / then / combine: the id */
    pm_promise_t *promise; /* get / await (and settles): the promise, or NULL */
    char *json;            /* status: the agent's JSON; else NULL */
    pm_promise_list_t *list; /* list: the page; else NULL */
} pm_result_t;

void pm_result_destroy(pm_result_t **self_p);

/* Without an idempotency key the id is minted locally and returned at once in
 * *id_p (if not NULL; caller frees), so it can be used in further requests
 * before the reply arrives. */
int pm_send_create(pm_client_t *self, const pm_create_opts_t *opts, char **id_p,
                   uint64_t *req_id_p);
int pm_send_resolve(pm_client_t *self, const char *id, const void *value, size_t len,
                    uint64_t *req_id_p);
int pm_send_reject(pm_client_t *self, const char *id, const char *reason, uint64_t *req_id_p);
int pm_send_cancel(pm_client_t *self, const char *id, uint64_t *req_id_p);
int pm_send_get(pm_client_t *self, const char *id, uint64_t *req_id_p);
int pm_send_await(pm_client_t *self, const char *id, int64_t timeout_ms, uint64_t *req_id_p);
int pm_send_then(pm_client_t *self, const char *id, const char *function, int64_t timeout_ms,
                 char **new_id_p, uint64_t *req_id_p);
int pm_send_then_catch(pm_client_t *self, const char *id, const char *function,
                       const char *on_reject, int64_t timeout_ms, char **new_id_p,
                       uint64_t *req_id_p);
/* The new id is minted locally and returned at once in *new_id_p (if not NULL). */
int pm_send_combine(pm_client_t *self, int kind, const char *const *ids, size_t n,
                    int64_t timeout_ms, char **new_id_p, uint64_t *req_id_p);
int pm_send_heartbeat(pm_client_t *self, const char *id, uint64_t *req_id_p);
/* The result's list holds the page (opts as for pm_list). */
int pm_send_list(pm_client_t *self, const pm_list_opts_t *opts, uint64_t *req_id_p);
/* The result's json holds the agent's status. */
int pm_send_status(pm_client_t *self, uint64_t *req_id_p);
/* Next reply. PM_ERR_WAIT_TIMEOUT if none arrives within timeout_ms (< 0:
 * forever). After the connection was lost, every request still in flight
 * comes back as a result with err PM_ERR_UNREACHABLE; once they are all out,
 * pm_recv itself returns PM_ERR_UNREACHABLE until a pm_send_* reconnects. */
int pm_recv(pm_client_t *self, int timeout_ms, pm_result_t **result_p);

/* For event loops: the ZeroMQ socket behind the client, to put in a
 * zmq_poll set (ZMQ_POLLIN: pm_recv(self, 0, ..) may have a reply), or its
 * file descriptor (ZMQ_FD) for epoll, poll, libuv and the like. Borrowed: do
 * not read, write or close either. NULL / -1 while disconnected.
 *
 * The descriptor is edge-triggered and says "the socket's state may have
 * changed", not "a message is there": when it becomes readable, call
 * pm_recv(self, 0, ..) until it returns PM_ERR_WAIT_TIMEOUT; also do so after
 * every pm_send_* and blocking call (they may read replies into the library's
 * queue, which then never make the descriptor readable again). Both change
 * when the library reconnects: fetch them again whenever pm_client_session
 * changed. */
void *pm_client_socket(pm_client_t *self);
int pm_client_fd(pm_client_t *self);

/* ---- workers ------------------------------------------------------------- */

typedef struct pm_worker pm_worker_t;

typedef struct pm_invocation {
    char *invocation_id;
    char *function;
    uint8_t *input;
    size_t input_len;
    char *target_id; /* the promise the result settles */
    uint32_t attempt;  /* 1, then +1 each time it is handed out again */
    uint64_t session;  /* the worker session it arrived on (pm_worker_session) */
} pm_invocation_t;

void pm_invocation_destroy(pm_invocation_t **self_p);

/* Connects and registers to serve `functions` with at most `concurrency`
 * invocations in flight at once. A background thread keeps the worker's
 * session alive while invocations run. PM_ERR_UNREACHABLE if no agent is
 * there now.
 *
 * Once registered, a worker outlives its agent: when the connection is lost,
 * pm_worker_next reconnects by itself (first at once, then with backoff from
 * 50 ms doubling to 2 s, with jitter), registers the same functions again and
 * goes on serving; it never returns PM_ERR_UNREACHABLE. Invocations received
 * on the lost session are dropped: answering one returns PM_ERR_NOT_HOLDER
 * without sending anything, and the agent hands it out again (see
 * proto/PROTOCOL.md, "Workers"). */
int pm_worker_new(const char *socket_path, const char *const *functions, size_t function_count,
                  int concurrency, pm_worker_t **worker_p);
void pm_worker_destroy(pm_worker_t **self_p);
/* Next invocation; PM_ERR_WAIT_TIMEOUT if none within timeout_ms (0: just
 * poll; < 0: forever). Reconnects while it waits if the agent went away. */
int pm_worker_next(pm_worker_t *self, int timeout_ms, pm_invocation_t **invocation_p);
/* Answers an invocation: its target resolves with value / rejects with reason.
 * PM_ERR_NOT_HOLDER: it came from a session that has ended (nothing sent);
 * PM_ERR_UNREACHABLE: the connection was lost while answering (the agent
 * hands the invocation out again). */
int pm_worker_complete(pm_worker_t *self, const pm_invocation_t *inv, const void *value,
                       size_t len);
int pm_worker_fail(pm_worker_t *self, const pm_invocation_t *inv, const char *reason);
/* The same without waiting for the agent's acknowledgement, for a worker
 * that answers many invocations quickly, or keeps several in flight and
 * answers them in any order: no round trip, and no acknowledgement is sent
 * at all (Result with req_id 0). Returns once the answer is queued; a
 * refusal (NOT_HOLDER) is not reported, an ended session is
 * (PM_ERR_NOT_HOLDER, nothing sent). */
int pm_worker_send_complete(pm_worker_t *self, const pm_invocation_t *inv, const void *value,
                            size_t len);
int pm_worker_send_fail(pm_worker_t *self, const pm_invocation_t *inv, const char *reason);
/* The agent's id of the worker's current session; 0 while it is
 * disconnected. A new value means it reconnected and registered again. */
uint64_t pm_worker_session(pm_worker_t *self);
/* The ZeroMQ socket behind the worker, to put in a zmq_poll set next to other
 * file descriptors (ZMQ_POLLIN means pm_worker_next(self, 0, ..) may have
 * work). Invocations that arrive while pm_worker_complete / pm_worker_fail
 * wait for their acknowledgement are queued inside the library, not on the
 * socket: call pm_worker_next(self, 0, ..) after each answer (and whenever a
 * slot frees) until it returns PM_ERR_WAIT_TIMEOUT, not only on ZMQ_POLLIN.
 * Borrowed: do not read, write or close it. NULL while disconnected: then
 * poll without it for a short while (say 50 ms) and call
 * pm_worker_next(self, 0, ..), which reconnects when its backoff allows; the
 * socket is a new one afterwards. */
void *pm_worker_socket(pm_worker_t *self);

#ifdef __cplusplus
}
#endif

#endif
