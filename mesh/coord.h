/*
 * coord.h - the configuration store client: for every id space, who owns it,
 * at which epoch, and which backups are in sync, changed only by
 * compare-and-swap in a linearizable store (etcd; an in-memory twin for tests
 * and the simulator). Asynchronous: the agent's single-threaded reactor asks,
 * and the answers come back on a socket it polls. Issue 11.
 *
 * ==== Why ====
 * "Acknowledged means durable" failed under a network split: gossip decided
 * ownership, so both sides of a split took over the same id space and each
 * acknowledged records the other never saw. Ownership and the in-sync set
 * now live in one record per space that only a compare-and-swap changes.
 *
 * ==== The contract the agent implements (the rules) ====
 * R1 Acknowledge: the owner acknowledges a record only when every member of
 *    the in-sync set recorded in the store (at its epoch) holds it.
 * R2 Shrink first: an owner that loses a backup first records the smaller
 *    in-sync set by CAS and acknowledges nothing until that CAS succeeded.
 *    It grows the set only with a backup that already holds every
 *    acknowledged record (caught up), and records the larger set by CAS.
 *    Only the owner changes the set of its epoch.
 * R3 Take over: only a member of the in-sync set recorded in the store may
 *    take over, by CAS from the revision it read to epoch + 1 with itself
 *    (node and process id) as owner. A CAS that loses (CONFLICT) decides
 *    nothing: the caller re-reads the record it was handed and applies the
 *    rules again.
 * R4 Fence: a backup that knows epoch e of a space (it took over, or learned
 *    it by a watch or a read) refuses replication of that space at any epoch
 *    below e. An owner that sees a higher epoch stops serving the space.
 * R5 Restart: an agent that (re)starts reads the store before serving a
 *    space. A new process has a new process id, so it is never the recorded
 *    owner or an in-sync member: it catches up as a backup and is added by
 *    R2, or takes nothing. One extension (node/isr.h): a process that
 *    replayed the WAL of the process before it on the same data dir (fsync
 *    always or batch) may stand in for that process in R3, as owner or
 *    in-sync member: everything that process acknowledged, as owner or as
 *    backup, was durable in that WAL before the acknowledgement left, so the
 *    invariant below holds for the new process as it held for the old one
 *    (the data dir's lock makes them never run at once).
 * R6 No store on the data path: the store is called only when an owner or an
 *    in-sync set changes, and at start. When the store is unavailable,
 *    healthy spaces (owner and whole in-sync set reachable) keep serving;
 *    takeovers and set changes wait and are retried (counted, logged).
 * R7 Retire: the recorded owner of a space that holds nothing (no promise,
 *    no continuation), is not its own primary nor, as far as it can tell, a
 *    live member's, and that it serves no more, deletes the space's record
 *    by compare-and-delete at the revision it read; only the owner deletes.
 *    A deleted record is like one never created: no agent creates a record
 *    except its own new primary's, once, under a fresh name, so a deleted
 *    space never comes back. Every agent that learns of the deletion (its
 *    own delete, the watch, a re-read, a resync) forgets the space, stops
 *    serving it if it did, and keeps the deleted record's epoch as a fence
 *    (R4) for as long as it runs.
 *
 * ==== Why these rules are safe ====
 * The store is linearizable and every change is a CAS on one key, so the
 * records of a space form one sequence ordered by revision, and epoch e + 1
 * is installed by exactly one successful CAS (two candidates from the same
 * revision: one wins, the other's compare fails). Invariant: every
 * acknowledged record of a space is held by every member of the in-sync set
 * recorded at the latest revision. R1 makes it hold when a record is
 * acknowledged; R2 keeps it when the set changes (a member leaves the
 * recorded set before an acknowledgement stops counting it, and joins it only
 * once it holds everything). A takeover (R3) moves ownership to a member of
 * the latest recorded set, so the new owner holds every acknowledged record:
 * nothing acknowledged is lost. After it, the old owner cannot acknowledge
 * anything new: its in-sync set contains the new owner, who refuses its
 * replication (R4), and its set cannot shrink because its CAS is from a stale
 * revision and fails. A shrink and a takeover racing from the same revision
 * (the owner dropping the candidate, the candidate taking over): exactly one
 * CAS wins; if the shrink wins, the candidate is no longer in the set and may
 * not take over; if the takeover wins, the shrink fails and the old owner
 * stops at R4. Watches only speed things up: every decision is a CAS against
 * a revision, so a missed or late event delays a step, never breaks the
 * invariant. A store outage stops CASes, hence stops set changes and
 * takeovers, which costs availability of the spaces that needed one, never
 * safety. An empty in-sync set means nobody may take over: the owner's
 * records live only with it, and the space waits for it.
 * R7 is safe: the compare-and-delete succeeds only at the revision the owner
 * read, so nothing changed in between (a takeover or set change makes it
 * CONFLICT, and the caller re-reads). Nothing acknowledged is lost: the
 * space holds nothing, and nothing new can land in it: ids are minted only
 * in primaries, which are never deleted while their agent is seen alive,
 * and an agent never creates a record for a space whose record it has
 * seen. After the deletion no CAS can succeed on the space (NOT_FOUND), so
 * no stale takeover can revive it. A stale owner cut off before the
 * deletion (at an older epoch) can acknowledge nothing: its acknowledgement
 * needs every member of its recorded in-sync set, and one of them took the
 * space over (or learned a later epoch) and fences that epoch: the fence
 * outlives the record (kept in memory), and a restarted member is a new
 * process the stale owner's gate never counts. The store, the list an
 * agent reads at start (R5) and the watches then carry only live spaces.
 * Unknown outcomes: UNAVAILABLE for a create or a CAS means the write may or
 * may not have happened (the store may have applied it before the answer was
 * lost). The caller re-reads (get) before deciding; a CAS that finds its own
 * record (same owner, owner_pid and epoch) succeeded.
 *
 * ==== Encoding in the store ====
 * Key: PREFIX "/spaces/" SPACE (PREFIX is the mesh's key prefix, e.g.
 * "/pmesh/prod"; SPACE is 1..127 printable characters without '/'). Value: a
 * JSON object (jansson), unknown keys ignored:
 *   {"v": 1, "space": "SPACE", "owner": "NODE", "owner_pid": "DECIMAL U64",
 *    "epoch": N, "in_sync": [{"node": "NODE", "pid": "DECIMAL U64"}, ...]}
 * Process ids are decimal strings because a JSON number holds only 53 bits
 * exactly. "owner" may be "" (no owner yet). Records whose value does not
 * parse, or whose "space" differs from the key, come back as BAD with a
 * message. The record's revision is the key's mod_revision in etcd (the
 * store-wide revision of its last change), so CAS compares mod_revision;
 * create compares create_revision == 0 (absent).
 *
 * ==== Failures (etcd) ====
 * A request that cannot connect moves on to the next endpoint; a read moves
 * on after any failure, each endpoint getting its share of the timeout; a
 * write that may have reached etcd is never sent again (UNAVAILABLE). Every
 * request is answered within request_timeout_ms. A watch that breaks starts
 * again on the next endpoint after a backoff (100 ms doubling to 2 s) from
 * the revision after the last it delivered; its caller hears UNAVAILABLE
 * once every endpoint failed in a row, and OK when it is back. A stopped
 * (not dead) etcd keeps its connections open: a watch on it notices only
 * when a request of the same client to that endpoint times out.
 *
 * ==== Threads ====
 * The etcd backend runs a thread of its own (libcurl multi) and talks to the
 * caller over an inproc ZeroMQ PAIR. The memory backend runs on the caller's
 * thread. Either way every pm_coord_* call is made by one thread (the
 * reactor), never blocks, and answers arrive on pm_coord_socket().
 */
#ifndef PM_COORD_H
#define PM_COORD_H

#include <stddef.h>
#include <stdint.h>

/* An in-sync set of a space: its owner's backups. 8 covers any replication
 * factor we run (3 to 5) with room for members joining. */
#define PM_COORD_MAX_INSYNC 8
/* Node and space names: the mesh's node names fit in 127 bytes. */
#define PM_COORD_NAME_MAX 128

typedef struct pm_coord_member {
    char node[PM_COORD_NAME_MAX];
    uint64_t pid; /* the process id of that node's agent (e.g. its replication stream id) */
} pm_coord_member_t;

/* The record of one id space. */
typedef struct pm_coord_record {
    char space[PM_COORD_NAME_MAX];
    char owner[PM_COORD_NAME_MAX]; /* "" : no owner */
    uint64_t owner_pid;
    uint64_t epoch;
    size_t n_in_sync;
    pm_coord_member_t in_sync[PM_COORD_MAX_INSYNC];
    int64_t revision; /* the store's revision of this record (mod_revision); 0: not stored */
} pm_coord_record_t;

typedef enum pm_coord_kind {
    PM_COORD_GET = 1,
    PM_COORD_CREATE,
    PM_COORD_CAS,
    PM_COORD_LIST,
    /* A watch's state: OK when (re)established, UNAVAILABLE when it broke
     * (once per outage; it is re-established by itself, from the revision
     * after the last one delivered, so no change is missed). */
    PM_COORD_WATCH,
    /* One change under the prefix: records[0] (deleted set: only its space
     * name is meaningful), revision = the change's revision. In order. */
    PM_COORD_EVENT,
    /* The store forgot the history a watch needed (etcd compaction): records
     * is the whole list at `revision`; events continue after it. The caller
     * replaces what it knew. */
    PM_COORD_RESYNC,
    /* Compare-and-delete: appended last so the values above keep theirs. */
    PM_COORD_DELETE,
} pm_coord_kind_t;

typedef enum pm_coord_status {
    PM_COORD_OK = 0,
    PM_COORD_CONFLICT,    /* create: exists; CAS / delete: revision moved. records[0] is the current one */
    PM_COORD_NOT_FOUND,   /* get / CAS / delete: no such space */
    PM_COORD_UNAVAILABLE, /* store unreachable or timed out; a write's outcome is unknown */
    PM_COORD_BAD,         /* the store answered something malformed: see message */
} pm_coord_status_t;

/* One completion. Caller owns it: pm_coord_result_destroy. */
typedef struct pm_coord_result {
    uint64_t req; /* the id the request returned (a watch's id for its events) */
    pm_coord_kind_t kind;
    pm_coord_status_t status;
    int64_t revision; /* store revision this answer reflects (EVENT: the change's) */
    int deleted;      /* EVENT: the space's record was deleted */
    size_t n_records;
    pm_coord_record_t *records; /* GET/CREATE/CAS/DELETE: 0 or 1; LIST/RESYNC: all; EVENT: 1 */
    char message[256];          /* why, for UNAVAILABLE and BAD */
} pm_coord_result_t;

typedef struct pm_coord_mem pm_coord_mem_t;

typedef struct pm_coord_config {
    /* "etcd://HOST:PORT[,HOST:PORT...]" or "mem://" (then mem is required). */
    const char *url;
    /* The mesh's key prefix, e.g. "/pmesh/prod": no trailing '/'. */
    const char *prefix;
    int64_t request_timeout_ms; /* 0: 2000. Every request is answered within it */
    int64_t connect_timeout_ms; /* 0: 500. Per endpoint, before failing over */
    void *zmq_ctx;              /* the caller's ZeroMQ context; NULL: one of its own */
    pm_coord_mem_t *mem;        /* mem://: the shared in-memory store */
    /* etcd over TLS (https) when ca_file is set: the store's CA, and the
     * client certificate and key it asks for (--client-cert-auth); both or
     * neither. NULL: plain http. */
    const char *ca_file, *cert_file, *key_file;
} pm_coord_config_t;

typedef struct pm_coord pm_coord_t;

/* Counters, for metrics. */
typedef struct pm_coord_stats {
    uint64_t requests, ok, conflicts, not_found, unavailable, bad;
    uint64_t events, watch_breaks, resyncs;
    uint64_t failovers; /* etcd: a request or watch moved to another endpoint */
} pm_coord_stats_t;

/* Connects (lazily: nothing is sent before the first request). NULL with a
 * message in err when the configuration is malformed. Caller owns the result. */
pm_coord_t *pm_coord_new(const pm_coord_config_t *cfg, char *err, size_t errlen);
/* Abandons requests in flight and frees; sets *self_p to NULL. */
void pm_coord_destroy(pm_coord_t **self_p);

/* Requests. Each returns its request id (> 0), or 0 when an argument is
 * malformed (a space name that is not 1..127 printable bytes without '/', a
 * record with more than PM_COORD_MAX_INSYNC members): programmer error. */
uint64_t pm_coord_get(pm_coord_t *self, const char *space);
/* Stores rec only if its space has no record. OK carries the stored record
 * (with its revision); CONFLICT the existing one. */
uint64_t pm_coord_create(pm_coord_t *self, const pm_coord_record_t *rec);
/* Replaces the record of rec->space only if it is still at revision
 * expected. OK carries the stored record; CONFLICT the current one;
 * NOT_FOUND if it was deleted. */
uint64_t pm_coord_cas(pm_coord_t *self, int64_t expected, const pm_coord_record_t *rec);
/* Deletes the record of space only if it is still at revision expected
 * (etcd: a txn comparing mod_revision, then delete). OK: deleted (revision
 * is the deletion's, no record); CONFLICT carries the current record;
 * NOT_FOUND: there was none (deleted already); UNAVAILABLE: unknown
 * outcome, re-read (NOT_FOUND then means it happened, or someone else's
 * delete did). A deleted record is like one never created: watches report
 * it as an EVENT with deleted set, a list no longer carries it. */
uint64_t pm_coord_delete(pm_coord_t *self, const char *space, int64_t expected);
/* Every record under the prefix, at one revision. */
uint64_t pm_coord_list(pm_coord_t *self);
/* Every change under the prefix from revision from_rev, until destroy: a
 * WATCH result when established, then EVENTs. from_rev 0: from the revision
 * the first WATCH OK carries, on. To miss nothing, list first and watch from
 * the list's revision + 1. */
uint64_t pm_coord_watch(pm_coord_t *self, int64_t from_rev);

/* What to poll for completions (ZMQ_POLLIN): a ZeroMQ socket. Borrowed. */
void *pm_coord_socket(pm_coord_t *self);
/* Its file descriptor (ZMQ_FD: edge-triggered; drain pm_coord_recv after
 * it fires). -1 on error. */
int pm_coord_fd(pm_coord_t *self);
/* The next completion, without waiting: 0 and *out (caller owns), or -1
 * when none is ready. */
int pm_coord_recv(pm_coord_t *self, pm_coord_result_t **out);
void pm_coord_result_destroy(pm_coord_result_t **self_p);
void pm_coord_stats(const pm_coord_t *self, pm_coord_stats_t *out);

/* ---- shared helpers (coord.c) ---- */

const char *pm_coord_status_name(pm_coord_status_t s);
const char *pm_coord_kind_name(pm_coord_kind_t k);
/* 1 if name is a valid space name (see above). */
int pm_coord_space_ok(const char *name);
/* The record as stored (JSON, without revision). Caller frees; NULL: out of memory. */
char *pm_coord_record_encode(const pm_coord_record_t *rec);
/* Parses a stored value for the key's space into *out (revision left 0).
 * 0, or -1 with a message: outside input, validated. */
int pm_coord_record_decode(const char *space, const char *json, size_t len, pm_coord_record_t *out,
                           char *err, size_t errlen);
/* Same owner, owner_pid, epoch and in-sync set (revision ignored). */
int pm_coord_record_same(const pm_coord_record_t *a, const pm_coord_record_t *b);

/* ---- the in-memory store (coord_mem.c): deterministic, for tests and the
 * simulator. Several clients (pm_coord_new with url "mem://" and cfg.mem)
 * share one store; revisions count up from 1. No threads: a client's
 * requests are applied when made, in call order, and their answers are put
 * on its socket once the store's virtual clock reaches their delivery time
 * (now + the client's delay). Watches replay from the store's history. ---- */

pm_coord_mem_t *pm_coord_mem_new(void);
/* The store must outlive its clients. */
void pm_coord_mem_destroy(pm_coord_mem_t **self_p);
/* Advances the virtual clock by ms and delivers what fell due. */
void pm_coord_mem_advance(pm_coord_mem_t *self, int64_t ms);
/* A client cut off from (0) or back on (1) the store: cut off, its requests
 * answer UNAVAILABLE and are not applied, its watches break; back on, they
 * resume from where they were. */
void pm_coord_mem_set_available(pm_coord_t *client, int up);
/* This client's watches deliver nothing for ms (virtual), then all they
 * held, at once; its requests are answered meanwhile. Like an etcd watch
 * stream whose TCP connection stalls after a split heals (retransmissions
 * backed off): the store is reachable, the watch is seconds behind, and
 * nothing tells the client. */
void pm_coord_mem_stall_watch(pm_coord_t *client, int64_t ms);
/* Answers to this client are delivered ms after the request (virtual). */
void pm_coord_mem_set_delay(pm_coord_t *client, int64_t ms);
/* A concurrent writer: stores rec unconditionally (NULL-safe fields) and
 * returns the new revision. */
int64_t pm_coord_mem_put(pm_coord_mem_t *self, const pm_coord_record_t *rec);
/* Deletes a space's record; its revision, or 0 if there was none. */
int64_t pm_coord_mem_delete(pm_coord_mem_t *self, const char *space);
/* Stores a raw value for a space (malformed data, to test BAD). */
int64_t pm_coord_mem_put_raw(pm_coord_mem_t *self, const char *space, const char *value);
/* Forgets history before rev (like etcd compaction): watches behind it resync. */
void pm_coord_mem_compact(pm_coord_mem_t *self, int64_t rev);
/* The store's current revision. */
int64_t pm_coord_mem_revision(const pm_coord_mem_t *self);
/* How many keys (space records) the store holds whose space starts with
 * prefix (NULL or "": all of them). */
size_t pm_coord_mem_keys(const pm_coord_mem_t *self, const char *prefix);
/* The store's crash (coord_mem.c explains the model). hang: from now on
 * requests are applied (writes: one chance in two, drawn from the seed) but
 * not answered. crash: every answer not yet delivered becomes UNAVAILABLE,
 * delivered at once or timeout_ms later (drawn); watch news is let out; the
 * state is kept. The caller takes clients off the store for the outage. */
void pm_coord_mem_seed(pm_coord_mem_t *self, uint64_t seed);
void pm_coord_mem_hang(pm_coord_mem_t *self);
/* Hangs at the next write (CREATE, CAS, DELETE: that one included). */
void pm_coord_mem_arm(pm_coord_mem_t *self);
int pm_coord_mem_hung(const pm_coord_mem_t *self);
void pm_coord_mem_crash(pm_coord_mem_t *self, int64_t timeout_ms);
typedef struct pm_coord_mem_crash_stats {
    uint64_t crashes;
    uint64_t answers_lost; /* answers replaced by UNAVAILABLE */
    uint64_t writes_lost;  /* of them, writes that were applied */
    uint64_t timed_out;    /* of them, delivered after the client's timeout */
} pm_coord_mem_crash_stats_t;
void pm_coord_mem_crash_stats(const pm_coord_mem_t *self, pm_coord_mem_crash_stats_t *out);
/* Requests of client not answered exactly once so far: asked - answered -
 * answers still queued (0 when every request has one answer, given or on its
 * way; > 0 one was dropped; < 0 one was answered twice). */
int64_t pm_coord_mem_unbalanced(const pm_coord_t *client);

/* ---- backends (coord.c dispatches; not for callers) ----
 * coord.c owns the ZeroMQ PAIR: `sock` is the caller's end, `peer` the
 * backend's. A backend answers by sending a pm_coord_result_t pointer (one
 * frame of sizeof(void *), ownership passes) on peer; the etcd backend also
 * receives its requests as pm_coord_req_t pointers on peer (a NULL pointer:
 * stop). */
typedef struct pm_coord_req {
    uint64_t id;
    pm_coord_kind_t kind; /* GET, CREATE, CAS, DELETE, LIST, WATCH */
    char space[PM_COORD_NAME_MAX];
    pm_coord_record_t rec; /* CREATE, CAS */
    int64_t expected;      /* CAS, DELETE */
    int64_t from_rev;      /* WATCH */
} pm_coord_req_t;

typedef struct pm_coord_backend {
    int (*open)(pm_coord_t *c, const pm_coord_config_t *cfg, char *err, size_t errlen);
    void (*submit)(pm_coord_t *c, pm_coord_req_t *req); /* takes req (malloc'd) */
    void (*close)(pm_coord_t *c);
} pm_coord_backend_t;

struct pm_coord {
    const pm_coord_backend_t *be;
    void *impl;
    void *ctx;
    int own_ctx;
    void *sock, *peer;
    char prefix[256];
    uint64_t next_id;
    pm_coord_stats_t stats;     /* counted by pm_coord_recv, on the caller's thread */
    _Atomic uint64_t failovers; /* counted by the etcd thread */
    _Atomic uint64_t in_flight; /* results sent to sock and not yet received */
};

extern const pm_coord_backend_t pm_coord_etcd_backend;
extern const pm_coord_backend_t pm_coord_mem_backend;
/* Sends r to the caller (ownership passes). 0, or -1 (r freed). */
int pm_coord_deliver(pm_coord_t *c, pm_coord_result_t *r);
/* A new result (calloc'd); NULL when out of memory. */
pm_coord_result_t *pm_coord_result_new(uint64_t req, pm_coord_kind_t kind, pm_coord_status_t st);
/* Sets the result's message (printf). */
void pm_coord_result_msg(pm_coord_result_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a copy of rec to r->records. 0, or -1 when out of memory. */
int pm_coord_result_add(pm_coord_result_t *r, const pm_coord_record_t *rec);

#endif
