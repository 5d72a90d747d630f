/*
 * test_isr.c - cmocka suite for the rules of node/isr.c (issue 11) played
 * against the in-memory configuration store (mem://, deterministic): an
 * owner's set change racing its backup's takeover (exactly one wins, and
 * the loser's re-read forbids what it tried), an heir outside the in-sync
 * set (refused), a restarted agent that finds a newer epoch (takes nothing
 * back) or finds itself still the owner (takes its space back from its own
 * WAL), the store down (nothing changes, the change happens once it is
 * back), and the operator's forced takeover; then the coordinator itself
 * (pm_isr_t) on a model of the agent (which processes are alive, what it
 * serves, its backups, its reply gate), two or three of them sharing one
 * memory store: records at start, the in-sync set growing and shrinking and
 * the gate following, writes refused below min_in_sync, a shrink racing a
 * takeover, an heir outside the set that does not try, the store down (the
 * healthy owner writes on, the takeover waits, counted, and happens once the
 * store is back, after a re-read), held replies failed when a shrink cannot
 * be recorded, and a restarted agent that finds a newer epoch; the
 * hand-back (R8): its rule, and an heir that drains a space (writes to it
 * refused, the record unchanged until what was produced before the drain
 * is acknowledged) and then gives it to its home node's new process by
 * CAS, or abandons the drain when that process dies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "isr.h"
#include "pmesh.h"
#include "stats.h"

static pm_coord_t *
s_client(pm_coord_mem_t *store)
{
    pm_coord_config_t cfg = {.url = "mem://", .prefix = "/pmesh/isr", .mem = store};
    char err[256] = "";
    pm_coord_t *c = pm_coord_new(&cfg, err, sizeof err);
    assert_non_null(c);
    return c;
}

static pm_coord_result_t *
s_next(pm_coord_t *c)
{
    pm_coord_result_t *r = NULL;
    assert_int_equal(pm_coord_recv(c, &r), 0);
    assert_non_null(r);
    return r;
}

static pm_coord_member_t
s_m(const char *node, uint64_t pid)
{
    pm_coord_member_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.node, sizeof m.node, "%s", node);
    m.pid = pid;
    return m;
}

/* Creates space S: owner a (pid 1) at epoch 1, in sync b (pid 2) and, if
 * three, c (pid 3). Returns the stored record. */
static pm_coord_record_t
s_setup(pm_coord_t *c, int three)
{
    pm_coord_record_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.space, sizeof r.space, "S");
    snprintf(r.owner, sizeof r.owner, "a");
    r.owner_pid = 1;
    r.epoch = 1;
    r.in_sync[r.n_in_sync++] = s_m("b", 2);
    if (three)
        r.in_sync[r.n_in_sync++] = s_m("c", 3);
    assert_true(pm_coord_create(c, &r) > 0);
    pm_coord_result_t *res = s_next(c);
    assert_int_equal(res->status, PM_COORD_OK);
    pm_coord_record_t out = res->records[0];
    pm_coord_result_destroy(&res);
    return out;
}

static void
test_takeover_rule(void **state)
{
    (void) state;
    pm_coord_record_t cur;
    memset(&cur, 0, sizeof cur);
    snprintf(cur.space, sizeof cur.space, "S");
    snprintf(cur.owner, sizeof cur.owner, "a");
    cur.owner_pid = 1;
    cur.epoch = 4;
    cur.in_sync[0] = s_m("b", 2);
    cur.in_sync[1] = s_m("c", 3);
    cur.n_in_sync = 2;
    pm_coord_record_t next;
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 2, 0, &next), 0);
    assert_string_equal(next.owner, "b");
    assert_int_equal(next.owner_pid, 2);
    assert_int_equal(next.epoch, 5);
    /* The other member stays; the new owner is not its own backup. */
    assert_int_equal(next.n_in_sync, 1);
    assert_string_equal(next.in_sync[0].node, "c");
    /* An heir outside the set: refused, whatever it holds. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "d", 9, 0, &next), -1);
    /* The right node as another process (restarted without its WAL). */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 0, &next), -1);
    /* ... or with a WAL from a process that was not the member. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 6, &next), -1);
    /* The process after the member, on its data dir: it stands in for it,
     * and the old membership goes. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 2, &next), 0);
    assert_int_equal(next.owner_pid, 7);
    assert_int_equal(next.n_in_sync, 1);
    assert_string_equal(next.in_sync[0].node, "c");
    /* The owner's own next process, on its data dir: it holds everything it
     * acknowledged. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "a", 8, 1, &next), 0);
    assert_int_equal(next.epoch, 5);
    assert_int_equal(next.n_in_sync, 2);
    /* The force ignores the set and empties it. */
    pm_isr_rule_force(&cur, "d", 9, &next);
    assert_string_equal(next.owner, "d");
    assert_int_equal(next.epoch, 5);
    assert_int_equal(next.n_in_sync, 0);
    /* Set comparison ignores order. */
    pm_coord_member_t x[2] = {s_m("c", 3), s_m("b", 2)};
    assert_true(pm_isr_rule_same_set(x, 2, cur.in_sync, 2));
    assert_false(pm_isr_rule_same_set(x, 1, cur.in_sync, 2));
    x[1].pid = 4;
    assert_false(pm_isr_rule_same_set(x, 2, cur.in_sync, 2));
}

/* The owner drops b while b takes over, both from the same revision. */
static void
s_race(int shrink_first)
{
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *owner = s_client(store), *backup = s_client(store);
    pm_coord_record_t seen = s_setup(owner, 0);
    pm_coord_record_t shrunk, took;
    pm_isr_rule_set(&seen, NULL, 0, &shrunk);
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    if (shrink_first) {
        pm_coord_cas(owner, seen.revision, &shrunk);
        pm_coord_cas(backup, seen.revision, &took);
    } else {
        pm_coord_cas(backup, seen.revision, &took);
        pm_coord_cas(owner, seen.revision, &shrunk);
    }
    pm_coord_result_t *ro = s_next(owner), *rb = s_next(backup);
    /* Exactly one wins. */
    assert_int_equal(ro->status == PM_COORD_OK, !!shrink_first);
    assert_int_equal(rb->status == PM_COORD_OK, !shrink_first);
    if (shrink_first) {
        /* b re-reads: it is no longer in the set, so it may not take over. */
        assert_int_equal(rb->status, PM_COORD_CONFLICT);
        pm_coord_record_t again;
        assert_int_equal(pm_isr_rule_takeover(&rb->records[0], "b", 2, 0, &again), -1);
        assert_string_equal(rb->records[0].owner, "a");
        assert_int_equal(rb->records[0].n_in_sync, 0);
    } else {
        /* The owner re-reads: the space is b's at epoch 2 (R4: it stops). */
        assert_int_equal(ro->status, PM_COORD_CONFLICT);
        assert_string_equal(ro->records[0].owner, "b");
        assert_int_equal(ro->records[0].epoch, 2);
        /* And its retried shrink from the new revision would only change
         * b's record: it is not the owner, so it must not (isr.c only
         * reconciles records it owns). */
        assert_int_not_equal(ro->records[0].owner_pid, 1);
    }
    pm_coord_result_destroy(&ro);
    pm_coord_result_destroy(&rb);
    pm_coord_destroy(&owner);
    pm_coord_destroy(&backup);
    pm_coord_mem_destroy(&store);
}

static void
test_race_shrink_wins(void **state)
{
    (void) state;
    s_race(1);
}

static void
test_race_takeover_wins(void **state)
{
    (void) state;
    s_race(0);
}

/* Two members race to take over: one wins, the other's re-read shows it. */
static void
test_two_candidates(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *b = s_client(store), *c = s_client(store);
    pm_coord_record_t seen = s_setup(b, 1);
    pm_coord_record_t tb, tc;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &tb), 0);
    assert_int_equal(pm_isr_rule_takeover(&seen, "c", 3, 0, &tc), 0);
    pm_coord_cas(c, seen.revision, &tc);
    pm_coord_cas(b, seen.revision, &tb);
    pm_coord_result_t *rc = s_next(c), *rb = s_next(b);
    assert_int_equal(rc->status, PM_COORD_OK);
    assert_int_equal(rb->status, PM_COORD_CONFLICT);
    assert_string_equal(rb->records[0].owner, "c");
    assert_int_equal(rb->records[0].epoch, 2);
    /* b is still in c's set (it held everything), so it is c's heir next. */
    assert_true(pm_isr_rule_member(&rb->records[0], "b", 2));
    pm_coord_result_destroy(&rc);
    pm_coord_result_destroy(&rb);
    pm_coord_destroy(&b);
    pm_coord_destroy(&c);
    pm_coord_mem_destroy(&store);
}

/* A restarted agent reads the store first: its space moved on to a newer
 * epoch while it was down, so even its own WAL gives it no claim. */
static void
test_restart_finds_newer_epoch(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    pm_coord_cas(b, seen.revision, &took);
    pm_coord_result_t *r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    /* a restarts as process 11 on its data dir (prev 1) and lists. */
    pm_coord_t *a2 = s_client(store);
    pm_coord_list(a2);
    r = s_next(a2);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->n_records, 1);
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_record_t back;
    assert_int_equal(pm_isr_rule_takeover(&r->records[0], "a", 11, 1, &back), -1);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&a2);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* The store down: a takeover's CAS is UNAVAILABLE and changes nothing; a
 * re-read decides (the record is the old one); back up, the same CAS wins. */
static void
test_store_down_then_back(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    pm_coord_mem_set_available(b, 0);
    pm_coord_cas(b, seen.revision, &took);
    pm_coord_result_t *r = s_next(b);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);
    /* The owner, still connected, reads its record unchanged: it keeps
     * serving (nothing it needs comes from the store). */
    pm_coord_get(a, "S");
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_string_equal(r->records[0].owner, "a");
    assert_int_equal(r->records[0].revision, seen.revision);
    pm_coord_result_destroy(&r);
    /* Back: the re-read shows the old record (the write did not happen),
     * and the retried CAS from it wins. */
    pm_coord_mem_set_available(b, 1);
    pm_coord_get(b, "S");
    r = s_next(b);
    assert_false(pm_coord_record_same(&r->records[0], &took));
    pm_coord_record_t cur = r->records[0];
    pm_coord_result_destroy(&r);
    pm_coord_cas(b, cur.revision, &took);
    r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_string_equal(r->records[0].owner, "b");
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* A grow by the owner, then a takeover by the new member: R2 then R3. */
static void
test_grow_then_member_takes_over(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *c = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t none;
    assert_int_equal(pm_isr_rule_takeover(&seen, "c", 3, 0, &none), -1); /* not yet */
    pm_coord_member_t want[2] = {s_m("b", 2), s_m("c", 3)};
    pm_coord_record_t grown;
    pm_isr_rule_set(&seen, want, 2, &grown);
    pm_coord_cas(a, seen.revision, &grown);
    pm_coord_result_t *r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_record_t now = r->records[0];
    pm_coord_result_destroy(&r);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&now, "c", 3, 0, &took), 0);
    pm_coord_cas(c, now.revision, &took);
    r = s_next(c);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&c);
    pm_coord_mem_destroy(&store);
}

/* ---- the coordinator on a model of the agent ------------------------------------ */

typedef struct s_model {
    const char *node;
    uint64_t pid;
    char serves[4][32]; /* spaces served ("" free) */
    uint64_t epochs[4];
    int takes, drops;
    uint64_t took_epoch;
    /* its backups */
    size_t n_backups;
    const char *b_node[2];
    uint64_t b_pid[2], b_acked[2];
    int b_counted[2];
    uint64_t produced;
    /* the gate as last set */
    size_t n_gate;
    char gate[4][32];
    size_t failed;
    /* the last answer to an operator's force-owner */
    int forced_n, forced_err;
    uint64_t forced_session, forced_req;
    char forced_text[1024];
    pm_isr_t *isr;
} s_model_t;

/* Who is alive, as every model sees it: node -> pid (0: dead). */
static struct {
    const char *node;
    uint64_t pid;
} s_world[4];

static int
m_alive(void *arg, const char *node, uint64_t pid)
{
    (void) arg;
    for (size_t i = 0; i < 4; i++)
        if (s_world[i].node && strcmp(s_world[i].node, node) == 0)
            return s_world[i].pid == pid ? PM_ISR_ALIVE
                   : s_world[i].pid      ? PM_ISR_OTHER
                                         : PM_ISR_GONE;
    return PM_ISR_GONE;
}

static void
s_set_alive(const char *node, uint64_t pid)
{
    for (size_t i = 0; i < 4; i++)
        if (!s_world[i].node || strcmp(s_world[i].node, node) == 0) {
            s_world[i].node = node;
            s_world[i].pid = pid;
            return;
        }
}

static int
m_serves(void *arg, const char *space, uint64_t *epoch)
{
    s_model_t *m = arg;
    for (size_t i = 0; i < 4; i++)
        if (strcmp(m->serves[i], space) == 0) {
            if (epoch)
                *epoch = m->epochs[i];
            return 1;
        }
    return 0;
}

static void
m_take(void *arg, const char *space, uint64_t epoch, const char *why)
{
    (void) why;
    s_model_t *m = arg;
    for (size_t i = 0; i < 4; i++)
        if (!m->serves[i][0]) {
            snprintf(m->serves[i], sizeof m->serves[i], "%s", space);
            m->epochs[i] = epoch;
            break;
        }
    m->takes++;
    m->took_epoch = epoch;
}

static void
m_drop(void *arg, const char *space)
{
    s_model_t *m = arg;
    for (size_t i = 0; i < 4; i++)
        if (strcmp(m->serves[i], space) == 0)
            m->serves[i][0] = 0;
    m->drops++;
}

static int
m_backup(void *arg, size_t i, const char **node, uint64_t *pid, uint64_t *acked, int *counted)
{
    s_model_t *m = arg;
    if (i >= m->n_backups)
        return 0;
    *node = m->b_node[i];
    *pid = m->b_pid[i];
    *acked = m->b_acked[i];
    *counted = m->b_counted[i];
    return 1;
}

static uint64_t
m_produced(void *arg)
{
    return ((s_model_t *) arg)->produced;
}

static uint64_t
m_acked(void *arg)
{
    s_model_t *m = arg;
    uint64_t low = m->produced;
    for (size_t g = 0; g < m->n_gate; g++) {
        uint64_t a = 0;
        for (size_t i = 0; i < m->n_backups; i++)
            if (m->b_counted[i] && strcmp(m->b_node[i], m->gate[g]) == 0)
                a = m->b_acked[i];
        if (a < low)
            low = a;
    }
    return low;
}

static void
m_gate(void *arg, const char *const *nodes, const uint64_t *pids, size_t n)
{
    (void) pids;
    s_model_t *m = arg;
    m->n_gate = n;
    for (size_t i = 0; i < n && i < 4; i++)
        snprintf(m->gate[i], sizeof m->gate[i], "%s", nodes[i]);
}

static size_t
m_fail_held(void *arg, int err, const char *why)
{
    (void) why;
    s_model_t *m = arg;
    assert_int_equal(err, PM_ERR_UNAVAILABLE);
    m->failed++;
    return 1;
}

static void
m_forced(void *arg, uint64_t session, uint64_t req, int err, const char *text)
{
    s_model_t *m = arg;
    m->forced_n++;
    m->forced_err = err;
    m->forced_session = session;
    m->forced_req = req;
    snprintf(m->forced_text, sizeof m->forced_text, "%s", text);
}

static const pm_isr_env_t s_env = {m_alive,    m_serves, m_take, m_drop,      m_backup,
                                   m_produced, m_acked,  m_gate, m_fail_held, m_forced,
                                   NULL};

static int64_t s_now;

/* A coordinator for node (process pid, primary NODE-PID) on store. */
static void
s_start(s_model_t *m, pm_coord_mem_t *store, const char *node, uint64_t pid, uint64_t prev)
{
    memset(m, 0, sizeof *m);
    m->node = node;
    m->pid = pid;
    char primary[32];
    snprintf(primary, sizeof primary, "%s-%llu", node, (unsigned long long) pid);
    snprintf(m->serves[0], sizeof m->serves[0], "%s", primary);
    m->epochs[0] = 1;
    pm_isr_config_t cfg = {.url = "mem://", .prefix = "/pmesh/isr", .mem = store, .node = node,
                           .primary = primary, .pid = pid, .prev = prev, .min_in_sync = 1};
    char err[256];
    m->isr = pm_isr_new(&cfg, &s_env, m, err, sizeof err);
    assert_non_null(m->isr);
    s_set_alive(node, pid);
    pm_isr_start(m->isr);
}

/* Runs every coordinator until nothing moves: 10 ms steps, n rounds. */
static void
s_pump(s_model_t **ms, size_t n, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        s_now += 10;
        for (size_t i = 0; i < n; i++) {
            if (!ms[i]->isr)
                continue;
            pm_isr_readable(ms[i]->isr, s_now);
            pm_isr_tick(ms[i]->isr, s_now);
            pm_isr_readable(ms[i]->isr, s_now);
        }
    }
}

static pm_coord_record_t
s_read(pm_coord_mem_t *store, const char *space)
{
    pm_coord_t *c = s_client(store);
    pm_coord_get(c, space);
    pm_coord_result_t *r = s_next(c);
    pm_coord_record_t rec;
    memset(&rec, 0, sizeof rec);
    if (r->status == PM_COORD_OK)
        rec = r->records[0];
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&c);
    return rec;
}

/* a (pid 1) owns a-1 with b (pid 2) recorded in sync; b is a's backup. */
static void
s_two(pm_coord_mem_t *store, s_model_t *a, s_model_t *b)
{
    memset(s_world, 0, sizeof s_world);
    s_start(a, store, "a", 1, 0);
    s_start(b, store, "b", 2, 0);
    s_model_t *ms[] = {a, b};
    s_pump(ms, 2, 3);
    char msg[256];
    /* Recorded at start, nobody in sync yet: writes are refused. */
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "a");
    assert_int_equal(r.epoch, 1);
    assert_int_equal(r.n_in_sync, 0);
    assert_int_equal(pm_isr_write_check(a->isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
    assert_non_null(strstr(msg, "min_in_sync is 1"));
    /* b is copying the state: not yet. */
    a->n_backups = 1;
    a->b_node[0] = "b";
    a->b_pid[0] = 2;
    a->produced = 5;
    s_pump(ms, 2, 3);
    assert_int_equal(s_read(store, "a-1").n_in_sync, 0);
    /* Caught up: recorded, and the gate counts it. */
    a->b_counted[0] = 1;
    a->b_acked[0] = 5;
    s_pump(ms, 2, 3);
    r = s_read(store, "a-1");
    assert_int_equal(r.n_in_sync, 1);
    assert_string_equal(r.in_sync[0].node, "b");
    assert_int_equal(r.in_sync[0].pid, 2);
    assert_int_equal(a->n_gate, 1);
    assert_string_equal(a->gate[0], "b");
    assert_int_equal(pm_isr_write_check(a->isr, "a-1", msg, sizeof msg), 0);
}

static void
s_stop(s_model_t *m)
{
    pm_isr_destroy(&m->isr);
}

static void
test_coord_grow_and_gate(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    /* More records, acknowledged by b: the gate is b's acknowledgement. */
    a.produced = 9;
    assert_int_equal(m_acked(&a), 5);
    a.b_acked[0] = 9;
    assert_int_equal(m_acked(&a), 9);
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* The owner drops its lost backup while that backup (it thinks the owner
 * dead) takes over: both from the same revision, in either order. */
static void
s_coord_race(int owner_first)
{
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    a.n_backups = 0;        /* a lost b */
    s_set_alive("a", 0);    /* b sees a dead */
    s_model_t *first = owner_first ? &a : &b, *second = owner_first ? &b : &a;
    s_now += 10;
    pm_isr_member_down(first->isr, s_now);
    pm_isr_member_down(second->isr, s_now);
    s_model_t *ms[] = {&a, &b};
    s_pump(ms, 2, 5);
    pm_coord_record_t r = s_read(store, "a-1");
    char msg[256];
    if (owner_first) {
        /* The shrink won: b is out of the set and did not take over. */
        assert_string_equal(r.owner, "a");
        assert_int_equal(r.n_in_sync, 0);
        assert_int_equal(b.takes, 0);
        assert_int_equal(a.n_gate, 0);
        assert_int_equal(pm_isr_write_check(a.isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
    } else {
        /* The takeover won: a learns it and stops serving a-1. */
        assert_string_equal(r.owner, "b");
        assert_int_equal(r.epoch, 2);
        assert_int_equal(b.takes, 1);
        assert_int_equal(b.took_epoch, 2);
        assert_int_equal(a.drops, 1);
        assert_false(m_serves(&a, "a-1", NULL));
    }
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

static void
test_coord_race_owner_first(void **state)
{
    (void) state;
    s_coord_race(1);
}

static void
test_coord_race_backup_first(void **state)
{
    (void) state;
    s_coord_race(0);
}

/* b thinks a dead and tries a takeover that the store never answers (a
 * split): from the attempt on it refuses a's records (fence 2). a, still the
 * recorded owner and alive, drops b from the set; the record moves past the
 * revision b's attempt was made from, so that attempt can never win, and
 * b's fence falls back to the recorded epoch: a's records are the truth. */
static void
test_coord_failed_attempt_stops_fencing(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *ms[] = {&a, &b};
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 1);
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 0);
    s_set_alive("a", 0); /* in b's eyes */
    pm_isr_member_down(b.isr, s_now);
    s_pump(ms, 2, 3);
    assert_int_equal(b.takes, 0);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 2);
    /* a drops b (it lost it) and records that. */
    a.n_backups = 0;
    pm_isr_member_down(a.isr, s_now);
    s_pump(ms, 2, 3);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "a");
    assert_int_equal(r.n_in_sync, 0);
    /* b hears the store again: its attempt is dead, its fence is 1. */
    s_set_alive("a", 1);
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 1);
    s_pump(ms, 2, 300);
    assert_int_equal(b.takes, 0);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 1);
    assert_string_equal(s_read(store, "a-1").owner, "a");
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* The same attempt, but nothing else moves the record: a keeps b recorded
 * in sync (it waits on b, whose fence refuses its records). b closes its own
 * attempt by rewriting the record as read at that revision, so the fence
 * falls back to epoch 1 (pmesh-sim seeds 1 and 44: an owner stalled for
 * good behind its only in-sync member's fence). */
static void
test_coord_failed_attempt_closed_by_rewrite(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *ms[] = {&a, &b};
    pm_coord_record_t before = s_read(store, "a-1");
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 0);
    s_set_alive("a", 0); /* in b's eyes */
    pm_isr_member_down(b.isr, s_now);
    s_pump(ms, 2, 3);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 2);
    /* b hears the store and a again: nothing but b's own rewrite moves the
     * record, and until it does, b fences a. */
    s_set_alive("a", 1);
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 1);
    s_pump(ms, 2, 300);
    assert_int_equal(b.takes, 0);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 1);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "a");
    assert_int_equal(r.epoch, 1);
    assert_int_equal(r.n_in_sync, 1);
    assert_string_equal(r.in_sync[0].node, "b");
    assert_true(r.revision > before.revision);
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* A backup's refusal or a gossiped claim makes the owner ask the store, and
 * only the store's answer makes it stop serving (R4). */
static void
test_coord_refresh_decides(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *ms[] = {&a, &b};
    pm_isr_refresh(a.isr, "a-1", "test: a backup refused");
    s_pump(ms, 2, 3);
    assert_int_equal(a.drops, 0);
    assert_true(m_serves(&a, "a-1", NULL));
    pm_stats_t st = {0};
    pm_isr_stats_fill(a.isr, &st);
    assert_int_equal(st.co_refreshes, 1);
    pm_stats_clear(&st);
    /* b takes it over while a does not hear the watch (its store client is
     * cut off); a refresh once it is back finds it. */
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 0);
    s_set_alive("a", 0);
    pm_isr_member_down(b.isr, s_now);
    s_pump(ms, 2, 5);
    assert_int_equal(b.takes, 1);
    assert_int_equal(a.drops, 0);
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 1);
    pm_isr_refresh(a.isr, "a-1", "test: gossip claims it");
    s_pump(ms, 2, 300);
    assert_int_equal(a.drops, 1);
    assert_false(m_serves(&a, "a-1", NULL));
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* c is alive but in no in-sync set: a's death makes it try nothing. */
static void
test_coord_heir_outside_set(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b, c;
    s_two(store, &a, &b);
    s_start(&c, store, "c", 3, 0);
    s_model_t *ms[] = {&a, &b, &c};
    s_pump(ms, 3, 3);
    s_set_alive("a", 0);
    s_set_alive("b", 0);
    s_stop(&a);
    s_stop(&b);
    pm_isr_member_down(c.isr, s_now);
    s_pump(ms, 3, 5);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "a");
    assert_int_equal(r.epoch, 1);
    assert_int_equal(c.takes, 0);
    /* And its requests on a-1 hear why. */
    char msg[256];
    assert_int_equal(pm_isr_route_check(c.isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
    assert_non_null(strstr(msg, "no member of its in-sync set"));
    s_stop(&c);
    pm_coord_mem_destroy(&store);
}

/* The store down: the healthy owner writes on; the takeover waits (counted)
 * and happens once the store is back, after re-reading. */
static void
test_coord_store_down(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *ms[] = {&a, &b};
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 0);
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 0);
    s_pump(ms, 2, 3);
    char msg[256];
    assert_int_equal(pm_isr_write_check(a.isr, "a-1", msg, sizeof msg), 0);
    /* a dies; b may take over but the store does not answer. */
    s_set_alive("a", 0);
    s_stop(&a);
    pm_isr_member_down(b.isr, s_now);
    s_pump(ms, 2, 10);
    assert_int_equal(b.takes, 0);
    pm_stats_t st = {0};
    pm_isr_stats_fill(b.isr, &st);
    assert_int_equal(st.co_waiting, 1);
    assert_int_equal(st.co_store_up, 0);
    pm_stats_clear(&st);
    assert_string_equal(s_read(store, "a-1").owner, "a");
    /* Back: retried after its backoff, the takeover happens. */
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 1);
    s_pump(ms, 2, 300);
    assert_int_equal(b.takes, 1);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "b");
    assert_int_equal(r.epoch, 2);
    pm_isr_stats_fill(b.isr, &st);
    assert_int_equal(st.co_waiting, 0);
    /* Its own CAS: a takeover, not an operator's force. */
    assert_int_equal(st.co_takeovers, 1);
    assert_int_equal(st.co_forced, 0);
    pm_stats_clear(&st);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* The owner loses its backup while the store is down: the shrink cannot be
 * recorded, so held replies fail and writes are refused, saying why. */
static void
test_coord_shrink_waits(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *ms[] = {&a, &b};
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 0);
    a.n_backups = 0;
    s_now += 10;
    pm_isr_member_down(a.isr, s_now);
    s_pump(ms, 2, 3);
    assert_true(a.failed >= 1);
    char msg[256];
    assert_int_equal(pm_isr_write_check(a.isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
    assert_non_null(strstr(msg, "backup b is lost"));
    /* b still counts for the gate: nothing is acknowledged without it. */
    assert_int_equal(a.n_gate, 1);
    assert_int_equal(m_acked(&a), 0);
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 1);
    s_pump(ms, 2, 300);
    assert_int_equal(s_read(store, "a-1").n_in_sync, 0);
    assert_int_equal(a.n_gate, 0);
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* a restarts (process 11, its WAL from process 1) after b took a-1 over:
 * it takes nothing back. Had nobody taken it over, it would. */
static void
test_coord_restart(void **state)
{
    (void) state;
    for (int taken = 0; taken < 2; taken++) {
        pm_coord_mem_t *store = pm_coord_mem_new();
        s_model_t a, b, a2;
        s_two(store, &a, &b);
        s_model_t *ms[] = {&a, &b, &a2};
        s_set_alive("a", 0);
        s_stop(&a);
        if (taken) {
            pm_isr_member_down(b.isr, s_now);
            s_pump(ms, 2, 5);
            assert_int_equal(b.takes, 1);
        } else {
            s_set_alive("b", 0);
            s_stop(&b);
        }
        s_start(&a2, store, "a", 11, 1);
        s_pump(ms, 3, 5);
        pm_coord_record_t r = s_read(store, "a-1");
        if (taken) {
            assert_int_equal(a2.takes, 0);
            assert_string_equal(r.owner, "b");
        } else {
            assert_int_equal(a2.takes, 1);
            assert_string_equal(r.owner, "a");
            assert_int_equal(r.owner_pid, 11);
            assert_int_equal(r.epoch, 2);
        }
        s_stop(&a2);
        if (taken)
            s_stop(&b);
        pm_coord_mem_destroy(&store);
    }
}

/* A restarted agent resumes its space (R3, as the next process on its data
 * dir) before the news of its new process reaches b: b, which knows another
 * process on that node, leaves the space to the one it has not heard of for
 * PM_ISR_OTHER_GRACE_MS, and does not take it once the news arrives; past
 * the grace, with no news, it takes the space (that process may have died
 * unheard of). */
static void
test_coord_restart_news_late(void **state)
{
    (void) state;
    for (int heard = 0; heard < 2; heard++) {
        pm_coord_mem_t *store = pm_coord_mem_new();
        s_model_t a, b, a2;
        s_two(store, &a, &b);
        s_model_t *ms[] = {&a, &b, &a2};
        s_stop(&a);
        s_start(&a2, store, "a", 11, 1);
        a2.n_backups = 1;
        a2.b_node[0] = "b";
        a2.b_pid[0] = 2;
        a2.b_counted[0] = 1;
        a2.produced = a2.b_acked[0] = 5;
        s_set_alive("a", 1); /* in b's eyes: a runs process 1 still */
        s_pump(ms, 3, 5);
        pm_coord_record_t r = s_read(store, "a-1");
        assert_int_equal(a2.takes, 1);
        assert_string_equal(r.owner, "a");
        assert_int_equal(r.owner_pid, 11);
        assert_int_equal(r.n_in_sync, 1);
        s_pump(ms, 3, (PM_ISR_OTHER_GRACE_MS - 500) / 10);
        assert_int_equal(b.takes, 0);
        assert_int_equal(s_read(store, "a-1").owner_pid, 11);
        if (heard)
            s_set_alive("a", 11);
        s_pump(ms, 3, 100);
        r = s_read(store, "a-1");
        assert_int_equal(b.takes, heard ? 0 : 2); /* a-1, and a2's primary a-11 */
        assert_string_equal(r.owner, heard ? "a" : "b");
        assert_int_equal(r.epoch, heard ? 2 : 3);
        s_stop(&a2);
        s_stop(&b);
        pm_coord_mem_destroy(&store);
    }
}

/* Like the agent's retirement: it stops serving space, then retires it. */
static void
s_retire(s_model_t *m, const char *space)
{
    for (size_t i = 0; i < 4; i++)
        if (strcmp(m->serves[i], space) == 0)
            m->serves[i][0] = 0;
    pm_isr_retire(m->isr, space);
}

static int
s_exists(pm_coord_mem_t *store, const char *space)
{
    return s_read(store, space).revision != 0;
}

/* R7: b took a's space over and retires it once empty: the record leaves
 * the store (compare-and-delete), b and an observer c keep its epoch as a
 * fence, nothing re-creates it, and a, the stale owner cut off from the
 * store meanwhile, learns the deletion when it is back: it stops serving
 * its old primary and does not create it again. Retiring a space that is
 * not ours, or our own primary, deletes nothing. */
static void
test_coord_retire_deletes(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b, c;
    s_two(store, &a, &b);
    s_start(&c, store, "c", 3, 0);
    s_model_t *ms[] = {&a, &b, &c};
    s_pump(ms, 3, 3);
    /* a is cut off (from the store and, in b's eyes, from the mesh). */
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 0);
    s_set_alive("a", 0);
    pm_isr_member_down(b.isr, s_now);
    s_pump(ms, 3, 5);
    assert_int_equal(b.takes, 1);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "b");
    assert_int_equal(r.epoch, 2);
    /* Not ours, or our primary: nothing happens. */
    pm_isr_retire(c.isr, "a-1");
    pm_isr_retire(b.isr, "b-2");
    s_pump(ms, 3, 5);
    assert_true(s_exists(store, "a-1"));
    assert_true(s_exists(store, "b-2"));
    /* b retires it: deleted at the revision b knows. */
    int64_t before = pm_coord_mem_revision(store);
    s_retire(&b, "a-1");
    s_pump(ms, 3, 5);
    assert_false(s_exists(store, "a-1"));
    assert_int_equal(pm_coord_mem_revision(store), before + 1);
    assert_int_equal(b.drops, 0); /* it had stopped serving it already */
    /* The fence stays, at b (the heir, which a's gate counts) and at c. */
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-1"), 2);
    assert_int_equal(pm_isr_fence_epoch(c.isr, "a-1"), 2);
    /* c forgot it (its view does not grow with retired spaces). */
    pm_stats_t st = {0};
    pm_isr_stats_fill(c.isr, &st);
    assert_int_equal(st.n_spaces, 2); /* a-1 gone: b-2, c-3 */
    for (size_t i = 0; i < st.n_spaces; i++)
        assert_string_not_equal(st.spaces[i].space, "a-1");
    pm_stats_clear(&st);
    /* Nobody takes it over or re-creates it; requests on it are not held. */
    char msg[256];
    assert_int_equal(pm_isr_route_check(c.isr, "a-1", msg, sizeof msg), 0);
    /* a is back: the watch replays b's takeover and the deletion. */
    assert_true(m_serves(&a, "a-1", NULL));
    s_set_alive("a", 1);
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 1);
    s_pump(ms, 3, 300);
    assert_false(m_serves(&a, "a-1", NULL));
    assert_int_equal(a.drops, 1);
    assert_false(s_exists(store, "a-1"));      /* never created again */
    assert_int_equal(pm_isr_fence_epoch(a.isr, "a-1"), 2);
    assert_int_equal(pm_isr_write_check(a.isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
    assert_int_equal(b.takes, 1);
    assert_int_equal(c.takes, 0);
    s_stop(&a);
    s_stop(&b);
    s_stop(&c);
    pm_coord_mem_destroy(&store);
}

/* R7 with the store down: the delete waits and is retried; a delete whose
 * answer is lost is confirmed by a re-read; an observer cut off across the
 * deletion and a compaction learns it from the resync. An agent restarted
 * on the same data dir N times keeps a bounded number of records. */
static void
test_coord_retire_store_down(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    memset(s_world, 0, sizeof s_world);
    s_model_t b, a;
    s_start(&b, store, "b", 2, 0);
    s_model_t *ms[] = {&a, &b};
    /* a restarted 20 times on its data dir (process k + 1 replays k's WAL):
     * each takes the spaces of the one before it over (R5 extension) and
     * retires them once empty. */
    uint64_t prev = 0;
    for (uint64_t pid = 100; pid < 120; pid++) {
        s_start(&a, store, "a", pid, prev);
        s_pump(ms, 2, 5);
        char old[32];
        for (uint64_t p = 100; p < pid; p++) {
            snprintf(old, sizeof old, "a-%llu", (unsigned long long) p);
            if (m_serves(&a, old, NULL))
                s_retire(&a, old);
        }
        s_pump(ms, 2, 5);
        s_set_alive("a", 0);
        s_stop(&a);
        prev = pid;
    }
    pm_coord_t *lc = s_client(store);
    pm_coord_list(lc);
    pm_coord_result_t *res = s_next(lc);
    /* b's primary and the last process's: the others left the store. */
    assert_int_equal(res->n_records, 2);
    pm_coord_result_destroy(&res);

    /* Store down while retiring: waits, then happens. */
    s_start(&a, store, "a", 200, prev);
    s_pump(ms, 2, 5);
    assert_true(m_serves(&a, "a-119", NULL));
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 0);
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 0);
    s_retire(&a, "a-119");
    s_pump(ms, 2, 5);
    assert_true(s_exists(store, "a-119"));
    pm_stats_t st = {0};
    pm_isr_stats_fill(a.isr, &st);
    assert_int_equal(st.co_waiting, 1);
    pm_stats_clear(&st);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-119"), 2);
    pm_coord_mem_set_available(pm_isr_coord(a.isr), 1);
    s_pump(ms, 2, 300);
    assert_false(s_exists(store, "a-119"));
    pm_isr_stats_fill(a.isr, &st);
    assert_int_equal(st.co_waiting, 0);
    pm_stats_clear(&st);
    /* b, cut off across the deletion and a compaction, resyncs. */
    pm_coord_mem_compact(store, pm_coord_mem_revision(store));
    pm_coord_mem_set_available(pm_isr_coord(b.isr), 1);
    s_pump(ms, 2, 5);
    assert_int_equal(pm_isr_fence_epoch(b.isr, "a-119"), 2);
    pm_isr_stats_fill(b.isr, &st);
    for (size_t i = 0; i < st.n_spaces; i++)
        assert_string_not_equal(st.spaces[i].space, "a-119");
    pm_stats_clear(&st);
    pm_coord_destroy(&lc);
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

/* The operator's force-owner, carried out by the agent (pm_isr_force):
 * nobody in sync is alive, c (in no set) is made the owner at the next epoch
 * with an empty set, serves the space, and answers with the outcome. An
 * unknown space, a store that does not answer, and a record that changed
 * between the read and the CAS are refused, saying why, and force nothing. */
static void
test_coord_force(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b, c;
    s_two(store, &a, &b);
    s_start(&c, store, "c", 3, 0);
    s_model_t *ms[] = {&a, &b, &c};
    s_pump(ms, 3, 3);
    s_set_alive("a", 0);
    s_set_alive("b", 0);
    s_stop(&a);
    s_stop(&b);
    pm_isr_member_down(c.isr, s_now);
    s_pump(ms, 3, 5);
    assert_int_equal(c.takes, 0);
    char msg[256];
    assert_int_equal(pm_isr_force(c.isr, "nosuch", 7, 9, msg, sizeof msg), PM_ERR_NOT_FOUND);
    assert_non_null(strstr(msg, "no record"));
    assert_int_equal(pm_isr_force(c.isr, "a/b", 7, 9, msg, sizeof msg), PM_ERR_BAD_REQUEST);

    /* The store does not answer: nothing forced. */
    pm_coord_mem_set_available(pm_isr_coord(c.isr), 0);
    assert_int_equal(pm_isr_force(c.isr, "a-1", 7, 9, msg, sizeof msg), 0);
    s_pump(ms, 3, 2);
    assert_int_equal(c.forced_n, 1);
    assert_int_equal(c.forced_err, PM_ERR_UNAVAILABLE);
    assert_non_null(strstr(c.forced_text, "nothing forced"));
    assert_string_equal(s_read(store, "a-1").owner, "a");
    pm_coord_mem_set_available(pm_isr_coord(c.isr), 1);
    s_pump(ms, 3, 300);
    assert_int_equal(c.takes, 0);

    /* Changed between the read and the CAS: nothing forced. */
    pm_coord_mem_set_delay(pm_isr_coord(c.isr), 50);
    assert_int_equal(pm_isr_force(c.isr, "a-1", 7, 10, msg, sizeof msg), 0);
    pm_coord_record_t moved = s_read(store, "a-1");
    moved.in_sync[moved.n_in_sync++] = s_m("x", 77);
    pm_coord_mem_put(store, &moved);
    for (int i = 0; i < 30; i++) {
        pm_coord_mem_advance(store, 10);
        s_pump(ms, 3, 1);
    }
    assert_int_equal(c.forced_n, 2);
    assert_int_equal(c.forced_req, 10);
    assert_int_equal(c.forced_err, PM_ERR_UNAVAILABLE);
    assert_non_null(strstr(c.forced_text, "changed meanwhile"));
    assert_string_equal(s_read(store, "a-1").owner, "a");
    assert_int_equal(c.takes, 0);
    pm_coord_mem_set_delay(pm_isr_coord(c.isr), 0);

    /* Forced. */
    assert_int_equal(pm_isr_force(c.isr, "a-1", 7, 11, msg, sizeof msg), 0);
    s_pump(ms, 3, 3);
    assert_int_equal(c.forced_n, 3);
    assert_int_equal(c.forced_err, 0);
    assert_int_equal(c.forced_session, 7);
    assert_int_equal(c.forced_req, 11);
    assert_non_null(strstr(c.forced_text, "\"owner\":\"c\""));
    assert_non_null(strstr(c.forced_text, "\"was_owner\":\"a\""));
    assert_non_null(strstr(c.forced_text, "\"epoch\":2"));
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "c");
    assert_int_equal(r.owner_pid, 3);
    assert_int_equal(r.epoch, 2);
    assert_int_equal(r.n_in_sync, 0);
    assert_int_equal(c.takes, 1);
    assert_true(m_serves(&c, "a-1", NULL));
    pm_stats_t st = {0};
    pm_isr_stats_fill(c.isr, &st);
    assert_int_equal(st.co_forced, 1);
    pm_stats_clear(&st);
    /* Ours already: refused. */
    assert_int_equal(pm_isr_force(c.isr, "a-1", 7, 12, msg, sizeof msg), 0);
    s_pump(ms, 3, 3);
    assert_int_equal(c.forced_err, PM_ERR_BAD_REQUEST);
    assert_int_equal(s_read(store, "a-1").epoch, 2);
    s_stop(&c);
    pm_coord_mem_destroy(&store);
}

/* R8, the hand-back: a dies, b takes a-1 over; a restarts as process 11 on
 * its data dir and becomes b's backup, recorded in sync for a-1. Once b
 * hears of a's new process, it drains a-1: writes to it are refused (its
 * other spaces write on), the record does not move until the gate has
 * acknowledged everything produced before the drain; then one CAS gives
 * a-1 to a's new process at epoch 3 with b kept in sync, b stops serving
 * it, a serves it, and a write that reaches b after the move is refused
 * (never acknowledged by b). If a's new process dies during the drain, the
 * drain is abandoned: writes are accepted again and the record stays. */
static void
test_coord_handback(void **state)
{
    (void) state;
    for (int dies = 0; dies < 2; dies++) {
        pm_coord_mem_t *store = pm_coord_mem_new();
        s_model_t a, b, a2;
        s_two(store, &a, &b);
        s_model_t *ms[] = {&a, &b, &a2};
        s_set_alive("a", 0);
        s_stop(&a);
        pm_isr_member_down(b.isr, s_now);
        s_pump(ms, 2, 5);
        assert_int_equal(b.takes, 1);
        assert_string_equal(s_read(store, "a-1").owner, "b");
        s_start(&a2, store, "a", 11, 1);
        s_set_alive("a", 1); /* b has not heard of process 11 yet */
        b.n_backups = 1;
        b.b_node[0] = "a";
        b.b_pid[0] = 11;
        b.b_counted[0] = 1;
        b.produced = b.b_acked[0] = 20;
        s_pump(ms, 3, 5);
        pm_coord_record_t r = s_read(store, "a-1");
        assert_string_equal(r.owner, "b");
        assert_int_equal(r.epoch, 2);
        assert_true(pm_isr_rule_member(&r, "a", 11));
        assert_int_equal(pm_isr_resumable(a2.isr, "a-1"), 3);
        assert_null(pm_isr_handing_back(b.isr));
        char msg[256];
        assert_int_equal(pm_isr_write_check(b.isr, "a-1", msg, sizeof msg), 0);
        /* More produced, not yet at a's process; then b hears of it. */
        b.produced = 25;
        s_set_alive("a", 11);
        s_pump(ms, 3, 20);
        assert_non_null(pm_isr_handing_back(b.isr));
        assert_string_equal(pm_isr_handing_back(b.isr), "a-1");
        assert_int_equal(pm_isr_write_check(b.isr, "a-1", msg, sizeof msg), PM_ERR_UNAVAILABLE);
        assert_non_null(strstr(msg, "being given back"));
        assert_int_equal(pm_isr_write_check(b.isr, "b-2", msg, sizeof msg), 0);
        r = s_read(store, "a-1");
        assert_string_equal(r.owner, "b"); /* drain first: nothing moved */
        assert_int_equal(r.epoch, 2);
        assert_int_equal(b.drops, 0);
        assert_int_equal(a2.takes, 0);
        if (dies) {
            s_set_alive("a", 0);
            s_pump(ms, 3, 5);
            assert_null(pm_isr_handing_back(b.isr));
            assert_int_equal(pm_isr_write_check(b.isr, "a-1", msg, sizeof msg), 0);
            b.b_acked[0] = 25;
            s_pump(ms, 3, 20);
            r = s_read(store, "a-1");
            assert_string_equal(r.owner, "b");
            assert_int_equal(r.epoch, 2);
            assert_int_equal(b.drops, 0);
        } else {
            /* Produced during the drain (not a write: b refuses those) does
             * not hold it up; what was produced before it does. */
            b.produced = 27;
            b.b_acked[0] = 24;
            s_pump(ms, 3, 5);
            assert_string_equal(s_read(store, "a-1").owner, "b");
            b.b_acked[0] = 25;
            s_model_t *only_b[] = {&b};
            s_pump(only_b, 1, 3);
            r = s_read(store, "a-1"); /* as b wrote it */
            assert_string_equal(r.owner, "a");
            assert_int_equal(r.owner_pid, 11);
            assert_int_equal(r.epoch, 3);
            assert_true(pm_isr_rule_member(&r, "b", 2));
            assert_false(pm_isr_rule_member(&r, "a", 11));
            assert_int_equal(b.drops, 1);
            s_pump(ms, 3, 5);
            assert_false(m_serves(&b, "a-1", NULL));
            assert_int_equal(a2.takes, 1);
            assert_int_equal(a2.took_epoch, 3);
            assert_true(m_serves(&a2, "a-1", NULL));
            assert_int_equal(pm_isr_resumable(a2.isr, "a-1"), 1);
            assert_null(pm_isr_handing_back(b.isr));
            /* A write reaching b now is refused: a-1 is not b's. */
            assert_int_equal(pm_isr_write_check(b.isr, "a-1", msg, sizeof msg),
                             PM_ERR_UNAVAILABLE);
            assert_null(strstr(msg, "being given back"));
            /* And b gives back nothing of its own. */
            s_pump(ms, 3, 50);
            assert_string_equal(s_read(store, "b-2").owner, "b");
            assert_int_equal(s_read(store, "a-1").epoch, 3);
        }
        s_stop(&a2);
        s_stop(&b);
        pm_coord_mem_destroy(&store);
    }
}

/* The rule R8: only the owner gives, only to a recorded in-sync member
 * (another process), which owns the space at epoch + 1; the giver stays in
 * sync, the other members too. */
/* R8 never gives a space back to a process that owned it before: a (process
 * 1), cut off, is taken for dead and b takes a-1 over; a comes back, the same
 * process (still serving a-1 at epoch 1 as far as it knows), and becomes b's
 * backup, recorded in sync: b keeps a-1 (pmesh-sim seeds 4710, 5966: named
 * owner at a newer epoch, such a process went on serving its old copy). */
static void
test_coord_no_handback_to_old_owner(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    s_model_t a, b;
    s_two(store, &a, &b);
    s_model_t *only_b[] = {&b};
    s_set_alive("a", 0);
    pm_isr_member_down(b.isr, s_now);
    s_pump(only_b, 1, 5);
    assert_int_equal(b.takes, 1);
    assert_string_equal(s_read(store, "a-1").owner, "b");
    s_set_alive("a", 1); /* back, the same process */
    b.n_backups = 1;
    b.b_node[0] = "a";
    b.b_pid[0] = 1;
    b.b_counted[0] = 1;
    b.produced = b.b_acked[0] = 20;
    s_pump(only_b, 1, 50);
    pm_coord_record_t r = s_read(store, "a-1");
    assert_string_equal(r.owner, "b");
    assert_int_equal(r.epoch, 2);
    assert_true(pm_isr_rule_member(&r, "a", 1));
    assert_null(pm_isr_handing_back(b.isr));
    assert_int_equal(b.drops, 0);
    s_stop(&a);
    s_stop(&b);
    pm_coord_mem_destroy(&store);
}

static void
test_handback_rule(void **state)
{
    (void) state;
    pm_coord_record_t cur, out;
    memset(&cur, 0, sizeof cur);
    snprintf(cur.space, sizeof cur.space, "a-1");
    snprintf(cur.owner, sizeof cur.owner, "b");
    cur.owner_pid = 2;
    cur.epoch = 4;
    cur.revision = 9;
    cur.in_sync[cur.n_in_sync++] = s_m("a", 11);
    cur.in_sync[cur.n_in_sync++] = s_m("c", 3);
    assert_int_equal(pm_isr_rule_handback(&cur, "a", 11, "b", 2, &out), 0);
    assert_string_equal(out.owner, "a");
    assert_int_equal(out.owner_pid, 11);
    assert_int_equal(out.epoch, 5);
    assert_int_equal(out.n_in_sync, 2);
    assert_true(pm_isr_rule_member(&out, "c", 3));
    assert_true(pm_isr_rule_member(&out, "b", 2));
    /* Not a member (a's older process), not the owner, or to itself. */
    assert_int_equal(pm_isr_rule_handback(&cur, "a", 1, "b", 2, &out), -1);
    assert_int_equal(pm_isr_rule_handback(&cur, "a", 11, "c", 3, &out), -1);
    assert_int_equal(pm_isr_rule_handback(&cur, "b", 2, "b", 2, &out), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takeover_rule),
        cmocka_unit_test(test_race_shrink_wins),
        cmocka_unit_test(test_race_takeover_wins),
        cmocka_unit_test(test_two_candidates),
        cmocka_unit_test(test_restart_finds_newer_epoch),
        cmocka_unit_test(test_store_down_then_back),
        cmocka_unit_test(test_grow_then_member_takes_over),
        cmocka_unit_test(test_coord_grow_and_gate),
        cmocka_unit_test(test_coord_race_owner_first),
        cmocka_unit_test(test_coord_race_backup_first),
        cmocka_unit_test(test_coord_heir_outside_set),
        cmocka_unit_test(test_coord_failed_attempt_stops_fencing),
        cmocka_unit_test(test_coord_failed_attempt_closed_by_rewrite),
        cmocka_unit_test(test_coord_refresh_decides),
        cmocka_unit_test(test_coord_store_down),
        cmocka_unit_test(test_coord_shrink_waits),
        cmocka_unit_test(test_coord_restart),
        cmocka_unit_test(test_coord_restart_news_late),
        cmocka_unit_test(test_coord_no_handback_to_old_owner),
        cmocka_unit_test(test_coord_retire_deletes),
        cmocka_unit_test(test_coord_retire_store_down),
        cmocka_unit_test(test_coord_force),
        cmocka_unit_test(test_handback_rule),
        cmocka_unit_test(test_coord_handback),
    };
    return cmocka_run_group_tests_name("isr", tests, NULL, NULL);
}
