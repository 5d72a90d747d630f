/*
 * sim.c - pmesh-sim, the deterministic simulator (issue 14, first slice).
 *
 * N real agents (pm_agent_t: store, journal, WAL, replica, backup, mesh,
 * SWIM, the configuration store's rules) run in this one thread, driven
 * through agent_step.h. Each has its own fake clock (with drift), seeded
 * random source, fake disk and local-send capture, switched in before each
 * of its steps; their meshes talk over one in-memory network (memnet.h) and
 * they share one in-memory configuration store (coord.h, mem://).
 *
 * Simulated clients create promises, settle them from another agent, await
 * them with timeouts, and chain `then` onto them; simulated workers answer
 * the invocations and sometimes die mid-invocation. Faults, overlapping,
 * drawn from the seed: kill (the disk loses what was not synced, clean or
 * torn; the agent restarts on it), pause, partitions (two-way, one-way),
 * packet loss, the store unavailable. Then everything heals and a checker
 * reads every acknowledged promise back.
 *
 * Invariants (a violation fails the seed):
 *   V1 an acknowledged create is never lost (a read after healing finds it);
 *   V2 an acknowledged settle is never lost or changed (a read after healing
 *      shows that outcome);
 *   V3 no promise shows two outcomes (acknowledged settles, awaits and reads
 *      of any agent at any time agree; an ALREADY_SETTLED answer to the very
 *      outcome observed is one too); combinators included;
 *   V4 a combinator (all / any / race / all-settled, issue 15) reads the
 *      outcome its inputs determine, as they read back (single assignment:
 *      what it must have heard); an input that cannot be read may have been
 *      heard as anything, the others still bind it; but an input heard as
 *      NOT_FOUND must not read back NOT_FOUND (its owner records a missing
 *      input as rejected NOT_FOUND before a combinator hears it, fanins.c);
 *   V5 an acknowledged combinator is never lost;
 *   V6 a then runs its main function only on a resolved source and its
 *      on_reject handler only on a failed one, each on that source's value
 *      or reason.
 * Reported, not failed: reads that still end in a typed error after healing
 * (unreadable), and requests never answered (silent).
 * Liveness (L1-L5, failing the seed unless --lenient-liveness): see s_liveness (L5: a
 * combinator its inputs decided still pending, s_fanin_judge), and L4
 * (s_await_missed): an await that ends WAIT_TIMEOUT although its promise's
 * settle was acknowledged, with every fault healed, more than 1 s before
 * the await's timeout.
 *
 * Determinism: everything is driven from the seed; the trace (every fault,
 * request and answer) is hashed (FNV-1a) and printed, so two runs of one
 * seed can be compared.
 */
#include "agent_step.h"
#include "clock.h"
#include "config.h"
#include "coord.h"
#include "disk.h"
#include "fanin.h"
#include "localsock.h"
#include "log.h"
#include "memnet.h"
#include "pmesh.h"
#include "rand.h"
#include "resolve.h"
#include "wal.h"
#include "wire.h"
#include "../common/comb_judge.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

extern struct pm_coord_mem *pm_agent_coord_mem; /* agent.c: the store of mem:// */

#define MAXN 128 /* --nodes (the default draws 3..7; --scale: 64) */
#define MAXW 4    /* workers per node over a run (generations) */
#define OUTLEN 96 /* an outcome as text */
#define MAXIN 7   /* a combinator's inputs in the load (2-5, a duplicate, nested) */
#define IDLEN (PM_WIRE_MAX_NAME + 1)

/* ---- options ---------------------------------------------------------------- */

typedef struct {
    uint64_t seed, seeds;
    int nodes;         /* 0: 3..7 from the seed */
    int replicas;      /* 0: 2..3 from the seed */
    int64_t load_ms;   /* load and faults */
    int64_t settle_ms; /* after healing, before the check */
    int verbose, quiet_faults, no_faults;
    unsigned fault_mask; /* --faults: the kinds drawn (0: every kind) */
    int break_ack; /* self-test: misremember one acknowledged settle (the checker must flag it) */
    int break_reply; /* self-test: lose one answer of a live agent (L1 must flag it) */
    int break_fanin; /* self-test: misread one judged combinator (V4 must flag it) */
    int no_then_chains; /* no then is chained at once on a then's new target (the load
                         * before chain forwarding, which such chains exercise) */
    int no_fanin_then; /* the fan-in load chains no then on its combinators (the load before
                        * early starts: the regression seeds' schedules as they were found) */
    int no_mesh_batch; /* the agents send every mesh message as its own frame (mesh_batch
                        * false: the schedules the regression seeds were found with) */
    int strict_liveness; /* L1-L5 fail the seed (else reported) */
    int log_level;
    int scale;           /* --scale: 64 agents, R=2 unless --nodes/--replicas say otherwise */
    uint64_t restarts;   /* --restarts N: one agent killed and restarted N times (storm) */
    int fsync;           /* --fsync: F_ALWAYS, F_BATCH, or F_MIXED (the default) */
} opts_t;

/* --fsync: every agent always, every agent batch, or drawn (s_draw_fsync). */
enum { F_ALWAYS, F_BATCH, F_MIXED };

/* ---- the world ------------------------------------------------------------- */

typedef struct frame {
    struct frame *next;
    char rid[32];
    uint8_t *buf;
    size_t len;
} frame_t;

typedef struct worker {
    int live;
    char rid[32];
    uint64_t session;
    int registered;
    int chains; /* starts the continuations handed on with an invocation itself, as
                 * libpmesh does (odd generations; even ones leave them to the agent) */
    int64_t next_ping;
    struct inv {
        char id[PM_WIRE_MAX_NAME + 1];
        char target[PM_WIRE_MAX_NAME + 1];
        char out[OUTLEN];
        int64_t due;
        pm_wire_step_t *steps; /* handed on with it (one block) */
        size_t n_steps;
        struct inv *next;
    } *invs;
} worker_t;

typedef struct node {
    int idx;
    char name[16], ep[64], dir[32];
    pm_config_t *cfg;
    pm_agent_t *agent; /* NULL: down */
    pm_clock_fake_t clock;
    pm_rand_seeded_t rand;
    pm_disk_fake_t *disk;
    pm_local_capture_t cap;
    frame_t *in_head, *in_tail; /* client frames for it */
    int64_t down_until, paused_until; /* 0: not */
    int cut_from_store;               /* in a partition's minority */
    worker_t w;
    int wgen;
    /* The node's client connection, as libpmesh keeps one: a HELLO opens a
     * session, a keep-alive pings it (client_timeout / 4), and a restarted
     * agent means a new connection (a new routing id). */
    char crid[32];
    uint64_t csession;
    int64_t cping;
    int cgen;
    char mint[IDLEN];   /* its HELLO's mint prefix: ids this connection may mint */
    uint64_t next_mint;
    int dumped; /* -vv: its status was printed at its first silent request */
    int64_t worker_back; /* a dead worker is replaced at this time */
    uint64_t restarts;
    int wiped;          /* down with its disk gone: restarts on an empty one (a replaced node) */
    int64_t sync_us;    /* slow fsync: each sync takes this long (0: instant) */
    int64_t ahead_us;   /* its clock ran ahead in a slow sync: it runs again once time catches up */
    /* fsync batch (group commit): the WAL's fsync "thread" is the syncer
     * (s_syncer): a request completes at fsync_due (sim ms, 0: none) */
    int batch;
    pm_rand_seeded_t srng; /* how long each background fsync takes */
    int64_t fsync_due;
    int in_bg_sync;        /* the background fsync runs: the sync hook does not block */
    struct fault *kill_armed; /* a kill waiting for its next fsync in flight (s_kill_now) */
} node_t;

typedef struct prom {
    char id[PM_WIRE_MAX_NAME + 1];
    int acked;                 /* its create (or then) was acknowledged */
    char acked_how[200];       /* by which request, where, when */
    char acked_out[OUTLEN];    /* an acknowledged settle's outcome; "" none */
    char seen[OUTLEN];         /* the first outcome anyone observed; "" none */
    char seen_how[96];
    int checked;
    /* Liveness (L2, L3) */
    char then_of[PM_WIRE_MAX_NAME + 1]; /* a then's target: its source p */
    int64_t timeout_ms, hb_ms;          /* its deadline, its heartbeat period (0: none) */
    int64_t acked_at, last_hb;          /* sim ms: acknowledged; last heartbeat sent */
    int64_t settled_at;                 /* sim ms: its first settle acknowledged (0: none) */
    int final_ok;                       /* the read-back answered with the promise */
    char final[OUTLEN];                 /* its outcome then ("" pending) */
    int64_t final_at;
    int recheck;                        /* L2/L3 suspect: read again after a while */
    /* Combinators (V4, V5) and on_reject (V6) */
    int want_read;      /* a pipelined input never acknowledged: read back to judge its
                         * combinator (NOT_FOUND is no violation) */
    int gone;           /* the final read answered NOT_FOUND */
    int fstate;         /* the last read-back: state, and its whole value or reason */
    char *fdata;
    struct comb *comb;  /* a combinator: its kind and inputs */
    int on_reject;      /* a then with the handler g */
} prom_t;

/* A combinator as the client asked for it. */
typedef struct comb {
    int kind, n;
    char ids[MAXIN][IDLEN];
} comb_t;

enum { K_CREATE = 1, K_SETTLE, K_AWAIT, K_THEN, K_GET, K_CHECK, K_HELLO, K_REGISTER,
       K_HEARTBEAT, K_COMBINE };
static const char *s_kind_name[] = {"", "create", "settle", "await", "then", "get", "check",
                                    "hello", "register", "heartbeat", "combine"};

/* A scenario of several requests (fan-in, catch): the next step when the
 * last one's answers are in (or expired). */
enum { SC_FANIN = 1, SC_CATCH };
enum { P_RES, P_REJ, P_TWICE, P_TIMEOUT };
typedef struct scen {
    struct scen *next;
    int type, phase, pending;
    int64_t next_at;      /* phase 4: the next settle */
    int kind, n, pipelined, nested, chain;
    int64_t ctimeout;
    int nc;               /* the combinator's agent (catch: the then's) */
    int owner[MAXIN], plan[MAXIN], order[MAXIN];
    char src[MAXIN][IDLEN]; /* the inputs as created (catch: the source) */
    char ins[MAXIN][IDLEN]; /* the combinator's inputs */
    int nin;
    char comb[IDLEN];       /* the combinator (catch: the then's target) */
    int settled;
} scen_t;

typedef struct req {
    uint64_t id;
    int kind, node;
    char pid[PM_WIRE_MAX_NAME + 1]; /* the promise it is about */
    char out[OUTLEN];               /* settle: the outcome asked for */
    int64_t sent, deadline;         /* sim ms */
    int64_t timeout_ms, hb_ms;      /* create: the promise's deadline and heartbeat period */
    int tries;
    scen_t *sc;                     /* part of a scenario */
    int slot;                       /* its input */
    comb_t *comb;                   /* combine: what it asks for (to the promise on ack) */
    int on_reject;                  /* then: with the handler g */
    struct req *next;
} req_t;

typedef struct fault {
    int kind;
    int64_t end;
    int node;                /* kill, pause, store (one node) */
    uint8_t cut[MAXN][MAXN]; /* partition: links it cuts */
    int minority[MAXN];
    uint32_t permille;       /* loss, reorder, dup */
    int64_t delay;           /* delay, reorder: frames late by up to this (ms) */
    int64_t crash_at;        /* store crash: it hangs until then, then crashes (0: done) */
    int armed;               /* store crash: waiting for a write to hang on; kill: for an
                              * fsync in flight (s_kill_now) */
    int torn;                /* kill: a torn power cut */
    struct fault *next;
} fault_t;

enum { F_KILL, F_PAUSE, F_PART2, F_PART1, F_LOSS, F_STORE, F_SLOWSTORE, F_JUMP, F_SLOWSYNC,
       F_WIPE, F_DELAY, F_REORDER, F_DUP, F_CRASH, F_COUNT };
static const char *s_fault_name[] = {"kill", "pause", "split2", "split1", "loss", "store",
                                     "slowstore", "jump", "slowsync", "wipe", "delay",
                                     "reorder", "dup", "storecrash"};

typedef struct stats {
    uint64_t faults[F_COUNT], torn;
    uint64_t ops[16], acks[16], errs[16], unknown;
    uint64_t violations, unreadable, silent, invocations, worker_deaths, checked;
    uint64_t beyond_r;   /* seeds whose faults went beyond R at some point */
    uint64_t lviol;      /* liveness failures (L1-L5) */
    uint64_t lreported;  /* of them, reported only (--lenient-liveness) */
    uint64_t deadlines, chains; /* L3, L2 cases checked */
    uint64_t delayed, reordered, duplicated;   /* frames (memnet) */
    uint64_t watch_stalls;                     /* store watches stalled at a heal */
    uint64_t crash_answers, crash_writes;      /* store crashes: answers lost, applied writes */
    uint64_t combs, comb_judged, comb_partly, catches; /* V4, V6 cases checked */
    uint64_t early[3]; /* continuations started early: started, kept, dropped (place.c) */
    uint64_t chain[4]; /* chained continuations: forwarded, started, kept, dropped (place.c) */
    int64_t sim_ms;
    int64_t agent_ms;
    /* --restarts: the restart storm (s_storm_end) */
    uint64_t storm_restarts, storm_acks, storm_errs, storm_probes_ok;
    uint64_t storm_spaces, storm_spaces_max, storm_keys, storm_keys_max, store_keys;
    uint64_t storm_seen_alive, storm_seen_by; /* agents that see it alive, of those asked */
    /* fsync batch (group commit) */
    uint64_t agents, batch_agents, batch_seeds;
    uint64_t bg_fsyncs;          /* background fsyncs asked for (the syncer's) */
    uint64_t kills_unsynced;     /* kills (power cuts) with bytes written but not fsynced */
    uint64_t kills_in_flight;    /* kills with a group fsync in flight */
    uint64_t unsynced_bytes;     /* those bytes (a torn cut keeps a prefix of them) */
} stats_t;

typedef struct world {
    opts_t *o;
    uint64_t seed;
    int n, r;
    node_t nodes[MAXN];
    pm_memnet_t *net;
    pm_coord_mem_t *store;
    void *zctx;
    pm_rand_seeded_t rng; /* the simulator's own choices */
    pm_rand_seeded_t wrng; /* watch stalls at a heal (a stream of its own: the schedule
                            * of every other fault stays as it was) */
    pm_rand_seeded_t frng; /* a then chained on a combinator (a stream of its own) */
    pm_resolve_table_t names;
    int64_t now;          /* sim ms */
    uint8_t cuts[MAXN][MAXN]; /* how many faults cut i -> j */
    int store_down;       /* global outages in force */
    zhashx_t *proms;      /* id -> prom_t */
    zlistx_t *prom_list;  /* prom_t, in creation order (for random picks) */
    req_t *reqs;
    uint64_t next_req;
    fault_t *faults;
    int64_t next_op, next_fault;
    uint64_t hash;
    stats_t st;
    char *log;            /* the fault schedule and first violation, for a failing seed */
    size_t log_len, log_cap;
    char first_violation[600];
    int checking;
    int beyond_r;          /* the faults went beyond R (more than R-1 agents down or cut off
                            * at once, or a wiped disk) */
    int64_t jumped_back;   /* the largest backward clock jump (ms): deadlines may fire late */
    int64_t calm_since;    /* sim ms since when no fault is in force (INT64_MAX: one is) */
    int reply_broken;      /* --break-reply: done */
    prom_t *hb[8];         /* promises with a heartbeat period that clients keep beating */
    size_t n_hb;
    scen_t *scens;         /* fan-in and catch scenarios */
    int op_gap;            /* ops every 1..op_gap ms (90; the storm's long tail: 400) */
    /* --restarts: the restart storm on one agent (s_storm_tick) */
    int storm;             /* its node (-1: none) */
    int storm_down;        /* the storm has it down now */
    int64_t storm_next;    /* the storm's next kill or restart (sim ms) */
    int64_t storm_last;    /* its last restart (sim ms) */
    int storm_probing;     /* its probe creates are out (s_storm_probe) */
} world_t;

static void
s_hash(world_t *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        w->hash ^= b[i];
        w->hash *= 1099511628211ULL;
    }
}

static void
s_trace(world_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
s_trace(world_t *w, const char *fmt, ...)
{
    char line[800];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t) n >= sizeof line)
        n = sizeof line - 1;
    s_hash(w, &w->now, sizeof w->now);
    s_hash(w, line, (size_t) n);
    if (w->o->verbose >= 2)
        fprintf(stderr, "  %8.3f s  %s\n", (double) w->now / 1000.0, line);
}

/* Keeps a line of the schedule (printed if the seed fails). */
static void
s_log(world_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
s_log(world_t *w, const char *fmt, ...)
{
    char line[800];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t) n >= sizeof line)
        n = sizeof line - 1;
    s_hash(w, line, (size_t) n);
    char stamp[32];
    int m = snprintf(stamp, sizeof stamp, "  %8.3f s  ", (double) w->now / 1000.0);
    size_t need = w->log_len + (size_t) m + (size_t) n + 2;
    if (need > w->log_cap) {
        w->log_cap = need * 2;
        w->log = realloc(w->log, w->log_cap);
        if (!w->log)
            abort();
    }
    memcpy(w->log + w->log_len, stamp, (size_t) m);
    memcpy(w->log + w->log_len + m, line, (size_t) n);
    w->log_len += (size_t) m + (size_t) n;
    w->log[w->log_len++] = '\n';
    w->log[w->log_len] = 0;
    if (w->o->verbose >= 2)
        fprintf(stderr, "%s%s\n", stamp, line);
}

static void
s_violation(world_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
s_violation(world_t *w, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->st.violations++;
    if (!w->first_violation[0])
        snprintf(w->first_violation, sizeof w->first_violation, "%s", line);
    s_log(w, "VIOLATION %s", line);
}

static void
s_lviolation(world_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
s_lviolation(world_t *w, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->st.lviol++;
    /* Beyond R (more agents down or cut off than R copies survive, a wiped
     * disk) issue 14 asks only that nothing goes silent: a chain or a
     * combinator may stay unfinished there. So beyond R only L1 (a silent
     * request) fails the seed; L2-L5 are reported. */
    int required = !w->beyond_r || strncmp(line, "L1", 2) == 0;
    if (w->o->strict_liveness && required) {
        s_violation(w, "%s", line);
    } else {
        w->st.lreported++;
        s_log(w, "LIVENESS %s", line);
    }
}

static uint64_t
s_rand(world_t *w, uint64_t n)
{
    return n ? pm_rand_seeded_next(&w->rng) % n : 0;
}

static int64_t
s_between(world_t *w, int64_t lo, int64_t hi)
{
    return lo + (int64_t) s_rand(w, (uint64_t) (hi - lo + 1));
}

/* ---- contexts -------------------------------------------------------------- */

static int s_log_level = -1;
static world_t *s_w;      /* the world being run (the syncer's callbacks) */
static node_t *s_current; /* the agent whose context is current */

static void
s_enter(node_t *n)
{
    s_current = n;
    if (s_log_level >= 0)
        pm_log_setup(s_log_level, PM_LOG_JSON, n->name);
    pm_clock_use(&n->clock.clock);
    pm_rand_use(&n->rand.rand);
    pm_local_out_use(&n->cap.out);
    pm_disk_use(pm_disk_fake_disk(n->disk));
}

static void
s_leave(void)
{
    s_current = NULL;
    pm_clock_use(NULL);
    pm_rand_use(NULL);
    pm_local_out_use(NULL);
    pm_disk_use(NULL);
}

/* The memnet's cuts from w->cuts, with a dead node's outgoing links cut too
 * while it is being torn down. */
static void
s_apply_cuts(world_t *w, int dying)
{
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++)
            if (i != j)
                pm_memnet_cut(w->net, w->nodes[i].ep, w->nodes[j].ep,
                              w->cuts[i][j] > 0 || i == dying);
}

static void
s_apply_store(world_t *w, node_t *n)
{
    pm_coord_t *c = n->agent ? pm_agent_sim_coord(n->agent) : NULL;
    if (c)
        pm_coord_mem_set_available(c, !w->store_down && !n->cut_from_store);
}

/* At a heal, half the time, the healed agent's store watch stays silent
 * for 0.3-3.3 s more (its stream's TCP retransmissions backed off across the
 * split) while its requests to the store work: its records of the spaces
 * are stale and nothing tells it so. */
static void
s_stall_watch(world_t *w, node_t *n)
{
    pm_coord_t *c = n->agent ? pm_agent_sim_coord(n->agent) : NULL;
    uint64_t r = pm_rand_seeded_next(&w->wrng);
    if (!c || n->cut_from_store || w->store_down || (r & 1))
        return;
    int64_t ms = 300 + (int64_t) ((r >> 1) % 3000);
    pm_coord_mem_stall_watch(c, ms);
    w->st.watch_stalls++;
    s_log(w, "watch of %s stalls %lld ms", n->name, (long long) ms);
}

static void s_client_start(world_t *w, node_t *n);

/* The fake disk's fsync hook: a slow sync blocks the agent for sync_us (its
 * clock moves on; it does not run again until the world's time catches up). */
static int
s_on_sync(void *arg, const char *path)
{
    (void) path;
    node_t *n = arg;
    if (n->sync_us && !n->in_bg_sync) {
        pm_clock_fake_advance(&n->clock, n->sync_us);
        n->ahead_us += n->sync_us;
    }
    return 0;
}

/* The batch mode's fsync thread, simulated (wal.h, pm_wal_syncer_t): a
 * request takes 0.1-3 ms of the agent's clock (a quarter of them 3-20 ms),
 * or the slow-sync spell's
 * 5-150 ms, during which the agent runs on (its appends wait for the next
 * fsync, their replies are held); the sync itself runs at the first step
 * after that, and a kill before it loses what it would have covered. */
static int64_t
s_syncer_start(void *arg)
{
    (void) arg;
    node_t *n = s_current;
    uint64_t r = pm_rand_seeded_next(&n->srng);
    int64_t us = n->sync_us       ? n->sync_us
                 : (r >> 32) % 4 ? 100 + (int64_t) (r % 2901)    /* 0.1-3 ms */
                                  : 3000 + (int64_t) (r % 17001); /* a slower one: 3-20 ms */
    /* The world steps in ms and the agent's clock drifts: one ms of slack. */
    n->fsync_due = s_w->now + (us + 999) / 1000 + 1;
    s_w->st.bg_fsyncs++;
    return pm_mono_us() + us;
}

static int
s_syncer_sync(void *arg, const struct pm_disk *disk, int fd)
{
    (void) arg;
    node_t *n = s_current;
    n->in_bg_sync = 1;
    int rc = pm_disk_datasync(disk, fd);
    n->in_bg_sync = 0;
    n->fsync_due = 0;
    return rc;
}

static const pm_wal_syncer_t s_syncer = {s_syncer_start, s_syncer_sync, NULL};

/* Whether the faults in force go beyond what R copies survive: more than
 * R-1 agents down, paused or on a split's minority side at once. */
static void
s_check_r(world_t *w)
{
    int affected = 0;
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        affected += n->down_until || n->paused_until || n->cut_from_store > 0;
    }
    if (affected > w->r - 1 && !w->beyond_r) {
        w->beyond_r = 1;
        s_log(w, "beyond R: %d agents down or cut off at once (R = %d)", affected, w->r);
    }
}

static int
s_start(world_t *w, node_t *n)
{
    s_enter(n);
    n->agent = pm_agent_sim_new(n->cfg, n->name, w->zctx);
    s_leave();
    if (!n->agent)
        return -1;
    s_apply_store(w, n);
    n->worker_back = w->now + s_between(w, 10, 500);
    s_client_start(w, n);
    return 0;
}

static void
s_free_frames(node_t *n)
{
    while (n->in_head) {
        frame_t *f = n->in_head;
        n->in_head = f->next;
        free(f->buf);
        free(f);
    }
    n->in_tail = NULL;
}

static void
s_worker_clear(worker_t *wk)
{
    while (wk->invs) {
        struct inv *v = wk->invs;
        wk->invs = v->next;
        free(v->steps);
        free(v);
    }
    memset(wk, 0, sizeof *wk);
}

static void s_collect_early(world_t *w, pm_agent_t *a);

/* Kills the process: the disk keeps what was synced (and, torn, a prefix of
 * the rest); nothing it would still send leaves. */
static void
s_kill(world_t *w, node_t *n, int torn)
{
    uint64_t unsynced = pm_disk_fake_unsynced(n->disk, "wal-"); /* the log's segments */
    if (unsynced && n->batch) {
        w->st.kills_unsynced++;
        w->st.unsynced_bytes += unsynced;
        s_log(w, "%s loses %" PRIu64 " bytes of its log written but not fsynced%s", n->name, unsynced,
              torn ? " (torn: a prefix may stay)" : "");
    }
    n->fsync_due = 0;
    pm_disk_fake_crash(n->disk, torn ? PM_DISK_CRASH_TORN : PM_DISK_CRASH_CLEAN);
    s_apply_cuts(w, n->idx);
    n->cap.refuse = 1;
    s_enter(n);
    s_collect_early(w, n->agent);
    pm_agent_destroy(&n->agent);
    s_leave();
    n->cap.refuse = 0;
    pm_local_capture_clear(&n->cap);
    s_apply_cuts(w, -1);
    /* Its memnet inbox went with its port (unbound). Client connections
     * break: requests in flight there get no answer (outcome unknown). */
    s_free_frames(n);
    if (n->w.live)
        w->st.worker_deaths++;
    s_worker_clear(&n->w);
    n->csession = 0;
    for (req_t *r = w->reqs; r; r = r->next)
        if (r->node == n->idx && r->deadline > w->now)
            r->deadline = w->now; /* the client hears the connection break */
}

/* ---- promises -------------------------------------------------------------- */

static prom_t *
s_prom(world_t *w, const char *id, int make)
{
    prom_t *p = zhashx_lookup(w->proms, id);
    if (p || !make)
        return p;
    p = calloc(1, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    zhashx_insert(w->proms, id, p);
    zlistx_add_end(w->prom_list, p);
    return p;
}

static prom_t *
s_pick(world_t *w)
{
    size_t n = zlistx_size(w->prom_list);
    if (!n)
        return NULL;
    /* Mostly recent ones: they are the ones still pending. */
    size_t k = s_rand(w, 4) ? n - 1 - s_rand(w, n < 40 ? n : 40) : s_rand(w, n);
    prom_t *p = zlistx_first(w->prom_list);
    for (size_t i = 0; i < k; i++)
        p = zlistx_next(w->prom_list);
    return p;
}

/* Adds an agent's early-start counters (fanin.*) to the seed's, before it
 * goes (killed, or at the end). */
static void
s_collect_early(world_t *w, pm_agent_t *a)
{
    char *js = pm_agent_sim_status(a);
    json_t *root = js ? json_loads(js, 0, NULL) : NULL;
    json_t *f = root ? json_object_get(root, "fanin") : NULL;
    const char *keys[3] = {"early_starts", "early_kept", "early_dropped"};
    for (int k = 0; f && k < 3; k++)
        w->st.early[k] += (uint64_t) json_integer_value(json_object_get(f, keys[k]));
    json_t *c = root ? json_object_get(root, "chain") : NULL;
    const char *ckeys[4] = {"forwarded", "started", "kept", "dropped"};
    for (int k = 0; c && k < 4; k++)
        w->st.chain[k] += (uint64_t) json_integer_value(json_object_get(c, ckeys[k]));
    json_decref(root);
    free(js);
}

/* FNV-1a of bytes: a long outcome is compared whole (V3) by its hash. */
static uint64_t
s_fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static void
s_outcome(const pm_wire_promise_t *v, char *out, size_t cap)
{
    switch (v->state) {
    case PM_STATE_RESOLVED:
        if (v->value_len > 60) /* a combinator's list: its start and the hash of all of it */
            snprintf(out, cap, "resolved:%.40s#%016" PRIx64, (const char *) v->value,
                     s_fnv(v->value, v->value_len));
        else
            snprintf(out, cap, "resolved:%.*s", (int) v->value_len,
                     v->value ? (const char *) v->value : "");
        break;
    case PM_STATE_REJECTED:
        if (v->reason && strlen(v->reason) > 60)
            snprintf(out, cap, "rejected:%.40s#%016" PRIx64, v->reason,
                     s_fnv(v->reason, strlen(v->reason)));
        else
            snprintf(out, cap, "rejected:%.60s", v->reason ? v->reason : "");
        break;
    case PM_STATE_CANCELED:
        snprintf(out, cap, "canceled");
        break;
    case PM_STATE_TIMEDOUT:
        snprintf(out, cap, "timedout");
        break;
    default:
        out[0] = 0;
    }
}

/* An outcome observed (how: which operation): V3. */
static void
s_observe(world_t *w, prom_t *p, const char *out, const char *how)
{
    if (!out[0])
        return;
    if (!p->seen[0]) {
        snprintf(p->seen, sizeof p->seen, "%s", out);
        snprintf(p->seen_how, sizeof p->seen_how, "%s", how);
    } else if (strcmp(p->seen, out) != 0) {
        s_violation(w, "V3 two outcomes of %s: %s (%s), then %s (%s)", p->id, p->seen,
                    p->seen_how, out, how);
    }
}

/* ---- client requests -------------------------------------------------------- */

static void
s_send(world_t *w, node_t *n, const char *rid, const pm_msg_t *m)
{
    (void) w;
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    if (!buf)
        abort();
    frame_t *f = calloc(1, sizeof *f);
    snprintf(f->rid, sizeof f->rid, "%s", rid);
    f->buf = buf;
    f->len = len;
    if (n->in_tail)
        n->in_tail->next = f;
    else
        n->in_head = f;
    n->in_tail = f;
}

static req_t *
s_req(world_t *w, int kind, int node, const char *pid, int64_t timeout_ms)
{
    req_t *r = calloc(1, sizeof *r);
    r->id = ++w->next_req;
    r->kind = kind;
    r->node = node;
    if (pid)
        snprintf(r->pid, sizeof r->pid, "%s", pid);
    r->sent = w->now;
    r->deadline = w->now + timeout_ms;
    r->next = w->reqs;
    w->reqs = r;
    w->st.ops[kind]++;
    return r;
}

static void
s_req_free(world_t *w, req_t *r)
{
    for (req_t **pp = &w->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    free(r->comb);
    free(r);
}

/* A new client connection to n's agent: HELLO, then keep-alive pings. */
static void
s_client_start(world_t *w, node_t *n)
{
    snprintf(n->crid, sizeof n->crid, "c%d.%d", n->idx, ++n->cgen);
    n->csession = 0;
    n->mint[0] = 0;
    n->next_mint = 0;
    req_t *r = s_req(w, K_HELLO, n->idx, NULL, 5000);
    pm_msg_t m = {.type = PM_MSG_HELLO, .req_id = r->id, .client_name = "sim-client"};
    s_send(w, n, n->crid, &m);
}

static int
s_live(world_t *w, int i)
{
    return w->nodes[i].agent && !w->nodes[i].down_until && w->now >= 0;
}

static int
s_pick_node(world_t *w, int other_than)
{
    for (int tries = 0; tries < 20; tries++) {
        int i = (int) s_rand(w, (uint64_t) w->n);
        if (i != other_than && s_live(w, i))
            return i;
    }
    return -1;
}

/* ---- scenarios: combinators and on_reject (issue 15) --------------------------- */

/* A live node other than those in avoid[0..na-1]; any live one if none. */
static int
s_pick_node_not(world_t *w, const int *avoid, int na)
{
    for (int tries = 0; tries < 20; tries++) {
        int i = (int) s_rand(w, (uint64_t) w->n), bad = !s_live(w, i);
        for (int k = 0; k < na && !bad; k++)
            bad = avoid[k] == i;
        if (!bad)
            return i;
    }
    return s_pick_node(w, -1);
}

/* An id the connection to c may mint for then(src): in src's owner's space
 * (as libpmesh mints it, so the then can be pipelined). */
static void
s_then_nid(node_t *c, const char *src, char *out, size_t cap)
{
    const char *tilde = strchr(src, '~');
    const char *mine = strchr(c->mint, '~');
    size_t olen = tilde ? (size_t) (tilde - src) : 0;
    unsigned long long k = ++c->next_mint;
    if (!tilde || !mine ||
        ((size_t) (mine - c->mint) == olen && strncmp(src, c->mint, olen) == 0))
        snprintf(out, cap, "%s%llx", c->mint, k);
    else
        snprintf(out, cap, "%.*s~%s%llx", (int) olen, src, c->mint, k);
}

static req_t *
s_sc_req(world_t *w, scen_t *sc, int kind, int node, const char *pid, int64_t t, int slot)
{
    req_t *r = s_req(w, kind, node, pid, t);
    r->sc = sc;
    r->slot = slot;
    sc->pending++;
    return r;
}

/* A settle from node i, as an outside system would (not tracked by the
 * scenario: the ordinary path logs its acknowledgement). */
static void
s_send_settle(world_t *w, int i, const char *pid, int rej, const char *v)
{
    req_t *r = s_req(w, K_SETTLE, i, pid, 20000);
    snprintf(r->out, sizeof r->out, "%s:%s", rej ? "rejected" : "resolved", v);
    pm_msg_t m = {.type = PM_MSG_SETTLE, .req_id = r->id, .id = pid,
                  .state = rej ? PM_STATE_REJECTED : PM_STATE_RESOLVED};
    if (rej)
        m.reason = v;
    else {
        m.value = (const uint8_t *) v;
        m.value_len = strlen(v);
    }
    s_send(w, &w->nodes[i], w->nodes[i].crid, &m);
    s_trace(w, "op %" PRIu64 " settle %s %s at %d", r->id, pid, r->out, i);
}

static void
s_send_await(world_t *w, int i, const char *pid, int64_t t)
{
    req_t *r = s_req(w, K_AWAIT, i, pid, t + 20000);
    pm_msg_t m = {.type = PM_MSG_AWAIT, .req_id = r->id, .id = pid, .timeout_ms = t};
    s_send(w, &w->nodes[i], w->nodes[i].crid, &m);
    s_trace(w, "op %" PRIu64 " await %s at %d", r->id, pid, i);
}

/* combine(kind, ids) at node i; sc may be NULL. The id is minted by the
 * connection when it can (as libpmesh does), else by the agent. */
static void
s_send_combine(world_t *w, scen_t *sc, int i, int kind, char (*ids)[IDLEN], int n,
               int64_t timeout)
{
    node_t *c = &w->nodes[i];
    req_t *r = sc ? s_sc_req(w, sc, K_COMBINE, i, NULL, 20000, -1)
                  : s_req(w, K_COMBINE, i, NULL, 20000);
    r->timeout_ms = timeout;
    r->comb = calloc(1, sizeof *r->comb);
    if (!r->comb)
        abort();
    r->comb->kind = kind;
    r->comb->n = n;
    const char *ptr[MAXIN];
    for (int k = 0; k < n; k++) {
        snprintf(r->comb->ids[k], IDLEN, "%s", ids[k]);
        ptr[k] = r->comb->ids[k];
    }
    char nid[IDLEN] = "";
    if (c->mint[0])
        snprintf(nid, sizeof nid, "%s%llx", c->mint, (unsigned long long) ++c->next_mint);
    pm_msg_t m = {.type = PM_MSG_COMBINE, .req_id = r->id, .combinator = kind,
                  .id_count = (size_t) n, .ids = ptr, .new_id = nid[0] ? nid : NULL,
                  .timeout_ms = timeout};
    s_send(w, c, c->crid, &m);
    s_trace(w, "op %" PRIu64 " combine %s %s of %d at %d", r->id, pm_combinator_name(kind),
            nid, n, i);
}

static scen_t *
s_scen_new(world_t *w, int type)
{
    scen_t *sc = calloc(1, sizeof *sc);
    if (!sc)
        abort();
    sc->type = type;
    sc->next = w->scens;
    w->scens = sc;
    return sc;
}

/* Phase 4: the inputs are settled one by one, 0-150 ms apart, in a random
 * order, from agents other than their owners. */
static void
s_scen_settling(world_t *w, scen_t *sc)
{
    for (int i = 0; i < sc->n; i++)
        sc->order[i] = i;
    for (int i = sc->n - 1; i > 0; i--) {
        int j = (int) s_rand(w, (uint64_t) i + 1), t = sc->order[i];
        sc->order[i] = sc->order[j];
        sc->order[j] = t;
    }
    sc->phase = 4;
    sc->settled = 0;
    sc->next_at = w->now + s_between(w, 0, 150);
}

/* A fan-in: 2-5 inputs created on different agents (a tenth with a short
 * timeout that nobody settles); then a combinator over them (all / any /
 * race / all-settled, a fourth with a timeout of its own, one in five with
 * a duplicate input) on another agent; a third of the time pipelined: its
 * inputs are then(p_i, f) with ids minted by the combinator's connection,
 * sent with it before any answer, so it subscribes to inputs that may not
 * exist yet at their owners; a fourth of the time a nested combinator over
 * it and one input; an await of it from yet another agent; then the inputs
 * settled from other agents (some rejected, some resolved twice from two
 * agents with different values). */
static void
s_fanin_start(world_t *w)
{
    int nc = s_pick_node(w, -1);
    if (nc < 0)
        return;
    scen_t *sc = s_scen_new(w, SC_FANIN);
    sc->nc = nc;
    sc->n = 2 + (int) s_rand(w, 4);
    sc->kind = PM_COMBINE_ALL + (int) s_rand(w, 4);
    sc->ctimeout = s_rand(w, 4) == 0 ? s_between(w, 300, 3000) : 0;
    sc->pipelined = s_rand(w, 3) == 0;
    sc->nested = s_rand(w, 4) == 0;
    int avoid[MAXIN + 1] = {nc};
    for (int i = 0; i < sc->n; i++) {
        int o = s_pick_node_not(w, avoid, i + 1 < w->n ? i + 1 : 1);
        if (o < 0)
            o = nc;
        avoid[i + 1] = sc->owner[i] = o;
        uint64_t d = s_rand(w, 100);
        sc->plan[i] = d < 55 ? P_RES : d < 75 ? P_REJ : d < 90 ? P_TWICE : P_TIMEOUT;
        req_t *r = s_sc_req(w, sc, K_CREATE, o, NULL, 20000, i);
        pm_msg_t m = {.type = PM_MSG_CREATE, .req_id = r->id};
        if (sc->plan[i] == P_TIMEOUT)
            m.timeout_ms = r->timeout_ms = s_between(w, 300, 1500);
        s_send(w, &w->nodes[o], w->nodes[o].crid, &m);
        s_trace(w, "op %" PRIu64 " create (fan-in input %d) at %d", r->id, i, o);
    }
    sc->phase = 1;
}

/* then(p, f, on_reject g) on one agent, sometimes then(.., f) after it on
 * another, an await of the end from a third; then p rejected (four in
 * five) or resolved from a fourth: g (never f) must run on a failure. */
static void
s_catch_start(world_t *w)
{
    int a = s_pick_node(w, -1);
    if (a < 0)
        return;
    scen_t *sc = s_scen_new(w, SC_CATCH);
    sc->n = 1;
    sc->owner[0] = a;
    sc->plan[0] = s_rand(w, 5) ? P_REJ : P_RES;
    sc->chain = (int) s_rand(w, 2);
    req_t *r = s_sc_req(w, sc, K_CREATE, a, NULL, 20000, 0);
    pm_msg_t m = {.type = PM_MSG_CREATE, .req_id = r->id};
    s_send(w, &w->nodes[a], w->nodes[a].crid, &m);
    s_trace(w, "op %" PRIu64 " create (catch) at %d", r->id, a);
    sc->phase = 1;
}

/* Every answer of the phase is in: the next phase. */
static void
s_scen_next(world_t *w, scen_t *sc)
{
    if (sc->type == SC_CATCH) {
        if (sc->phase == 1) {
            if (!sc->src[0][0]) {
                sc->phase = 9;
                return;
            }
            int b = s_pick_node(w, sc->owner[0]);
            if (b < 0)
                b = sc->owner[0];
            sc->nc = b;
            req_t *r = s_sc_req(w, sc, K_THEN, b, sc->src[0], 20000, 0);
            r->on_reject = 1;
            pm_msg_t m = {.type = PM_MSG_THEN, .req_id = r->id, .id = sc->src[0],
                          .function = "f", .on_reject = "g"};
            s_send(w, &w->nodes[b], w->nodes[b].crid, &m);
            s_trace(w, "op %" PRIu64 " then %s f on_reject g at %d", r->id, sc->src[0], b);
            sc->phase = 2;
            return;
        }
        if (sc->comb[0]) {
            const char *end = sc->comb;
            if (sc->chain) {
                int c = s_pick_node(w, sc->nc);
                if (c >= 0) {
                    req_t *r = s_req(w, K_THEN, c, sc->comb, 20000);
                    pm_msg_t m = {.type = PM_MSG_THEN, .req_id = r->id, .id = sc->comb,
                                  .function = "f"};
                    s_send(w, &w->nodes[c], w->nodes[c].crid, &m);
                    s_trace(w, "op %" PRIu64 " then %s f at %d", r->id, sc->comb, c);
                }
            }
            int d = s_pick_node(w, sc->nc);
            if (d >= 0)
                s_send_await(w, d, end, 8000);
        }
        s_scen_settling(w, sc);
        return;
    }
    if (sc->phase == 1) {
        /* The inputs that were created, in order. */
        int k = 0;
        for (int i = 0; i < sc->n; i++)
            if (sc->src[i][0]) {
                if (k != i) {
                    memcpy(sc->src[k], sc->src[i], IDLEN);
                    sc->owner[k] = sc->owner[i];
                    sc->plan[k] = sc->plan[i];
                }
                k++;
            }
        sc->n = k;
        int nc = s_live(w, sc->nc) ? sc->nc : s_pick_node(w, -1);
        if (!k || nc < 0) {
            sc->phase = 9;
            return;
        }
        sc->nc = nc;
        node_t *c = &w->nodes[nc];
        int pipe = sc->pipelined && c->mint[0];
        for (int i = 0; i < k; i++) {
            if (!pipe) {
                memcpy(sc->ins[i], sc->src[i], IDLEN);
                continue;
            }
            s_then_nid(c, sc->src[i], sc->ins[i], IDLEN);
            prom_t *q = s_prom(w, sc->ins[i], 1);
            q->want_read = 1;
            req_t *r = s_sc_req(w, sc, K_THEN, nc, sc->src[i], 20000, i);
            pm_msg_t m = {.type = PM_MSG_THEN, .req_id = r->id, .id = sc->src[i],
                          .function = "f", .new_id = sc->ins[i]};
            s_send(w, c, c->crid, &m);
            s_trace(w, "op %" PRIu64 " then %s f -> %s (pipelined) at %d", r->id, sc->src[i],
                    sc->ins[i], nc);
        }
        sc->nin = k;
        if (s_rand(w, 5) == 0) /* a duplicate counts on its own */
            memcpy(sc->ins[sc->nin++], sc->ins[s_rand(w, (uint64_t) k)], IDLEN);
        s_send_combine(w, sc, nc, sc->kind, sc->ins, sc->nin, sc->ctimeout);
        sc->phase = 2;
        return;
    }
    if (sc->phase == 2 && sc->comb[0]) {
        /* then(comb, f, on_reject g) where the combinator lives, half the
         * time: its function may start before comb settles, on the
         * tentative outcomes of its inputs (fanins.c), and must still run
         * on comb's real outcome (V6). */
        if (!w->o->no_fanin_then && s_live(w, sc->nc) && pm_rand_seeded_next(&w->frng) % 2) {
            req_t *r = s_req(w, K_THEN, sc->nc, sc->comb, 20000);
            r->on_reject = 1;
            pm_msg_t m = {.type = PM_MSG_THEN, .req_id = r->id, .id = sc->comb,
                          .function = "f", .on_reject = "g"};
            s_send(w, &w->nodes[sc->nc], w->nodes[sc->nc].crid, &m);
            s_trace(w, "op %" PRIu64 " then %s f on_reject g at %d", r->id, sc->comb, sc->nc);
        }
        int a = s_pick_node(w, sc->nc);
        if (a >= 0)
            s_send_await(w, a, sc->comb, sc->ctimeout ? sc->ctimeout + s_between(w, 500, 3000)
                                                      : s_between(w, 2000, 8000));
        if (sc->nested) {
            int b = s_pick_node(w, -1);
            char ids[2][IDLEN];
            int first = (int) s_rand(w, 2);
            memcpy(ids[first], sc->comb, IDLEN);
            memcpy(ids[!first], sc->ins[s_rand(w, (uint64_t) sc->nin)], IDLEN);
            if (b >= 0)
                s_send_combine(w, NULL, b, PM_COMBINE_ALL + (int) s_rand(w, 4), ids, 2,
                               s_rand(w, 4) == 0 ? s_between(w, 300, 3000) : 0);
        }
    }
    if (sc->phase == 2)
        s_scen_settling(w, sc);
}

/* An answer (m; NULL: none came) to a request of sc. */
static void
s_scen_reply(world_t *w, req_t *r, const pm_msg_t *m)
{
    scen_t *sc = r->sc;
    int ok = m && !m->err && m->id;
    if (ok && sc->phase == 1 && r->kind == K_CREATE && r->slot >= 0)
        snprintf(sc->src[r->slot], IDLEN, "%s", m->id);
    if (ok && sc->phase == 2 && (r->kind == K_COMBINE || sc->type == SC_CATCH))
        snprintf(sc->comb, IDLEN, "%s", m->id);
    if (--sc->pending == 0 && sc->phase < 4)
        s_scen_next(w, sc);
}

/* Phase 4, when due: the next input settled (its plan). */
static void
s_scen_tick(world_t *w)
{
    for (scen_t *sc = w->scens; sc; sc = sc->next) {
        if (sc->phase != 4 || w->now < sc->next_at)
            continue;
        if (sc->settled >= sc->n) {
            sc->phase = 9;
            continue;
        }
        int i = sc->order[sc->settled++];
        sc->next_at = w->now + s_between(w, 0, 150);
        char v[32];
        int a = s_pick_node(w, sc->owner[i]);
        if (a < 0)
            continue;
        switch (sc->plan[i]) {
        case P_RES:
            snprintf(v, sizeof v, "v%" PRIu64, s_rand(w, 3));
            s_send_settle(w, a, sc->src[i], 0, v);
            break;
        case P_REJ:
            snprintf(v, sizeof v, "e%" PRIu64, s_rand(w, 3));
            s_send_settle(w, a, sc->src[i], 1, v);
            break;
        case P_TWICE: { /* two outside systems race, with different values */
            int b = s_pick_node(w, a);
            snprintf(v, sizeof v, "a%" PRIu64, s_rand(w, 3));
            s_send_settle(w, a, sc->src[i], 0, v);
            if (b >= 0) {
                int rej = s_rand(w, 3) == 0;
                snprintf(v, sizeof v, "%c%" PRIu64, rej ? 'x' : 'b', s_rand(w, 3));
                s_send_settle(w, b, sc->src[i], rej, v);
            }
            break;
        }
        default: /* its own timeout settles it */
            break;
        }
    }
}

/* How many thens lead to q (q a then's target of a then's target ...). */
static int
s_then_depth(world_t *w, prom_t *q)
{
    int d = 0;
    while (q && q->then_of[0] && d < 8) {
        d++;
        q = s_prom(w, q->then_of, 0);
    }
    return d;
}

/* One client operation, drawn from the seed. */
static void
s_client_op(world_t *w)
{
    uint64_t sdice = s_rand(w, 100);
    if (sdice < 4) {
        s_fanin_start(w);
        return;
    }
    if (sdice < 6) {
        s_catch_start(w);
        return;
    }
    uint64_t dice = s_rand(w, 100);
    prom_t *p = s_pick(w);
    char rid[32];
    if (dice < 30 || !p) {
        int i = s_pick_node(w, -1);
        if (i < 0)
            return;
        snprintf(rid, sizeof rid, "%s", w->nodes[i].crid);
        req_t *r = s_req(w, K_CREATE, i, NULL, 20000);
        pm_msg_t m = {.type = PM_MSG_CREATE, .req_id = r->id};
        uint64_t d = s_rand(w, 20);
        if (d < 2)
            m.timeout_ms = r->timeout_ms = s_between(w, 500, 20000);
        else if (d == 2)
            m.heartbeat_ms = r->hb_ms = s_between(w, 300, 3000);
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " create at %d", r->id, i);
        return;
    }
    int i = s_pick_node(w, -1);
    if (i < 0)
        return;
    snprintf(rid, sizeof rid, "%s", w->nodes[i].crid);
    if (dice < 55) {
        req_t *r = s_req(w, K_SETTLE, i, p->id, 20000);
        int rej = s_rand(w, 4) == 0;
        char v[32];
        snprintf(v, sizeof v, "v%" PRIu64, s_rand(w, 3));
        snprintf(r->out, sizeof r->out, "%s:%s", rej ? "rejected" : "resolved", v);
        pm_msg_t m = {.type = PM_MSG_SETTLE, .req_id = r->id, .id = p->id,
                      .state = rej ? PM_STATE_REJECTED : PM_STATE_RESOLVED};
        if (rej)
            m.reason = v;
        else {
            m.value = (const uint8_t *) v;
            m.value_len = strlen(v);
        }
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " settle %s %s at %d", r->id, p->id, r->out, i);
    } else if (dice < 75) {
        int64_t t = s_between(w, 100, 4000);
        req_t *r = s_req(w, K_AWAIT, i, p->id, t + 20000);
        r->timeout_ms = t;
        pm_msg_t m = {.type = PM_MSG_AWAIT, .req_id = r->id, .id = p->id, .timeout_ms = t};
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " await %s at %d", r->id, p->id, i);
    } else if (dice < 90) {
        req_t *r = s_req(w, K_THEN, i, p->id, 20000);
        r->on_reject = s_rand(w, 4) == 0;
        pm_msg_t m = {.type = PM_MSG_THEN, .req_id = r->id, .id = p->id, .function = "f",
                      .on_reject = r->on_reject ? "g" : NULL};
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " then %s at %d%s", r->id, p->id, i,
                r->on_reject ? " on_reject g" : "");
    } else if (dice < 93 && w->n_hb) {
        prom_t *h = w->hb[s_rand(w, w->n_hb)];
        req_t *r = s_req(w, K_HEARTBEAT, i, h->id, 20000);
        h->last_hb = w->now;
        pm_msg_t m = {.type = PM_MSG_HEARTBEAT, .req_id = r->id, .id = h->id};
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " heartbeat %s at %d", r->id, h->id, i);
    } else {
        req_t *r = s_req(w, K_GET, i, p->id, 20000);
        pm_msg_t m = {.type = PM_MSG_GET, .req_id = r->id, .id = p->id};
        s_send(w, &w->nodes[i], rid, &m);
        s_trace(w, "op %" PRIu64 " get %s at %d", r->id, p->id, i);
    }
}

static void
s_check_send(world_t *w, prom_t *p, int tries)
{
    int i = s_pick_node(w, -1);
    if (i < 0)
        return;
    req_t *r = s_req(w, K_CHECK, i, p->id, 10000);
    r->tries = tries;
    pm_msg_t m = {.type = PM_MSG_GET, .req_id = r->id, .id = p->id};
    s_send(w, &w->nodes[i], w->nodes[i].crid, &m);
}

/* The final read of p (K_CHECK): V1, V2, V3. */
static void
s_check_reply(world_t *w, req_t *r, const pm_msg_t *m)
{
    prom_t *p = s_prom(w, r->pid, 0);
    if (!p)
        return;
    if (m->err == PM_ERR_NOT_FOUND) {
        p->checked = 1;
        p->final_ok = 0;
        p->gone = 1;
        if (!p->acked && !p->acked_out[0]) /* want_read: it may never have been made */
            return;
        s_violation(w, "%s acknowledged %s%s is gone (NOT_FOUND at %s: %s); created by %s",
                    p->comb ? "V5" : "V1", p->comb ? "combinator " : "", p->id,
                    w->nodes[r->node].name, m->message ? m->message : "", p->acked_how);
        return;
    }
    if (m->err || !m->promise) {
        if (r->tries < 8) {
            s_check_send(w, p, r->tries + 1);
            return;
        }
        p->final_ok = 0;
        if (p->checked)
            return;
        p->checked = 1;
        w->st.unreadable++;
        s_log(w, "unreadable %s: %s", p->id, pm_err_name(m->err));
        return;
    }
    char out[OUTLEN];
    s_outcome(m->promise, out, sizeof out);
    p->final_ok = 1;
    snprintf(p->final, sizeof p->final, "%s", out);
    p->final_at = w->now;
    p->fstate = m->promise->state;
    free(p->fdata);
    if (m->promise->state == PM_STATE_RESOLVED) {
        p->fdata = malloc(m->promise->value_len + 1);
        if (!p->fdata)
            abort();
        if (m->promise->value_len)
            memcpy(p->fdata, m->promise->value, m->promise->value_len);
        p->fdata[m->promise->value_len] = 0;
    } else {
        p->fdata = strdup(m->promise->reason ? m->promise->reason : "");
    }
    if (p->checked) /* a second read (L2, L3) */
        return;
    p->checked = 1;
    w->st.checked++;
    if (p->acked_out[0] && strcmp(out, p->acked_out) != 0)
        s_violation(w, "V2 acknowledged settle of %s was %s, reads back %s", p->id,
                    p->acked_out, out[0] ? out : "pending");
    /* An id a combinator waited for in vain reads rejected NOT_FOUND for
     * good (its owner recorded it as never made, fanins.c): its legitimate
     * outcome when its create or then was never acknowledged (a pipelined
     * input, want_read), but an acknowledged one was lost at its owner
     * before the combinator's final lookup (V1). (A race over such an
     * input reads its reason too: combinators are judged by V4.) */
    if (p->acked && !p->comb && m->promise->state == PM_STATE_REJECTED &&
        m->promise->reason &&
        !strncmp(m->promise->reason, PM_FANIN_NOT_FOUND_PREFIX " (",
                 strlen(PM_FANIN_NOT_FOUND_PREFIX) + 2))
        s_violation(w, "V1 acknowledged %s reads as never made (%s); created by %s", p->id,
                    m->promise->reason, p->acked_how);
    s_observe(w, p, out, "final read");
}


/* L4: an await that timed out although its promise's settle was
 * acknowledged more than 1 s before the await's timeout, every fault healed
 * before that settle and none since: the owner settled it where the network
 * carried everything, so the awaiting agent should have heard (issue 11:
 * its subscription, lost at a one-way split's heal, was never sent again). */
#define S_L4_MARGIN_MS 1000
static void
s_await_missed(world_t *w, const req_t *r, const prom_t *p, const node_t *n)
{
    int64_t due = r->sent + r->timeout_ms;
    if (!p->settled_at || p->settled_at >= due - S_L4_MARGIN_MS || w->faults ||
        w->calm_since > p->settled_at)
        return;
    s_lviolation(w, "L4 await %" PRIu64 " of %s on %s timed out at %.3f s (sent at %.3f s, "
                 "timeout %" PRId64 " ms) although its settle was acknowledged at %.3f s, "
                 "every fault healed since %.3f s", r->id, p->id, n->name,
                 (double) w->now / 1000.0, (double) r->sent / 1000.0, r->timeout_ms,
                 (double) p->settled_at / 1000.0, (double) w->calm_since / 1000.0);
}

static void
s_on_reply(world_t *w, node_t *n, req_t *r, const pm_msg_t *m)
{
    char out[OUTLEN] = "";
    if (m->promise)
        s_outcome(m->promise, out, sizeof out);
    s_trace(w, "reply %" PRIu64 " err %d id %s out %s", r->id, m->err, m->id ? m->id : "",
            out);
    if (m->err)
        w->st.errs[r->kind]++;
    else
        w->st.acks[r->kind]++;
    if (r->node == w->storm && r->kind != K_HELLO) {
        if (m->err)
            w->st.storm_errs++;
        else
            w->st.storm_acks++;
        if (w->storm_probing && r->kind == K_CREATE && !m->err)
            w->st.storm_probes_ok++;
    }
    prom_t *p = r->pid[0] ? s_prom(w, r->pid, 0) : NULL;
    char how[96];
    snprintf(how, sizeof how, "%s %" PRIu64 " at %s", s_kind_name[r->kind], r->id, n->name);
    switch (r->kind) {
    case K_HELLO:
        if (!m->err) {
            n->csession = m->session;
            n->cping = w->now + 400;
            snprintf(n->mint, sizeof n->mint, "%s", m->mint_prefix ? m->mint_prefix : "");
        }
        break;
    case K_CREATE:
    case K_THEN:
        if (!m->err && m->id) {
            prom_t *q = s_prom(w, m->id, 1);
            q->acked = 1;
            q->acked_at = w->now;
            if (r->kind == K_THEN)
                snprintf(q->then_of, sizeof q->then_of, "%s", r->pid);
            /* Half the time a then is chained at once on the new target
             * (chains up to 4 long): built before its source settles, so
             * the invocation of its first step carries the rest (chain
             * forwarding, place.c). Its own stream: the main draws stay. */
            if (r->kind == K_THEN && !w->o->no_then_chains && s_live(w, r->node) &&
                s_then_depth(w, q) < 4 && pm_rand_seeded_next(&w->frng) % 2) {
                req_t *c = s_req(w, K_THEN, r->node, q->id, 20000);
                c->on_reject = pm_rand_seeded_next(&w->frng) % 4 == 0;
                pm_msg_t tm = {.type = PM_MSG_THEN, .req_id = c->id, .id = q->id, .function = "f",
                               .on_reject = c->on_reject ? "g" : NULL};
                s_send(w, n, n->crid, &tm);
                s_trace(w, "op %" PRIu64 " then %s at %d (chained)%s", c->id, q->id, r->node,
                        c->on_reject ? " on_reject g" : "");
            }
            q->on_reject = r->on_reject;
            q->timeout_ms = r->timeout_ms;
            q->hb_ms = r->hb_ms;
            if (q->hb_ms) {
                if (w->n_hb < 8)
                    w->hb[w->n_hb++] = q;
                else
                    w->hb[s_rand(w, 8)] = q;
            }
            snprintf(q->acked_how, sizeof q->acked_how, "%s, acknowledged at %.3f s", how,
                     (double) w->now / 1000.0);
        }
        break;
    case K_COMBINE:
        if (!m->err && m->id) {
            prom_t *q = s_prom(w, m->id, 1);
            q->acked = 1;
            q->acked_at = w->now;
            q->timeout_ms = r->timeout_ms; /* its own deadline: L3 */
            if (!q->comb) {
                q->comb = r->comb;
                r->comb = NULL;
            }
            snprintf(q->acked_how, sizeof q->acked_how, "%s %s of %d inputs, acknowledged at "
                     "%.3f s", how, q->comb ? pm_combinator_name(q->comb->kind) : "?",
                     q->comb ? q->comb->n : 0, (double) w->now / 1000.0);
        }
        break;
    case K_SETTLE:
        if (!p)
            break;
        if (!m->err) {
            if (p->acked_out[0] && strcmp(p->acked_out, r->out))
                s_violation(w, "V3 %s: settle %s acknowledged, and settle %s before (%s)",
                            p->id, r->out, p->acked_out, how);
            snprintf(p->acked_out, sizeof p->acked_out, "%s", r->out);
            if (!p->settled_at)
                p->settled_at = w->now;
            s_observe(w, p, r->out, how);
        } else if (m->err == PM_ERR_ALREADY_SETTLED && p->seen[0] && !strcmp(p->seen, r->out)) {
            s_violation(w, "V3 %s: settle %s refused ALREADY_SETTLED, but %s was observed (%s)",
                        p->id, r->out, p->seen, p->seen_how);
        }
        break;
    case K_AWAIT:
        if (p && m->err == PM_ERR_WAIT_TIMEOUT)
            s_await_missed(w, r, p, n);
        /* fall through */
    case K_GET:
        if (p && !m->err && out[0])
            s_observe(w, p, out, how);
        break;
    case K_CHECK:
        s_check_reply(w, r, m);
        break;
    }
    if (r->sc)
        s_scen_reply(w, r, m);
}

/* ---- workers ------------------------------------------------------------------ */

static void
s_worker_start(world_t *w, node_t *n)
{
    s_worker_clear(&n->w);
    n->w.live = 1;
    snprintf(n->w.rid, sizeof n->w.rid, "w%d.%d", n->idx, ++n->wgen);
    n->w.chains = n->wgen % 2;
    req_t *r = s_req(w, K_HELLO, n->idx, NULL, 5000);
    pm_msg_t m = {.type = PM_MSG_HELLO, .req_id = r->id, .client_name = "sim-worker"};
    s_send(w, n, n->w.rid, &m);
}

static void
s_worker_frame(world_t *w, node_t *n, const pm_msg_t *m)
{
    worker_t *wk = &n->w;
    if (!wk->live)
        return;
    if (m->type == PM_MSG_INVOKE) {
        w->st.invocations++;
        s_trace(w, "invoke %s at %s", m->invocation_id, n->name);
        if (s_rand(w, 100) < 3) { /* dies mid-invocation */
            s_log(w, "worker %s dies holding %s", wk->rid, m->invocation_id);
            w->st.worker_deaths++;
            s_worker_clear(wk);
            n->worker_back = w->now + s_between(w, 200, 3000);
            return;
        }
        struct inv *v = calloc(1, sizeof *v);
        snprintf(v->id, sizeof v->id, "%s", m->invocation_id);
        snprintf(v->target, sizeof v->target, "%s", m->target_id ? m->target_id : "");
        if (m->step_count) {
            v->steps = pm_wire_steps_copy(m->steps, m->step_count);
            v->n_steps = v->steps ? m->step_count : 0;
        }
        /* "<function>:<its input>": V6 tells the handler g from f. */
        snprintf(v->out, sizeof v->out, "%s:%.*s", m->function ? m->function : "?",
                 (int) (m->value_len > 40 ? 40 : m->value_len),
                 m->value ? (const char *) m->value : "");
        v->due = w->now + s_between(w, 1, 300);
        v->next = wk->invs;
        wk->invs = v;
        return;
    }
    if (m->type != PM_MSG_REPLY)
        return;
    req_t *r = NULL;
    for (req_t *x = w->reqs; x; x = x->next)
        if (x->id == m->req_id)
            r = x;
    if (!r)
        return;
    if (r->kind == K_HELLO && !m->err) {
        wk->session = m->session;
        /* As libpmesh: its keep-alive thread starts at the hello and pings
         * at once, before the worker registers (a worker session that never
         * pinged is one without keep-alive, which the agent never expires). */
        pm_msg_t ping = {.type = PM_MSG_PING, .session = wk->session};
        s_send(w, n, wk->rid, &ping);
        wk->next_ping = w->now + 300;
        req_t *q = s_req(w, K_REGISTER, n->idx, NULL, 5000);
        const char *fns[] = {"f", "g"};
        pm_msg_t reg = {.type = PM_MSG_REGISTER, .req_id = q->id, .functions = fns,
                        .function_count = 2, .concurrency = 4};
        s_send(w, n, wk->rid, &reg);
    } else if (r->kind == K_REGISTER && !m->err) {
        wk->registered = 1;
    }
    s_req_free(w, r);
}

static void
s_workers_tick(world_t *w)
{
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        if (!n->agent || n->down_until)
            continue;
        if (n->csession && w->now >= n->cping) {
            pm_msg_t m = {.type = PM_MSG_PING, .session = n->csession};
            s_send(w, n, n->crid, &m);
            n->cping = w->now + 400;
        }
        worker_t *wk = &n->w;
        if (!wk->live) {
            if (n->worker_back && w->now >= n->worker_back && i % 2 == 0) {
                n->worker_back = 0;
                s_worker_start(w, n);
            }
            continue;
        }
        if (wk->session && w->now >= wk->next_ping) {
            pm_msg_t m = {.type = PM_MSG_PING, .session = wk->session};
            s_send(w, n, wk->rid, &m);
            wk->next_ping = w->now + 300;
        }
        for (struct inv **pp = &wk->invs; *pp;) {
            struct inv *v = *pp;
            if (v->due > w->now) {
                pp = &v->next;
                continue;
            }
            /* A worker that chains starts each continuation handed on with
             * v whose source is v's target, on v's result, and says so. */
            pm_wire_step_t started[PM_WIRE_MAX_STEPS];
            size_t ns = 0;
            struct inv *born = NULL;
            for (size_t i = 0; wk->chains && i < v->n_steps; i++) {
                const pm_wire_step_t *st = &v->steps[i];
                if (strcmp(st->source, v->target) != 0 ||
                    (strcmp(st->function, "f") != 0 && strcmp(st->function, "g") != 0))
                    continue;
                struct inv *x = calloc(1, sizeof *x);
                snprintf(x->id, sizeof x->id, "%s", st->invocation_id);
                snprintf(x->target, sizeof x->target, "%s", st->target_id);
                snprintf(x->out, sizeof x->out, "%s:%.*s", st->function,
                         (int) (strlen(v->out) > 40 ? 40 : strlen(v->out)), v->out);
                x->due = w->now + s_between(w, 1, 300);
                if (i + 1 < v->n_steps) {
                    x->steps = pm_wire_steps_copy(st + 1, v->n_steps - i - 1);
                    x->n_steps = x->steps ? v->n_steps - i - 1 : 0;
                }
                x->next = born;
                born = x;
                started[ns++] = (pm_wire_step_t){.target_id = x->target,
                                                 .invocation_id = x->id};
            }
            pm_msg_t m = {.type = PM_MSG_RESULT, .invocation_id = v->id, .ok = 1,
                          .value = (const uint8_t *) v->out, .value_len = strlen(v->out),
                          .steps = started, .step_count = ns};
            s_send(w, n, wk->rid, &m);
            *pp = v->next;
            free(v->steps);
            free(v);
            while (born) { /* (after the result: started ones are due later) */
                struct inv *x = born;
                born = x->next;
                x->next = *pp;
                *pp = x;
                pp = &x->next;
            }
        }
    }
}

/* ---- driving the agents --------------------------------------------------------- */

static void
s_drain(world_t *w, node_t *n)
{
    pm_local_frame_t *f;
    while ((f = pm_local_capture_take(&n->cap))) {
        pm_msg_t m;
        if (pm_wire_decode(f->buf, f->len, &m) == PM_OK) {
            char rid[32];
            snprintf(rid, sizeof rid, "%.*s", (int) (f->rid_len < 31 ? f->rid_len : 31),
                     (const char *) f->rid);
            if (rid[0] == 'w') {
                if (!strcmp(rid, n->w.rid))
                    s_worker_frame(w, n, &m);
            } else if (m.type == PM_MSG_REPLY) {
                req_t *r = NULL;
                for (req_t *x = w->reqs; x; x = x->next)
                    if (x->id == m.req_id) {
                        r = x;
                        break;
                    }
                if (r && w->o->break_reply && !w->reply_broken && r->kind == K_GET &&
                    !w->checking) {
                    w->reply_broken = 1; /* self-test: this answer is lost */
                    s_log(w, "self-test: the answer to get %" PRIu64 " at %s is lost", r->id,
                          n->name);
                } else if (r) {
                    s_on_reply(w, n, r, &m);
                    s_req_free(w, r);
                }
            }
        }
        pm_wire_release(&m);
        pm_local_frame_free(f);
    }
}

static void
s_step_node(world_t *w, node_t *n)
{
    s_enter(n);
    while (n->in_head) {
        frame_t *f = n->in_head;
        n->in_head = f->next;
        if (!n->in_head)
            n->in_tail = NULL;
        pm_agent_sim_deliver(n->agent, (const uint8_t *) f->rid, strlen(f->rid), f->buf, f->len);
        free(f->buf);
        free(f);
    }
    pm_agent_sim_step(n->agent);
    s_leave();
    s_drain(w, n);
}

/* Requests whose answer did not come: a broken connection (unknown outcome)
 * or silence. */
static void
s_expire_reqs(world_t *w)
{
    for (req_t *r = w->reqs, *next; r; r = next) {
        next = r->next;
        if (r->deadline > w->now)
            continue;
        node_t *n = &w->nodes[r->node];
        if (n->agent && !n->down_until && !n->paused_until && r->kind != K_HELLO &&
            r->kind != K_REGISTER) {
            w->st.silent++;
            s_lviolation(w, "L1 silent%s: %s %" PRIu64 " on %s at %s, sent at %.3f s, unanswered "
                         "after %.1f s", w->beyond_r ? " (faults beyond R)" : "",
                         s_kind_name[r->kind], r->id, r->pid, n->name,
                         (double) r->sent / 1000.0, (double) (w->now - r->sent) / 1000.0);
            if (w->o->verbose >= 2 && !n->dumped) {
                n->dumped = 1;
                s_enter(n);
                char *json = pm_agent_sim_status(n->agent);
                s_leave();
                fprintf(stderr, "  status of %s: %s\n", n->name, json ? json : "?");
                free(json);
            }
        } else {
            w->st.unknown++;
        }
        s_trace(w, "expired %" PRIu64, r->id);
        if (r->sc)
            s_scen_reply(w, r, NULL);
        if (r->kind == K_CHECK) {
            prom_t *p = s_prom(w, r->pid, 0);
            if (p && r->tries < 8) {
                int tries = r->tries;
                s_req_free(w, r);
                s_check_send(w, p, tries + 1);
                continue;
            }
            if (p && !p->checked) {
                p->checked = 1;
                w->st.unreadable++;
            }
            if (p)
                p->final_ok = 0;
        }
        s_req_free(w, r);
    }
}

/* ---- faults ----------------------------------------------------------------------- */

/* The network's spells from the faults in force (overlapping spells: the
 * strongest of each kind holds). */
static void
s_apply_net(world_t *w)
{
    uint32_t loss = 0, reorder = 0, dup = 0;
    int64_t delay = 0;
    for (fault_t *f = w->faults; f; f = f->next) {
        if (f->kind == F_LOSS && f->permille > loss)
            loss = f->permille;
        if (f->kind == F_REORDER && f->permille > reorder)
            reorder = f->permille;
        if (f->kind == F_DUP && f->permille > dup)
            dup = f->permille;
        if ((f->kind == F_DELAY || f->kind == F_REORDER) && f->delay > delay)
            delay = f->delay;
    }
    pm_memnet_loss(w->net, loss);
    pm_memnet_reorder(w->net, reorder);
    pm_memnet_dup(w->net, dup);
    pm_memnet_delay(w->net, delay);
}

/* The store crashes after its hang: answers not delivered become
 * UNAVAILABLE (at once, or after the clients' 2 s timeout); what it applied
 * stays; it is down until the fault ends (a restart with its data). */
static void
s_store_crash(world_t *w, fault_t *f)
{
    f->crash_at = 0;
    pm_coord_mem_crash_stats_t a, b;
    pm_coord_mem_crash_stats(w->store, &a);
    pm_coord_mem_crash(w->store, 2000);
    pm_coord_mem_crash_stats(w->store, &b);
    w->store_down++;
    for (int i = 0; i < w->n; i++)
        s_apply_store(w, &w->nodes[i]);
    w->st.crash_answers += b.answers_lost - a.answers_lost;
    w->st.crash_writes += b.writes_lost - a.writes_lost;
    s_log(w, "store crashed: %" PRIu64 " answers lost (%" PRIu64 " of applied writes)",
          b.answers_lost - a.answers_lost, b.writes_lost - a.writes_lost);
}

/* An armed kill (F_KILL, f->armed) fires: at its agent's step that left an
 * fsync in flight (s_round), or when the arming ran out (s_faults_tick). */
static void
s_kill_now(world_t *w, fault_t *f)
{
    node_t *n = &w->nodes[f->node];
    s_log(w, "kill %s (%s)%s", n->name, f->torn ? "torn" : "clean",
          n->fsync_due > w->now ? " with an fsync in flight" : "");
    w->st.kills_in_flight += n->fsync_due > w->now;
    s_kill(w, n, f->torn);
    w->st.torn += (uint64_t) f->torn;
    f->armed = 0;
    f->end = w->now + f->delay;
    n->down_until = f->end;
    n->kill_armed = NULL;
    s_check_r(w);
}

static void
s_fault_end(world_t *w, fault_t *f)
{
    node_t *n = f->node >= 0 ? &w->nodes[f->node] : NULL;
    switch (f->kind) {
    case F_KILL:
    case F_WIPE:
        if (f->armed) { /* an armed kill that never fired: nothing to restart */
            n->kill_armed = NULL;
            w->st.faults[F_KILL]--; /* counted when armed; it never happened */
            s_log(w, "kill of %s disarmed", n->name);
            break;
        }
        n->down_until = 0;
        if (n->wiped) { /* a replaced node: the same name on an empty disk */
            n->wiped = 0;
            pm_disk_fake_destroy(&n->disk);
            n->disk = pm_disk_fake_new(w->seed * 7919ULL + (uint64_t) n->idx +
                                       1000003ULL * (n->restarts + 1));
            pm_disk_fake_on_sync(n->disk, s_on_sync, n);
        }
        if (s_start(w, n) != 0)
            s_violation(w, "restart of %s failed (its WAL refused to open)", n->name);
        n->restarts++;
        s_log(w, "restart %s", n->name);
        break;
    case F_PAUSE:
        n->paused_until = 0;
        s_log(w, "resume %s", n->name);
        break;
    case F_PART1:
    case F_PART2:
        for (int i = 0; i < w->n; i++) {
            for (int j = 0; j < w->n; j++)
                w->cuts[i][j] -= f->cut[i][j];
            if (f->minority[i]) {
                w->nodes[i].cut_from_store--;
                s_apply_store(w, &w->nodes[i]);
                s_stall_watch(w, &w->nodes[i]);
            }
        }
        s_apply_cuts(w, -1);
        s_log(w, "heal %s", s_fault_name[f->kind]);
        break;
    case F_LOSS:
    case F_DELAY:
    case F_REORDER:
    case F_DUP:
        s_apply_net(w);
        s_log(w, "%s spell over", s_fault_name[f->kind]);
        break;
    case F_CRASH:
        if (f->crash_at)
            s_store_crash(w, f);
        w->store_down--;
        for (int i = 0; i < w->n; i++)
            s_apply_store(w, &w->nodes[i]);
        s_log(w, "store restarted (its data kept)");
        break;
    case F_STORE:
        w->store_down--;
        for (int i = 0; i < w->n; i++)
            s_apply_store(w, &w->nodes[i]);
        s_log(w, "store back");
        break;
    case F_SLOWSTORE:
        for (int i = 0; i < w->n; i++)
            if (w->nodes[i].agent && pm_agent_sim_coord(w->nodes[i].agent))
                pm_coord_mem_set_delay(pm_agent_sim_coord(w->nodes[i].agent), 0);
        s_log(w, "store fast again");
        break;
    case F_JUMP:
        break;
    case F_SLOWSYNC:
        n->sync_us = 0;
        s_log(w, "fsync fast again on %s", n->name);
        break;
    }
}

static void
s_fault_start(world_t *w)
{
    int kind = (int) s_rand(w, F_COUNT);
    if (w->o->fault_mask) { /* --faults: the kind-th of those chosen */
        int on = __builtin_popcount(w->o->fault_mask);
        int k = kind % on;
        for (kind = 0; kind < F_COUNT; kind++)
            if ((w->o->fault_mask >> kind & 1) && k-- == 0)
                break;
    }
    fault_t *f = calloc(1, sizeof *f);
    f->kind = kind;
    f->node = -1;
    f->end = w->now + s_between(w, 300, 6000);
    int i = (int) s_rand(w, (uint64_t) w->n);
    node_t *n = &w->nodes[i];
    switch (kind) {
    case F_WIPE:
        /* Rarer than the rest: a replaced node. */
        if (!n->agent || n->down_until || n->kill_armed || s_rand(w, 3) != 0) {
            free(f);
            return;
        }
        f->node = i;
        s_log(w, "kill %s and wipe its disk (a replaced node)", n->name);
        s_kill(w, n, 0);
        n->wiped = 1;
        n->down_until = f->end;
        w->beyond_r = 1;
        break;
    case F_JUMP: {
        /* Real time steps (NTP, a VM resumed): forwards or back. */
        int64_t ms = s_between(w, 200, 3000) * (s_rand(w, 2) ? 1 : -1);
        pm_clock_fake_jump(&n->clock, ms);
        if (-ms > w->jumped_back)
            w->jumped_back = -ms;
        f->node = i;
        f->end = w->now;
        s_log(w, "clock of %s jumps %+lld ms", n->name, (long long) ms);
        break;
    }
    case F_SLOWSYNC:
        if (n->sync_us) {
            free(f);
            return;
        }
        f->node = i;
        n->sync_us = 1000 * s_between(w, 5, 150);
        s_log(w, "fsync slow on %s (%lld ms each)", n->name, (long long) n->sync_us / 1000);
        break;
    case F_KILL: {
        if (!n->agent || n->down_until || n->kill_armed) {
            free(f);
            return;
        }
        int torn = (int) s_rand(w, 2);
        f->node = i;
        if (n->batch && i != w->storm && s_rand(w, 2)) {
            /* Half the kills of a batch agent wait (up to 2 s) for the moment
             * its fsync is in flight: records written, maybe replicated or
             * answered by peers, not yet durable here. */
            f->armed = 1;
            f->torn = torn;
            f->delay = f->end - w->now; /* how long it stays down once killed */
            f->end = w->now + 2000;
            n->kill_armed = f;
            s_log(w, "kill %s (%s) armed: at its next fsync in flight", n->name,
                  torn ? "torn" : "clean");
            break;
        }
        s_log(w, "kill %s (%s)", n->name, torn ? "torn" : "clean");
        s_kill(w, n, torn);
        w->st.torn += (uint64_t) torn;
        n->down_until = f->end;
        break;
    }
    case F_PAUSE:
        if (!n->agent || n->down_until || n->paused_until) {
            free(f);
            return;
        }
        f->node = i;
        n->paused_until = f->end;
        s_log(w, "pause %s", n->name);
        break;
    case F_PART1:
    case F_PART2: {
        int k = 1 + (int) s_rand(w, (uint64_t) ((w->n - 1) / 2));
        for (int c = 0; c < k; c++)
            f->minority[s_rand(w, (uint64_t) w->n)] = 1;
        int dir = kind == F_PART2 ? 2 : (int) s_rand(w, 2); /* 0: out, 1: in, 2: both */
        char who[512] = "";
        for (int a = 0; a < w->n; a++) {
            if (f->minority[a]) {
                strncat(who, w->nodes[a].name, sizeof who - strlen(who) - 2);
                strcat(who, " ");
            }
            for (int b = 0; b < w->n; b++) {
                if (f->minority[a] == f->minority[b])
                    continue;
                if (f->minority[a] ? dir != 1 : dir != 0)
                    f->cut[a][b] = 1;
            }
        }
        for (int a = 0; a < w->n; a++) {
            for (int b = 0; b < w->n; b++)
                w->cuts[a][b] += f->cut[a][b];
            /* The store is on the majority's side. */
            if (f->minority[a]) {
                w->nodes[a].cut_from_store++;
                s_apply_store(w, &w->nodes[a]);
            }
        }
        s_apply_cuts(w, -1);
        s_log(w, "%s %s{%s}", s_fault_name[kind],
              dir == 2 ? "both ways " : dir == 0 ? "outgoing of " : "incoming of ", who);
        break;
    }
    case F_LOSS:
        f->permille = (uint32_t) s_between(w, 5, 50);
        s_log(w, "loss %u permille", f->permille);
        break;
    case F_DELAY:
        f->delay = s_between(w, 1, 300);
        s_log(w, "delay: frames late by up to %lld ms", (long long) f->delay);
        break;
    case F_REORDER:
        f->delay = s_between(w, 5, 200);
        f->permille = (uint32_t) s_between(w, 20, 200);
        s_log(w, "reorder: links reconnect (%u permille of frames), late by up to %lld ms",
              f->permille, (long long) f->delay);
        break;
    case F_DUP:
        f->permille = (uint32_t) s_between(w, 10, 100);
        s_log(w, "duplicates: %u permille of frames twice", f->permille);
        break;
    case F_CRASH:
        /* One store, one crash at a time. */
        for (fault_t *g = w->faults; g; g = g->next)
            if (g->kind == F_CRASH) {
                free(f);
                return;
            }
        /* It crashes in the middle of a write: it hangs at the next one
         * (or at the spell's end), then crashes 1-400 ms later. */
        f->armed = 1;
        pm_coord_mem_arm(w->store);
        s_log(w, "store armed to crash at its next write");
        break;
    case F_STORE:
        w->store_down++;
        for (int a = 0; a < w->n; a++)
            s_apply_store(w, &w->nodes[a]);
        s_log(w, "store down");
        break;
    case F_SLOWSTORE: {
        int64_t d = s_between(w, 50, 1500);
        for (int a = 0; a < w->n; a++)
            if (w->nodes[a].agent && pm_agent_sim_coord(w->nodes[a].agent))
                pm_coord_mem_set_delay(pm_agent_sim_coord(w->nodes[a].agent), d);
        s_log(w, "store slow (%lld ms)", (long long) d);
        break;
    }
    }
    w->st.faults[kind]++;
    f->next = w->faults;
    w->faults = f;
    w->calm_since = INT64_MAX;
    if (kind == F_LOSS || kind == F_DELAY || kind == F_REORDER || kind == F_DUP)
        s_apply_net(w);
    s_check_r(w);
}

static void
s_faults_tick(world_t *w, int heal_all)
{
    for (fault_t **pp = &w->faults; *pp;) {
        fault_t *f = *pp;
        if (f->kind == F_KILL && f->armed && f->end <= w->now && !heal_all)
            s_kill_now(w, f); /* (healing: it never fires, s_fault_end) */
        if (f->kind == F_CRASH && f->armed &&
            (pm_coord_mem_hung(w->store) || f->end <= w->now || heal_all)) {
            f->armed = 0;
            if (!pm_coord_mem_hung(w->store))
                pm_coord_mem_hang(w->store);
            f->crash_at = w->now + s_between(w, 1, 400);
            f->end = f->crash_at + s_between(w, 300, 3000);
            s_log(w, "store hangs (applies, or not, and answers nothing), crashes in %lld ms",
                  (long long) (f->crash_at - w->now));
        }
        if (f->crash_at && f->crash_at <= w->now)
            s_store_crash(w, f);
        if (f->end > w->now && !heal_all) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        s_fault_end(w, f);
        free(f);
    }
    if (!w->faults && w->calm_since == INT64_MAX)
        w->calm_since = w->now;
}


/* ---- the restart storm (--restarts N, issue 14: id spaces do not pile up) ----------
 *
 * One agent (n0) is killed (clean or torn) and restarted N times while the
 * load goes on: down 10-300 ms, up 0.3-1.5 s. Each restart is a new process
 * with a new primary id space; the spaces it served before go to an heir or
 * come back to it, and must be given back (retired) or merged, not kept for
 * ever. At the end (s_storm_end): it still serves (probe creates at it are
 * acknowledged), every agent sees it alive, and the spaces it holds (its
 * "ours" records in status.coordination.spaces, what it announces) and the
 * store's records of its spaces stay bounded. */
#define S_STORM_SPACES_MAX 32 /* bounded: independent of the number of restarts */

/* The storm node's spaces as its status shows them (ours), and the store's
 * keys of its spaces (n0-...). */
static void
s_storm_count(world_t *w, uint64_t *spaces, uint64_t *keys)
{
    node_t *n = &w->nodes[w->storm];
    char prefix[24];
    snprintf(prefix, sizeof prefix, "%s-", n->name);
    *keys = pm_coord_mem_keys(w->store, prefix);
    *spaces = 0;
    if (!n->agent)
        return;
    s_enter(n);
    char *js = pm_agent_sim_status(n->agent);
    s_leave();
    json_t *o = js ? json_loads(js, 0, NULL) : NULL;
    json_t *sp = json_object_get(json_object_get(o, "coordination"), "spaces");
    for (size_t i = 0; i < json_array_size(sp); i++)
        *spaces += json_is_true(json_object_get(json_array_get(sp, i), "ours"));
    json_decref(o);
    free(js);
}

/* A kill or restart of the storm is a fault like the others for L4 (an
 * await may time out while n0's spaces move: it is the owner of many). */
static void
s_storm_unsettle(world_t *w)
{
    if (w->calm_since != INT64_MAX)
        w->calm_since = w->now;
}

static void
s_storm_tick(world_t *w)
{
    if (w->storm < 0 || w->now < w->storm_next)
        return;
    node_t *n = &w->nodes[w->storm];
    if (w->storm_down) {
        w->storm_down = 0;
        n->down_until = 0;
        if (s_start(w, n) != 0)
            s_violation(w, "storm: restart %" PRIu64 " of %s failed (its WAL refused to open)",
                        w->st.storm_restarts + 1, n->name);
        n->restarts++;
        w->st.storm_restarts++;
        w->storm_last = w->now;
        w->storm_next = w->now + s_between(w, 300, 1500);
        s_storm_unsettle(w);
        return;
    }
    if (w->st.storm_restarts >= w->o->restarts)
        return;
    if (!n->agent || n->down_until || n->paused_until) { /* a fault has it: later */
        w->storm_next = w->now + 100;
        return;
    }
    /* Its counts at the end of a life (up 0.3-1.5 s: what it resumed). */
    if (w->st.storm_restarts % 10 == 0) {
        uint64_t sp, k;
        s_storm_count(w, &sp, &k);
        if (sp > w->st.storm_spaces_max)
            w->st.storm_spaces_max = sp;
        if (k > w->st.storm_keys_max)
            w->st.storm_keys_max = k;
        if (w->st.storm_restarts % 100 == 0)
            s_log(w, "storm: after %" PRIu64 " restarts of %s: %" PRIu64 " spaces its own, %"
                  PRIu64 " records of its spaces in the store", w->st.storm_restarts, n->name,
                  sp, k);
    }
    int torn = (int) s_rand(w, 2);
    s_kill(w, n, torn);
    w->storm_down = 1;
    w->storm_next = w->now + s_between(w, 10, 300);
    n->down_until = w->storm_next;
    s_check_r(w);
    s_storm_unsettle(w);
}

/* Whether the storm still has restarts to do (or its agent down). */
static int
s_storm_on(const world_t *w)
{
    return w->storm >= 0 && (w->storm_down || w->st.storm_restarts < w->o->restarts);
}

/* ---- one seed ---------------------------------------------------------------------- */

static void
s_set(node_t *n, const char *k, const char *v)
{
    char err[256];
    if (pm_config_set(n->cfg, k, v, err, sizeof err) != 0) {
        fprintf(stderr, "pmesh-sim: config %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

static int64_t
s_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* One round: every live, running agent takes its frames and its timers, in
 * an order drawn from the seed; then the next moment something is due. */
static int64_t
s_round(world_t *w)
{
    int order[MAXN];
    for (int i = 0; i < w->n; i++)
        order[i] = i;
    for (int i = w->n - 1; i > 0; i--) {
        int j = (int) s_rand(w, (uint64_t) i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int64_t dt = 50;
    for (int k = 0; k < w->n; k++) {
        node_t *n = &w->nodes[order[k]];
        if (!n->agent || n->down_until || n->paused_until || n->ahead_us > 0)
            continue;
        s_step_node(w, n);
        if (n->kill_armed && n->fsync_due > w->now) {
            fault_t *f = n->kill_armed;
            s_kill_now(w, f);
            continue;
        }
        w->st.agent_ms += 0; /* counted per advance below */
        s_enter(n);
        dt = s_min64(dt, pm_agent_sim_timeout(n->agent));
        s_leave();
    }
    int busy = pm_memnet_pending(w->net) > 0;
    for (int i = 0; i < w->n && !busy; i++)
        if (w->nodes[i].in_head && !w->nodes[i].paused_until)
            busy = 1;
    if (busy)
        dt = 1;
    return dt < 1 ? 1 : dt;
}

static void
s_advance(world_t *w, int64_t dt)
{
    w->now += dt;
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        int64_t us = dt * 1000;
        if (n->ahead_us > 0) { /* its clock ran ahead in a slow sync */
            int64_t c = n->ahead_us < us ? n->ahead_us : us;
            n->ahead_us -= c;
            us -= c;
        }
        pm_clock_fake_advance(&n->clock, us);
        if (w->nodes[i].agent && !w->nodes[i].down_until)
            w->st.agent_ms += dt;
    }
    pm_coord_mem_advance(w->store, dt);
    pm_memnet_set_now(w->net, w->now);
}

static const pm_resolve_entry_t s_no_names[] = {{"localhost", "127.0.0.1"}};

/* Each agent's fsync mode. --fsync mixed (the default) draws it from the
 * seed, on a random source of its own so that the rest of the seed's
 * schedule is drawn as before: a third of the seeds run every agent with
 * always (these replay exactly as before batch mode was simulated), a third
 * every agent with batch, a third a mix drawn per agent. */
static void
s_draw_fsync(world_t *w)
{
    pm_rand_seeded_t r;
    pm_rand_seeded_init(&r, w->seed * 0x9e3779b97f4a7c15ULL + 0x5bd1e995ULL);
    int how = w->o->fsync;
    if (how == F_MIXED)
        how = (int) (pm_rand_seeded_next(&r) % 3); /* 0 always, 1 batch, 2 per agent */
    for (int i = 0; i < w->n; i++)
        w->nodes[i].batch = how == F_BATCH ? 1 : how == 2 ? (int) (pm_rand_seeded_next(&r) & 1) : 0;
}

static void
s_world_init(world_t *w, opts_t *o, uint64_t seed, void *zctx)
{
    memset(w, 0, sizeof *w);
    w->o = o;
    w->seed = seed;
    w->hash = 1469598103934665603ULL;
    pm_rand_seeded_init(&w->rng, seed);
    pm_rand_seeded_init(&w->wrng, seed * 0x9e3779b97f4a7c15ULL + 0x57a11);
    pm_rand_seeded_init(&w->frng, seed * 0x9e3779b97f4a7c15ULL + 0xfa41);
    w->n = o->nodes ? o->nodes : 3 + (int) s_rand(w, 5);
    w->r = o->replicas ? o->replicas : 2 + (int) s_rand(w, 2);
    if (w->r > w->n)
        w->r = w->n;
    w->zctx = zctx;
    w->op_gap = 90;
    w->storm = o->restarts ? 0 : -1;
    w->storm_next = INT64_MAX;
    w->net = pm_memnet_new(seed ^ 0x9e3779b97f4a7c15ULL);
    pm_memnet_use(w->net);
    w->store = pm_coord_mem_new();
    pm_coord_mem_seed(w->store, seed * 2654435761ULL + 17);
    pm_agent_coord_mem = w->store;
    pm_resolve_table_init(&w->names, s_no_names, 1);
    pm_resolve_use(&w->names.resolve);
    w->proms = zhashx_new();
    w->prom_list = zlistx_new();
    char seeds[MAXN][64];
    for (int i = 0; i < w->n; i++)
        snprintf(seeds[i], sizeof seeds[i], "tcp://10.0.0.%d:7001", i + 1);
    s_draw_fsync(w);
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        n->idx = i;
        snprintf(n->name, sizeof n->name, "n%d", i);
        memcpy(n->ep, seeds[i], sizeof n->ep);
        snprintf(n->dir, sizeof n->dir, "/data/n%d", i);
        pm_clock_fake_init(&n->clock, 1000000LL * (int64_t) (1 + s_rand(w, 1000)),
                           1700000000000LL + (int64_t) s_rand(w, 5000));
        pm_clock_fake_drift(&n->clock, s_between(w, -200, 200));
        pm_rand_seeded_init(&n->rand, seed * 1000003ULL + (uint64_t) i);
        n->disk = pm_disk_fake_new(seed * 7919ULL + (uint64_t) i);
        pm_disk_fake_on_sync(n->disk, s_on_sync, n);
        pm_local_capture_init(&n->cap);
        n->cfg = pm_config_new();
        s_set(n, "bind", n->ep);
        s_set(n, "insecure", "true");
        for (int j = 0; j < w->n; j++)
            if (j != i)
                s_set(n, "seeds", seeds[j]);
        s_set(n, "data_dir", n->dir);
        s_set(n, "fsync", n->batch ? "batch" : "always");
        /* Early copies of every input's outcome on odd seeds, of the
         * decisive ones (the default) on even seeds: both kept under load. */
        s_set(n, "fanin_early_copies", (seed & 1) ? "every" : "decisive");
        pm_rand_seeded_init(&n->srng, seed * 0x2545f4914f6cdd1dULL + 77 + (uint64_t) i);
        char r[8];
        snprintf(r, sizeof r, "%d", w->r);
        s_set(n, "replicas", r);
        s_set(n, "coordination", "mem://");
        s_set(n, "coordination_prefix", "/pmesh/sim");
        s_set(n, "retention", "24h");
        if (w->o->no_mesh_batch)
            s_set(n, "mesh_batch", "false");
    }
}

static void
s_world_free(world_t *w)
{
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        if (n->agent) {
            n->cap.refuse = 1;
            s_enter(n);
            s_collect_early(w, n->agent);
            pm_agent_destroy(&n->agent);
            s_leave();
        }
        pm_local_capture_clear(&n->cap);
        s_free_frames(n);
        s_worker_clear(&n->w);
        pm_disk_fake_destroy(&n->disk);
        pm_config_destroy(&n->cfg);
    }
    while (w->reqs)
        s_req_free(w, w->reqs);
    while (w->faults) {
        fault_t *f = w->faults;
        w->faults = f->next;
        free(f);
    }
    while (w->scens) {
        scen_t *sc = w->scens;
        w->scens = sc->next;
        free(sc);
    }
    for (prom_t *p = zlistx_first(w->prom_list); p; p = zlistx_next(w->prom_list)) {
        free(p->fdata);
        free(p->comb);
        free(p);
    }
    zlistx_destroy(&w->prom_list);
    zhashx_destroy(&w->proms);
    pm_agent_coord_mem = NULL;
    pm_coord_mem_destroy(&w->store);
    pm_memnet_use(NULL);
    pm_memnet_destroy(&w->net);
    pm_resolve_use(NULL);
    free(w->log);
}

static int64_t
s_next_event(world_t *w, int64_t phase_end)
{
    int64_t t = phase_end;
    t = s_min64(t, w->next_op);
    t = s_min64(t, w->next_fault);
    if (s_storm_on(w))
        t = s_min64(t, w->storm_next);
    for (fault_t *f = w->faults; f; f = f->next) {
        t = s_min64(t, f->end);
        if (f->crash_at)
            t = s_min64(t, f->crash_at);
    }
    t = s_min64(t, pm_memnet_next_due(w->net)); /* late frames */
    for (req_t *r = w->reqs; r; r = r->next)
        t = s_min64(t, r->deadline);
    if (!w->checking)
        for (scen_t *sc = w->scens; sc; sc = sc->next)
            if (sc->phase == 4)
                t = s_min64(t, sc->next_at);
    for (int i = 0; i < w->n; i++) {
        node_t *n = &w->nodes[i];
        if (n->w.session)
            t = s_min64(t, n->w.next_ping);
        if (n->csession)
            t = s_min64(t, n->cping);
        if (!n->w.live && n->worker_back)
            t = s_min64(t, n->worker_back);
        for (struct inv *v = n->w.invs; v; v = v->next)
            t = s_min64(t, v->due);
        if (n->fsync_due > w->now && n->agent)
            t = s_min64(t, n->fsync_due);
    }
    return t;
}

/* Runs until phase_end: load (ops), faults (faults), or neither. */
static void
s_phase(world_t *w, int64_t phase_end, int ops, int faults)
{
    while (w->now < phase_end) {
        if (faults)
            s_faults_tick(w, 0);
        if (ops && s_storm_on(w))
            s_storm_tick(w);
        if (ops && w->now >= w->next_op) {
            s_client_op(w);
            w->next_op = w->now + s_between(w, 1, w->op_gap); /* scenarios add ~50% requests */
        }
        if (faults && w->now >= w->next_fault) {
            s_fault_start(w);
            w->next_fault = w->now + s_between(w, 200, 4000);
        }
        if (!w->checking)
            s_scen_tick(w);
        s_workers_tick(w);
        s_expire_reqs(w);
        int64_t dt = s_round(w);
        int64_t next = s_next_event(w, phase_end);
        if (next - w->now < dt)
            dt = next - w->now;
        if (dt < 1)
            dt = 1;
        s_advance(w, dt);
    }
}

/* ---- combinators and on_reject: V4, V6 ------------------------------------------- */

static int
s_failed(int state)
{
    return state == PM_STATE_REJECTED || state == PM_STATE_CANCELED || state == PM_STATE_TIMEDOUT;
}

/* Input i of c as it reads back (single assignment: what c must have heard):
 * 1 with *st, *data when it read settled; 0 when unknown (unreadable, never
 * made, pending). */
static int
s_comb_input(world_t *w, const comb_t *c, int i, int *st, const char **data)
{
    prom_t *x = s_prom(w, c->ids[i], 0);
    if (!x || !x->final_ok || !x->final[0] || !x->fdata)
        return 0;
    *st = x->fstate;
    *data = x->fdata;
    return 1;
}

/* Whether c reading (state, value) is what its inputs (st, data; st[i] 0:
 * unknown, may have been heard as anything) determine (proto/PROTOCOL.md);
 * why filled when not. A combinator with a timeout of its own may also read
 * timed out (L3 judges when). The rules of tests/bench/chaos_load.c. */
static int
s_comb_judge(const comb_t *c, int own_timeout, const int *st, const char **data, int state,
             const char *value, char *why, size_t cap)
{
    const char *ids[MAXIN];
    for (int i = 0; i < c->n; i++)
        ids[i] = c->ids[i];
    return pm_comb_judge(c->kind, c->n, ids, own_timeout, st, data, state, value, why, cap);
}

/* Whether the inputs that read settled already decide c (all: a failure,
 * or every input resolved; any: a resolve, or every input failed; race:
 * any settled; all-settled: every input settled). L5 when c reads pending. */
static int
s_comb_decided(world_t *w, const comb_t *c)
{
    int nok = 0, nfail = 0;
    for (int i = 0; i < c->n; i++) {
        int st;
        const char *d;
        if (s_comb_input(w, c, i, &st, &d)) {
            nfail += s_failed(st);
            nok += st == PM_STATE_RESOLVED;
        }
    }
    switch (c->kind) {
    case PM_COMBINE_ALL:
        return nfail > 0 || nok == c->n;
    case PM_COMBINE_ANY:
        return nok > 0 || nfail == c->n;
    case PM_COMBINE_RACE:
        return nok + nfail > 0;
    default:
        return nok + nfail == c->n;
    }
}

/* V4 over every combinator that read settled, V6 over every then that read
 * resolved (by f or g) on a settled source. */
static void
s_fanin_judge(world_t *w)
{
    int broke = !w->o->break_fanin;
    for (prom_t *p = zlistx_first(w->prom_list); p; p = zlistx_next(w->prom_list)) {
        if (p->comb && p->acked) {
            w->st.combs++;
            if (!p->final_ok || !p->final[0] || !p->fdata)
                continue;
            comb_t *c = p->comb;
            int st[MAXIN];
            const char *data[MAXIN];
            int unknown = 0;
            for (int i = 0; i < c->n; i++)
                if (!s_comb_input(w, c, i, &st[i], &data[i])) {
                    st[i] = 0;
                    data[i] = NULL;
                    unknown++;
                }
            if (unknown)
                w->st.comb_partly++;
            else
                w->st.comb_judged++;
            if (!broke && !unknown && p->fstate != PM_STATE_TIMEDOUT) {
                broke = 1; /* self-test: misread it (V4 must flag it) */
                size_t len = strlen(p->fdata);
                char *x = realloc(p->fdata, len + 2);
                if (!x)
                    abort();
                memcpy(x + len, "x", 2);
                p->fdata = x;
                s_log(w, "self-test: combinator %s misread as %s", p->id, p->fdata);
            }
            /* An input it heard as NOT_FOUND must read back as its owner
             * recorded it then (rejected NOT_FOUND, fanins.c): an input
             * that reads back NOT_FOUND was never recorded as missing, so
             * a late mint could still make it (seed 3439), and the
             * combinator decided from a plain "not found". */
            for (int i = 0; i < c->n; i++) {
                prom_t *x = s_prom(w, c->ids[i], 0);
                char heard[IDLEN + 16];
                snprintf(heard, sizeof heard, "%s NOT_FOUND", c->ids[i]);
                if (x && x->gone && strstr(p->fdata, heard))
                    s_violation(w, "V4 %s = %s(..) heard input %s as NOT_FOUND, which reads "
                                "back NOT_FOUND (not recorded at its owner): %.120s; %s", p->id,
                                pm_combinator_name(c->kind), c->ids[i], p->fdata, p->acked_how);
            }
            char why[128];
            if (!s_comb_judge(c, p->timeout_ms > 0, st, data, p->fstate, p->fdata, why,
                              sizeof why)) {
                char desc[600];
                size_t o = 0;
                desc[0] = 0;
                for (int i = 0; i < c->n && o + 1 < sizeof desc; i++)
                    o += (size_t) snprintf(desc + o, sizeof desc - o, "%s%s=%s:%.40s",
                                           i ? "," : "", c->ids[i],
                                           st[i] ? pm_state_name(st[i]) : "?",
                                           data[i] ? data[i] : "?");
                s_violation(w, "V4 %s = %s(%s) reads %s:%.120s: %s; %s", p->id,
                            pm_combinator_name(c->kind), desc, pm_state_name(p->fstate),
                            p->fdata, why, p->acked_how);
            }
        }
        if (!p->then_of[0] || !p->final_ok || p->fstate != PM_STATE_RESOLVED || !p->fdata)
            continue;
        prom_t *src = s_prom(w, p->then_of, 0);
        if (!src || !src->final_ok || !src->final[0] || !src->fdata)
            continue;
        int fail = s_failed(src->fstate);
        const char *v = p->fdata;
        char want[64];
        if (fail && !p->on_reject)
            snprintf(want, sizeof want, "a rejection"); /* the chain stops */
        else
            snprintf(want, sizeof want, "%s:%.40s", fail ? "g" : "f", src->fdata);
        if (p->on_reject && fail)
            w->st.catches++;
        if (strcmp(v, want) != 0 && (!strncmp(v, "f:", 2) || !strncmp(v, "g:", 2)))
            s_violation(w, "V6 %s = then(%s, f%s) reads resolved %.60s; %s reads %s: expected "
                        "%s", p->id, src->id, p->on_reject ? ", on_reject g" : "", v, src->id,
                        src->final, want);
    }
}

/* When p's deadline was due at the latest (sim ms; 0: none): its agent
 * counts from creation (before our acknowledgement) and from the last
 * heartbeat that reached it (no later than the last we sent). */
static int64_t
s_due(const prom_t *p)
{
    if (p->timeout_ms)
        return p->acked_at + p->timeout_ms;
    if (p->hb_ms)
        return (p->last_hb > p->acked_at ? p->last_hb : p->acked_at) + p->hb_ms;
    return 0;
}

/* L2, L3 over the final reads: suspects (pending though their deadline or
 * their source's settlement is long past) are read again after a while;
 * still pending then, they fail the seed. second: the evaluation after it. */
static size_t
s_liveness(world_t *w, int second)
{
    size_t suspects = 0;
    /* Deadlines fire by the agents' real-time clocks: a clock stepped back
     * fires them that much later; drift and detection add a little. */
    int64_t bound = 5000 + w->jumped_back;
    for (prom_t *p = zlistx_first(w->prom_list); p; p = zlistx_next(w->prom_list)) {
        if (!p->final_ok || (second && !p->recheck))
            continue;
        int64_t due = s_due(p);
        prom_t *src = p->then_of[0] ? s_prom(w, p->then_of, 0) : NULL;
        int src_settled = src && src->final_ok && src->final[0];
        int decided = p->comb && !p->final[0] && s_comb_decided(w, p->comb);
        if (!second) {
            w->st.deadlines += due && p->final_at > due + bound;
            w->st.chains += src_settled;
        }
        if (p->final[0])
            continue;
        int late = due && p->final_at > due + bound;
        int stuck = src_settled || decided;
        if (!second) {
            if (late || stuck) {
                p->recheck = 1;
                suspects++;
            }
            continue;
        }
        if (late)
            s_lviolation(w, "L3 the deadline of %s (due by %.3f s) did not fire: still pending "
                         "at %.3f s", p->id, (double) due / 1000.0,
                         (double) p->final_at / 1000.0);
        else if (decided) {
            char desc[600];
            size_t o = 0;
            desc[0] = 0;
            for (int i = 0; i < p->comb->n && o + 1 < sizeof desc; i++) {
                prom_t *x = s_prom(w, p->comb->ids[i], 0);
                o += (size_t) snprintf(desc + o, sizeof desc - o, "%s%s=%s", i ? "," : "",
                                       p->comb->ids[i], x && x->final_ok && x->final[0]
                                                            ? x->final : "?");
            }
            s_lviolation(w, "L5 the combinator %s = %s(%s) is decided by its inputs as they "
                         "read, still pending at %.3f s", p->id,
                         pm_combinator_name(p->comb->kind), desc,
                         (double) p->final_at / 1000.0);
        }
        else if (stuck)
            s_lviolation(w, "L2 the chain %s -> %s did not complete: %s is %s, %s still pending "
                         "at %.3f s", src->id, p->id, src->id, src->final, p->id,
                         (double) p->final_at / 1000.0);
    }
    return suspects;
}

/* Brings the storm's agent back if the storm left it down. */
static void
s_storm_finish(world_t *w)
{
    if (w->storm >= 0 && w->storm_down) {
        w->storm_next = w->now;
        s_storm_tick(w);
    }
}

/* After the settle: probe creates at the storm's agent, as its clients
 * would send them; they must be acknowledged (it still serves). */
#define S_STORM_PROBES 5
static void
s_storm_probe(world_t *w)
{
    node_t *n = &w->nodes[w->storm];
    if (!n->agent)
        return;
    w->storm_probing = 1;
    for (int k = 0; k < S_STORM_PROBES; k++) {
        req_t *r = s_req(w, K_CREATE, n->idx, NULL, 10000);
        pm_msg_t m = {.type = PM_MSG_CREATE, .req_id = r->id};
        s_send(w, n, n->crid, &m);
    }
    s_phase(w, w->now + 10000, 0, 0);
    w->storm_probing = 0;
}

/* The storm's verdict: it serves, gossip carries it, its spaces and the
 * store's records of them stay bounded. */
static void
s_storm_end(world_t *w)
{
    node_t *n = &w->nodes[w->storm];
    s_storm_count(w, &w->st.storm_spaces, &w->st.storm_keys);
    if (w->st.storm_spaces > w->st.storm_spaces_max)
        w->st.storm_spaces_max = w->st.storm_spaces;
    if (w->st.storm_keys > w->st.storm_keys_max)
        w->st.storm_keys_max = w->st.storm_keys;
    w->st.store_keys = pm_coord_mem_keys(w->store, NULL);
    for (int i = 0; i < w->n; i++) {
        node_t *x = &w->nodes[i];
        if (i == w->storm || !x->agent)
            continue;
        s_enter(x);
        char *js = pm_agent_sim_status(x->agent);
        s_leave();
        json_t *o = js ? json_loads(js, 0, NULL) : NULL;
        json_t *alive = json_object_get(json_object_get(json_object_get(o, "mesh"), "members"),
                                        "alive");
        w->st.storm_seen_by++;
        if (json_integer_value(alive) == w->n)
            w->st.storm_seen_alive++;
        else
            s_violation(w, "storm: %s sees %lld of %d agents alive after %" PRIu64
                        " restarts of %s (gossip must carry it)", x->name,
                        (long long) json_integer_value(alive), w->n, w->st.storm_restarts,
                        n->name);
        json_decref(o);
        free(js);
    }
    s_log(w, "storm: %" PRIu64 " restarts of %s; %" PRIu64 " requests there answered, %" PRIu64
          " errors; probes %" PRIu64 "/%d acknowledged; its spaces %" PRIu64 " (max %" PRIu64
          "), its store records %" PRIu64 " (max %" PRIu64 "), store keys %" PRIu64,
          w->st.storm_restarts, n->name, w->st.storm_acks, w->st.storm_errs,
          w->st.storm_probes_ok, S_STORM_PROBES, w->st.storm_spaces, w->st.storm_spaces_max,
          w->st.storm_keys, w->st.storm_keys_max, w->st.store_keys);
    if (!n->agent || w->st.storm_probes_ok == 0)
        s_violation(w, "storm: %s no longer serves after %" PRIu64 " restarts: %" PRIu64
                    " of %d probe creates acknowledged", n->name, w->st.storm_restarts,
                    w->st.storm_probes_ok, S_STORM_PROBES);
    if (w->st.storm_spaces > S_STORM_SPACES_MAX || w->st.storm_keys > S_STORM_SPACES_MAX)
        s_violation(w, "storm: %s's id spaces pile up after %" PRIu64 " restarts: it holds %"
                    PRIu64 " (max %" PRIu64 "), the store %" PRIu64 " records of them (max %"
                    PRIu64 "); bound %d", n->name, w->st.storm_restarts, w->st.storm_spaces,
                    w->st.storm_spaces_max, w->st.storm_keys, w->st.storm_keys_max,
                    S_STORM_SPACES_MAX);
}

typedef struct result {
    uint64_t hash, violations;
    stats_t st;
} result_t;

static void
s_run_seed(opts_t *o, uint64_t seed, void *zctx, result_t *res)
{
    static world_t w;
    s_world_init(&w, o, seed, zctx);
    s_w = &w;
    s_log(&w, "seed %" PRIu64 ": %d agents, replicas %d", seed, w.n, w.r);
    w.st.agents = (uint64_t) w.n;
    char batch[MAXN * 6] = "";
    for (int i = 0; i < w.n; i++)
        if (w.nodes[i].batch) {
            w.st.batch_agents++;
            snprintf(batch + strlen(batch), sizeof batch - strlen(batch), " %s", w.nodes[i].name);
        }
    w.st.batch_seeds = w.st.batch_agents > 0;
    if (batch[0]) /* (logged only then: an all-always seed replays as before) */
        s_log(&w, "fsync batch (group commit) on%s; always on the rest", batch);
    for (int i = 0; i < w.n; i++)
        if (s_start(&w, &w.nodes[i]) != 0) {
            fprintf(stderr, "pmesh-sim: seed %" PRIu64 ": agent %d did not start\n", seed, i);
            exit(2);
        }
    /* The mesh forms, and the store records every primary. */
    s_phase(&w, 5000, 0, 0);
    w.next_op = w.now;
    w.next_fault = o->no_faults ? INT64_MAX : w.now + s_between(&w, 500, 3000);
    if (w.storm >= 0)
        w.storm_next = w.now + s_between(&w, 500, 2000);
    s_phase(&w, w.now + o->load_ms, 1, !o->no_faults);
    if (w.storm >= 0) {
        /* The storm's tail: the load goes on (sparser), the faults in force
         * run out and no new ones start, until the N restarts are done. */
        w.op_gap = 400;
        w.next_fault = INT64_MAX;
        int64_t cap = w.now + (int64_t) o->restarts * 3000 + 60000;
        while (s_storm_on(&w) && w.now < cap)
            s_phase(&w, w.now + 1000, 1, 1);
        w.op_gap = 90;
        s_storm_finish(&w);
    }
    /* Heal everything; the load stops; requests in flight finish. */
    s_faults_tick(&w, 1);
    s_log(&w, "healed");
    s_phase(&w, w.now + o->settle_ms, 0, 0);
    if (w.storm >= 0)
        s_storm_probe(&w);
    /* Read back every acknowledged promise. */
    w.checking = 1;
    if (o->break_ack)
        for (prom_t *p = zlistx_first(w.prom_list); p; p = zlistx_next(w.prom_list))
            if (p->acked_out[0]) {
                snprintf(p->acked_out, sizeof p->acked_out, "resolved:never-sent");
                s_log(&w, "self-test: %s remembered as settled resolved:never-sent", p->id);
                break;
            }
    for (prom_t *p = zlistx_first(w.prom_list); p; p = zlistx_next(w.prom_list))
        if (p->acked || p->acked_out[0] || p->want_read)
            s_check_send(&w, p, 0);
    int64_t check_end = w.now + 120000;
    while (w.reqs && w.now < check_end)
        s_phase(&w, w.now + 1000, 0, 0);
    /* Liveness: the suspects are read again 10 s later. */
    if (s_liveness(&w, 0)) {
        s_phase(&w, w.now + 10000, 0, 0);
        for (prom_t *p = zlistx_first(w.prom_list); p; p = zlistx_next(w.prom_list))
            if (p->recheck)
                s_check_send(&w, p, 0);
        check_end = w.now + 120000;
        while (w.reqs && w.now < check_end)
            s_phase(&w, w.now + 1000, 0, 0);
        s_liveness(&w, 1);
    }
    /* Every store request of a live agent had exactly one answer (given or
     * on its way): a crash fails it or lets it complete, never both. */
    for (int i = 0; i < w.n; i++) {
        pm_coord_t *c = w.nodes[i].agent ? pm_agent_sim_coord(w.nodes[i].agent) : NULL;
        int64_t u = c ? pm_coord_mem_unbalanced(c) : 0;
        if (u)
            s_violation(&w, "store: %s's requests: %lld %s", w.nodes[i].name,
                        (long long) (u > 0 ? u : -u),
                        u > 0 ? "never answered" : "answered twice");
    }
    s_fanin_judge(&w);
    if (w.storm >= 0)
        s_storm_end(&w);
    w.st.beyond_r = (uint64_t) w.beyond_r;
    w.st.sim_ms = w.now;
    s_trace(&w, "end %" PRIu64 " %" PRIu64, w.st.violations, w.st.checked);
    pm_memnet_stats_t ms;
    pm_memnet_stats(w.net, &ms);
    s_hash(&w, &ms, sizeof ms);
    w.st.delayed = ms.delayed;
    w.st.reordered = ms.reordered;
    w.st.duplicated = ms.duplicated;
    res->hash = w.hash;
    res->violations = w.st.violations;
    res->st = w.st;
    int fails = w.st.violations > 0;
    if (o->verbose || fails) {
        printf("seed %" PRIu64 ": %d agents R=%d (%" PRIu64 " fsync batch), %.1f s simulated, ops %" PRIu64 " created %" PRIu64
               " settled %" PRIu64 " thens %" PRIu64 " checked %" PRIu64 ", unreadable %" PRIu64
               ", silent %" PRIu64 ", faults k%" PRIu64 " p%" PRIu64 " s%" PRIu64 "/%" PRIu64
               " l%" PRIu64 " st%" PRIu64 "/%" PRIu64 " d%" PRIu64 " r%" PRIu64 " u%" PRIu64
               " sc%" PRIu64 ", trace %016" PRIx64 ", liveness %" PRIu64
               "%s, %" PRIu64 " violations\n",
               seed, w.n, w.r, w.st.batch_agents, (double) w.now / 1000.0,
               w.st.ops[K_CREATE] + w.st.ops[K_SETTLE] + w.st.ops[K_AWAIT] + w.st.ops[K_THEN] +
                   w.st.ops[K_GET],
               w.st.acks[K_CREATE], w.st.acks[K_SETTLE], w.st.acks[K_THEN], w.st.checked,
               w.st.unreadable, w.st.silent, w.st.faults[F_KILL], w.st.faults[F_PAUSE],
               w.st.faults[F_PART2], w.st.faults[F_PART1], w.st.faults[F_LOSS],
               w.st.faults[F_STORE], w.st.faults[F_SLOWSTORE], w.st.faults[F_DELAY],
               w.st.faults[F_REORDER], w.st.faults[F_DUP], w.st.faults[F_CRASH], w.hash,
               w.st.lviol,
               w.beyond_r ? " (beyond R)" : "", w.st.violations);
    }
    if (fails) {
        printf("seed %" PRIu64 ": first violated invariant: %s\n", seed, w.first_violation);
        printf("seed %" PRIu64 ": schedule (faults, and what the run logged):\n%s", seed,
               w.log ? w.log : "");
    } else if (o->verbose >= 3) {
        printf("%s", w.log ? w.log : "");
    }
    fflush(stdout);
    s_world_free(&w);
}

static void
s_usage(void)
{
    fprintf(stderr,
            "usage: pmesh-sim [--seed S | --seeds N [--first S]] [--nodes N] [--replicas R]\n"
            "                 [--load MS] [--settle MS] [--no-faults] [-v]... [--log-level L]\n"
            "  --nodes N    agents (1..%d; default 3..7 from the seed)\n"
            "  --scale      scale mode: 64 agents (or --nodes), R=2 (or --replicas)\n"
            "  --restarts N restart storm: agent n0 killed and restarted N times while\n"
            "               the load goes on (the usual faults for --load, then the load\n"
            "               only); fails if it stops serving, drops out of the gossip,\n"
            "               or its id spaces (or their store records) exceed %d\n"
            "  --replicas R copies of each promise (default 2..3 from the seed)\n"
            "  --load MS    simulated ms of load and faults (default 30000)\n"
            "  --settle MS  simulated ms after healing, before the read-back (default 15000)\n"
            "  -v           a line per seed; -vv also every fault, request and answer (stderr)\n"
            "  --log-level  the agents' own log (0 error .. 3 debug; JSON lines on stderr)\n"
            "  --break-ack  self-test: misremember one acknowledged settle (must fail V2)\n"
            "  --break-reply self-test: lose one answer of a live agent (must fail L1)\n"
            "  --break-fanin self-test: misread one combinator's outcome (must fail V4)\n"
            "  --no-then-chains no then is chained at once on a then's target (the load\n"
            "               the regression seeds were found with, before chain forwarding)\n"
            "  --no-fanin-then the fan-in load chains no then on its combinators (the load\n"
            "               the regression seeds were found with, before early starts)\n"
            "  --no-mesh-batch every mesh message its own frame (mesh_batch false: the\n"
            "               schedules the regression seeds were found with)\n"
            "  --lenient-liveness L1-L5 failures are counted and reported, not failed\n"
            "               (the default fails the seed; --strict-liveness says so)\n"
            "  --faults K,...  only these fault kinds: kill pause split2 split1 loss store\n"
            "               slowstore jump slowsync wipe delay reorder dup storecrash\n"
            "  --fsync M    the agents' WAL: always, batch (group commit, its fsync thread\n"
            "               simulated), or mixed (default: per seed all always, all batch,\n"
            "               or drawn per agent)\n"
            "  --seed S     run (replay) one seed\n"
            "  --seeds N    run N seeds, from --first (default 1)\n"
            "  prints one summary line: N seeds, V violations, ...; exit 0 only if V is 0\n",
            MAXN, S_STORM_SPACES_MAX);
}

int
main(int argc, char **argv)
{
    opts_t o = {.seed = 0, .seeds = 0, .load_ms = 30000, .settle_ms = 15000, .log_level = -1,
                .strict_liveness = 1, .fsync = F_MIXED};
    uint64_t first = 1;
    int one = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seed") && v) {
            o.seed = strtoull(v, NULL, 0);
            one = 1;
            i++;
        } else if (!strcmp(a, "--seeds") && v) {
            o.seeds = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--first") && v) {
            first = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--nodes") && v) {
            o.nodes = atoi(v);
            i++;
        } else if (!strcmp(a, "--replicas") && v) {
            o.replicas = atoi(v);
            i++;
        } else if (!strcmp(a, "--load") && v) {
            o.load_ms = strtoll(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--settle") && v) {
            o.settle_ms = strtoll(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--log-level") && v) {
            o.log_level = atoi(v);
            i++;
        } else if (!strcmp(a, "--break-ack")) {
            o.break_ack = 1;
        } else if (!strcmp(a, "--break-reply")) {
            o.break_reply = 1;
        } else if (!strcmp(a, "--break-fanin")) {
            o.break_fanin = 1;
        } else if (!strcmp(a, "--no-fanin-then")) {
            o.no_fanin_then = 1;
        } else if (!strcmp(a, "--no-then-chains")) {
            o.no_then_chains = 1;
        } else if (!strcmp(a, "--no-mesh-batch")) {
            o.no_mesh_batch = 1;
        } else if (!strcmp(a, "--strict-liveness")) {
            o.strict_liveness = 1;
        } else if (!strcmp(a, "--lenient-liveness")) {
            o.strict_liveness = 0;
        } else if (!strcmp(a, "--scale")) {
            o.scale = 1;
        } else if (!strcmp(a, "--restarts") && v) {
            o.restarts = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--fsync") && v) {
            if (!strcmp(v, "always"))
                o.fsync = F_ALWAYS;
            else if (!strcmp(v, "batch"))
                o.fsync = F_BATCH;
            else if (!strcmp(v, "mixed"))
                o.fsync = F_MIXED;
            else {
                fprintf(stderr, "pmesh-sim: --fsync always|batch|mixed\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--no-faults")) {
            o.no_faults = 1;
        } else if (!strcmp(a, "--faults") && v) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                int k = 0;
                while (k < F_COUNT && strcmp(s_fault_name[k], t))
                    k++;
                if (k == F_COUNT) {
                    fprintf(stderr, "pmesh-sim: --faults: no kind %s\n", t);
                    return 2;
                }
                o.fault_mask |= 1u << k;
            }
            i++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            s_usage();
            return 0;
        } else if (!strcmp(a, "-v")) {
            o.verbose++;
        } else if (!strcmp(a, "-vv")) {
            o.verbose += 2;
        } else {
            s_usage();
            return 2;
        }
    }
    if (o.scale) { /* 64 agents, two copies (unless said otherwise) */
        if (!o.nodes)
            o.nodes = 64;
        if (!o.replicas)
            o.replicas = 2;
    }
    if (o.nodes && (o.nodes < 1 || o.nodes > MAXN)) {
        fprintf(stderr, "pmesh-sim: --nodes must be 1..%d\n", MAXN);
        return 2;
    }
    if (!one && !o.seeds)
        o.seeds = 1;
    if (one) {
        first = o.seed;
        o.seeds = 1;
        if (!o.verbose)
            o.verbose = 1;
    }
    pm_log_setup(o.log_level, PM_LOG_TEXT, "sim");
    s_log_level = o.log_level;
    void *zctx = zmq_ctx_new();
    pm_wal_syncer_use(&s_syncer); /* batch-mode WALs: the fsync thread simulated */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    stats_t tot = {0};
    uint64_t failed = 0, hashes = 1469598103934665603ULL;
    for (uint64_t s = first; s < first + o.seeds; s++) {
        result_t res;
        s_run_seed(&o, s, zctx, &res);
        if (res.violations)
            failed++;
        hashes = (hashes ^ res.hash) * 1099511628211ULL;
        tot.violations += res.st.violations;
        tot.unreadable += res.st.unreadable;
        tot.silent += res.st.silent;
        tot.checked += res.st.checked;
        tot.beyond_r += res.st.beyond_r;
        tot.lviol += res.st.lviol;
        tot.lreported += res.st.lreported;
        tot.deadlines += res.st.deadlines;
        tot.chains += res.st.chains;
        tot.combs += res.st.combs;
        tot.comb_judged += res.st.comb_judged;
        tot.comb_partly += res.st.comb_partly;
        tot.catches += res.st.catches;
        for (int k = 0; k < 3; k++)
            tot.early[k] += res.st.early[k];
        for (int k = 0; k < 4; k++)
            tot.chain[k] += res.st.chain[k];
        tot.torn += res.st.torn;
        tot.agents += res.st.agents;
        tot.batch_agents += res.st.batch_agents;
        tot.batch_seeds += res.st.batch_seeds;
        tot.bg_fsyncs += res.st.bg_fsyncs;
        tot.kills_unsynced += res.st.kills_unsynced;
        tot.kills_in_flight += res.st.kills_in_flight;
        tot.unsynced_bytes += res.st.unsynced_bytes;
        tot.delayed += res.st.delayed;
        tot.reordered += res.st.reordered;
        tot.duplicated += res.st.duplicated;
        tot.watch_stalls += res.st.watch_stalls;
        tot.crash_answers += res.st.crash_answers;
        tot.crash_writes += res.st.crash_writes;
        tot.invocations += res.st.invocations;
        tot.worker_deaths += res.st.worker_deaths;
        tot.sim_ms += res.st.sim_ms;
        tot.agent_ms += res.st.agent_ms;
        tot.storm_restarts += res.st.storm_restarts;
        tot.storm_acks += res.st.storm_acks;
        tot.storm_errs += res.st.storm_errs;
        tot.storm_probes_ok += res.st.storm_probes_ok;
        tot.storm_seen_alive += res.st.storm_seen_alive;
        tot.storm_seen_by += res.st.storm_seen_by;
        if (res.st.storm_spaces_max > tot.storm_spaces_max)
            tot.storm_spaces_max = res.st.storm_spaces_max;
        if (res.st.storm_keys_max > tot.storm_keys_max)
            tot.storm_keys_max = res.st.storm_keys_max;
        if (res.st.storm_spaces > tot.storm_spaces)
            tot.storm_spaces = res.st.storm_spaces;
        if (res.st.storm_keys > tot.storm_keys)
            tot.storm_keys = res.st.storm_keys;
        if (res.st.store_keys > tot.store_keys)
            tot.store_keys = res.st.store_keys;
        for (int k = 0; k < F_COUNT; k++)
            tot.faults[k] += res.st.faults[k];
        for (int k = 0; k < 16; k++) {
            tot.ops[k] += res.st.ops[k];
            tot.acks[k] += res.st.acks[k];
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double agent_min = (double) tot.agent_ms / 60000.0;
    printf("%" PRIu64 " seeds, %" PRIu64 " violations (%" PRIu64 " seeds failed), %" PRIu64
           " liveness failures (L1-L5), %" PRIu64 " promises checked, %" PRIu64 " unreadable, %" PRIu64
           " silent, %" PRIu64 " deadlines and %" PRIu64 " chains checked, %" PRIu64
           " combinators (%" PRIu64 " judged, %" PRIu64 " partly), %" PRIu64
           " on_reject handlers checked, %" PRIu64 " early starts (%" PRIu64 " kept, %" PRIu64
           " dropped), %" PRIu64 " chained steps handed on (%" PRIu64 " started by members, %" PRIu64
           " kept, %" PRIu64 " dropped), %" PRIu64
           " seeds beyond R; faults: %" PRIu64 " kills (%" PRIu64 " torn), %" PRIu64
           " wiped disks, %" PRIu64 " pauses, %" PRIu64 " two-way splits, %" PRIu64
           " one-way splits, %" PRIu64 " lossy spells, %" PRIu64 " store outages, %" PRIu64
           " slow-store spells, %" PRIu64 " watch stalls, %" PRIu64 " clock jumps, %" PRIu64
           " slow-fsync spells, %" PRIu64
           " delay spells, %" PRIu64 " reorder spells, %" PRIu64 " duplication spells, %" PRIu64
           " store crashes (%" PRIu64 " answers lost, %" PRIu64 " of applied writes), %" PRIu64
           " worker deaths; frames: %" PRIu64 " delayed, %" PRIu64 " reordered, %" PRIu64
           " duplicated; fsync batch: %" PRIu64 " of %" PRIu64 " agents in %" PRIu64
           " seeds, %" PRIu64 " group fsyncs, %" PRIu64 " kills with one in flight, %" PRIu64
           " with unsynced bytes (%" PRIu64 " bytes); %.1f agent-minutes simulated in %.1f s"
           " (%.0f agent-min per wall min); trace %016" PRIx64 "\n",
           o.seeds, tot.violations, failed, tot.lviol, tot.checked, tot.unreadable, tot.silent,
           tot.deadlines, tot.chains, tot.combs, tot.comb_judged, tot.comb_partly, tot.catches,
           tot.early[0], tot.early[1], tot.early[2], tot.chain[0], tot.chain[1], tot.chain[2],
           tot.chain[3], tot.beyond_r, tot.faults[F_KILL], tot.torn,
           tot.faults[F_WIPE], tot.faults[F_PAUSE], tot.faults[F_PART2], tot.faults[F_PART1],
           tot.faults[F_LOSS], tot.faults[F_STORE], tot.faults[F_SLOWSTORE], tot.watch_stalls,
           tot.faults[F_JUMP],
           tot.faults[F_SLOWSYNC], tot.faults[F_DELAY], tot.faults[F_REORDER],
           tot.faults[F_DUP], tot.faults[F_CRASH], tot.crash_answers, tot.crash_writes,
           tot.worker_deaths, tot.delayed, tot.reordered, tot.duplicated, tot.batch_agents,
           tot.agents, tot.batch_seeds, tot.bg_fsyncs, tot.kills_in_flight, tot.kills_unsynced, tot.unsynced_bytes,
           agent_min, wall,
           wall > 0 ? agent_min / (wall / 60.0) : 0.0, hashes);
    if (o.restarts)
        printf("restart storm: %" PRIu64 " restarts of n0 in %" PRIu64 " seeds; %" PRIu64
               " requests there answered, %" PRIu64 " errors; probes %" PRIu64 "/%" PRIu64
               " acknowledged; seen alive by %" PRIu64 "/%" PRIu64 " agents; its id spaces at "
               "the end %" PRIu64 " (max %" PRIu64 " over the run), the store's records of "
               "them %" PRIu64 " (max %" PRIu64 "), store keys %" PRIu64 " (largest seed "
               "each)\n", tot.storm_restarts, o.seeds, tot.storm_acks, tot.storm_errs,
               tot.storm_probes_ok, (uint64_t) S_STORM_PROBES * o.seeds, tot.storm_seen_alive,
               tot.storm_seen_by, tot.storm_spaces, tot.storm_spaces_max, tot.storm_keys,
               tot.storm_keys_max, tot.store_keys);
    zmq_ctx_term(zctx);
    return tot.violations ? 1 : 0;
}
