/*
 * test_journal.c - cmocka suite for node/journal.c: the reply gate. A reply
 * leaves only once the records appended before it are durable here and, for
 * replies (not a backup's own acknowledgements), acknowledged by the counted
 * backups; replies the backups never acknowledged are failed, never sent.
 * Runs without a WAL (records count as durable when appended) and with one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journal.h"

typedef struct s_out {
    uint64_t sent[32];
    size_t n_sent;
    uint64_t failed[32];
    size_t n_failed;
} s_out_t;

static void
s_send(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len, int tag,
       int64_t t0_us)
{
    (void) peer, (void) len, (void) tag, (void) t0_us;
    s_out_t *o = arg;
    o->sent[o->n_sent++] = session;
    free(buf);
}

static void
s_fail(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    (void) peer, (void) len;
    s_out_t *o = arg;
    o->failed[o->n_failed++] = session;
    free(buf);
}

static void
s_hold(pm_journal_t *j, uint64_t session, int wal_only)
{
    uint8_t *buf = malloc(4);
    assert_non_null(buf);
    pm_journal_hold_ex(j, session, session == 99 ? "peer" : NULL, buf, 4, wal_only, 0, 0, 0);
}

static void
s_append(pm_journal_t *j)
{
    pm_journal_then(j, "a-1~1", "f", "a-1~2");
}

static void
test_replies_wait_for_the_backups(void **state)
{
    (void) state;
    s_out_t o = {0};
    char err[128];
    pm_journal_t *j = pm_journal_open(NULL, 0, NULL, s_send, &o, err, sizeof err);
    assert_non_null(j);
    assert_false(pm_journal_must_hold(j));
    s_append(j);
    pm_journal_repl(j, 1, 0); /* the record went to the backups */
    assert_true(pm_journal_must_hold(j));
    s_hold(j, 1, 0);  /* a reply: waits for the backups */
    s_hold(j, 2, 1);  /* a backup's own acknowledgement: waits for the WAL only */
    assert_int_equal(pm_journal_flush(j), 0);
    assert_int_equal(o.n_sent, 1);
    assert_int_equal(o.sent[0], 2);
    /* a partial acknowledgement covers nothing new */
    s_append(j);
    pm_journal_repl(j, 2, 0);
    s_hold(j, 3, 0);
    pm_journal_repl(j, 2, 1);
    assert_int_equal(o.n_sent, 2);
    assert_int_equal(o.sent[1], 1);
    pm_journal_repl(j, 2, 2);
    assert_int_equal(o.n_sent, 3);
    assert_int_equal(o.sent[2], 3);
    assert_false(pm_journal_must_hold(j));
    pm_journal_close(&j);
    assert_int_equal(o.n_failed, 0);
}

static void
test_unreplicated_replies_fail(void **state)
{
    (void) state;
    s_out_t o = {0};
    char err[128];
    pm_journal_t *j = pm_journal_open(NULL, 0, NULL, s_send, &o, err, sizeof err);
    s_append(j);
    pm_journal_repl(j, 1, 0);
    s_hold(j, 1, 0);
    s_append(j);
    pm_journal_repl(j, 2, 1); /* the first is acknowledged, the second not */
    s_hold(j, 2, 0);
    s_hold(j, 99, 0); /* a reply to a peer */
    assert_int_equal(o.n_sent, 1);
    /* the space moved: what the backups never acknowledged is failed */
    assert_int_equal(pm_journal_fail_unreplicated(j, s_fail, &o), 2);
    assert_int_equal(o.n_failed, 2);
    assert_int_equal(o.failed[0], 2);
    assert_int_equal(o.failed[1], 99);
    /* and never sent afterwards, even when acknowledged */
    pm_journal_repl(j, 2, 2);
    pm_journal_close(&j);
    assert_int_equal(o.n_sent, 1);
}

/* Own holds (pm_journal_hold_at): what each saw, in order. */
typedef struct s_own {
    pm_journal_t *j;
    int id;
    int rehold; /* on FAILED: hold again from the current position */
} s_own_t;
static int s_own_log[32], s_own_how[32];
static size_t s_own_n;

static void
s_own_fn(void *item, int how)
{
    s_own_t *h = item;
    assert_true(s_own_n < 32);
    s_own_log[s_own_n] = h->id;
    s_own_how[s_own_n++] = how;
    if (how == PM_JOURNAL_FAILED && h->rehold) {
        h->rehold = 0;
        pm_journal_hold_at(h->j, pm_journal_pos(h->j), s_own_fn, h);
    }
}

/* A result held at its placement's position: released once that position
 * (not later ones) is covered by the backups, in position order, apart from
 * replies; failed with the unreplicated replies, and then held again or
 * dropped; closed without a release. */
static void
test_own_holds(void **state)
{
    (void) state;
    s_out_t o = {0};
    char err[128];
    s_own_n = 0;
    pm_journal_t *j = pm_journal_open(NULL, 0, NULL, s_send, &o, err, sizeof err);
    assert_non_null(j);
    s_append(j);
    pm_journal_repl(j, 1, 0);
    pm_journal_pos_t p1 = pm_journal_pos(j); /* the source's settle: record 1 */
    assert_false(pm_journal_covered(j, p1));
    s_append(j);
    pm_journal_repl(j, 2, 0);
    pm_journal_pos_t p2 = pm_journal_pos(j);
    s_own_t a = {j, 1, 0}, b = {j, 2, 0};
    pm_journal_hold_at(j, p2, s_own_fn, &b); /* held later at an earlier position */
    pm_journal_hold_at(j, p1, s_own_fn, &a);
    s_hold(j, 5, 0); /* a reply at position 2 */
    assert_true(pm_journal_must_hold(j));
    pm_journal_repl(j, 2, 1); /* record 1 at the backups: a, not b, not the reply */
    assert_true(pm_journal_covered(j, p1));
    assert_int_equal(s_own_n, 1);
    assert_int_equal(s_own_log[0], 1);
    assert_int_equal(s_own_how[0], PM_JOURNAL_RELEASED);
    assert_int_equal(o.n_sent, 0);
    pm_journal_repl(j, 2, 2);
    assert_int_equal(s_own_n, 2);
    assert_int_equal(s_own_log[1], 2);
    assert_int_equal(o.n_sent, 1);
    /* Not covered yet when the in-sync set changes: failed; one holds
     * again (and is released later), one is dropped. */
    s_append(j);
    pm_journal_repl(j, 3, 2);
    s_own_t c = {j, 3, 1}, d = {j, 4, 0};
    pm_journal_hold_at(j, pm_journal_pos(j), s_own_fn, &c);
    pm_journal_hold_at(j, pm_journal_pos(j), s_own_fn, &d);
    assert_int_equal(pm_journal_fail_unreplicated(j, s_fail, &o), 2);
    assert_int_equal(s_own_n, 4);
    assert_int_equal(s_own_how[2], PM_JOURNAL_FAILED);
    assert_int_equal(s_own_how[3], PM_JOURNAL_FAILED);
    pm_journal_repl(j, 3, 3);
    assert_int_equal(s_own_n, 5);
    assert_int_equal(s_own_log[4], 3);
    assert_int_equal(s_own_how[4], PM_JOURNAL_RELEASED);
    /* Held at close: closed, never released. */
    s_append(j);
    pm_journal_repl(j, 4, 3);
    s_own_t e = {j, 5, 0};
    pm_journal_hold_at(j, pm_journal_pos(j), s_own_fn, &e);
    pm_journal_close(&j);
    assert_int_equal(s_own_n, 6);
    assert_int_equal(s_own_log[5], 5);
    assert_int_equal(s_own_how[5], PM_JOURNAL_CLOSED);
    assert_int_equal(o.n_failed, 0);
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void
test_replies_wait_for_the_wal(void **state)
{
    (void) state;
    s_out_t o = {0};
    char dir[256], err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pm-journal-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    /* fsync mode 2 (never): durable once written, on the next flush */
    pm_journal_t *j = pm_journal_open(dir, 2, NULL, s_send, &o, err, sizeof err);
    assert_non_null(j);
    pm_store_limits_t lim = {.max_value_bytes = 64, .max_labels = 1, .max_id_bytes = 64};
    pm_store_t *store = pm_store_new(&lim);
    pm_journal_state_t st;
    assert_int_equal(pm_journal_replay(j, store, &st, err, sizeof err), 0);
    pm_journal_state_free(&st);
    s_append(j);
    assert_true(pm_journal_must_hold(j));
    s_hold(j, 7, 0);
    assert_int_equal(o.n_sent, 0); /* appended, not written */
    assert_int_equal(pm_journal_flush(j), 0);
    assert_int_equal(o.n_sent, 1);
    assert_int_equal(o.sent[0], 7);
    pm_journal_close(&j);
    pm_store_destroy(&store);
    nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replies_wait_for_the_backups),
        cmocka_unit_test(test_unreplicated_replies_fail),
        cmocka_unit_test(test_replies_wait_for_the_wal),
        cmocka_unit_test(test_own_holds),
    };
    return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
