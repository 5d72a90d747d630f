/*
 * test_backup.c - cmocka suite for mesh/backup.c: a backup applies and
 * acknowledges an owner's records only when they follow, without a hole, on
 * a complete state transfer of the same owner process; anything else asks
 * for the whole state again (rate-limited), and never acknowledges past a gap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "backup.h"

static const pm_bytes_t s_recs[16];

/* A streamed message of records first..last of stream. */
static pm_msg_t
s_stream(uint64_t stream, uint64_t first, uint64_t last)
{
    pm_msg_t m = {.type = PM_MSG_REPLICATE, .space = "a-1", .epoch = 1, .stream = stream,
                  .first = first, .lsn = last, .records = s_recs,
                  .record_count = (size_t) (last - first + 1)};
    return m;
}

/* A chunk of n records of transfer xfer. */
static pm_msg_t
s_chunk(uint64_t stream, uint64_t xfer, size_t n)
{
    pm_msg_t m = {.type = PM_MSG_REPLICATE, .space = "a-1", .epoch = 1, .stream = stream,
                  .full = 1, .xfer = xfer, .records = s_recs, .record_count = n};
    return m;
}

/* The marker ending transfer xfer of count records, current to lsn. */
static pm_msg_t
s_marker(uint64_t stream, uint64_t xfer, uint64_t count, uint64_t lsn)
{
    pm_msg_t m = {.type = PM_MSG_REPLICATE, .space = "a-1", .epoch = 1, .stream = stream,
                  .full = 1, .xfer = xfer, .count = count, .lsn = lsn};
    return m;
}

static pm_backup_verdict_t
s_check(pm_backup_t *b, const char *from, pm_msg_t m, int64_t now)
{
    pm_backup_verdict_t v;
    pm_backup_check(b, from, &m, NULL, now, &v);
    return v;
}

/* Transfer xfer (5 records in two chunks) current to lsn; must be accepted. */
static void
s_sync(pm_backup_t *b, const char *from, uint64_t stream, uint64_t xfer, uint64_t lsn)
{
    pm_backup_verdict_t v = s_check(b, from, s_chunk(stream, xfer, 3), 0);
    assert_true(v.apply);
    assert_int_equal(v.skip, 0);
    assert_false(v.ack);
    assert_false(v.resync);
    v = s_check(b, from, s_chunk(stream, xfer, 2), 0);
    assert_true(v.apply);
    v = s_check(b, from, s_marker(stream, xfer, 5, lsn), 0);
    assert_false(v.apply);
    assert_true(v.ack);
    assert_int_equal(v.lsn, lsn);
    assert_false(v.resync);
}

static void
test_records_before_transfer(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    assert_non_null(b);
    pm_backup_verdict_t v = s_check(b, "n1", s_stream(7, 1, 3), 1000);
    assert_false(v.apply);
    assert_false(v.ack);
    assert_true(v.resync);
    assert_non_null(v.why);
    /* asked a moment ago: not again at once, and still nothing applied */
    v = s_check(b, "n1", s_stream(7, 4, 4), 1100);
    assert_false(v.apply);
    assert_false(v.ack);
    assert_false(v.resync);
    /* the request may have been lost: asked again later */
    v = s_check(b, "n1", s_stream(7, 5, 5), 1600);
    assert_true(v.resync);
    assert_int_equal(pm_backup_resyncs(b), 2);
    assert_int_equal(pm_backup_synced(b), 0);
    pm_backup_destroy(&b);
    assert_null(b);
}

static void
test_transfer_then_stream(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    assert_int_equal(pm_backup_synced(b), 1);
    pm_backup_verdict_t v = s_check(b, "n1", s_stream(7, 11, 13), 0);
    assert_true(v.apply);
    assert_int_equal(v.skip, 0);
    assert_true(v.ack);
    assert_int_equal(v.lsn, 13);
    v = s_check(b, "n1", s_stream(7, 14, 14), 0);
    assert_true(v.apply);
    assert_int_equal(v.lsn, 14);
    assert_int_equal(pm_backup_resyncs(b), 0);
    pm_backup_destroy(&b);
}

static void
test_records_in_the_transfer_are_skipped(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    /* queued at the owner before the transfer, sent after it: 8..12 */
    pm_backup_verdict_t v = s_check(b, "n1", s_stream(7, 8, 12), 0);
    assert_true(v.apply);
    assert_int_equal(v.skip, 3);
    assert_true(v.ack);
    assert_int_equal(v.lsn, 12);
    /* wholly held already: nothing applied, the position acknowledged */
    v = s_check(b, "n1", s_stream(7, 5, 9), 0);
    assert_false(v.apply);
    assert_true(v.ack);
    assert_int_equal(v.lsn, 12);
    assert_false(v.resync);
    pm_backup_destroy(&b);
}

static void
test_gap_asks_for_the_state_and_never_acks_past_it(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    pm_backup_verdict_t v = s_check(b, "n1", s_stream(7, 13, 15), 0);
    assert_false(v.apply);
    assert_false(v.ack);
    assert_true(v.resync);
    assert_int_equal(pm_backup_synced(b), 0);
    /* what follows the gap is not acknowledged either, even if contiguous */
    v = s_check(b, "n1", s_stream(7, 16, 16), 10);
    assert_false(v.apply);
    assert_false(v.ack);
    /* nor a message that would have filled the hole: the state may differ */
    v = s_check(b, "n1", s_stream(7, 11, 12), 20);
    assert_false(v.ack);
    /* a new transfer repairs it */
    s_sync(b, "n1", 7, 2, 20);
    v = s_check(b, "n1", s_stream(7, 21, 21), 30);
    assert_true(v.ack);
    assert_int_equal(v.lsn, 21);
    pm_backup_destroy(&b);
}

static void
test_incomplete_transfer(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    pm_backup_verdict_t v = s_check(b, "n1", s_chunk(7, 1, 3), 0);
    assert_true(v.apply);
    /* 5 were sent, 3 arrived (the channel was torn down in between) */
    v = s_check(b, "n1", s_marker(7, 1, 5, 40), 0);
    assert_false(v.ack);
    assert_true(v.resync);
    v = s_check(b, "n1", s_stream(7, 41, 41), 10);
    assert_false(v.ack);
    pm_backup_destroy(&b);
}

static void
test_new_transfer_supersedes(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_check(b, "n1", s_chunk(7, 1, 4), 0);
    /* the owner started over (the first transfer was taken as lost) */
    s_check(b, "n1", s_chunk(7, 2, 2), 0);
    pm_backup_verdict_t v = s_check(b, "n1", s_marker(7, 2, 2, 9), 0);
    assert_true(v.ack);
    assert_int_equal(v.lsn, 9);
    pm_backup_destroy(&b);
}

static void
test_owner_restart_and_forget(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    s_sync(b, "n2", 9, 1, 3);
    assert_int_equal(pm_backup_synced(b), 2);
    /* n1 restarted: its new process counts LSNs from 1 in a new stream */
    pm_backup_verdict_t v = s_check(b, "n1", s_stream(8, 11, 11), 0);
    assert_false(v.ack);
    assert_true(v.resync);
    assert_int_equal(pm_backup_synced(b), 1);
    /* the old stream's position does not carry over either */
    s_sync(b, "n1", 8, 1, 2);
    v = s_check(b, "n1", s_stream(8, 3, 3), 0);
    assert_true(v.ack);
    /* n2 went down: what comes next from it must start with a transfer */
    pm_backup_forget(b, "n2");
    v = s_check(b, "n2", s_stream(9, 4, 4), 0);
    assert_false(v.ack);
    assert_true(v.resync);
    pm_backup_forget(b, "nobody"); /* unknown: no-op */
    pm_backup_destroy(&b);
}

static void
test_malformed_ranges(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    /* three records claiming the range 11..11 */
    pm_msg_t m = s_stream(7, 11, 11);
    m.record_count = 3;
    pm_backup_verdict_t v = s_check(b, "n1", m, 0);
    assert_false(v.apply);
    assert_false(v.ack);
    assert_true(v.resync);
    /* no stream at all */
    pm_backup_t *c = pm_backup_new();
    v = s_check(c, "n1", s_stream(0, 1, 1), 0);
    assert_false(v.apply);
    assert_true(v.resync);
    v = s_check(c, "n1", s_chunk(0, 1, 1), 1000);
    assert_false(v.apply);
    pm_backup_destroy(&b);
    pm_backup_destroy(&c);
    pm_backup_destroy(&c); /* twice: no-op */
}

/* Fencing sits in the backup: records from a sender whose claim loses are
 * refused whole, and its stream is forgotten (what follows needs a transfer). */
static void
test_fencing(void **state)
{
    (void) state;
    pm_backup_t *b = pm_backup_new();
    s_sync(b, "n1", 7, 1, 10);
    pm_backup_claims_t known_newer = {.self_node = "n2", .known = 2};
    pm_msg_t m = s_stream(7, 11, 11);
    pm_backup_verdict_t v;
    pm_backup_check(b, "n1", &m, &known_newer, 0, &v);
    assert_true(v.fenced);
    assert_int_equal(v.fence_epoch, 2);
    assert_false(v.apply);
    assert_false(v.ack);
    assert_int_equal(pm_backup_synced(b), 0);
    /* the stream was forgotten: even unfenced, the next record needs a transfer */
    m = s_stream(7, 12, 12);
    pm_backup_check(b, "n1", &m, NULL, 0, &v);
    assert_false(v.apply);
    assert_true(v.resync);
    /* equal epochs: our own claim refuses only a sender whose name loses */
    s_sync(b, "n3", 8, 1, 10);
    pm_backup_claims_t ours = {.self_node = "n2", .owned = 1, .mine = 1, .known = 1};
    m = s_stream(8, 11, 11); /* epoch 1 from n3: n2 < n3, refused */
    pm_backup_check(b, "n3", &m, &ours, 0, &v);
    assert_true(v.fenced);
    s_sync(b, "n1", 9, 1, 10);
    m = s_stream(9, 11, 11); /* epoch 1 from n1: n1 < n2, accepted */
    pm_backup_check(b, "n1", &m, &ours, 0, &v);
    assert_false(v.fenced);
    assert_true(v.apply);
    assert_true(v.ack);
    /* a closing marker carries no records: never fenced */
    m = s_marker(9, 2, 0, 11);
    pm_backup_check(b, "n1", &m, &known_newer, 0, &v);
    assert_false(v.fenced);
    pm_backup_destroy(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_before_transfer),
        cmocka_unit_test(test_transfer_then_stream),
        cmocka_unit_test(test_records_in_the_transfer_are_skipped),
        cmocka_unit_test(test_gap_asks_for_the_state_and_never_acks_past_it),
        cmocka_unit_test(test_incomplete_transfer),
        cmocka_unit_test(test_new_transfer_supersedes),
        cmocka_unit_test(test_owner_restart_and_forget),
        cmocka_unit_test(test_malformed_ranges),
        cmocka_unit_test(test_fencing),
    };
    return cmocka_run_group_tests_name("backup", tests, NULL, NULL);
}
