/*
 * test_records.c - cmocka suite for node/records.c: a promise turned into
 * records and applied to another store comes back the same; applying is
 * idempotent; and a store restored by WAL replay (journal.c) equals one
 * built by applying the replication stream of the same changes.
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
#include "records.h"

static pm_store_t *
s_new(void)
{
    pm_store_limits_t limits = {.max_value_bytes = 1024, .max_labels = 4, .max_id_bytes = 256};
    pm_store_t *st = pm_store_new(&limits);
    assert_non_null(st);
    return st;
}

/* Encoded records, as they travel (WAL or replication). */
typedef struct s_log {
    uint8_t *buf[64];
    size_t len[64];
    size_t n;
} s_log_t;

static void
s_log_add(s_log_t *l, const pm_rec_t *rec)
{
    assert_true(l->n < 64);
    l->buf[l->n] = pm_wire_rec_encode(rec, &l->len[l->n]);
    assert_non_null(l->buf[l->n]);
    l->n++;
}

static void
s_emit(void *arg, const pm_rec_t *rec)
{
    s_log_add(arg, rec);
}

static void
s_log_free(s_log_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->buf[i]);
    l->n = 0;
}

/* Applies every record of l to st; counts what each call returned. */
static void
s_apply(pm_store_t *st, const s_log_t *l, int passive, int *applied, int *redundant)
{
    *applied = *redundant = 0;
    for (size_t i = 0; i < l->n; i++) {
        pm_rec_t rec;
        assert_int_equal(pm_wire_rec_decode(l->buf[i], l->len[i], &rec), PM_OK);
        if (rec.kind != PM_REC_THEN && rec.kind != PM_REC_GENERATION &&
            rec.kind != PM_REC_RELEASE) {
            int r = pm_records_apply(st, &rec, passive);
            assert_true(r == PM_RECORD_APPLIED || r == PM_RECORD_REDUNDANT);
            (r == PM_RECORD_APPLIED ? (*applied)++ : (*redundant)++);
        }
        pm_wire_rec_release(&rec);
    }
}

/* The same promises with the same fields, in the same order (any order
 * when in_order is 0: a copy made pending again and settled again by a
 * state streamed once more is the newest in its store). */
static void
s_assert_same_as(pm_store_t *a, pm_store_t *b, int in_order)
{
    assert_int_equal(pm_store_count(a, 0), pm_store_count(b, 0));
    for (int s = PM_STATE_PENDING; s <= PM_STATE_TIMEDOUT; s++)
        assert_int_equal(pm_store_count(a, s), pm_store_count(b, s));
    pm_prom_t *q = pm_store_oldest(b);
    for (pm_prom_t *p = pm_store_oldest(a); p; p = p->newer, q = q ? q->newer : NULL) {
        if (!in_order)
            q = pm_store_get(b, p->id);
        assert_non_null(q);
        pm_wire_promise_t x, y;
        pm_records_view(p, &x);
        pm_records_view(q, &y);
        assert_string_equal(x.id, y.id);
        assert_int_equal(x.state, y.state);
        assert_int_equal(x.created_ms, y.created_ms);
        assert_int_equal(x.settled_ms, y.settled_ms);
        assert_int_equal(x.timeout_at_ms, y.timeout_at_ms);
        assert_int_equal(x.heartbeat_ms, y.heartbeat_ms);
        assert_int_equal(x.heartbeat_at_ms, y.heartbeat_at_ms);
        assert_int_equal(x.value_len, y.value_len);
        if (x.value_len)
            assert_memory_equal(x.value, y.value, x.value_len);
        if (x.reason || y.reason)
            assert_string_equal(x.reason, y.reason);
        if (x.key || y.key)
            assert_string_equal(x.key, y.key);
        assert_int_equal(x.label_count, y.label_count);
        for (size_t i = 0; i < x.label_count; i++) {
            assert_string_equal(x.labels[i].key, y.labels[i].key);
            assert_string_equal(x.labels[i].value, y.labels[i].value);
        }
    }
    if (in_order)
        assert_null(q);
}

static void
s_assert_same(pm_store_t *a, pm_store_t *b)
{
    s_assert_same_as(a, b, 1);
}

/* A store with one promise in each interesting shape. */
static void
s_populate(pm_store_t *st, int64_t now)
{
    pm_label_t labels[] = {{.key = "team", .value = "a"}};
    pm_create_args_t a = {.id = "n1-a~1.1", .timeout_ms = 60000, .key = "k1",
                          .label_count = 1, .labels = labels};
    pm_prom_t *p;
    assert_int_equal(pm_store_create(st, &a, now, &p, NULL), PM_OK);
    pm_create_args_t b = {.id = "n1-a~1.2", .heartbeat_ms = 5000};
    assert_int_equal(pm_store_create(st, &b, now, &p, NULL), PM_OK);
    assert_int_equal(pm_store_heartbeat(st, "n1-a~1.2", now + 100, NULL), PM_OK);
    pm_create_args_t c = {.id = "n1-a~1.3"};
    assert_int_equal(pm_store_create(st, &c, now, &p, NULL), PM_OK);
    assert_int_equal(pm_store_settle(st, "n1-a~1.3", PM_STATE_RESOLVED, "v\0x", 3, now + 5, NULL),
                     PM_OK);
    pm_create_args_t d = {.id = "n1-a~1.4"};
    assert_int_equal(pm_store_create(st, &d, now, &p, NULL), PM_OK);
    assert_int_equal(pm_store_settle(st, "n1-a~1.4", PM_STATE_REJECTED, "no", 2, now + 6, NULL),
                     PM_OK);
}

static void
test_promise_round_trip_and_idempotence(void **state)
{
    (void) state;
    pm_store_t *a = s_new(), *b = s_new();
    s_populate(a, 1000);
    s_log_t l = {0};
    for (pm_prom_t *p = pm_store_oldest(a); p; p = p->newer)
        pm_records_of_promise(p, s_emit, &l);
    assert_int_equal(l.n, 6); /* two pending: one record each; two settled: two each */
    int applied, redundant;
    s_apply(b, &l, 1, &applied, &redundant);
    assert_int_equal(applied, 6);
    assert_int_equal(redundant, 0);
    s_assert_same(a, b);
    for (pm_prom_t *p = pm_store_oldest(b); p; p = p->newer)
        assert_true(p->passive);
    /* again: nothing changes */
    s_apply(b, &l, 1, &applied, &redundant);
    assert_int_equal(applied, 0);
    assert_int_equal(redundant, 6);
    s_assert_same(a, b);
    /* the owner's state has one pending that our copy holds settled (ours,
     * unacknowledged): a create alone leaves it (a settle may follow in
     * the next message), a create known to have no settle after it makes it
     * pending again (pmesh-sim seed 4752) */
    assert_int_equal(pm_store_settle(b, "n1-a~1.1", PM_STATE_RESOLVED, "stale", 5, 2000, NULL),
                     PM_OK);
    pm_rec_t create;
    assert_int_equal(pm_wire_rec_decode(l.buf[0], l.len[0], &create), PM_OK);
    assert_int_equal(create.kind, PM_REC_CREATE);
    assert_string_equal(create.promise.id, "n1-a~1.1");
    assert_int_equal(pm_records_apply(b, &create, 1), PM_RECORD_REDUNDANT);
    assert_int_equal(pm_store_get(b, "n1-a~1.1")->state, PM_STATE_RESOLVED);
    assert_int_equal(pm_records_apply(b, &create, PM_RECORDS_PENDING_AT_OWNER),
                     PM_RECORD_APPLIED);
    pm_wire_rec_release(&create);
    assert_int_equal(pm_store_get(b, "n1-a~1.1")->state, PM_STATE_PENDING);
    assert_true(pm_store_get(b, "n1-a~1.1")->passive);
    s_assert_same_as(a, b, 0);
    /* not passive (a WAL replay): applying again changes nothing */
    pm_store_t *c = s_new();
    s_apply(c, &l, 0, &applied, &redundant);
    s_apply(c, &l, 0, &applied, &redundant);
    assert_int_equal(applied, 0);
    assert_int_equal(redundant, 6);
    s_assert_same(a, c);
    pm_store_destroy(&c);
    s_log_free(&l);
    pm_store_destroy(&a);
    pm_store_destroy(&b);
}

static void
test_refusals_and_drops(void **state)
{
    (void) state;
    pm_store_t *st = s_new();
    s_populate(st, 1000);
    /* another outcome for a settled promise: refused, nothing changes */
    pm_rec_t rec = {.kind = PM_REC_SETTLE};
    rec.promise.id = "n1-a~1.3";
    rec.promise.state = PM_STATE_REJECTED;
    rec.promise.reason = "late";
    assert_int_equal(pm_records_apply(st, &rec, 0), PM_ERR_ALREADY_SETTLED);
    assert_int_equal(pm_store_get(st, "n1-a~1.3")->state, PM_STATE_RESOLVED);
    /* a heartbeat of a settled promise: refused */
    pm_rec_t hb = {.kind = PM_REC_HEARTBEAT};
    hb.promise.id = "n1-a~1.4";
    hb.promise.heartbeat_at_ms = 9;
    assert_true(pm_records_apply(st, &hb, 0) < 0);
    /* a drop, then the same drop again */
    pm_rec_t drop = {.kind = PM_REC_DROP};
    drop.promise.id = "n1-a~1.4";
    assert_int_equal(pm_records_apply(st, &drop, 0), PM_RECORD_APPLIED);
    assert_null(pm_store_get(st, "n1-a~1.4"));
    assert_int_equal(pm_records_apply(st, &drop, 0), PM_RECORD_REDUNDANT);
    /* a pending promise cannot be dropped */
    drop.promise.id = "n1-a~1.1";
    assert_true(pm_records_apply(st, &drop, 0) < 0);
    /* a continuation is not the store's */
    pm_rec_t then = pm_records_then("n1-a~1.1", "f", "n1-a~1.9");
    assert_int_equal(pm_records_apply(st, &then, 0), PM_ERR_BAD_REQUEST);
    assert_null(pm_store_get(st, "n1-a~1.9"));
    pm_store_destroy(&st);
}

/* A backup's copy settled one way (its own unacknowledged settle, from when
 * it served the space cut off) and the owner's replicated settle another:
 * the owner's wins, the copy ends as the owner's, and the same settle again
 * is redundant. The owner's own WAL replay keeps the first settle. */
static void
test_owner_settle_replaces_a_stale_copy(void **state)
{
    (void) state;
    pm_store_t *a = s_new(), *b = s_new();
    s_populate(a, 1000);
    s_log_t l = {0};
    for (pm_prom_t *p = pm_store_oldest(a); p; p = p->newer)
        pm_records_of_promise(p, s_emit, &l);
    int applied, redundant;
    s_apply(b, &l, 1, &applied, &redundant);
    /* our copy's stale outcome of a pending one */
    assert_int_equal(pm_store_settle(b, "n1-a~1.1", PM_STATE_RESOLVED, "stale", 5, 2000, NULL),
                     PM_OK);
    pm_rec_t rec = {.kind = PM_REC_SETTLE};
    pm_records_view(pm_store_get(a, "n1-a~1.1"), &rec.promise);
    rec.promise.state = PM_STATE_RESOLVED;
    rec.promise.value = (const uint8_t *) "owner";
    rec.promise.value_len = 5;
    rec.promise.settled_ms = 2100;
    assert_int_equal(pm_records_apply(b, &rec, 1), PM_RECORD_APPLIED);
    pm_prom_t *q = pm_store_get(b, "n1-a~1.1");
    assert_non_null(q);
    assert_int_equal(q->state, PM_STATE_RESOLVED);
    assert_int_equal(q->data_len, 5);
    assert_memory_equal(q->data, "owner", 5);
    assert_true(q->passive);
    assert_int_equal(pm_records_apply(b, &rec, 1), PM_RECORD_REDUNDANT);
    /* the labels and key the create carried are kept */
    assert_non_null(q->extra);
    /* not passive (a WAL replay): the first settle wins */
    pm_store_t *c = s_new();
    s_apply(c, &l, 0, &applied, &redundant);
    assert_int_equal(pm_store_settle(c, "n1-a~1.1", PM_STATE_RESOLVED, "first", 5, 2000, NULL),
                     PM_OK);
    assert_int_equal(pm_records_apply(c, &rec, 0), PM_ERR_ALREADY_SETTLED);
    assert_memory_equal(pm_store_get(c, "n1-a~1.1")->data, "first", 5);
    s_log_free(&l);
    pm_store_destroy(&a);
    pm_store_destroy(&b);
    pm_store_destroy(&c);
}

/* ---- WAL replay and replication give the same store ---------------------- */

static s_log_t s_stream; /* what the journal's record hook saw: the replication stream */

static void
s_hook(void *arg, const pm_rec_t *rec, const uint8_t *buf, size_t len)
{
    (void) arg, (void) buf, (void) len;
    s_log_add(&s_stream, rec);
}

static void
s_send(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len, int tag,
       int64_t t0_us)
{
    (void) arg, (void) session, (void) peer, (void) len, (void) tag, (void) t0_us;
    free(buf);
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void
s_store_changed(void *arg, pm_store_event_t ev, const pm_prom_t *p)
{
    pm_journal_store_event(arg, ev, p);
}

static void
test_replay_equals_replication(void **state)
{
    (void) state;
    char dir[256], err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pm-records-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    pm_journal_t *j = pm_journal_open(dir, 2, NULL, s_send, NULL, err, sizeof err);
    assert_non_null(j);
    pm_store_t *owner = s_new();
    pm_journal_state_t st;
    assert_int_equal(pm_journal_replay(j, owner, &st, err, sizeof err), 0); /* a new WAL */
    assert_int_equal(pm_store_count(owner, 0), 0);
    pm_journal_state_free(&st);
    pm_journal_set_record_hook(j, s_hook, NULL);
    pm_store_set_listener(owner, s_store_changed, j);
    pm_journal_generation(j, "n1-a", NULL, 0, 1);
    s_populate(owner, 1000);
    pm_journal_then(j, "n1-a~1.1", "f", "n1-a~1.2");
    assert_int_equal(pm_store_drop(owner, "n1-a~1.4"), PM_OK);
    assert_int_equal(pm_journal_flush(j), 0);
    pm_journal_close(&j);

    /* the backup's copy: the stream, applied as it arrives */
    pm_store_t *backup = s_new();
    int applied, redundant;
    s_apply(backup, &s_stream, 1, &applied, &redundant);
    assert_int_equal(redundant, 0);
    s_assert_same(owner, backup);

    /* the restarted owner's copy: the WAL, replayed */
    j = pm_journal_open(dir, 2, NULL, s_send, NULL, err, sizeof err);
    assert_non_null(j);
    pm_store_t *restored = s_new();
    assert_int_equal(pm_journal_replay(j, restored, &st, err, sizeof err), 0);
    s_assert_same(owner, restored);
    s_assert_same(backup, restored);
    assert_string_equal(st.space, "n1-a");
    assert_int_equal(st.generation, 1);
    assert_int_equal(st.then_count, 1); /* its target still waits */
    assert_string_equal(st.thens[0].q, "n1-a~1.2");
    pm_journal_state_free(&st);
    pm_journal_close(&j);

    s_log_free(&s_stream);
    pm_store_destroy(&owner);
    pm_store_destroy(&backup);
    pm_store_destroy(&restored);
    nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promise_round_trip_and_idempotence),
        cmocka_unit_test(test_refusals_and_drops),
        cmocka_unit_test(test_owner_settle_replaces_a_stale_copy),
        cmocka_unit_test(test_replay_equals_replication),
    };
    return cmocka_run_group_tests_name("records", tests, NULL, NULL);
}
