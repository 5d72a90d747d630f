/*
 * wire.h - the one module that touches the protobuf envelope. Everyone else
 * builds and reads pm_msg_t, a flat struct whose fields are used according to
 * its type. Decoding validates the envelope version and every size before the
 * caller sees anything.
 */
#ifndef PM_WIRE_H
#define PM_WIRE_H

#include "pmesh.h"
#include "swim.h"

#include <stddef.h>
#include <stdint.h>

/* Version 1: the only one so far. A receiver refuses any other with
 * PM_ERR_BAD_VERSION so mixed versions fail loudly, not subtly. */
#define PM_WIRE_VERSION 1

/* Largest envelope accepted from anyone: the largest value (64 MiB cap of
 * max_value_bytes) plus room for the rest of the message. */
#define PM_WIRE_MAX_FRAME (64 * 1024 * 1024 + 64 * 1024)

/* Ids, function names, keys and labels: short strings. 256 bytes leaves room
 * for a node name (63), a boot tag and a sequence with plenty to spare. */
#define PM_WIRE_MAX_NAME 256

/* Inputs of one combinator the decoder accepts: it bounds the decoder's work
 * (65,536 ids of 256 bytes is 16 MiB, well under a frame); the agent's own
 * limit (max_fanin_inputs, default 1,000) is the real one. */
#define PM_WIRE_MAX_IDS 65536

typedef struct pm_bytes {
    const uint8_t *data;
    size_t len;
} pm_bytes_t;

typedef enum pm_msg_type {
    PM_MSG_NONE = 0,
    PM_MSG_HELLO,
    PM_MSG_CREATE,
    PM_MSG_SETTLE,
    PM_MSG_HEARTBEAT,
    PM_MSG_GET,
    PM_MSG_AWAIT,
    PM_MSG_THEN,
    PM_MSG_LIST,
    PM_MSG_STATUS,
    PM_MSG_REGISTER,
    PM_MSG_INVOKE,
    PM_MSG_RESULT,
    PM_MSG_PING,
    PM_MSG_BYE,
    PM_MSG_SWIM,    /* agent <-> agent membership */
    PM_MSG_MEMBERS, /* client asks for the member table (reply json) */
    PM_MSG_REPLICATE,     /* owner -> backup: records of a space */
    PM_MSG_REPLICATE_ACK, /* backup -> owner */
    PM_MSG_REPLY,
    PM_MSG_COMBINE, /* client -> agent: a combinator (all, any, race, all-settled) */
    PM_MSG_FORCE_OWNER, /* operator -> agent (local socket): pmesh space force-owner */
    PM_MSG_BATCH,       /* agent -> agent: envelopes in one frame (records: each packed) */
    PM_MSG_TYPE_COUNT
} pm_msg_type_t;

/* A promise on the wire; every pointer is borrowed. */
typedef struct pm_wire_promise {
    const char *id;
    int state;
    const uint8_t *value;
    size_t value_len;
    const char *reason;
    int64_t created_ms, settled_ms, timeout_at_ms, heartbeat_ms, heartbeat_at_ms;
    const char *key;
    size_t label_count;
    const pm_label_t *labels;
} pm_wire_promise_t;

/* At most this many continuations ride with one invocation (place.c). */
#define PM_WIRE_MAX_STEPS 32

/* A continuation chained after an invocation's target (invoke), or one
 * started on its result (result: target_id and invocation_id). */
typedef struct pm_wire_step {
    const char *source;
    const char *function;
    const char *target_id;
    const char *invocation_id;
} pm_wire_step_t;

typedef struct pm_msg {
    pm_msg_type_t type;
    uint64_t req_id;
    const char *from;          /* mesh traffic: the sending agent's node name */
    const pm_swim_msg_t *swim; /* swim */
    /* requests */
    const char *id;            /* create (optional), settle, heartbeat, get, await, then */
    const char *new_id;        /* then, combine (optional) */
    const char *function;      /* then, invoke */
    const char *on_reject;     /* then (optional): run with the source's reason if it fails */
    int combinator;            /* combine: PM_COMBINE_* (pmesh.h) */
    size_t id_count;           /* combine: the inputs, in order */
    const char *const *ids;
    int state;                 /* settle: the outcome; list: filter */
    const uint8_t *value;      /* settle value, invoke input, result value */
    size_t value_len;
    const char *reason;        /* settle, result */
    int64_t timeout_ms;        /* create, await (< 0: none), then, combine */
    int final;                 /* await, agent -> agent: a combinator's final lookup (fanins.h) */
    int tentative_ok;          /* await, agent -> agent: a combinator takes an early answer */
    unsigned tentative_states; /* await, agent -> agent: for these outcomes (1 << state; 0: all) */
    int tentative;             /* reply, agent -> agent: that early answer (not durable yet) */
    int64_t heartbeat_ms;      /* create */
    const char *key;           /* create */
    int want_token;            /* create */
    int64_t token_ttl_ms;      /* create with want_token: the token's lifetime (0: none) */
    size_t label_count;        /* create labels; list: 0 or 1 (the filter) */
    const pm_label_t *labels;
    const char *prefix;        /* list */
    uint32_t limit;            /* list */
    const char *cursor;        /* list; reply */
    size_t function_count;     /* register */
    const char *const *functions;
    uint32_t concurrency;      /* register */
    const char *invocation_id; /* invoke, result */
    const char *target_id;     /* invoke */
    uint32_t attempt;          /* invoke */
    size_t step_count;         /* invoke, agent -> agent: continuations chained after */
    const pm_wire_step_t *steps; /* target_id; result: those started on it (place.c) */
    int ok;                    /* result */
    uint64_t session;          /* ping; hello reply */
    const char *client_name;   /* hello */
    int batches;               /* hello: the client takes Batch envelopes */
    int accept_data_loss;      /* force_owner */
    /* replication; force_owner: space */
    const char *space;
    uint64_t epoch;
    uint64_t lsn;
    size_t record_count;       /* replicate: packed records; batch: packed envelopes */
    const pm_bytes_t *records;
    int full;
    int fenced;
    uint64_t stream;           /* replicate, ack: the owner's stream */
    uint64_t first;            /* replicate: LSN of the first record */
    uint64_t xfer;             /* replicate (full): transfer number */
    uint64_t count;            /* replicate (full marker): records in the transfer */
    int resync;                /* ack: the backup wants the whole state again */
    /* replies */
    int err;
    const char *message;
    const pm_wire_promise_t *promise;
    size_t promise_count;
    const pm_wire_promise_t *promises;
    const char *json;
    const char *node;
    const char *mint_prefix;
    int created;
    uint64_t max_value; /* hello reply */
    uint64_t client_timeout_ms; /* hello reply: the agent closes sessions silent this long */
    const char *token;  /* create reply */
    pm_bytes_t stats;   /* status reply: a packed pmesh.Stats (stats.h) */
    /* decoder state: owned by the message, freed by pm_wire_release */
    void *priv;
} pm_msg_t;

/* Encodes msg; returns a malloc'd buffer (caller frees) and its size in *len,
 * or NULL when out of memory. */
uint8_t *pm_wire_encode(const pm_msg_t *msg, size_t *len);

/* Decodes and validates buf into *msg, whose pointers borrow from storage
 * that pm_wire_release frees. Returns PM_OK, PM_ERR_BAD_VERSION or
 * PM_ERR_BAD_REQUEST (malformed, unknown type, oversize field). On error
 * msg->req_id is still set when it could be read, so the caller can answer. */
int pm_wire_decode(const void *buf, size_t len, pm_msg_t *msg);
void pm_wire_release(pm_msg_t *msg);

const char *pm_wire_type_name(pm_msg_type_t type);

/* ---- member metadata: what gossip carries about an agent ---------------- */

typedef struct pm_fn_cap {
    const char *name;
    uint32_t free;  /* slots free now */
    uint32_t total; /* slots in all */
} pm_fn_cap_t;

typedef struct pm_meta {
    const char *id_space;       /* where the member mints new ids */
    size_t fn_count;
    const pm_fn_cap_t *fns;
    size_t space_count;         /* id spaces it serves */
    const char *const *spaces;
    const uint64_t *epochs;     /* epoch of each space (NULL: all 1) */
    size_t backup_count;        /* members with a full copy; the first takes over */
    const char *const *backups;
    const char *const *backup_spaces; /* each backup's primary space (NULL: not sent) */
    void *priv;                 /* decoder state */
} pm_meta_t;

/* Packs meta; caller frees the buffer. NULL when out of memory. */
uint8_t *pm_wire_meta_encode(const pm_meta_t *meta, size_t *len);
/* Unpacks and validates; pointers borrow until pm_wire_meta_release. */
int pm_wire_meta_decode(const void *buf, size_t len, pm_meta_t *meta);
void pm_wire_meta_release(pm_meta_t *meta);

/* ---- records: one state change, in the WAL and on its way to backups ---- */

typedef enum pm_rec_kind {
    PM_REC_CREATE = 1,     /* promise: the whole promise */
    PM_REC_SETTLE = 2,     /* promise: id, state, value or reason, settled_ms */
    PM_REC_HEARTBEAT = 3,  /* promise: id, heartbeat_at_ms */
    PM_REC_THEN = 4,       /* promise.id = p, function, target = q */
    PM_REC_GENERATION = 5, /* generation, space: this agent started again */
    PM_REC_DROP = 6,       /* promise.id: dropped after retention */
    PM_REC_RELEASE = 7,    /* space: no longer served here (it moved on) */
    PM_REC_COMBINE = 8,    /* promise.id = the combinator, combinator, inputs */
} pm_rec_kind_t;

typedef struct pm_rec {
    int kind;
    pm_wire_promise_t promise;
    const char *function;
    const char *target;
    uint64_t generation;
    const char *space;
    uint64_t epoch; /* generation 0: the epoch at which space is served */
    const char *on_reject; /* then (optional) */
    int combinator;        /* combine: PM_COMBINE_* */
    size_t input_count;    /* combine: its inputs */
    const char *const *inputs;
    void *priv;
} pm_rec_t;

/* Packs a record; caller frees. */
uint8_t *pm_wire_rec_encode(const pm_rec_t *rec, size_t *len);
/* A copy of n steps in one malloc'd block (the strings after the array;
 * NULL fields stay NULL); NULL when out of memory. free() releases it. */
pm_wire_step_t *pm_wire_steps_copy(const pm_wire_step_t *steps, size_t n);

/* Unpacks and validates; pointers borrow until pm_wire_rec_release. */
int pm_wire_rec_decode(const void *buf, size_t len, pm_rec_t *rec);
void pm_wire_rec_release(pm_rec_t *rec);

#endif
